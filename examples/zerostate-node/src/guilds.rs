//! Guilds: groups of peers that take tasks together (`guild.create`, `guild.join`,
//! `guild.dissolve`).
//!
//! The manager keeps a few guilds alive over the connected peers: it founds a guild
//! when there are too few, lets unaffiliated peers join (a full guild refuses them, and
//! they try the next), dissolves a guild whose members are mostly gone and ends each
//! guild's term after a while, so the whole lifecycle runs under the workload.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::{Mutex, MutexGuard};

use crate::peer::PeerId;
use zs_observe::instrumented;
use zs_observe_health::CheckResult;

/// Guilds the manager keeps alive.
const TARGET_GUILDS: usize = 3;
/// Members a guild takes at most.
const MAX_MEMBERS: usize = 5;
/// Upkeep rounds a guild lasts before its term ends and it dissolves.
const TERM_ROUNDS: u64 = 40;

/// A guild's number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct GuildId(u64);

impl fmt::Display for GuildId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "guild-{}", self.0)
    }
}

/// Why a guild operation was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum GuildError {
    /// No guild with this id.
    Unknown(GuildId),
    /// The guild has `MAX_MEMBERS` members.
    Full(GuildId),
    /// The peer is a member already.
    AlreadyMember(PeerId, GuildId),
    /// The guild manager's state was poisoned by a panic.
    Poisoned,
}

impl fmt::Display for GuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GuildError::Unknown(g) => write!(f, "no guild {g}"),
            GuildError::Full(g) => write!(f, "{g} is full ({MAX_MEMBERS} members)"),
            GuildError::AlreadyMember(p, g) => write!(f, "{p} is already a member of {g}"),
            GuildError::Poisoned => f.write_str("guild manager state poisoned"),
        }
    }
}

impl std::error::Error for GuildError {}

#[derive(Debug)]
struct Guild {
    members: BTreeSet<PeerId>,
    founded: u64,
}

#[derive(Debug, Default)]
struct State {
    guilds: BTreeMap<GuildId, Guild>,
    next_id: u64,
    round: u64,
}

/// The node's guild manager.
#[derive(Debug, Default)]
pub(crate) struct Guilds {
    state: Mutex<State>,
}

impl Guilds {
    pub(crate) fn new() -> Self {
        Guilds::default()
    }

    fn state(&self) -> Result<MutexGuard<'_, State>, GuildError> {
        self.state.lock().map_err(|_| GuildError::Poisoned)
    }

    /// Founds a guild with `founder` as its first member.
    #[instrumented(
        span = "guild.create",
        counter = "zerostate_guild_operations_total",
        histogram = "zerostate_guild_operation_duration_seconds",
        labels(operation = "create"),
        fields(peer.id = %founder, guild.id),
        skip(self),
        err(level = "debug")
    )]
    pub(crate) fn create(&self, founder: PeerId) -> Result<GuildId, GuildError> {
        let mut state = self.state()?;
        if let Some((id, _)) = state
            .guilds
            .iter()
            .find(|(_, g)| g.members.contains(&founder))
        {
            return Err(GuildError::AlreadyMember(founder, *id));
        }
        state.next_id += 1;
        let id = GuildId(state.next_id);
        let founded = state.round;
        state.guilds.insert(
            id,
            Guild {
                members: BTreeSet::from([founder]),
                founded,
            },
        );
        zs_observe::record_current("guild.id", tracing::field::display(id));
        Ok(id)
    }

    /// Adds `peer` to `guild`.
    #[instrumented(
        span = "guild.join",
        counter = "zerostate_guild_operations_total",
        histogram = "zerostate_guild_operation_duration_seconds",
        labels(operation = "join"),
        fields(guild.id = %guild, peer.id = %peer),
        skip(self),
        err(level = "debug")
    )]
    pub(crate) fn join(&self, guild: GuildId, peer: PeerId) -> Result<usize, GuildError> {
        let mut state = self.state()?;
        let g = state
            .guilds
            .get_mut(&guild)
            .ok_or(GuildError::Unknown(guild))?;
        if g.members.contains(&peer) {
            return Err(GuildError::AlreadyMember(peer, guild));
        }
        if g.members.len() >= MAX_MEMBERS {
            return Err(GuildError::Full(guild));
        }
        g.members.insert(peer);
        Ok(g.members.len())
    }

    /// Dissolves `guild`; returns how many members it had.
    #[instrumented(
        span = "guild.dissolve",
        counter = "zerostate_guild_operations_total",
        histogram = "zerostate_guild_operation_duration_seconds",
        labels(operation = "dissolve"),
        fields(guild.id = %guild),
        skip(self),
        err(level = "debug")
    )]
    pub(crate) fn dissolve(&self, guild: GuildId) -> Result<usize, GuildError> {
        let mut state = self.state()?;
        let g = state
            .guilds
            .remove(&guild)
            .ok_or(GuildError::Unknown(guild))?;
        Ok(g.members.len())
    }

    /// One round of guild upkeep against the peers connected now: ends terms and
    /// dissolves abandoned guilds, founds guilds when there are too few, lets
    /// unaffiliated peers join.
    pub(crate) fn maintain(&self, connected: &[PeerId]) {
        let connected: BTreeSet<PeerId> = connected.iter().copied().collect();
        let (ending, unaffiliated, count) = {
            let Ok(mut state) = self.state() else {
                return;
            };
            state.round += 1;
            let round = state.round;
            let ending: Vec<GuildId> = state
                .guilds
                .iter()
                .filter(|(_, g)| {
                    let present = g.members.intersection(&connected).count();
                    round - g.founded >= TERM_ROUNDS || present * 2 < g.members.len()
                })
                .map(|(id, _)| *id)
                .collect();
            let affiliated: BTreeSet<PeerId> = state
                .guilds
                .iter()
                .filter(|(id, _)| !ending.contains(id))
                .flat_map(|(_, g)| g.members.iter().copied())
                .collect();
            let unaffiliated: Vec<PeerId> = connected.difference(&affiliated).copied().collect();
            let remaining = state.guilds.len() - ending.len();
            (ending, unaffiliated, remaining)
        };
        for id in ending {
            if let Ok(members) = self.dissolve(id) {
                tracing::info!(guild.id = %id, members, "guild dissolved");
            }
        }
        let mut unaffiliated = unaffiliated.into_iter();
        for _ in count..TARGET_GUILDS {
            let Some(founder) = unaffiliated.next() else {
                break;
            };
            if let Ok(id) = self.create(founder) {
                tracing::info!(guild.id = %id, peer.id = %founder, "guild founded");
            }
        }
        // Each remaining peer asks the guilds, smallest first, until one takes it.
        for peer in unaffiliated {
            for guild in self.by_size() {
                if self.join(guild, peer).is_ok() {
                    break;
                }
            }
        }
        self.update_gauges();
    }

    /// Guild ids, the one with the fewest members first.
    fn by_size(&self) -> Vec<GuildId> {
        let Ok(state) = self.state() else {
            return Vec::new();
        };
        let mut ids: Vec<(usize, GuildId)> = state
            .guilds
            .iter()
            .map(|(id, g)| (g.members.len(), *id))
            .collect();
        ids.sort_unstable();
        ids.into_iter().map(|(_, id)| id).collect()
    }

    fn update_gauges(&self) {
        let Ok(state) = self.state() else {
            return;
        };
        let members: usize = state.guilds.values().map(|g| g.members.len()).sum();
        metrics::gauge!("zerostate_guilds_active").set(state.guilds.len() as f64);
        metrics::gauge!("zerostate_guild_members").set(members as f64);
    }

    /// The members of the guild that takes task `task_id`, if any guild exists.
    pub(crate) fn assign(&self, task_id: u64) -> Option<Vec<PeerId>> {
        let state = self.state().ok()?;
        let n = state.guilds.len();
        if n == 0 {
            return None;
        }
        let index = usize::try_from(task_id % n as u64).ok()?;
        let guild = state.guilds.values().nth(index)?;
        Some(guild.members.iter().copied().collect())
    }

    /// The `guilds:manager` readiness check: the manager answers, and there is a guild
    /// to take tasks (warn, not fail, without one: the node still serves).
    pub(crate) fn health(&self) -> CheckResult {
        match self.state() {
            Ok(state) if state.guilds.is_empty() => CheckResult::warn("no active guild"),
            Ok(state) => CheckResult::pass().with_observed(state.guilds.len() as u64, "guilds"),
            Err(e) => CheckResult::fail(e.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peers(n: u32) -> Vec<PeerId> {
        (1..=n).map(PeerId).collect()
    }

    #[test]
    fn guilds_form_over_connected_peers_and_take_tasks() {
        let guilds = Guilds::new();
        assert!(guilds.assign(1).is_none());
        assert_eq!(guilds.health().status(), zs_observe_health::Status::Warn);
        guilds.maintain(&peers(12));
        let state = guilds.state().expect("state");
        assert_eq!(state.guilds.len(), TARGET_GUILDS);
        let members: usize = state.guilds.values().map(|g| g.members.len()).sum();
        // 12 peers, 3 guilds of at most 5: every peer found a guild.
        assert_eq!(members, 12);
        drop(state);
        let taken = guilds.assign(7).expect("a guild");
        assert!(!taken.is_empty() && taken.len() <= MAX_MEMBERS);
        assert_eq!(guilds.health().status(), zs_observe_health::Status::Pass);
    }

    #[test]
    fn full_guilds_refuse_and_members_cannot_join_twice() {
        let guilds = Guilds::new();
        let id = guilds.create(PeerId(1)).expect("created");
        assert_eq!(
            guilds.create(PeerId(1)),
            Err(GuildError::AlreadyMember(PeerId(1), id))
        );
        for p in 2..=5 {
            guilds.join(id, PeerId(p)).expect("joins");
        }
        assert_eq!(guilds.join(id, PeerId(6)), Err(GuildError::Full(id)));
        assert_eq!(
            guilds.join(id, PeerId(2)),
            Err(GuildError::AlreadyMember(PeerId(2), id))
        );
        assert_eq!(guilds.dissolve(id), Ok(5));
        assert_eq!(guilds.dissolve(id), Err(GuildError::Unknown(id)));
    }

    #[test]
    fn abandoned_guilds_dissolve_and_terms_end() {
        let guilds = Guilds::new();
        guilds.maintain(&peers(12));
        // Most peers gone: the guilds they were in are dissolved, the rest re-form.
        guilds.maintain(&peers(2));
        let state = guilds.state().expect("state");
        assert!(state.guilds.len() <= 2, "{:?}", state.guilds);
        drop(state);
        // Every guild's term ends within TERM_ROUNDS rounds.
        let first: Vec<GuildId> = guilds
            .state()
            .expect("state")
            .guilds
            .keys()
            .copied()
            .collect();
        for _ in 0..TERM_ROUNDS {
            guilds.maintain(&peers(12));
        }
        let now = guilds.state().expect("state");
        assert!(first.iter().all(|id| !now.guilds.contains_key(id)));
        assert_eq!(now.guilds.len(), TARGET_GUILDS);
    }
}
