//! The node's P2P layer: an in-process simulated network of peers exchanging real
//! serialized messages (connection pool, DHT, gossip, relay, liveness pings).
//!
//! CONTRACT (used by main.rs; keep these signatures): `NetworkConfig`, `Network::new`,
//! `Network::tick`, `Network::announce`, `Network::connected`, `Network::health`.

use crate::peer::PeerId;
use zs_observe_health::CheckResult;

/// How the simulated network behaves.
#[derive(Debug, Clone, Copy)]
pub(crate) struct NetworkConfig {
    /// Peers in the simulated network besides this node.
    pub(crate) peers: u32,
    /// Probability (0..1) that a connected peer is lost in a round (fault injection).
    pub(crate) peer_loss_rate: f64,
    /// Seed of the simulation's reproducible randomness.
    pub(crate) seed: u64,
}

/// The simulated network as this node sees it.
#[derive(Debug)]
pub(crate) struct Network {
    config: NetworkConfig,
}

impl Network {
    pub(crate) fn new(config: NetworkConfig) -> Self {
        Network { config }
    }

    /// One round of network maintenance: discovery, connects, pings, gossip, relay,
    /// peer loss, pool and peer gauges.
    pub(crate) fn tick(&self) {}

    /// Gossips a task announcement; returns the peers that received it (the bidders).
    pub(crate) fn announce(&self, _task_id: u64, _payload: &[u8]) -> Vec<PeerId> {
        self.connected()
    }

    /// The peers connected right now.
    pub(crate) fn connected(&self) -> Vec<PeerId> {
        (1..=self.config.peers).map(PeerId).collect()
    }

    /// The `p2p:connectivity` readiness check.
    pub(crate) fn health(&self) -> CheckResult {
        CheckResult::pass()
    }
}
