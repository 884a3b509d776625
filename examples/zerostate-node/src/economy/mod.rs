//! The node's economy: task auctions and bids, escrow, payment channels (open, pay,
//! settle, dispute), settlements and reputation (record, calculate, blacklist).
//!
//! The node is the creator of the tasks it runs. An auction (`auction.run`) picks the
//! executor among the bidders and locks its price in escrow (`escrow.lock`). When the
//! task ends with a verified receipt of a success, the node pays the executor over their
//! payment channel (`payment.channel.open` if there is none, `payment.send`: a real
//! off-chain update, signed by the creator and verified and countersigned by the
//! executor) and the escrow is released; otherwise the escrow is refunded. A failed
//! payment is retried with the next completed tasks and refunded after
//! [`MAX_PAYMENT_ATTEMPTS`].
//! The result goes into the executor's reputation (`reputation.record`,
//! `reputation.calculate`, `reputation.blacklist`).
//!
//! Upkeep ([`Economy::tick_at`]) settles channels after [`SETTLE_AFTER_PAYMENTS`] payments
//! or [`CHANNEL_LIFETIME`] (`payment.settle`); some of them are closed through a dispute
//! instead (`payment.dispute`): the executor submits the latest state (upheld) or the
//! creator a stale one (rejected). It also lifts bans and updates the gauges.
//!
//! CONTRACT (used by main.rs; keep these signatures): `EconomyConfig`, `Economy::new`,
//! `Economy::auction`, `Economy::complete_at`, `Economy::tick_at`, `Economy::health`, `Award`,
//! `AuctionError`, `TaskResult`.

mod auction;
mod channels;
mod reputation;
#[cfg(test)]
mod tests;

use std::collections::{BTreeSet, VecDeque};
use std::fmt;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use zs_observe::instrumented;
use zs_observe_health::CheckResult;

use crate::peer::PeerId;
use auction::{Bid, EscrowBook, RefundReason};
use channels::{ChannelBook, ChannelError, Fault, Keys, Party};
use reputation::{ReputationBook, BAN_MAX, BAN_MIN};

/// A channel settles after this many payments...
pub(crate) const SETTLE_AFTER_PAYMENTS: u32 = 20;
/// ...or once it is this old.
pub(crate) const CHANNEL_LIFETIME: Duration = Duration::from_secs(5);
/// Share of due channels closed through a dispute rather than cooperatively.
const DISPUTE_SHARE: f64 = 0.25;
/// A task's payment is tried this many times before its escrow is refunded.
pub(crate) const MAX_PAYMENT_ATTEMPTS: u32 = 3;
/// Failed payments tried again per completed task at most.
const RETRIES_PER_COMPLETION: usize = 2;
/// Failed payments waiting for a retry at most (the oldest is refunded beyond).
const MAX_RETRY_QUEUE: usize = 1_024;
/// How often the gauges are updated and the blacklisted scores recalculated.
const GAUGE_INTERVAL: Duration = Duration::from_millis(250);
/// Payment outcomes the health check looks at.
const HEALTH_WINDOW: usize = 200;

/// How the economy behaves.
#[derive(Debug, Clone, Copy)]
pub(crate) struct EconomyConfig {
    /// Probability (0..1) that a channel payment fails (fault injection).
    pub(crate) payment_failure_rate: f64,
    /// Seed of the simulation's reproducible randomness.
    pub(crate) seed: u64,
}

/// A task awarded to an executor by an auction, its price held in escrow.
#[derive(Debug, Clone)]
pub(crate) struct Award {
    /// The task.
    pub(crate) task_id: u64,
    /// The winning bidder, who executes the task.
    pub(crate) executor: PeerId,
    /// The winning price, locked in escrow.
    pub(crate) price: u64,
}

/// Why an auction awarded nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum AuctionError {
    /// No bidder was eligible (none, all blacklisted or over budget).
    NoEligibleBid,
}

impl fmt::Display for AuctionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AuctionError::NoEligibleBid => f.write_str("no eligible bid"),
        }
    }
}

impl std::error::Error for AuctionError {}

/// What came of an awarded task.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TaskResult {
    /// The WASM run succeeded.
    pub(crate) success: bool,
    /// The task's signed receipt verified.
    pub(crate) receipt_verified: bool,
    /// Fuel the run consumed (its cost).
    pub(crate) fuel_used: u64,
    /// How long the run took.
    pub(crate) duration: Duration,
}

/// splitmix64's finalizer: 64 well-mixed bits of `z`.
pub(super) fn mix(z: u64) -> u64 {
    let mut z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Everything behind the economy's lock.
#[derive(Debug)]
struct State {
    rng: u64,
    keys: Keys,
    channels: ChannelBook,
    escrows: EscrowBook,
    reputation: ReputationBook,
    /// The latest payment outcomes, `true` for a success.
    payments: VecDeque<bool>,
    last_gauges: Option<Instant>,
}

/// The economy of this node.
#[derive(Debug)]
pub(crate) struct Economy {
    config: EconomyConfig,
    state: Mutex<State>,
}

impl Economy {
    pub(crate) fn new(config: EconomyConfig) -> Self {
        initial_series();
        let mut state = State {
            rng: config.seed,
            keys: Keys::new(config.seed),
            channels: ChannelBook::default(),
            escrows: EscrowBook::default(),
            reputation: ReputationBook::default(),
            payments: VecDeque::with_capacity(HEALTH_WINDOW),
            last_gauges: None,
        };
        state.publish();
        Economy {
            config,
            state: Mutex::new(state),
        }
    }

    /// The state; a panic while it was held leaves it as it was (every update keeps the
    /// books consistent step by step, and the health check verifies the channel book).
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs a sealed-bid auction among `bidders` for a task with `budget`; the winner's
    /// price is locked in escrow.
    #[instrumented(
        span = "auction.run",
        counter = "zerostate_auctions_total",
        histogram = "zerostate_auction_duration_seconds",
        fields(task.id = task_id, auction.budget = budget, auction.bidders = bidders.len()),
        skip(self, bidders),
        err(level = "info")
    )]
    pub(crate) fn auction(
        &self,
        task_id: u64,
        budget: u64,
        bidders: &[PeerId],
    ) -> Result<Award, AuctionError> {
        let mut state = self.state();
        let mut bids = Vec::with_capacity(bidders.len());
        let mut rejected = 0u64;
        for &bidder in bidders {
            let price = auction::bid_price(self.config.seed, bidder, task_id, budget);
            if price > budget || state.reputation.is_blacklisted(bidder) {
                rejected += 1;
                continue;
            }
            let score = state.reputation.score(bidder);
            bids.push(Bid {
                bidder,
                price,
                score,
            });
        }
        metrics::counter!("zerostate_bids_total", "status" => "rejected").increment(rejected);
        let won = auction::winner(&bids).ok_or(AuctionError::NoEligibleBid)?;
        for bid in &bids {
            metrics::histogram!("zerostate_bid_amount_units").record(bid.price as f64);
        }
        metrics::counter!("zerostate_bids_total", "status" => "accepted")
            .increment(bids.len() as u64 - 1);
        metrics::counter!("zerostate_bids_total", "status" => "won").increment(1);
        state.escrows.lock(task_id, won.bidder, won.price);
        Ok(Award {
            task_id,
            executor: won.bidder,
            price: won.price,
        })
    }

    /// Closes an awarded task at `now`: releases or refunds its escrow, pays the
    /// executor over their channel, records the result in the executor's reputation.
    #[instrumented(
        span = "economy.complete",
        fields(
            task.id = award.task_id,
            task.price = award.price,
            peer_id = %award.executor,
            task.success = result.success
        ),
        skip_all
    )]
    pub(crate) fn complete_at(&self, award: &Award, result: &TaskResult, now: Instant) {
        let mut state = self.state();
        let state = &mut *state;
        // Payments that failed before are tried again here, on the caller's (blocking)
        // thread, never in `tick` (called from the async workload loop).
        for _ in 0..RETRIES_PER_COMPLETION.min(state.escrows.retry.len()) {
            if let Some(task_id) = state.escrows.retry.pop_front() {
                state.pay_out(task_id, self.config.payment_failure_rate, now);
            }
        }
        if state.escrows.get(award.task_id).is_some() {
            if !result.receipt_verified {
                state
                    .escrows
                    .refund(award.task_id, RefundReason::ReceiptRejected);
            } else if !result.success {
                state
                    .escrows
                    .refund(award.task_id, RefundReason::TaskFailed);
            } else {
                state.pay_out(award.task_id, self.config.payment_failure_rate, now);
            }
        } else {
            tracing::warn!(task.id = award.task_id, "completed task has no escrow");
        }
        let ban = BAN_MIN + (BAN_MAX - BAN_MIN).mul_f64(state.draw());
        state.reputation.update(
            award.executor,
            result.success && result.receipt_verified,
            result.duration,
            result.fuel_used,
            ban,
            now,
        );
    }

    /// One round of upkeep at `now`: settles channels past their lifetime, resolves
    /// disputes, expires blacklist entries, updates the gauges.
    pub(crate) fn tick_at(&self, now: Instant) {
        let mut state = self.state();
        let state = &mut *state;
        state.close_due_channels(now);
        let gauges_due = state
            .last_gauges
            .is_none_or(|t| now.saturating_duration_since(t) >= GAUGE_INTERVAL);
        state.reputation.review(now, gauges_due);
        if gauges_due {
            state.last_gauges = Some(now);
            state.publish();
        }
    }

    /// The `payments:channels` readiness check.
    pub(crate) fn health(&self) -> CheckResult {
        let poisoned = self.state.is_poisoned();
        let state = self.state();
        let open = state.channels.channels().count();
        let mut disputed = 0;
        for channel in state.channels.channels() {
            if !channel.conserves() {
                return CheckResult::fail(format!(
                    "channel {} with {}: balances {} + {} do not add up to the deposits {} + {}",
                    channel.id,
                    channel.executor,
                    channel.latest.state.creator,
                    channel.latest.state.executor,
                    channel.deposit_creator,
                    channel.deposit_executor
                ))
                .with_observed(open, "channels");
            }
            disputed += usize::from(channel.dispute.is_some());
        }
        if let (0, Some(e)) = (open, &state.channels.last_open_error) {
            return CheckResult::fail(format!("cannot open a payment channel: {e}"))
                .with_observed(open, "channels");
        }
        let tried = state.payments.len();
        let failed = state.payments.iter().filter(|ok| !**ok).count();
        if tried >= 20 && failed == tried {
            return CheckResult::fail(format!("all of the last {tried} payments failed"))
                .with_observed(open, "channels");
        }
        let mut concerns = Vec::new();
        if poisoned {
            concerns.push("recovered from a panic".to_owned());
        }
        if disputed > 0 {
            concerns.push(format!("{disputed} disputes pending"));
        }
        if tried >= 20 && failed * 20 > tried {
            concerns.push(format!("{failed} of the last {tried} payments failed"));
        }
        let result = if concerns.is_empty() {
            CheckResult::pass()
        } else {
            CheckResult::warn(concerns.join("; "))
        };
        result.with_observed(open, "channels")
    }
}

impl State {
    /// A uniform draw in 0..1.
    fn draw(&mut self) -> f64 {
        self.rng = self.rng.wrapping_add(0x9E37_79B9_7F4A_7C15);
        auction::unit(mix(self.rng))
    }

    /// Pays a completed task's escrowed price to its executor; releases the escrow on
    /// success, queues a retry or refunds it on failure.
    fn pay_out(&mut self, task_id: u64, failure_rate: f64, now: Instant) {
        let Some(escrow) = self.escrows.get(task_id) else {
            return;
        };
        let paid = match self.channel_for(escrow.executor, escrow.amount, now) {
            Ok(channel) => {
                let fault = if self.draw() < failure_rate {
                    let i = (self.draw() * Fault::ALL.len() as f64) as usize;
                    Fault::ALL.get(i).copied()
                } else {
                    None
                };
                let paid = self
                    .channels
                    .pay(&mut self.keys, channel, escrow.amount, fault)
                    .is_ok();
                if self.payments.len() >= HEALTH_WINDOW {
                    self.payments.pop_front();
                }
                self.payments.push_back(paid);
                paid
            }
            Err(_) => false,
        };
        if paid {
            self.escrows.release(task_id);
            return;
        }
        let attempts = self.escrows.get_mut(task_id).map_or(u32::MAX, |e| {
            e.attempts += 1;
            e.attempts
        });
        if attempts >= MAX_PAYMENT_ATTEMPTS {
            self.escrows.refund(task_id, RefundReason::PaymentFailed);
            return;
        }
        self.escrows.retry.push_back(task_id);
        while self.escrows.retry.len() > MAX_RETRY_QUEUE {
            if let Some(oldest) = self.escrows.retry.pop_front() {
                self.escrows.refund(oldest, RefundReason::PaymentFailed);
            }
        }
    }

    /// The executor's active channel if it covers `amount`; otherwise the exhausted one
    /// is settled and a new one opened.
    fn channel_for(
        &mut self,
        executor: PeerId,
        amount: u64,
        now: Instant,
    ) -> Result<u64, ChannelError> {
        if let Some(id) = self.channels.active(executor) {
            let balance = self.channels.get(id).map_or(0, |c| c.latest.state.creator);
            if balance >= amount {
                return Ok(id);
            }
            if self.channels.settle(&mut self.keys, id, now).is_err() {
                // Left open for the health check to report; no more payments on it.
                self.channels.deactivate(id);
            }
        }
        self.channels.open(&mut self.keys, executor, now)
    }

    /// Settles (or disputes) channels past their payments or lifetime; settles the
    /// channels whose dispute has been resolved.
    fn close_due_channels(&mut self, now: Instant) {
        let due: Vec<u64> = self
            .channels
            .channels()
            .filter(|c| {
                c.dispute.is_none()
                    && (c.payments >= SETTLE_AFTER_PAYMENTS
                        || now.saturating_duration_since(c.opened) >= CHANNEL_LIFETIME)
            })
            .map(|c| c.id)
            .collect();
        for id in due {
            let draw = self.draw();
            let result = if draw < DISPUTE_SHARE / 2.0 && self.channels.has_previous(id) {
                // The creator tries to close on a state that paid less.
                self.channels
                    .dispute(&mut self.keys, id, Party::Creator, true, now)
            } else if draw < DISPUTE_SHARE {
                // The creator does not answer: the executor closes on the latest state.
                self.channels
                    .dispute(&mut self.keys, id, Party::Executor, false, now)
            } else {
                self.channels.settle(&mut self.keys, id, now).map(drop)
            };
            if result.is_err() {
                self.channels.deactivate(id);
            }
        }
        for id in self.channels.disputes_due(now) {
            if self.channels.resolve(id).is_ok() {
                let _ = self.channels.settle(&mut self.keys, id, now);
            }
        }
    }

    /// Sets the gauges: channels, balances, value locked, participants, blacklist and
    /// the reputation of the executors whose record changed.
    fn publish(&mut self) {
        let (mut active, mut disputed, mut creator, mut executor, mut deposits) = (0, 0, 0, 0, 0);
        let mut participants: BTreeSet<PeerId> = BTreeSet::new();
        for c in self.channels.channels() {
            if c.dispute.is_some() {
                disputed += 1;
            } else {
                active += 1;
            }
            creator += c.latest.state.creator;
            executor += c.latest.state.executor;
            deposits += c.deposit_creator + c.deposit_executor;
            participants.insert(c.executor);
        }
        participants.extend(self.reputation.peers());
        participants.retain(|p| !self.reputation.is_blacklisted(*p));
        metrics::gauge!("zerostate_payment_channels", "state" => "active").set(f64::from(active));
        metrics::gauge!("zerostate_payment_channels", "state" => "disputed")
            .set(f64::from(disputed));
        metrics::gauge!("zerostate_payment_channel_balance_units", "party" => "creator")
            .set(creator as f64);
        metrics::gauge!("zerostate_payment_channel_balance_units", "party" => "executor")
            .set(executor as f64);
        metrics::gauge!("zerostate_total_value_locked_units")
            .set((deposits + self.escrows.locked()) as f64);
        metrics::gauge!("zerostate_participants_active").set(participants.len() as f64);
        metrics::gauge!("zerostate_blacklisted_executors")
            .set(self.reputation.blacklisted() as f64);
        for peer in self.reputation.take_dirty() {
            let Some(r) = self.reputation.get(peer) else {
                continue;
            };
            let id = peer.to_string();
            metrics::gauge!("zerostate_reputation_score", "peer_id" => id.clone()).set(r.score);
            metrics::gauge!("zerostate_reputation_success_ratio", "peer_id" => id.clone())
                .set(r.success_ratio());
            metrics::gauge!(
                "zerostate_reputation_average_task_duration_seconds",
                "peer_id" => id.clone()
            )
            .set(r.average_duration().as_secs_f64());
            metrics::gauge!("zerostate_reputation_average_task_cost_units", "peer_id" => id)
                .set(r.average_cost());
        }
    }
}

/// Every series with a known label set, at zero: a rate of zero is a series at zero,
/// not a missing one, and the amount histograms are in the exposition from the start.
fn initial_series() {
    for event in ["opened", "settled", "disputed"] {
        metrics::counter!("zerostate_payment_channel_events_total", "event" => event).increment(0);
    }
    for resolution in ["upheld", "rejected"] {
        metrics::counter!("zerostate_disputes_total", "resolution" => resolution).increment(0);
    }
    for event in ["added", "removed", "expired"] {
        metrics::counter!("zerostate_blacklist_events_total", "event" => event).increment(0);
    }
    for status in ["accepted", "rejected", "won"] {
        metrics::counter!("zerostate_bids_total", "status" => status).increment(0);
    }
    for reason in ["task_failed", "receipt_rejected", "payment_failed"] {
        metrics::counter!("zerostate_escrow_refunds_total", "reason" => reason).increment(0);
    }
    for name in [
        "zerostate_payment_amount_units",
        "zerostate_settlement_amount_units",
        "zerostate_payment_channel_lifetime_seconds",
        "zerostate_bid_amount_units",
        "zerostate_escrow_amount_units",
    ] {
        let _ = metrics::histogram!(name);
    }
}
