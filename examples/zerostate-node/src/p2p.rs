//! The node's P2P layer: an in-process simulated network of peers exchanging real
//! serialized messages (connection pool, DHT, gossip, relay, liveness pings).
//!
//! CONTRACT (used by main.rs; keep these signatures): `NetworkConfig`, `Network::new`,
//! `Network::tick`, `Network::announce`, `Network::connected`, `Network::health`.
//!
//! Every message is a [`Message`] serialized to JSON bytes; the simulated peers
//! deserialize each request and serialize their answer back, so bandwidth, codec time
//! and failures are real. The peers live in this process ([`SimNet`]): each has a place
//! in a Kademlia-style key space (its hashed id, XOR distance), a routing table of other
//! peers and a small DHT store; one in four cannot be dialled directly (behind NAT) and
//! is reached through a circuit relay over a directly connected peer.
//!
//! One round ([`Network::tick`], every 20 ms under the workload):
//!
//! 1. every second, trim the connection idle the longest if a discovered peer waits;
//!    connect (`p2p.connect`, via `p2p.relay` for NAT'd peers) discovered peers, up to
//!    the pool size, a few per round;
//! 2. discover peers with a DHT find (`p2p.dht.find`) when the pool is not full, and
//!    every few rounds anyway; peers whose failure backoff has expired are rediscovered;
//! 3. keep a gossip mesh over the pool;
//! 4. fault injection: each connected peer is lost with `peer_loss_rate`, and stays
//!    unreachable for a while;
//! 5. traffic: gossip from the network arrives through mesh peers (`p2p.receive`,
//!    `p2p.gossip`; the first copy is forwarded, later ones are duplicates), some of the
//!    node's own announcements echo back, a DHT put or get (`p2p.dht.put`, `p2p.dht.get`);
//! 6. keepalive: a ping (`p2p.ping`) to every connection that has not answered since
//!    step 4;
//! 7. the peer and connection gauges.
//!
//! A lost peer fails the messages sent to it in the round, then its keepalive ping: the
//! connection is closed and the peer marked failed, to be rediscovered after a backoff
//! and connected again once it is back. So a high loss rate empties the pool and fails
//! messages and pings.

use std::collections::{BTreeMap, BTreeSet, HashSet, VecDeque};
use std::fmt;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use zs_observe::instrumented;
use zs_observe_health::CheckResult;

use crate::peer::PeerId;

/// This node's own id on the network (the simulated peers are 1..=n).
const LOCAL: PeerId = PeerId(0);
/// Connections the node keeps at most.
const POOL_SIZE: usize = 8;
/// Peers the node exchanges gossip with directly (gossipsub's D).
const MESH_SIZE: usize = 6;
/// Connection attempts per round at most.
const CONNECTS_PER_ROUND: usize = 3;
/// Peers a DHT find answers with at most (Kademlia's k).
const FIND_K: usize = 8;
/// Peers a DHT value is stored on.
const REPLICAS: usize = 3;
/// Peers a DHT get asks at most.
const GET_FANOUT: usize = 4;
/// Rounds a failed peer waits before it can be rediscovered.
const RETRY_ROUNDS: u64 = 10;
/// Rounds a lost peer stays unreachable: at least, and at most.
const DOWN_ROUNDS: (u64, u64) = (10, 50);
/// One peer in this many is behind NAT (reachable only through a relay).
const NAT_ONE_IN: u64 = 4;
/// Peers the node knows at start (never behind NAT).
const BOOTSTRAP_PEERS: u32 = 2;
/// Rounds of joining the network at start at most.
const BOOTSTRAP_ROUNDS: usize = 10;
/// Connections below which the `p2p:connectivity` check warns.
const HEALTHY_PEERS: usize = 3;
/// Rounds between periodic discoveries once the pool is full.
const DISCOVERY_EVERY: u64 = 10;
/// Rounds between mesh rotations (one member pruned, a new one grafted).
const MESH_ROTATE_EVERY: u64 = 10;
/// Rounds between trims of the pool (the idlest connection is closed for a waiting peer).
const TRIM_EVERY: u64 = 50;
/// Keys a simulated peer stores at most (oldest evicted first).
const STORE_CAPACITY: usize = 256;
/// Gossip ids remembered for duplicate detection.
const SEEN_CAPACITY: usize = 4096;
/// Own announcements remembered for echoes.
const RECENT_CAPACITY: usize = 16;
/// Entries of a simulated peer's routing table: its closest peers plus random ones.
const TABLE_CLOSEST: usize = 4;
const TABLE_RANDOM: usize = 8;
/// Gossip topic of the network's own status messages.
const STATUS_TOPIC: &str = "zerostate/status/1";

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

/// Why a P2P operation failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum P2pError {
    /// The peer does not answer a dial (it is down, or behind NAT and dialled directly).
    Unreachable(PeerId),
    /// A connected peer stopped answering; its connection is closed.
    PeerLost(PeerId),
    /// The peer is behind NAT and no directly connected peer can relay to it.
    NoRelay(PeerId),
    /// No connected peer to ask or publish to.
    NoPeers,
    /// A DHT get found no value under the key, or a find found no peer.
    NotFound(String),
    /// A message could not be encoded or decoded.
    Codec(String),
    /// The peer answered with something else than the request asks for.
    Protocol(String),
}

impl fmt::Display for P2pError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            P2pError::Unreachable(p) => write!(f, "{p} is unreachable"),
            P2pError::PeerLost(p) => write!(f, "{p} was lost (no answer)"),
            P2pError::NoRelay(p) => write!(f, "{p} is behind NAT and no relay is connected"),
            P2pError::NoPeers => f.write_str("no connected peers"),
            P2pError::NotFound(what) => write!(f, "not found in the DHT: {what}"),
            P2pError::Codec(e) => write!(f, "message codec: {e}"),
            P2pError::Protocol(e) => write!(f, "protocol violation: {e}"),
        }
    }
}

impl std::error::Error for P2pError {}

/// The `type` label of `zerostate_p2p_messages_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// Gossip, one way.
    Gossip,
    /// A request that expects a response.
    Request,
    /// The response to a request.
    Response,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Gossip => "gossip",
            Kind::Request => "request",
            Kind::Response => "response",
        }
    }
}

/// A message on the wire (JSON, internally tagged by `type`). Peer ids are their numbers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(crate) enum Message {
    /// Opens a connection.
    Hello { from: u32 },
    /// Accepts a connection.
    HelloAck { from: u32 },
    /// Liveness probe.
    Ping { nonce: u64 },
    /// Answer to a ping, same nonce.
    Pong { nonce: u64 },
    /// Stores a value under a key.
    DhtPut { key: String, value: Vec<u8> },
    /// The value is stored.
    DhtStored { key: String },
    /// Asks for the value under a key.
    DhtGet { key: String },
    /// The value under a key, if the peer holds one.
    DhtValue { key: String, value: Option<Vec<u8>> },
    /// Asks for the peers closest to a point of the key space.
    DhtFind { target: u64 },
    /// The peers closest to the target the answering peer knows.
    DhtPeers { peers: Vec<u32> },
    /// Asks a peer to open a relayed circuit to `target`.
    RelayConnect { target: u32 },
    /// The circuit is open.
    RelayAccepted { target: u32 },
    /// The circuit could not be opened.
    RelayRefused { target: u32, reason: String },
    /// A gossip message on a topic.
    Gossip {
        id: u64,
        topic: String,
        payload: Vec<u8>,
    },
    /// A task announcement, gossiped to the peers that may bid for it.
    TaskAnnounce {
        id: u64,
        task_id: u64,
        payload: Vec<u8>,
    },
}

impl Message {
    /// Gossip, request or response.
    pub(crate) fn kind(&self) -> Kind {
        match self {
            Message::Hello { .. }
            | Message::Ping { .. }
            | Message::DhtPut { .. }
            | Message::DhtGet { .. }
            | Message::DhtFind { .. }
            | Message::RelayConnect { .. } => Kind::Request,
            Message::HelloAck { .. }
            | Message::Pong { .. }
            | Message::DhtStored { .. }
            | Message::DhtValue { .. }
            | Message::DhtPeers { .. }
            | Message::RelayAccepted { .. }
            | Message::RelayRefused { .. } => Kind::Response,
            Message::Gossip { .. } | Message::TaskAnnounce { .. } => Kind::Gossip,
        }
    }

    /// The message's name, as on the wire (the `message.type` span field).
    pub(crate) fn name(&self) -> &'static str {
        match self {
            Message::Hello { .. } => "hello",
            Message::HelloAck { .. } => "hello_ack",
            Message::Ping { .. } => "ping",
            Message::Pong { .. } => "pong",
            Message::DhtPut { .. } => "dht_put",
            Message::DhtStored { .. } => "dht_stored",
            Message::DhtGet { .. } => "dht_get",
            Message::DhtValue { .. } => "dht_value",
            Message::DhtFind { .. } => "dht_find",
            Message::DhtPeers { .. } => "dht_peers",
            Message::RelayConnect { .. } => "relay_connect",
            Message::RelayAccepted { .. } => "relay_accepted",
            Message::RelayRefused { .. } => "relay_refused",
            Message::Gossip { .. } => "gossip",
            Message::TaskAnnounce { .. } => "task_announce",
        }
    }

    /// The id of a gossip message (its duplicate-detection key).
    fn gossip_id(&self) -> Option<u64> {
        match self {
            Message::Gossip { id, .. } | Message::TaskAnnounce { id, .. } => Some(*id),
            _ => None,
        }
    }

    /// The message's topic, for gossip.
    fn topic(&self) -> &str {
        match self {
            Message::Gossip { topic, .. } => topic,
            Message::TaskAnnounce { .. } => "zerostate/tasks/1",
            _ => "",
        }
    }

    /// The wire bytes.
    pub(crate) fn encode(&self) -> Result<Vec<u8>, P2pError> {
        serde_json::to_vec(self).map_err(|e| P2pError::Codec(e.to_string()))
    }

    /// A message from wire bytes.
    pub(crate) fn decode(bytes: &[u8]) -> Result<Self, P2pError> {
        serde_json::from_slice(bytes).map_err(|e| P2pError::Codec(e.to_string()))
    }
}

/// splitmix64: reproducible randomness without a dependency.
#[derive(Debug, Clone)]
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        mix(self.0)
    }

    /// Uniform in [0, 1).
    fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// True with probability `p`.
    fn chance(&mut self, p: f64) -> bool {
        self.next_f64() < p
    }

    /// Uniform in 0..n (0 when n is 0).
    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            return 0;
        }
        (self.next_u64() % n as u64) as usize
    }

    /// Uniform in lo..=hi.
    fn between(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next_u64() % (hi - lo + 1)
    }

    fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.below(i + 1);
            items.swap(i, j);
        }
    }
}

/// Creates every series of the plain counters at zero, so an error rate of zero is a
/// series at zero rather than a missing one (as `#[instrumented]` does for its own).
fn register_series() {
    for kind in ["gossip", "request", "response"] {
        for status in ["success", "error"] {
            metrics::counter!("zerostate_p2p_messages_total", "type" => kind, "status" => status)
                .increment(0);
        }
    }
    for direction in ["tx", "rx"] {
        metrics::counter!("zerostate_p2p_bandwidth_bytes_total", "direction" => direction)
            .increment(0);
    }
    for status in ["published", "delivered", "duplicate"] {
        metrics::counter!("zerostate_p2p_gossip_messages_total", "status" => status).increment(0);
    }
}

/// The splitmix64 finalizer: a good 64-bit mixing function.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A peer's place in the DHT key space.
fn peer_key(peer: PeerId) -> u64 {
    mix(u64::from(peer.0) ^ 0x5A17_C0DE_0000_0000)
}

/// A DHT key's place in the key space (FNV-1a, mixed).
fn dht_key(key: &str) -> u64 {
    let hash = key.bytes().fold(0xCBF2_9CE4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01B3)
    });
    mix(hash)
}

/// `peers` ordered by XOR distance of their keys to `target`, closest first.
fn by_distance(peers: &mut [PeerId], target: u64) {
    peers.sort_by_key(|p| (peer_key(*p) ^ target, p.0));
}

/// A simulated remote peer.
#[derive(Debug)]
struct SimPeer {
    /// Behind NAT: reachable only through a relay.
    nat: bool,
    /// Unreachable (lost) before this round.
    down_until: u64,
    /// The peers it knows.
    table: Vec<PeerId>,
    /// Its share of the DHT, oldest key first in `order`.
    store: BTreeMap<String, Vec<u8>>,
    order: VecDeque<String>,
}

impl SimPeer {
    fn store(&mut self, key: String, value: Vec<u8>) {
        if self.store.insert(key.clone(), value).is_none() {
            self.order.push_back(key);
            if self.order.len() > STORE_CAPACITY {
                if let Some(oldest) = self.order.pop_front() {
                    self.store.remove(&oldest);
                }
            }
        }
    }
}

/// The rest of the network: the remote peers, in this process.
#[derive(Debug)]
struct SimNet {
    peers: Vec<SimPeer>,
}

impl SimNet {
    fn new(n: u32, rng: &mut Rng) -> Self {
        let ids: Vec<PeerId> = (1..=n).map(PeerId).collect();
        let peers = ids
            .iter()
            .map(|&id| {
                let mut others: Vec<PeerId> = ids.iter().copied().filter(|&p| p != id).collect();
                by_distance(&mut others, peer_key(id));
                let mut table: Vec<PeerId> = others.iter().take(TABLE_CLOSEST).copied().collect();
                let mut rest: Vec<PeerId> = others.iter().skip(TABLE_CLOSEST).copied().collect();
                rng.shuffle(&mut rest);
                table.extend(rest.into_iter().take(TABLE_RANDOM));
                SimPeer {
                    nat: id.0 > BOOTSTRAP_PEERS && u64::from(id.0) % NAT_ONE_IN == 0,
                    down_until: 0,
                    table,
                    store: BTreeMap::new(),
                    order: VecDeque::new(),
                }
            })
            .collect();
        SimNet { peers }
    }

    fn peer(&self, id: PeerId) -> Option<&SimPeer> {
        let index = usize::try_from(id.0).ok()?.checked_sub(1)?;
        self.peers.get(index)
    }

    fn peer_mut(&mut self, id: PeerId) -> Option<&mut SimPeer> {
        let index = usize::try_from(id.0).ok()?.checked_sub(1)?;
        self.peers.get_mut(index)
    }

    fn is_up(&self, id: PeerId, round: u64) -> bool {
        self.peer(id).is_some_and(|p| p.down_until <= round)
    }

    fn is_nat(&self, id: PeerId) -> bool {
        self.peer(id).is_some_and(|p| p.nat)
    }

    /// The peer goes away until `until`.
    fn take_down(&mut self, id: PeerId, until: u64) {
        if let Some(p) = self.peer_mut(id) {
            p.down_until = p.down_until.max(until);
        }
    }

    /// Delivers `bytes` to `to` (through `via`, a relay, if given); returns the peer's
    /// serialized answer, if the message asks for one. The error names the peer that did
    /// not answer (the relay or the target).
    fn deliver(
        &mut self,
        round: u64,
        to: PeerId,
        via: Option<PeerId>,
        bytes: &[u8],
    ) -> Result<Option<Vec<u8>>, P2pError> {
        if let Some(relay) = via {
            if !self.is_up(relay, round) {
                return Err(P2pError::Unreachable(relay));
            }
        } else if self.is_nat(to) {
            // No inbound connections through NAT.
            return Err(P2pError::Unreachable(to));
        }
        if !self.is_up(to, round) {
            return Err(P2pError::Unreachable(to));
        }
        let request = Message::decode(bytes)?;
        let answer = self.handle(round, to, request);
        answer.map(|m| m.encode()).transpose()
    }

    /// What peer `me` answers to `request`.
    fn handle(&mut self, round: u64, me: PeerId, request: Message) -> Option<Message> {
        match request {
            Message::Hello { .. } => Some(Message::HelloAck { from: me.0 }),
            Message::Ping { nonce } => Some(Message::Pong { nonce }),
            Message::DhtPut { key, value } => {
                let peer = self.peer_mut(me)?;
                peer.store(key.clone(), value);
                Some(Message::DhtStored { key })
            }
            Message::DhtGet { key } => {
                let value = self.peer(me)?.store.get(&key).cloned();
                Some(Message::DhtValue { key, value })
            }
            Message::DhtFind { target } => {
                let mut known = self.peer(me)?.table.clone();
                known.push(me);
                by_distance(&mut known, target);
                known.truncate(FIND_K);
                Some(Message::DhtPeers {
                    peers: known.into_iter().map(|p| p.0).collect(),
                })
            }
            Message::RelayConnect { target } => {
                let t = PeerId(target);
                Some(if self.peer(t).is_none() {
                    Message::RelayRefused {
                        target,
                        reason: "unknown peer".to_owned(),
                    }
                } else if self.is_up(t, round) {
                    Message::RelayAccepted { target }
                } else {
                    Message::RelayRefused {
                        target,
                        reason: "no reservation: peer unreachable".to_owned(),
                    }
                })
            }
            // Gossip is one way; responses are not requests.
            _ => None,
        }
    }

    /// The number of simulated peers.
    fn len(&self) -> u32 {
        u32::try_from(self.peers.len()).unwrap_or(u32::MAX)
    }
}

/// An open connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Connection {
    /// The relay it goes through, for a peer behind NAT.
    via: Option<PeerId>,
    /// The round of the last gossip or DHT message it carried (pings do not count).
    last_traffic: u64,
}

/// What the node knows of a peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PeerState {
    /// Known (from bootstrap or a DHT find), not connected.
    Discovered,
    /// In the connection pool.
    Connected(Connection),
    /// Did not answer; may be rediscovered from round `retry_at` on.
    Failed { retry_at: u64 },
}

/// The node's view of the network, and the simulated rest of it.
#[derive(Debug)]
struct State {
    config: NetworkConfig,
    rng: Rng,
    round: u64,
    net: SimNet,
    peers: BTreeMap<PeerId, PeerState>,
    mesh: Vec<PeerId>,
    /// Peers that answered since this round's loss step (they need no ping).
    answered: BTreeSet<PeerId>,
    seen: HashSet<u64>,
    seen_order: VecDeque<u64>,
    /// The node's recent announcements (some echo back as duplicates).
    recent: VecDeque<Message>,
    /// DHT puts so far (the keys are numbered).
    puts: u64,
    nonce: u64,
}

/// The simulated network as this node sees it.
#[derive(Debug)]
pub(crate) struct Network {
    state: Mutex<State>,
}

impl Network {
    /// Joins the simulated network: bootstrap rounds (connect, DHT find, no faults) until
    /// the node has `HEALTHY_PEERS` connections or `BOOTSTRAP_ROUNDS` have passed, so
    /// the node is ready when it starts serving, with or without the workload.
    pub(crate) fn new(config: NetworkConfig) -> Self {
        let network = Network::unjoined(config);
        {
            let mut state = network.state();
            for _ in 0..BOOTSTRAP_ROUNDS {
                state.round += 1;
                state.fill_pool();
                state.discover();
                if state.connected().len() >= HEALTHY_PEERS {
                    break;
                }
            }
            state.update_gauges();
        }
        network
    }

    /// The network before the node has joined it: only the bootstrap peers are known.
    fn unjoined(config: NetworkConfig) -> Self {
        register_series();
        let mut rng = Rng(config.seed);
        let net = SimNet::new(config.peers, &mut rng);
        let peers = (1..=BOOTSTRAP_PEERS.min(net.len()))
            .map(|p| (PeerId(p), PeerState::Discovered))
            .collect();
        Network {
            state: Mutex::new(State {
                config,
                rng,
                round: 0,
                net,
                peers,
                mesh: Vec::new(),
                answered: BTreeSet::new(),
                seen: HashSet::new(),
                seen_order: VecDeque::new(),
                recent: VecDeque::new(),
                puts: 0,
                nonce: 0,
            }),
        }
    }

    /// The state; a panic while it was held poisons nothing that matters here (every
    /// step leaves it consistent), so a poisoned lock is taken over.
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// One round of network maintenance: discovery, connects, pings, gossip, relay,
    /// peer loss, pool and peer gauges.
    pub(crate) fn tick(&self) {
        let mut state = self.state();
        state.round += 1;
        state.trim_pool();
        state.fill_pool();
        state.discover();
        state.maintain_mesh();
        state.lose_peers();
        state.traffic();
        state.keepalive();
        state.update_gauges();
    }

    /// Gossips a task announcement; returns the peers that received it (the bidders).
    pub(crate) fn announce(&self, task_id: u64, payload: &[u8]) -> Vec<PeerId> {
        let mut state = self.state();
        let id = mix(state.config.seed ^ task_id.wrapping_mul(0x2545_F491_4F6C_DD1D));
        let message = Message::TaskAnnounce {
            id,
            task_id,
            payload: payload.to_vec(),
        };
        let sent = state.gossip(&message, None);
        state.recent.push_back(message);
        if state.recent.len() > RECENT_CAPACITY {
            state.recent.pop_front();
        }
        match sent {
            Ok(receivers) => receivers,
            Err(e) => {
                tracing::debug!(task.id = task_id, error = %e, "task announcement not sent");
                Vec::new()
            }
        }
    }

    /// The peers connected right now.
    pub(crate) fn connected(&self) -> Vec<PeerId> {
        self.state().connected()
    }

    /// The `p2p:connectivity` readiness check.
    pub(crate) fn health(&self) -> CheckResult {
        let n = self.state().connected().len();
        let result = match n {
            0 => CheckResult::fail("no connected peers"),
            n if n < HEALTHY_PEERS => CheckResult::warn(format!(
                "only {n} connected peers (want at least {HEALTHY_PEERS})"
            )),
            _ => CheckResult::pass(),
        };
        result.with_observed(n as u64, "peers")
    }
}

impl State {
    fn connected(&self) -> Vec<PeerId> {
        self.peers
            .iter()
            .filter(|(_, s)| matches!(s, PeerState::Connected(_)))
            .map(|(p, _)| *p)
            .collect()
    }

    fn connection(&self, peer: PeerId) -> Option<Connection> {
        match self.peers.get(&peer) {
            Some(PeerState::Connected(c)) => Some(*c),
            _ => None,
        }
    }

    /// Closes the connection to `peer` (if any) and marks it failed.
    fn fail_peer(&mut self, peer: PeerId) {
        let retry_at = self.round + RETRY_ROUNDS;
        if let Some(PeerState::Connected(_)) =
            self.peers.insert(peer, PeerState::Failed { retry_at })
        {
            tracing::debug!(peer.id = %peer, "connection closed: peer lost");
        }
        self.mesh.retain(|&p| p != peer);
    }

    /// Records that `peer` carried gossip or DHT traffic this round.
    fn mark_traffic(&mut self, peer: PeerId) {
        let round = self.round;
        if let Some(PeerState::Connected(c)) = self.peers.get_mut(&peer) {
            c.last_traffic = round;
        }
    }

    /// Connected peers ordered by closeness to `target`.
    fn closest_connected(&self, target: u64) -> Vec<PeerId> {
        let mut peers = self.connected();
        by_distance(&mut peers, target);
        peers
    }

    /// Sends `message` to `to` (through `via`, a relay, if given) and returns the
    /// serialized answer, if the message asks for one. A connected peer that does not
    /// answer (or whose relay does not) is lost.
    #[instrumented(
        span = "p2p.send",
        level = "debug",
        counter = "zerostate_p2p_operations_total",
        histogram = "zerostate_p2p_operation_duration_seconds",
        labels(operation = "send"),
        fields(peer.id = %to, message.type = message.name(), bytes),
        skip(self, to, via, message),
        err(level = "debug")
    )]
    fn send(
        &mut self,
        to: PeerId,
        via: Option<PeerId>,
        message: &Message,
    ) -> Result<Option<Vec<u8>>, P2pError> {
        let kind = message.kind().as_str();
        let bytes = message.encode()?;
        zs_observe::record_current("bytes", bytes.len());
        match self.net.deliver(self.round, to, via, &bytes) {
            Ok(answer) => {
                metrics::counter!("zerostate_p2p_bandwidth_bytes_total", "direction" => "tx")
                    .increment(bytes.len() as u64);
                metrics::counter!("zerostate_p2p_messages_total", "type" => kind, "status" => "success")
                    .increment(1);
                self.answered.insert(to);
                Ok(answer)
            }
            Err(e) => {
                metrics::counter!("zerostate_p2p_messages_total", "type" => kind, "status" => "error")
                    .increment(1);
                if matches!(e, P2pError::Unreachable(_)) && self.connection(to).is_some() {
                    // The connection is dead; this round's keepalive ping closes it.
                    return Err(P2pError::PeerLost(to));
                }
                Err(e)
            }
        }
    }

    /// Takes in `frame`, a message from `from`.
    #[instrumented(
        span = "p2p.receive",
        level = "debug",
        counter = "zerostate_p2p_operations_total",
        histogram = "zerostate_p2p_operation_duration_seconds",
        labels(operation = "receive"),
        fields(peer.id = %from, bytes = frame.len(), message.type),
        skip(self, from, frame, expected),
        err(level = "debug")
    )]
    fn receive(&mut self, from: PeerId, frame: &[u8], expected: Kind) -> Result<Message, P2pError> {
        metrics::counter!("zerostate_p2p_bandwidth_bytes_total", "direction" => "rx")
            .increment(frame.len() as u64);
        match Message::decode(frame) {
            Ok(message) => {
                zs_observe::record_current("message.type", message.name());
                metrics::counter!(
                    "zerostate_p2p_messages_total",
                    "type" => message.kind().as_str(),
                    "status" => "success"
                )
                .increment(1);
                self.answered.insert(from);
                Ok(message)
            }
            Err(e) => {
                metrics::counter!(
                    "zerostate_p2p_messages_total",
                    "type" => expected.as_str(),
                    "status" => "error"
                )
                .increment(1);
                Err(e)
            }
        }
    }

    /// A request to `to` over its route and its answer.
    fn request(&mut self, to: PeerId, message: &Message) -> Result<Message, P2pError> {
        let via = self.connection(to).and_then(|c| c.via);
        self.request_via(to, via, message)
    }

    fn request_via(
        &mut self,
        to: PeerId,
        via: Option<PeerId>,
        message: &Message,
    ) -> Result<Message, P2pError> {
        let answer = self
            .send(to, via, message)?
            .ok_or_else(|| P2pError::Protocol(format!("{to} did not answer {}", message.name())))?;
        self.receive(to, &answer, Kind::Response)
    }

    /// Opens a connection to `peer`: directly, or through a relay when it is behind NAT.
    #[instrumented(
        span = "p2p.connect",
        counter = "zerostate_p2p_operations_total",
        histogram = "zerostate_p2p_operation_duration_seconds",
        labels(operation = "connect"),
        fields(peer.id = %peer, p2p.relayed),
        skip(self, peer),
        err(level = "debug")
    )]
    fn connect(&mut self, peer: PeerId) -> Result<Connection, P2pError> {
        let via = if self.net.is_nat(peer) {
            Some(self.relay_dial(peer)?)
        } else {
            None
        };
        zs_observe::record_current("p2p.relayed", via.is_some());
        match self.request_via(peer, via, &Message::Hello { from: LOCAL.0 })? {
            Message::HelloAck { from } if from == peer.0 => Ok(Connection {
                via,
                last_traffic: 0,
            }),
            other => Err(P2pError::Protocol(format!(
                "{peer} answered hello with {}",
                other.name()
            ))),
        }
    }

    /// Opens a relayed circuit to `target` over a directly connected peer; returns the
    /// relay.
    #[instrumented(
        span = "p2p.relay",
        counter = "zerostate_p2p_relay_connections_total",
        fields(peer.id = %target, relay.id),
        skip(self, target),
        err(level = "debug")
    )]
    fn relay_dial(&mut self, target: PeerId) -> Result<PeerId, P2pError> {
        let relay = self
            .closest_connected(peer_key(target))
            .into_iter()
            .find(|&p| self.connection(p).is_some_and(|c| c.via.is_none()))
            .ok_or(P2pError::NoRelay(target))?;
        zs_observe::record_current("relay.id", tracing::field::display(relay));
        match self.request(relay, &Message::RelayConnect { target: target.0 })? {
            Message::RelayAccepted { target: t } if t == target.0 => Ok(relay),
            Message::RelayRefused { reason, .. } => {
                tracing::debug!(peer.id = %target, %reason, "relay refused");
                Err(P2pError::Unreachable(target))
            }
            other => Err(P2pError::Protocol(format!(
                "{relay} answered relay_connect with {}",
                other.name()
            ))),
        }
    }

    /// Answers whether `peer` is alive; the round trip on success.
    #[instrumented(
        span = "p2p.ping",
        level = "debug",
        counter = "zerostate_p2p_peer_pings_total",
        histogram = "zerostate_p2p_peer_ping_duration_seconds",
        fields(peer.id = %peer),
        skip(self, peer),
        err(level = "debug")
    )]
    fn ping(&mut self, peer: PeerId) -> Result<Duration, P2pError> {
        let start = Instant::now();
        self.nonce += 1;
        let nonce = self.nonce;
        match self.request(peer, &Message::Ping { nonce })? {
            Message::Pong { nonce: n } if n == nonce => Ok(start.elapsed()),
            other => Err(P2pError::Protocol(format!(
                "{peer} answered ping {nonce} with {other:?}"
            ))),
        }
    }

    /// Stores `value` under `key` on the connected peers closest to it; returns how many
    /// stored it.
    #[instrumented(
        span = "p2p.dht.put",
        counter = "zerostate_p2p_dht_operations_total",
        histogram = "zerostate_p2p_dht_operation_duration_seconds",
        labels(operation = "put"),
        fields(dht.key = key, bytes = value.len(), dht.replicas),
        skip(self, key, value),
        err(level = "debug")
    )]
    fn dht_put(&mut self, key: &str, value: &[u8]) -> Result<usize, P2pError> {
        let targets: Vec<PeerId> = self
            .closest_connected(dht_key(key))
            .into_iter()
            .take(REPLICAS)
            .collect();
        let mut last_error = P2pError::NoPeers;
        let mut stored = 0;
        let message = Message::DhtPut {
            key: key.to_owned(),
            value: value.to_vec(),
        };
        for peer in targets {
            match self.request(peer, &message) {
                Ok(Message::DhtStored { key: k }) if k == key => {
                    stored += 1;
                    self.mark_traffic(peer);
                }
                Ok(other) => {
                    last_error = P2pError::Protocol(format!(
                        "{peer} answered dht_put with {}",
                        other.name()
                    ));
                }
                Err(e) => last_error = e,
            }
        }
        zs_observe::record_current("dht.replicas", stored);
        if stored == 0 {
            return Err(last_error);
        }
        Ok(stored)
    }

    /// The value under `key`, from the connected peers closest to it.
    #[instrumented(
        span = "p2p.dht.get",
        counter = "zerostate_p2p_dht_operations_total",
        histogram = "zerostate_p2p_dht_operation_duration_seconds",
        labels(operation = "get"),
        fields(dht.key = key),
        skip(self, key),
        err(level = "debug")
    )]
    fn dht_get(&mut self, key: &str) -> Result<Vec<u8>, P2pError> {
        let targets: Vec<PeerId> = self
            .closest_connected(dht_key(key))
            .into_iter()
            .take(GET_FANOUT)
            .collect();
        if targets.is_empty() {
            return Err(P2pError::NoPeers);
        }
        let message = Message::DhtGet {
            key: key.to_owned(),
        };
        for peer in targets {
            if let Ok(Message::DhtValue {
                key: k,
                value: Some(value),
            }) = self.request(peer, &message)
            {
                if k == key {
                    self.mark_traffic(peer);
                    return Ok(value);
                }
            }
        }
        Err(P2pError::NotFound(format!("key {key}")))
    }

    /// The peers closest to `target` known to the connected peer closest to it.
    #[instrumented(
        span = "p2p.dht.find",
        counter = "zerostate_p2p_dht_operations_total",
        histogram = "zerostate_p2p_dht_operation_duration_seconds",
        labels(operation = "find"),
        fields(dht.target = target, dht.found),
        skip(self, target),
        err(level = "debug")
    )]
    fn dht_find(&mut self, target: u64) -> Result<Vec<PeerId>, P2pError> {
        let mut last_error = P2pError::NoPeers;
        // Ask the closest peers in turn until one answers.
        for peer in self.closest_connected(target).into_iter().take(2) {
            match self.request(peer, &Message::DhtFind { target }) {
                Ok(Message::DhtPeers { peers }) => {
                    self.mark_traffic(peer);
                    let found: Vec<PeerId> = peers
                        .into_iter()
                        .map(PeerId)
                        .filter(|&p| p != LOCAL)
                        .collect();
                    zs_observe::record_current("dht.found", found.len());
                    if found.is_empty() {
                        return Err(P2pError::NotFound(format!("peers near {target:#018x}")));
                    }
                    return Ok(found);
                }
                Ok(other) => {
                    last_error = P2pError::Protocol(format!(
                        "{peer} answered dht_find with {}",
                        other.name()
                    ));
                }
                Err(e) => last_error = e,
            }
        }
        Err(last_error)
    }

    /// Publishes (`from` is `None`) or forwards a gossip message to the mesh; returns the
    /// peers it was delivered to. A message seen before is a duplicate, not forwarded.
    #[instrumented(
        span = "p2p.gossip",
        fields(
            gossip.id = message.gossip_id().unwrap_or_default(),
            gossip.topic,
            peer.id,
            gossip.delivered
        ),
        skip(self, message, from),
        err(level = "debug")
    )]
    fn gossip(&mut self, message: &Message, from: Option<PeerId>) -> Result<Vec<PeerId>, P2pError> {
        let id = message
            .gossip_id()
            .ok_or_else(|| P2pError::Protocol(format!("{} is not gossip", message.name())))?;
        zs_observe::record_current("gossip.topic", message.topic());
        if let Some(peer) = from {
            zs_observe::record_current("peer.id", tracing::field::display(peer));
        }
        if self.seen.contains(&id) {
            metrics::counter!("zerostate_p2p_gossip_messages_total", "status" => "duplicate")
                .increment(1);
            zs_observe::record_current("gossip.delivered", 0);
            return Ok(Vec::new());
        }
        let targets: Vec<PeerId> = self
            .mesh
            .iter()
            .copied()
            .filter(|&p| Some(p) != from)
            .collect();
        if from.is_none() && targets.is_empty() {
            return Err(P2pError::NoPeers);
        }
        self.seen.insert(id);
        self.seen_order.push_back(id);
        if self.seen_order.len() > SEEN_CAPACITY {
            if let Some(old) = self.seen_order.pop_front() {
                self.seen.remove(&old);
            }
        }
        if from.is_none() {
            metrics::counter!("zerostate_p2p_gossip_messages_total", "status" => "published")
                .increment(1);
        }
        let mut delivered = Vec::with_capacity(targets.len());
        for peer in targets {
            let via = self.connection(peer).and_then(|c| c.via);
            if self.send(peer, via, message).is_ok() {
                metrics::counter!("zerostate_p2p_gossip_messages_total", "status" => "delivered")
                    .increment(1);
                self.mark_traffic(peer);
                delivered.push(peer);
            }
        }
        zs_observe::record_current("gossip.delivered", delivered.len());
        Ok(delivered)
    }

    /// A gossip message sent by `from` arrives at the node: received, then forwarded
    /// or dropped as a duplicate.
    fn incoming(&mut self, from: PeerId, message: &Message) {
        let Ok(frame) = message.encode() else {
            return;
        };
        if let Ok(message) = self.receive(from, &frame, Kind::Gossip) {
            self.mark_traffic(from);
            let _ = self.gossip(&message, Some(from));
        }
    }

    /// Step 1a: like a connection manager, every `TRIM_EVERY` rounds closes the
    /// connection idle the longest when the pool is full and a discovered peer waits
    /// (so the pool turns over even without faults).
    fn trim_pool(&mut self) {
        if self.round % TRIM_EVERY != 0 {
            return;
        }
        let waiting = self
            .peers
            .values()
            .any(|s| matches!(s, PeerState::Discovered));
        let idlest = self
            .peers
            .iter()
            .filter_map(|(p, s)| match s {
                PeerState::Connected(c) => Some((c.last_traffic, *p)),
                _ => None,
            })
            .min();
        if let (true, true, Some((_, peer))) =
            (waiting, self.connected().len() >= POOL_SIZE, idlest)
        {
            tracing::debug!(peer.id = %peer, "idle connection trimmed");
            self.peers.insert(peer, PeerState::Discovered);
            self.mesh.retain(|&p| p != peer);
        }
    }

    /// Step 1b: connects discovered peers until the pool is full, a few per round;
    /// peers behind NAT once a relay is available.
    fn fill_pool(&mut self) {
        let free = POOL_SIZE.saturating_sub(self.connected().len());
        if free == 0 {
            return;
        }
        let mut candidates: Vec<PeerId> = self
            .peers
            .iter()
            .filter(|(_, s)| matches!(s, PeerState::Discovered))
            .map(|(p, _)| *p)
            .collect();
        self.rng.shuffle(&mut candidates);
        let mut attempts = 0;
        for peer in candidates {
            if attempts == free.min(CONNECTS_PER_ROUND) {
                break;
            }
            let has_relay = self
                .connected()
                .iter()
                .any(|&p| self.connection(p).is_some_and(|c| c.via.is_none()));
            if self.net.is_nat(peer) && !has_relay {
                continue;
            }
            attempts += 1;
            match self.connect(peer) {
                Ok(connection) => {
                    self.peers.insert(peer, PeerState::Connected(connection));
                }
                Err(_) => {
                    let retry_at = self.round + RETRY_ROUNDS;
                    self.peers.insert(peer, PeerState::Failed { retry_at });
                }
            }
        }
    }

    /// Step 2: a DHT find when the pool has room (or every `DISCOVERY_EVERY` rounds);
    /// new peers are discovered, failed ones past their backoff rediscovered. Without a
    /// connected peer, the bootstrap peers are tried again.
    fn discover(&mut self) {
        let discovered = self
            .peers
            .values()
            .filter(|s| matches!(s, PeerState::Discovered))
            .count();
        let room = self.connected().len() + discovered < POOL_SIZE;
        if !room && self.round % DISCOVERY_EVERY != 1 {
            return;
        }
        // First a lookup of our own key (neighbours), then random points of the key space.
        let target = if self.round == 1 {
            peer_key(LOCAL)
        } else {
            self.rng.next_u64()
        };
        let found = match self.dht_find(target) {
            Ok(found) => found,
            Err(P2pError::NoPeers) => (1..=BOOTSTRAP_PEERS.min(self.net.len()))
                .map(PeerId)
                .collect(),
            Err(_) => Vec::new(),
        };
        let round = self.round;
        for peer in found {
            match self.peers.get(&peer) {
                None => {
                    self.peers.insert(peer, PeerState::Discovered);
                }
                Some(PeerState::Failed { retry_at }) if *retry_at <= round => {
                    self.peers.insert(peer, PeerState::Discovered);
                }
                _ => {}
            }
        }
    }

    /// Step 3: the gossip mesh: lost members leave, free places are filled from the pool,
    /// and every `MESH_ROTATE_EVERY` rounds one member is swapped for another.
    fn maintain_mesh(&mut self) {
        let connected = self.connected();
        self.mesh.retain(|p| connected.contains(p));
        if self.round % MESH_ROTATE_EVERY == 0 && !self.mesh.is_empty() {
            let i = self.rng.below(self.mesh.len());
            self.mesh.swap_remove(i);
        }
        let mut outside: Vec<PeerId> = connected
            .into_iter()
            .filter(|p| !self.mesh.contains(p))
            .collect();
        self.rng.shuffle(&mut outside);
        let free = MESH_SIZE.saturating_sub(self.mesh.len());
        self.mesh.extend(outside.into_iter().take(free));
    }

    /// Step 4 (fault injection): each connected peer is lost with the configured rate
    /// and stays unreachable for a while.
    fn lose_peers(&mut self) {
        self.answered.clear();
        let rate = self.config.peer_loss_rate;
        if rate.is_nan() || rate <= 0.0 {
            return;
        }
        for peer in self.connected() {
            if self.rng.chance(rate) {
                let until = self.round + self.rng.between(DOWN_ROUNDS.0, DOWN_ROUNDS.1);
                self.net.take_down(peer, until);
            }
        }
    }

    /// Step 5: gossip from the network through the mesh (the first copy is new, later
    /// ones duplicates), echoes of the node's own announcements, and a DHT put or get.
    fn traffic(&mut self) {
        let round = self.round;
        let senders: Vec<PeerId> = self
            .mesh
            .iter()
            .copied()
            .filter(|&p| self.net.is_up(p, round))
            .collect();
        if !senders.is_empty() {
            let origin = PeerId(1 + self.rng.below(self.net.len() as usize) as u32);
            let id = self.rng.next_u64();
            let payload = serde_json::json!({ "peer": origin.0, "round": round, "load": self.rng.below(100) });
            let message = Message::Gossip {
                id,
                topic: STATUS_TOPIC.to_owned(),
                payload: payload.to_string().into_bytes(),
            };
            // The message reaches the node through up to three mesh peers.
            let copies = 1 + self.rng.below(3);
            for _ in 0..copies {
                let from = senders[self.rng.below(senders.len())];
                self.incoming(from, &message);
            }
            // A peer that got one of our announcements elsewhere sends it back.
            if !self.recent.is_empty() && self.rng.chance(0.3) {
                let echo = self.recent[self.rng.below(self.recent.len())].clone();
                let from = senders[self.rng.below(senders.len())];
                self.incoming(from, &echo);
            }
        }
        match round % 4 {
            0 => {
                let key = format!("zerostate/results/{}", self.puts);
                let value = serde_json::json!({ "round": round, "node": LOCAL.0 }).to_string();
                if self.dht_put(&key, value.as_bytes()).is_ok() {
                    self.puts += 1;
                }
            }
            2 if self.puts > 0 => {
                // One of the last 31 keys, or (1 in 32) the next one, not stored yet: a miss.
                let back = self.rng.below(32) as u64;
                let index = (self.puts).saturating_sub(back);
                let _ = self.dht_get(&format!("zerostate/results/{index}"));
            }
            _ => {}
        }
    }

    /// Step 6: pings every connection that has not answered since the loss step (idle
    /// ones, and those whose messages failed); one that does not answer is closed and
    /// its peer failed.
    fn keepalive(&mut self) {
        for peer in self.connected() {
            if !self.answered.contains(&peer) && self.ping(peer).is_err() {
                self.fail_peer(peer);
            }
        }
    }

    /// Step 7: the peer and connection gauges.
    fn update_gauges(&self) {
        let (mut connected, mut discovered, mut failed) = (0u32, 0u32, 0u32);
        let (mut active, mut idle) = (0u32, 0u32);
        for state in self.peers.values() {
            match state {
                PeerState::Connected(c) => {
                    connected += 1;
                    if c.last_traffic > 0 && c.last_traffic + 1 >= self.round {
                        active += 1;
                    } else {
                        idle += 1;
                    }
                }
                PeerState::Discovered => discovered += 1,
                PeerState::Failed { .. } => failed += 1,
            }
        }
        metrics::gauge!("zerostate_p2p_peers", "state" => "connected").set(f64::from(connected));
        metrics::gauge!("zerostate_p2p_peers", "state" => "discovered").set(f64::from(discovered));
        metrics::gauge!("zerostate_p2p_peers", "state" => "failed").set(f64::from(failed));
        metrics::gauge!("zerostate_p2p_connections", "state" => "active").set(f64::from(active));
        metrics::gauge!("zerostate_p2p_connections", "state" => "idle").set(f64::from(idle));
    }
}

#[cfg(test)]
mod tests;
