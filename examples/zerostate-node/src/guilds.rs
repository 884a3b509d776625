//! Guilds: groups of peers that take tasks together (`guild.create`, `guild.join`,
//! `guild.dissolve`).

use crate::peer::PeerId;
use zs_observe_health::CheckResult;

/// The node's guild manager.
#[derive(Debug, Default)]
pub(crate) struct Guilds {}

impl Guilds {
    pub(crate) fn new() -> Self {
        Guilds {}
    }

    /// One round of guild upkeep against the peers connected now: creates guilds when
    /// there are too few, lets unaffiliated peers join, dissolves abandoned guilds.
    pub(crate) fn maintain(&self, _connected: &[PeerId]) {}

    /// The members of the guild that takes task `task_id`, if any guild exists.
    pub(crate) fn assign(&self, _task_id: u64) -> Option<Vec<PeerId>> {
        None
    }

    /// The `guilds:manager` readiness check.
    pub(crate) fn health(&self) -> CheckResult {
        CheckResult::pass()
    }
}
