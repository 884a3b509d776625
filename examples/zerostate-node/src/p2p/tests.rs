//! Tests of the simulated P2P network.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use metrics::{
    Counter, CounterFn, Gauge, GaugeFn, Histogram, HistogramFn, Key, KeyName, Metadata, Recorder,
    SharedString, Unit,
};
use zs_observe_health::Status;

use super::*;

/// One series of the capturing recorder: a counter's value, a gauge's value (as f64
/// bits) or a histogram's sample count.
#[derive(Debug, Default)]
struct Series {
    count: AtomicU64,
    gauge: AtomicU64,
}

impl CounterFn for Series {
    fn increment(&self, value: u64) {
        self.count.fetch_add(value, Ordering::Relaxed);
    }
    fn absolute(&self, value: u64) {
        self.count.fetch_max(value, Ordering::Relaxed);
    }
}

impl GaugeFn for Series {
    fn increment(&self, value: f64) {
        self.set(f64::from_bits(self.gauge.load(Ordering::Relaxed)) + value);
    }
    fn decrement(&self, value: f64) {
        self.set(f64::from_bits(self.gauge.load(Ordering::Relaxed)) - value);
    }
    fn set(&self, value: f64) {
        self.gauge.store(value.to_bits(), Ordering::Relaxed);
    }
}

impl HistogramFn for Series {
    fn record(&self, _value: f64) {
        self.count.fetch_add(1, Ordering::Relaxed);
    }
}

/// A recorder for `metrics::with_local_recorder`, read without resetting.
#[derive(Debug, Default)]
struct Capture {
    series: Mutex<BTreeMap<String, Arc<Series>>>,
}

fn series_id(name: &str, labels: &[(&str, &str)]) -> String {
    let sorted: BTreeMap<&str, &str> = labels.iter().copied().collect();
    let labels: Vec<String> = sorted.iter().map(|(k, v)| format!("{k}={v}")).collect();
    format!("{name}{{{}}}", labels.join(","))
}

impl Capture {
    fn series(&self, key: &Key) -> Arc<Series> {
        let labels: Vec<(&str, &str)> = key.labels().map(|l| (l.key(), l.value())).collect();
        let id = series_id(key.name(), &labels);
        let mut series = self.series.lock().expect("capture lock");
        series.entry(id).or_default().clone()
    }

    /// A counter's value or a histogram's sample count (0 when never recorded).
    fn count(&self, name: &str, labels: &[(&str, &str)]) -> u64 {
        let series = self.series.lock().expect("capture lock");
        series
            .get(&series_id(name, labels))
            .map_or(0, |s| s.count.load(Ordering::Relaxed))
    }

    /// A gauge's value; `None` when never set.
    fn gauge(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let series = self.series.lock().expect("capture lock");
        series
            .get(&series_id(name, labels))
            .map(|s| f64::from_bits(s.gauge.load(Ordering::Relaxed)))
    }
}

impl Recorder for Capture {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        Counter::from_arc(self.series(key))
    }
    fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
        Gauge::from_arc(self.series(key))
    }
    fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
        Histogram::from_arc(self.series(key))
    }
}

fn network(peers: u32, peer_loss_rate: f64, seed: u64) -> Network {
    Network::new(NetworkConfig {
        peers,
        peer_loss_rate,
        seed,
    })
}

fn set_loss(net: &Network, rate: f64) {
    net.state().config.peer_loss_rate = rate;
}

/// Messages failed / all messages, and pings failed / all pings.
fn failure_ratios(capture: &Capture) -> (f64, f64) {
    let mut messages = [0u64; 2];
    for kind in ["gossip", "request", "response"] {
        for (i, status) in ["success", "error"].into_iter().enumerate() {
            messages[i] += capture.count(
                "zerostate_p2p_messages_total",
                &[("type", kind), ("status", status)],
            );
        }
    }
    let pings_ok = capture.count("zerostate_p2p_peer_pings_total", &[("outcome", "ok")]);
    let pings_err = capture.count("zerostate_p2p_peer_pings_total", &[("outcome", "error")]);
    (
        messages[1] as f64 / (messages[0] + messages[1]).max(1) as f64,
        pings_err as f64 / (pings_ok + pings_err).max(1) as f64,
    )
}

#[test]
fn messages_round_trip_through_their_wire_bytes() {
    let messages = [
        Message::Hello { from: 0 },
        Message::HelloAck { from: 7 },
        Message::Ping { nonce: 42 },
        Message::Pong { nonce: 42 },
        Message::DhtPut {
            key: "k".into(),
            value: b"v".to_vec(),
        },
        Message::DhtStored { key: "k".into() },
        Message::DhtGet { key: "k".into() },
        Message::DhtValue {
            key: "k".into(),
            value: None,
        },
        Message::DhtFind { target: u64::MAX },
        Message::DhtPeers {
            peers: vec![1, 2, 3],
        },
        Message::RelayConnect { target: 3 },
        Message::RelayAccepted { target: 3 },
        Message::RelayRefused {
            target: 3,
            reason: "down".into(),
        },
        Message::Gossip {
            id: 9,
            topic: STATUS_TOPIC.into(),
            payload: b"{}".to_vec(),
        },
        Message::TaskAnnounce {
            id: 10,
            task_id: 5,
            payload: br#"{"task_id":5}"#.to_vec(),
        },
    ];
    for message in messages {
        let bytes = message.encode().expect("encodes");
        let text = String::from_utf8(bytes.clone()).expect("JSON text");
        assert!(
            text.contains(&format!(r#""type":"{}""#, message.name())),
            "{text}"
        );
        assert_eq!(Message::decode(&bytes), Ok(message));
    }
    assert!(matches!(
        Message::decode(b"{\"type\":\"nope\"}"),
        Err(P2pError::Codec(_))
    ));
    assert_eq!(Message::Ping { nonce: 1 }.kind(), Kind::Request);
    assert_eq!(Message::DhtPeers { peers: vec![] }.kind(), Kind::Response);
    assert_eq!(
        Message::Gossip {
            id: 1,
            topic: String::new(),
            payload: vec![]
        }
        .kind(),
        Kind::Gossip
    );
}

#[test]
fn without_loss_the_pool_fills_and_health_passes() {
    let net = Network::unjoined(NetworkConfig {
        peers: 12,
        peer_loss_rate: 0.0,
        seed: 7,
    });
    assert_eq!(net.health().status(), Status::Fail);
    for _ in 0..3 {
        net.tick();
    }
    let connected = net.connected();
    assert!(connected.len() >= 3, "{connected:?}");
    let health = net.health();
    assert_eq!(health.status(), Status::Pass, "{health:?}");
    assert_eq!(
        health.observed_value(),
        Some(&serde_json::json!(connected.len()))
    );
    for _ in 0..20 {
        net.tick();
    }
    let state = net.state();
    assert_eq!(state.connected().len(), POOL_SIZE);
    assert!(
        !state
            .peers
            .values()
            .any(|s| matches!(s, PeerState::Failed { .. })),
        "{:?}",
        state.peers
    );
    // Peers behind NAT are connected through a relay.
    let relayed: Vec<_> = state
        .peers
        .iter()
        .filter_map(|(p, s)| match s {
            PeerState::Connected(c) => Some((*p, c.via)),
            _ => None,
        })
        .filter(|(p, _)| state.net.is_nat(*p))
        .collect();
    assert!(relayed.iter().all(|(_, via)| via.is_some()), "{relayed:?}");
}

#[test]
fn total_loss_empties_the_pool_and_fails_health_then_it_recovers() {
    let net = network(12, 0.0, 11);
    for _ in 0..10 {
        net.tick();
    }
    assert!(net.connected().len() >= 3);
    set_loss(&net, 1.0);
    for _ in 0..5 {
        net.tick();
        assert_eq!(net.connected(), Vec::<PeerId>::new());
        assert_eq!(net.health().status(), Status::Fail);
        assert_eq!(net.announce(1, b"task"), Vec::<PeerId>::new());
    }
    // Lost peers come back: rediscovered and reconnected.
    set_loss(&net, 0.0);
    let mut rounds = 0;
    while net.health().status() != Status::Pass {
        net.tick();
        rounds += 1;
        assert!(rounds < 200, "no recovery after {rounds} rounds");
    }
}

#[test]
fn dht_put_then_get_finds_the_value() {
    let net = network(12, 0.0, 3);
    for _ in 0..5 {
        net.tick();
    }
    let mut state = net.state();
    let stored = state.dht_put("zerostate/test", b"value").expect("stored");
    assert!((1..=REPLICAS).contains(&stored), "{stored}");
    assert_eq!(state.dht_get("zerostate/test"), Ok(b"value".to_vec()));
    assert_eq!(
        state.dht_get("zerostate/missing"),
        Err(P2pError::NotFound("key zerostate/missing".into()))
    );
    let found = state.dht_find(peer_key(PeerId(5))).expect("peers");
    assert!(!found.is_empty() && found.len() <= FIND_K);
    assert!(found.iter().all(|p| (1..=12).contains(&p.0)));
}

#[test]
fn dht_and_gossip_without_peers_are_errors() {
    let net = Network::unjoined(NetworkConfig {
        peers: 12,
        peer_loss_rate: 0.0,
        seed: 3,
    });
    let mut state = net.state();
    assert_eq!(state.dht_put("k", b"v"), Err(P2pError::NoPeers));
    assert_eq!(state.dht_get("k"), Err(P2pError::NoPeers));
    assert_eq!(state.dht_find(1), Err(P2pError::NoPeers));
    drop(state);
    assert!(net.announce(1, b"task").is_empty());
}

#[test]
fn gossip_is_forwarded_once_and_duplicates_are_dropped() {
    let capture = Capture::default();
    metrics::with_local_recorder(&capture, || {
        let net = network(12, 0.0, 5);
        for _ in 0..5 {
            net.tick();
        }
        let mut state = net.state();
        let mesh = state.mesh.clone();
        assert!(mesh.len() >= 3, "{mesh:?}");
        let message = Message::Gossip {
            id: 0xD0D0,
            topic: STATUS_TOPIC.into(),
            payload: b"hello".to_vec(),
        };
        let before = capture.count(
            "zerostate_p2p_gossip_messages_total",
            &[("status", "duplicate")],
        );
        let first = state.gossip(&message, Some(mesh[0])).expect("forwarded");
        assert_eq!(first.len(), mesh.len() - 1);
        assert!(!first.contains(&mesh[0]));
        let again = state.gossip(&message, Some(mesh[1])).expect("duplicate");
        assert!(again.is_empty());
        assert_eq!(
            capture.count(
                "zerostate_p2p_gossip_messages_total",
                &[("status", "duplicate")]
            ),
            before + 1
        );
        drop(state);
        // An announcement reaches the mesh and counts as published.
        let published = capture.count(
            "zerostate_p2p_gossip_messages_total",
            &[("status", "published")],
        );
        let receivers = net.announce(77, br#"{"task_id":77}"#);
        assert_eq!(receivers.len(), mesh.len().min(MESH_SIZE));
        assert_eq!(
            capture.count(
                "zerostate_p2p_gossip_messages_total",
                &[("status", "published")]
            ),
            published + 1
        );
    });
}

#[test]
fn every_p2p_metric_moves_under_churn() {
    let capture = Capture::default();
    metrics::with_local_recorder(&capture, || {
        let net = network(24, 0.0, 9);
        for task in 0..200u64 {
            if task == 100 {
                set_loss(&net, 0.05);
            }
            net.tick();
            net.announce(task, br#"{"task_id":1}"#);
        }
    });
    let c = &capture;
    for operation in ["connect", "send", "receive"] {
        let labels = [("operation", operation), ("outcome", "ok")];
        assert!(
            c.count("zerostate_p2p_operations_total", &labels) > 0,
            "{operation}"
        );
        assert!(
            c.count("zerostate_p2p_operation_duration_seconds", &labels) > 0,
            "{operation}"
        );
    }
    assert!(
        c.count(
            "zerostate_p2p_operations_total",
            &[("operation", "send"), ("outcome", "error")]
        ) > 0
    );
    for operation in ["put", "get", "find"] {
        let labels = [("operation", operation), ("outcome", "ok")];
        assert!(
            c.count("zerostate_p2p_dht_operations_total", &labels) > 0,
            "{operation}"
        );
        assert!(
            c.count("zerostate_p2p_dht_operation_duration_seconds", &labels) > 0,
            "{operation}"
        );
    }
    // The newest key is asked for before it is stored: a real miss.
    assert!(
        c.count(
            "zerostate_p2p_dht_operations_total",
            &[("operation", "get"), ("outcome", "error")]
        ) > 0
    );
    for status in ["published", "delivered", "duplicate"] {
        assert!(
            c.count("zerostate_p2p_gossip_messages_total", &[("status", status)]) > 0,
            "{status}"
        );
    }
    assert!(
        c.count(
            "zerostate_p2p_relay_connections_total",
            &[("outcome", "ok")]
        ) > 0
    );
    for outcome in ["ok", "error"] {
        assert!(
            c.count("zerostate_p2p_peer_pings_total", &[("outcome", outcome)]) > 0,
            "{outcome}"
        );
    }
    assert!(
        c.count(
            "zerostate_p2p_peer_ping_duration_seconds",
            &[("outcome", "ok")]
        ) > 0
    );
    for direction in ["tx", "rx"] {
        assert!(
            c.count(
                "zerostate_p2p_bandwidth_bytes_total",
                &[("direction", direction)]
            ) > 1_000,
            "{direction}"
        );
    }
    for kind in ["gossip", "request", "response"] {
        assert!(
            c.count(
                "zerostate_p2p_messages_total",
                &[("type", kind), ("status", "success")]
            ) > 0,
            "{kind}"
        );
    }
    assert!(
        c.count(
            "zerostate_p2p_messages_total",
            &[("type", "request"), ("status", "error")]
        ) > 0
    );
    for state in ["connected", "discovered", "failed"] {
        assert!(
            c.gauge("zerostate_p2p_peers", &[("state", state)])
                .is_some(),
            "{state}"
        );
    }
    assert!(c.gauge("zerostate_p2p_peers", &[("state", "connected")]) > Some(0.0));
    for state in ["active", "idle"] {
        assert!(
            c.gauge("zerostate_p2p_connections", &[("state", state)])
                .is_some(),
            "{state}"
        );
    }
}

#[test]
fn without_loss_nothing_fails_and_with_heavy_loss_the_alerts_fire() {
    let run = |rate: f64| {
        let capture = Capture::default();
        let connected = metrics::with_local_recorder(&capture, || {
            let net = network(12, rate, 21);
            let mut connected = 0;
            for task in 0..300u64 {
                net.tick();
                net.announce(task, b"{}");
                connected += net.connected().len();
            }
            connected as f64 / 300.0
        });
        let (messages, pings) = failure_ratios(&capture);
        (connected, messages, pings)
    };
    let (connected, messages, pings) = run(0.0);
    assert_eq!((messages, pings), (0.0, 0.0));
    assert!(connected > 7.0, "{connected}");
    // HighMessageFailureRate (> 20 %), HealthCheckFailures (> 30 %), fewer than 3
    // connections on average (LowPeerConnections).
    let (connected, messages, pings) = run(0.5);
    assert!(messages > 0.2, "{messages}");
    assert!(pings > 0.3, "{pings}");
    assert!(connected < 3.0, "{connected}");
}

#[test]
fn the_same_seed_gives_the_same_network() {
    let trace = |seed| {
        let net = network(16, 0.2, seed);
        (0..50)
            .map(|task| {
                net.tick();
                net.announce(task, b"{}");
                net.connected()
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(trace(4), trace(4));
    assert_ne!(trace(4), trace(5));
}

#[test]
fn concurrent_callers_share_the_network() {
    let net = Arc::new(network(12, 0.1, 13));
    let workers: Vec<_> = (0..4u64)
        .map(|w| {
            let net = net.clone();
            std::thread::spawn(move || {
                for i in 0..50 {
                    if w == 0 {
                        net.tick();
                    }
                    net.announce(w * 1_000 + i, b"{}");
                    let _ = net.connected();
                    let _ = net.health();
                }
            })
        })
        .collect();
    for worker in workers {
        worker.join().expect("no panic");
    }
}

#[test]
fn a_poisoned_lock_is_recovered() {
    let net = Arc::new(network(12, 0.0, 1));
    let poisoner = net.clone();
    let _ = std::thread::spawn(move || {
        let _guard = poisoner.state();
        panic!("poison the lock");
    })
    .join();
    net.tick();
    assert!(net.connected().len() <= POOL_SIZE);
}

#[test]
fn tiny_networks_work_without_panicking() {
    for peers in 0..=3 {
        for rate in [0.0, 1.0] {
            let net = network(peers, rate, u64::from(peers));
            for task in 0..60 {
                net.tick();
                net.announce(task, b"{}");
            }
            let connected = net.connected().len();
            assert!(connected <= peers as usize);
            let expected = match connected {
                0 => Status::Fail,
                1 | 2 => Status::Warn,
                _ => Status::Pass,
            };
            assert_eq!(
                net.health().status(),
                expected,
                "{peers} peers, rate {rate}"
            );
            if rate == 0.0 {
                assert_eq!(connected, peers as usize, "{peers} peers");
            }
        }
    }
}

#[test]
fn a_new_node_has_joined_the_network() {
    // Ready before the first round of the workload (`--no-workload`, --check-catalog).
    let net = network(12, 1.0, 17);
    assert!(net.connected().len() >= HEALTHY_PEERS);
    assert_eq!(net.health().status(), Status::Pass);
    // The fault applies from the first round on.
    net.tick();
    assert_eq!(net.health().status(), Status::Fail);
}
