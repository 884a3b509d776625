//! The economy's behaviour, asserted against a capturing recorder.

use std::time::{Duration, Instant};

use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use zs_observe_health::Status;

use super::channels::{
    ChannelBook, ChannelError, Fault, Keys, Party, PaymentError, Resolution, CREATOR_DEPOSIT,
    EXECUTOR_DEPOSIT,
};
use super::reputation::BLACKLIST_BELOW;
use super::*;

/// One recorded series: name, labels, value.
type Series = (String, Vec<(String, String)>, DebugValue);

/// What a closure recorded.
struct Recorded(Vec<Series>);

impl Recorded {
    fn series<'a>(
        &'a self,
        name: &'a str,
        labels: &'a [(&str, &str)],
    ) -> impl Iterator<Item = &'a DebugValue> + 'a {
        self.0
            .iter()
            .filter(move |(n, l, _)| {
                n == name
                    && labels
                        .iter()
                        .all(|(k, v)| l.iter().any(|(lk, lv)| lk == k && lv == v))
            })
            .map(|(_, _, v)| v)
    }

    /// The sum of the matching counters.
    fn counter(&self, name: &str, labels: &[(&str, &str)]) -> u64 {
        self.series(name, labels)
            .map(|v| match v {
                DebugValue::Counter(c) => *c,
                _ => 0,
            })
            .sum()
    }

    fn gauge(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        self.series(name, labels).find_map(|v| match v {
            DebugValue::Gauge(g) => Some(g.0),
            _ => None,
        })
    }

    fn samples(&self, name: &str) -> Vec<f64> {
        self.series(name, &[])
            .flat_map(|v| match v {
                DebugValue::Histogram(h) => h.iter().map(|x| x.0).collect(),
                _ => Vec::new(),
            })
            .collect()
    }
}

fn capture<T>(f: impl FnOnce() -> T) -> (T, Recorded) {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let out = metrics::with_local_recorder(&recorder, f);
    let series = snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .map(|(key, _, _, value)| {
            let key = key.key();
            let labels = key
                .labels()
                .map(|l| (l.key().to_owned(), l.value().to_owned()))
                .collect();
            (key.name().to_owned(), labels, value)
        })
        .collect();
    (out, Recorded(series))
}

fn economy(payment_failure_rate: f64) -> Economy {
    Economy::new(EconomyConfig {
        payment_failure_rate,
        seed: 42,
    })
}

fn result(success: bool) -> TaskResult {
    TaskResult {
        success,
        receipt_verified: true,
        fuel_used: 5_007,
        duration: Duration::from_millis(2),
    }
}

/// A channel with `PeerId(1)`.
fn open() -> (ChannelBook, Keys, u64, Instant) {
    let mut book = ChannelBook::default();
    let mut keys = Keys::new(7);
    let now = Instant::now();
    let id = book.open(&mut keys, PeerId(1), now).expect("opens");
    (book, keys, id, now)
}

#[test]
fn a_channel_conserves_its_deposit_over_many_payments() {
    let (mut book, mut keys, id, _) = open();
    let mut paid = 0;
    for i in 0..200u64 {
        let amount = 1 + (mix(i) % 300);
        match book.pay(&mut keys, id, amount, None) {
            Ok(state) => {
                paid += amount;
                assert_eq!(state.nonce, i + 1);
                assert_eq!(state.executor, EXECUTOR_DEPOSIT + paid);
            }
            Err(PaymentError::InsufficientBalance { available, .. }) => {
                assert_eq!(available, CREATOR_DEPOSIT - paid);
                break;
            }
            Err(e) => panic!("payment {i}: {e}"),
        }
        let channel = book.get(id).expect("open");
        assert!(channel.conserves());
        assert_eq!(
            channel.latest.state.creator + channel.latest.state.executor,
            CREATOR_DEPOSIT + EXECUTOR_DEPOSIT
        );
    }
    assert!(paid > CREATOR_DEPOSIT - 300, "{paid}");
}

#[test]
fn a_payment_with_a_bad_signature_is_rejected_and_counted_as_an_error() {
    let (_, recorded) = capture(|| {
        let (mut book, mut keys, id, _) = open();
        let before = book.get(id).expect("open").latest.clone();
        assert_eq!(
            book.pay(&mut keys, id, 10, Some(Fault::CorruptSignature)),
            Err(PaymentError::BadSignature)
        );
        assert_eq!(
            book.pay(&mut keys, id, 10, Some(Fault::TamperedAmount)),
            Err(PaymentError::BadSignature)
        );
        assert_eq!(
            book.pay(&mut keys, id, 10, Some(Fault::Replay)),
            Err(PaymentError::StaleNonce {
                expected: 1,
                got: 0
            })
        );
        // Nothing changed; the next honest payment goes through.
        assert_eq!(book.get(id).expect("open").latest, before);
        assert_eq!(book.pay(&mut keys, id, 10, None).map(|s| s.nonce), Ok(1));
    });
    assert_eq!(
        recorded.counter("zerostate_payments_total", &[("outcome", "error")]),
        3
    );
    assert_eq!(
        recorded.counter("zerostate_payments_total", &[("outcome", "ok")]),
        1
    );
    assert_eq!(recorded.samples("zerostate_payment_amount_units"), [10.0]);
    assert_eq!(
        recorded.samples("zerostate_payment_duration_seconds").len(),
        4
    );
    assert_eq!(
        recorded.counter(
            "zerostate_payment_channel_events_total",
            &[("event", "opened")]
        ),
        1
    );
    assert_eq!(
        recorded
            .samples("zerostate_payment_channel_open_duration_seconds")
            .len(),
        1
    );
}

#[test]
fn settlement_pays_out_the_executors_balance() {
    let (settlement, recorded) = capture(|| {
        let (mut book, mut keys, id, now) = open();
        book.pay(&mut keys, id, 100, None).expect("pays");
        book.pay(&mut keys, id, 250, None).expect("pays");
        let settlement = book
            .settle(&mut keys, id, now + Duration::from_secs(3))
            .expect("settles");
        assert!(book.get(id).is_none());
        assert_eq!(book.active(PeerId(1)), None);
        assert_eq!(
            book.settle(&mut keys, id, now),
            Err(ChannelError::UnknownChannel)
        );
        settlement
    });
    assert_eq!(settlement.executor, PeerId(1));
    assert_eq!(settlement.payout, EXECUTOR_DEPOSIT + 350);
    assert_eq!(settlement.creator, CREATOR_DEPOSIT - 350);
    assert_eq!(
        recorded.samples("zerostate_settlement_amount_units"),
        [(EXECUTOR_DEPOSIT + 350) as f64]
    );
    assert_eq!(
        recorded.samples("zerostate_payment_channel_lifetime_seconds"),
        [3.0]
    );
    assert_eq!(
        recorded.counter("zerostate_settlements_total", &[("outcome", "ok")]),
        1
    );
    assert_eq!(
        recorded.counter("zerostate_settlements_total", &[("outcome", "error")]),
        1
    );
    assert_eq!(
        recorded.counter(
            "zerostate_payment_channel_events_total",
            &[("event", "settled")]
        ),
        1
    );
}

#[test]
fn a_dispute_with_a_stale_state_is_rejected_and_the_latest_state_settles() {
    let (_, recorded) = capture(|| {
        let (mut book, mut keys, id, now) = open();
        book.pay(&mut keys, id, 100, None).expect("pays");
        book.pay(&mut keys, id, 200, None).expect("pays");
        book.dispute(&mut keys, id, Party::Creator, true, now)
            .expect("admitted");
        assert_eq!(
            book.pay(&mut keys, id, 1, None),
            Err(PaymentError::Disputed)
        );
        assert_eq!(
            book.dispute(&mut keys, id, Party::Executor, false, now),
            Err(ChannelError::Disputed)
        );
        assert_eq!(book.disputes_due(now), Vec::<u64>::new());
        assert_eq!(book.disputes_due(now + Duration::from_secs(1)), [id]);
        assert_eq!(book.resolve(id), Ok(Resolution::Rejected));
        let settlement = book.settle(&mut keys, id, now).expect("settles");
        assert_eq!(settlement.payout, EXECUTOR_DEPOSIT + 300);

        // The executor closing on the latest state is upheld.
        let other = book.open(&mut keys, PeerId(2), now).expect("opens");
        assert_eq!(
            book.dispute(&mut keys, other, Party::Creator, true, now),
            Err(ChannelError::NoStaleState)
        );
        book.pay(&mut keys, other, 5, None).expect("pays");
        book.dispute(&mut keys, other, Party::Executor, false, now)
            .expect("admitted");
        assert_eq!(book.resolve(other), Ok(Resolution::Upheld));
    });
    assert_eq!(
        recorded.counter("zerostate_disputes_total", &[("resolution", "rejected")]),
        1
    );
    assert_eq!(
        recorded.counter("zerostate_disputes_total", &[("resolution", "upheld")]),
        1
    );
    assert_eq!(
        recorded.counter(
            "zerostate_payment_channel_events_total",
            &[("event", "disputed")]
        ),
        2
    );
}

/// A task, a bidder whose price for it is over `budget`, and one whose is not.
fn over_and_under(seed: u64, budget: u64) -> (u64, PeerId, PeerId) {
    (1..1_000)
        .find_map(|task_id| {
            let price = |p: &PeerId| auction::bid_price(seed, *p, task_id, budget);
            let peers: Vec<PeerId> = (1..=12).map(PeerId).collect();
            let over = peers.iter().find(|p| price(p) > budget)?;
            let under = peers.iter().find(|p| price(p) <= budget)?;
            Some((task_id, *over, *under))
        })
        .expect("some bids are over budget")
}

#[test]
fn auctions_skip_blacklisted_bidders_and_reject_over_budget_bids() {
    let economy = economy(0.0);
    let (task, over, under) = over_and_under(42, 500);
    let banned = (1..=64)
        .map(PeerId)
        .find(|p| *p != over && *p != under)
        .expect("a third peer");
    let (awards, recorded) = capture(|| {
        let now = Instant::now();
        economy
            .state()
            .reputation
            .blacklist(banned, 0.1, BAN_MAX, now)
            .expect("blacklists");
        let award = economy.auction(task, 500, &[banned, over, under]);
        let none = economy.auction(task, 500, &[banned, over]);
        let empty = economy.auction(task + 1, 500, &[]);
        (award, none, empty)
    });
    let (award, none, empty) = awards;
    let award = award.expect("awarded");
    assert_eq!(award.executor, under);
    assert!(award.price <= 500);
    assert_eq!(none.map(|a| a.executor), Err(AuctionError::NoEligibleBid));
    assert_eq!(empty.map(|a| a.executor), Err(AuctionError::NoEligibleBid));
    assert_eq!(
        recorded.counter("zerostate_bids_total", &[("status", "rejected")]),
        4
    );
    assert_eq!(
        recorded.counter("zerostate_bids_total", &[("status", "won")]),
        1
    );
    assert_eq!(
        recorded.counter("zerostate_bids_total", &[("status", "accepted")]),
        0
    );
    assert_eq!(
        recorded.samples("zerostate_bid_amount_units"),
        [award.price as f64]
    );
    assert_eq!(
        recorded.counter("zerostate_auctions_total", &[("outcome", "ok")]),
        1
    );
    assert_eq!(
        recorded.counter("zerostate_auctions_total", &[("outcome", "error")]),
        2
    );
    assert_eq!(recorded.counter("zerostate_escrows_created_total", &[]), 1);
    assert_eq!(
        recorded.samples("zerostate_escrow_amount_units"),
        [award.price as f64]
    );
    // The better-reputed of two equal bidders wins.
    let bids = [
        Bid {
            bidder: PeerId(1),
            price: 100,
            score: 0.6,
        },
        Bid {
            bidder: PeerId(2),
            price: 100,
            score: 0.9,
        },
    ];
    assert_eq!(auction::winner(&bids).map(|b| b.bidder), Some(PeerId(2)));
}

/// Completes `n` tasks of `peer` with `success` at `now`.
fn run(economy: &Economy, peer: PeerId, first_task: u64, n: u64, success: bool, now: Instant) {
    for task_id in first_task..first_task + n {
        let award = Award {
            task_id,
            executor: peer,
            price: 50,
        };
        economy.state().escrows.lock(task_id, peer, 50);
        economy.complete_at(&award, &result(success), now);
    }
}

#[test]
fn an_executor_with_many_failures_is_blacklisted_until_it_recovers_or_the_ban_expires() {
    let economy = economy(0.0);
    let (reliable, fresh) = (PeerId(3), PeerId(4));
    let ((), recorded) = capture(|| {
        let now = Instant::now();
        run(&economy, reliable, 1, 20, true, now);
        run(&economy, reliable, 100, 2, false, now);
        run(&economy, fresh, 200, 3, false, now);
        {
            let state = economy.state();
            assert!(state.reputation.is_blacklisted(reliable));
            assert!(state.reputation.is_blacklisted(fresh));
            assert!(state.reputation.score(fresh) < BLACKLIST_BELOW);
        }
        // Blacklisted bidders are not awarded tasks.
        assert!(economy.auction(300, 10_000, &[reliable, fresh]).is_err());
        {
            let mut state = economy.state();
            state.reputation.ban_until(reliable, now + BAN_MAX);
            state.reputation.ban_until(fresh, now + BAN_MIN);
        }
        economy.tick_at(now);
        // The fresh executor's score does not recover within its ban: the ban runs out.
        economy.tick_at(now + Duration::from_millis(600));
        assert!(!economy.state().reputation.is_blacklisted(fresh));
        assert!(economy.state().reputation.is_blacklisted(reliable));
        // The reliable executor's recent failures fade: it is back before its ban ends.
        economy.tick_at(now + Duration::from_millis(1_000));
        assert!(!economy.state().reputation.is_blacklisted(reliable));
    });
    assert_eq!(
        recorded.counter("zerostate_blacklist_events_total", &[("event", "added")]),
        2
    );
    assert_eq!(
        recorded.counter("zerostate_blacklist_events_total", &[("event", "removed")]),
        1
    );
    assert_eq!(
        recorded.counter("zerostate_blacklist_events_total", &[("event", "expired")]),
        1
    );
    assert_eq!(
        recorded.counter(
            "zerostate_reputation_operations_total",
            &[("operation", "blacklist"), ("outcome", "ok")]
        ),
        2
    );
    assert_eq!(
        recorded.counter(
            "zerostate_reputation_tasks_total",
            &[("peer_id", "peer-03"), ("result", "failed")]
        ),
        2
    );
    assert_eq!(
        recorded.counter(
            "zerostate_reputation_tasks_total",
            &[("peer_id", "peer-03"), ("result", "success")]
        ),
        20
    );
    assert_eq!(
        recorded.counter(
            "zerostate_escrow_refunds_total",
            &[("reason", "task_failed")]
        ),
        5
    );
    assert_eq!(
        recorded.gauge("zerostate_blacklisted_executors", &[]),
        Some(0.0)
    );
    let ratio = recorded.gauge(
        "zerostate_reputation_success_ratio",
        &[("peer_id", "peer-03")],
    );
    assert_eq!(ratio, Some(20.0 / 22.0));
}

#[test]
fn with_a_payment_failure_rate_of_one_every_payment_fails_and_health_fails() {
    let economy = economy(1.0);
    let ((), recorded) = capture(|| {
        let now = Instant::now();
        run(&economy, PeerId(5), 1, 30, true, now);
        // The retries of the last ones ride on a few more failed tasks.
        run(&economy, PeerId(6), 100, 30, false, now);
    });
    assert_eq!(
        recorded.counter("zerostate_payments_total", &[("outcome", "ok")]),
        0
    );
    assert_eq!(
        recorded.counter("zerostate_payments_total", &[("outcome", "error")]),
        30 * u64::from(MAX_PAYMENT_ATTEMPTS)
    );
    assert_eq!(
        recorded.counter(
            "zerostate_escrow_refunds_total",
            &[("reason", "payment_failed")]
        ),
        30
    );
    assert_eq!(recorded.counter("zerostate_escrow_releases_total", &[]), 0);
    let health = economy.health();
    assert_eq!(health.status(), Status::Fail, "{health:?}");
    assert!(
        health
            .output()
            .is_some_and(|o| o.contains("payments failed")),
        "{health:?}"
    );
}

#[test]
fn health_fails_on_an_inconsistent_book_and_warns_on_pending_disputes() {
    let economy = economy(0.0);
    let now = Instant::now();
    assert_eq!(economy.health().status(), Status::Pass);
    run(&economy, PeerId(6), 1, 3, true, now);
    run(&economy, PeerId(7), 10, 3, true, now);
    let healthy = economy.health();
    assert_eq!(healthy.status(), Status::Pass, "{healthy:?}");
    assert_eq!(healthy.observed_value(), Some(&serde_json::json!(2)));
    {
        let mut state = economy.state();
        let state = &mut *state;
        let id = state.channels.active(PeerId(6)).expect("a channel");
        state
            .channels
            .dispute(&mut state.keys, id, Party::Executor, false, now)
            .expect("admitted");
    }
    let disputed = economy.health();
    assert_eq!(disputed.status(), Status::Warn, "{disputed:?}");
    {
        let mut state = economy.state();
        let id = state.channels.active(PeerId(7)).expect("a channel");
        state.channels.corrupt_balance(id);
    }
    let broken = economy.health();
    assert_eq!(broken.status(), Status::Fail, "{broken:?}");
    assert!(broken.output().is_some_and(|o| o.contains("do not add up")));
}

/// Names of the catalog's economy metrics: the sections "Payment channels and
/// payments", "Reputation" and "Auctions, bids and escrow".
fn economy_metrics() -> Vec<String> {
    let catalog = include_str!("../../../../monitoring/catalog/zerostate.toml");
    let start = catalog
        .find("# Payment channels and payments")
        .expect("payments section");
    let end = catalog[start..]
        .find("# The runtime's own metrics")
        .map_or(catalog.len(), |i| start + i);
    catalog[start..end]
        .lines()
        .filter_map(|l| l.strip_prefix("name = \""))
        .filter_map(|l| l.strip_suffix('"'))
        .map(str::to_owned)
        .collect()
}

#[test]
fn every_economy_metric_moves_under_a_workload() {
    let economy = economy(0.05);
    let peers: Vec<PeerId> = (1..=6).map(PeerId).collect();
    let ((), recorded) = capture(|| {
        let start = Instant::now();
        for task_id in 1..=600u64 {
            let now = start + Duration::from_millis(20 * task_id);
            economy.tick_at(now);
            let budget = 100 + (task_id % 9) * 100;
            let Ok(award) = economy.auction(task_id, budget, &peers) else {
                continue;
            };
            let draw = auction::unit(mix(task_id));
            let result = TaskResult {
                success: draw >= 0.12,
                receipt_verified: draw >= 0.01,
                fuel_used: 1_000 + task_id % 5_000,
                duration: Duration::from_millis(1 + task_id % 7),
            };
            economy.complete_at(&award, &result, now);
        }
    });
    let names = economy_metrics();
    assert!(names.len() > 30, "{names:?}");
    for name in &names {
        let moved = recorded.series(name, &[]).any(|v| match v {
            DebugValue::Counter(c) => *c > 0,
            // A gauge's latest value may be zero (no one blacklisted right now).
            DebugValue::Gauge(_) => true,
            DebugValue::Histogram(h) => !h.is_empty(),
        });
        assert!(moved, "{name} did not move");
    }
    for (name, label, values) in [
        (
            "zerostate_payment_channel_events_total",
            "event",
            &["opened", "settled", "disputed"][..],
        ),
        (
            "zerostate_disputes_total",
            "resolution",
            &["upheld", "rejected"],
        ),
        (
            "zerostate_blacklist_events_total",
            "event",
            &["added", "removed", "expired"],
        ),
        (
            "zerostate_bids_total",
            "status",
            &["accepted", "rejected", "won"],
        ),
        (
            "zerostate_escrow_refunds_total",
            "reason",
            &["task_failed", "receipt_rejected"],
        ),
        ("zerostate_payments_total", "outcome", &["ok", "error"]),
        ("zerostate_settlements_total", "outcome", &["ok"]),
        (
            "zerostate_reputation_tasks_total",
            "result",
            &["success", "failed"],
        ),
    ] {
        for value in values {
            assert!(
                recorded.counter(name, &[(label, value)]) > 0,
                "{name}{{{label}=\"{value}\"}} did not move"
            );
        }
    }
    // Every label value is one the catalog declares: the 8 peers, bounded.
    let peer_ids: std::collections::BTreeSet<&str> = recorded
        .0
        .iter()
        .flat_map(|(_, labels, _)| labels.iter())
        .filter(|(k, _)| k == "peer_id")
        .map(|(_, v)| v.as_str())
        .collect();
    assert!(peer_ids.len() <= peers.len(), "{peer_ids:?}");
    // The payment error ratio follows the configured rate.
    let ok = recorded.counter("zerostate_payments_total", &[("outcome", "ok")]) as f64;
    let error = recorded.counter("zerostate_payments_total", &[("outcome", "error")]) as f64;
    let ratio = error / (ok + error);
    assert!((0.02..0.09).contains(&ratio), "{ratio}");
    assert_ne!(economy.health().status(), Status::Fail);
}
