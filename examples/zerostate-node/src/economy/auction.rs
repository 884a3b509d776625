//! Sealed-bid task auctions and the escrow that holds a winner's price until the task's
//! receipt is verified.

use std::collections::{HashMap, VecDeque};

use zs_observe::instrumented;

use super::mix;
use crate::peer::PeerId;

/// A bidder's price for a task: a rate of its own (0.55 to 1.15 of the expected cost,
/// derived from the seed) with a per-task spread of ±15 %. The expected cost is 90 % of
/// the budget, so the dearest bidders are sometimes over budget.
pub(super) fn bid_price(seed: u64, bidder: PeerId, task_id: u64, budget: u64) -> u64 {
    let rate = 0.55 + 0.6 * unit(mix(seed ^ u64::from(bidder.0).wrapping_mul(0x9E37)));
    let spread = 0.85 + 0.3 * unit(mix(seed ^ mix(task_id) ^ u64::from(bidder.0)));
    ((budget as f64 * 0.9 * rate * spread).round() as u64).max(1)
}

/// A uniform draw in 0..1 from 64 random bits.
pub(super) fn unit(bits: u64) -> f64 {
    (bits >> 11) as f64 / (1u64 << 53) as f64
}

/// One sealed bid.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Bid {
    pub(super) bidder: PeerId,
    pub(super) price: u64,
    /// The bidder's reputation score.
    pub(super) score: f64,
}

impl Bid {
    /// The price the auction compares: cheaper and better reputed wins.
    fn weighted(&self) -> f64 {
        self.price as f64 / (0.25 + self.score)
    }
}

/// The winning bid: the lowest reputation-weighted price (ties to the lower peer id).
pub(super) fn winner(bids: &[Bid]) -> Option<Bid> {
    bids.iter().copied().min_by(|a, b| {
        a.weighted()
            .total_cmp(&b.weighted())
            .then(a.bidder.cmp(&b.bidder))
    })
}

/// Why an escrow was refunded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum RefundReason {
    /// The task failed.
    TaskFailed,
    /// The task's receipt did not verify.
    ReceiptRejected,
    /// Paying the executor failed on every attempt.
    PaymentFailed,
}

impl RefundReason {
    fn as_str(self) -> &'static str {
        match self {
            RefundReason::TaskFailed => "task_failed",
            RefundReason::ReceiptRejected => "receipt_rejected",
            RefundReason::PaymentFailed => "payment_failed",
        }
    }
}

/// A task's price, locked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Escrow {
    pub(super) executor: PeerId,
    pub(super) amount: u64,
    /// Payments of it that failed.
    pub(super) attempts: u32,
}

/// Every unreleased escrow.
#[derive(Debug, Default)]
pub(super) struct EscrowBook {
    escrows: HashMap<u64, Escrow>,
    /// Escrows of completed tasks whose payment failed, to try again.
    pub(super) retry: VecDeque<u64>,
}

impl EscrowBook {
    pub(super) fn get(&self, task_id: u64) -> Option<Escrow> {
        self.escrows.get(&task_id).copied()
    }

    pub(super) fn get_mut(&mut self, task_id: u64) -> Option<&mut Escrow> {
        self.escrows.get_mut(&task_id)
    }

    /// The value locked in escrows.
    pub(super) fn locked(&self) -> u64 {
        self.escrows.values().map(|e| e.amount).sum()
    }

    /// Locks a task's price until its result is known.
    #[instrumented(
        span = "escrow.lock",
        counter = "zerostate_escrows_created_total",
        outcome = false,
        fields(task.id = task_id, peer_id = %executor, escrow.amount = amount),
        skip(self, executor)
    )]
    pub(super) fn lock(&mut self, task_id: u64, executor: PeerId, amount: u64) {
        self.escrows.insert(
            task_id,
            Escrow {
                executor,
                amount,
                attempts: 0,
            },
        );
        metrics::histogram!("zerostate_escrow_amount_units").record(amount as f64);
    }

    /// Releases a task's escrow: the executor has been paid its price.
    #[instrumented(
        span = "escrow.release",
        counter = "zerostate_escrow_releases_total",
        outcome = false,
        fields(task.id = task_id),
        skip(self)
    )]
    pub(super) fn release(&mut self, task_id: u64) -> Option<Escrow> {
        self.escrows.remove(&task_id)
    }

    /// Returns a task's escrow to its creator.
    #[instrumented(
        span = "escrow.refund",
        counter = "zerostate_escrow_refunds_total",
        labels(reason = reason.as_str()),
        outcome = false,
        fields(task.id = task_id),
        skip(self)
    )]
    pub(super) fn refund(&mut self, task_id: u64, reason: RefundReason) -> Option<Escrow> {
        self.escrows.remove(&task_id)
    }
}
