//! Executor reputation: every task result is recorded (`reputation.record`), the score
//! recalculated (`reputation.calculate`), and an executor whose score falls below the
//! threshold is blacklisted (`reputation.blacklist`) until its score recovers or its
//! ban runs out.
//!
//! The score blends recent behaviour (an exponentially weighted success rate that fades
//! back toward a neutral prior while the executor is idle) with the lifetime success
//! ratio, scaled down for slow executors. The simulation runs fast: bans last about a
//! second (0.4 to 1.2 s), so every path shows within seconds.

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::time::{Duration, Instant};

use zs_observe::instrumented;

use crate::peer::PeerId;

/// Where recent behaviour fades to while an executor is idle.
const PRIOR: f64 = 0.8;
/// Weight of the latest result in the recent success rate.
const ALPHA: f64 = 0.5;
/// Share of recent behaviour in the score (the rest is the lifetime ratio).
const RECENT_WEIGHT: f64 = 0.7;
/// Time constant of the fade toward the prior.
const FADE: Duration = Duration::from_millis(1_500);
/// Pseudo-observations of the prior in the lifetime ratio.
const PRIOR_WEIGHT: f64 = 4.0;
/// A task this long halves the speed factor.
const SLOW_TASK: Duration = Duration::from_secs(2);
/// Blacklisted when the score falls below this.
pub(super) const BLACKLIST_BELOW: f64 = 0.5;
/// Removed from the blacklist when the score is back to this.
pub(super) const REINSTATE_AT: f64 = 0.6;
/// The shortest a ban lasts: its length is drawn between this and [`BAN_MAX`], so that
/// executors banned together do not all return together.
pub(super) const BAN_MIN: Duration = Duration::from_millis(400);
/// The longest a ban lasts.
pub(super) const BAN_MAX: Duration = Duration::from_millis(1_200);

/// What is known of one executor.
#[derive(Debug, Clone)]
pub(super) struct Record {
    successes: u64,
    failures: u64,
    total_duration: Duration,
    total_cost: u64,
    /// Exponentially weighted success rate as of `recent_at`.
    recent: f64,
    recent_at: Instant,
    /// The last calculated score.
    pub(super) score: f64,
}

impl Record {
    fn new(now: Instant) -> Self {
        Record {
            successes: 0,
            failures: 0,
            total_duration: Duration::ZERO,
            total_cost: 0,
            recent: 1.0,
            recent_at: now,
            score: 1.0,
        }
    }

    fn tasks(&self) -> u64 {
        self.successes + self.failures
    }

    /// Share of recorded tasks that succeeded.
    pub(super) fn success_ratio(&self) -> f64 {
        match self.tasks() {
            0 => 1.0,
            n => self.successes as f64 / n as f64,
        }
    }

    pub(super) fn average_duration(&self) -> Duration {
        match u32::try_from(self.tasks()) {
            Ok(0) | Err(_) => Duration::ZERO,
            Ok(n) => self.total_duration / n,
        }
    }

    pub(super) fn average_cost(&self) -> f64 {
        match self.tasks() {
            0 => 0.0,
            n => self.total_cost as f64 / n as f64,
        }
    }

    /// The recent success rate at `now`, faded toward the prior since the last result.
    fn recent_at(&self, now: Instant) -> f64 {
        let idle = now.saturating_duration_since(self.recent_at).as_secs_f64();
        PRIOR + (self.recent - PRIOR) * (-idle / FADE.as_secs_f64()).exp()
    }
}

/// Why a reputation operation failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum ReputationError {
    /// Nothing is recorded for the peer.
    Unknown(PeerId),
    /// The peer is blacklisted already.
    AlreadyBlacklisted(PeerId),
}

impl fmt::Display for ReputationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReputationError::Unknown(p) => write!(f, "no reputation recorded for {p}"),
            ReputationError::AlreadyBlacklisted(p) => write!(f, "{p} is blacklisted already"),
        }
    }
}

impl std::error::Error for ReputationError {}

/// A blacklisting.
#[derive(Debug, Clone, Copy)]
pub(super) struct Ban {
    until: Instant,
}

/// Every executor's record and the blacklist.
#[derive(Debug, Default)]
pub(super) struct ReputationBook {
    records: HashMap<PeerId, Record>,
    blacklist: HashMap<PeerId, Ban>,
    /// Peers whose gauges are out of date.
    dirty: BTreeSet<PeerId>,
}

impl ReputationBook {
    pub(super) fn get(&self, peer: PeerId) -> Option<&Record> {
        self.records.get(&peer)
    }

    pub(super) fn peers(&self) -> impl Iterator<Item = PeerId> + '_ {
        self.records.keys().copied()
    }

    pub(super) fn is_blacklisted(&self, peer: PeerId) -> bool {
        self.blacklist.contains_key(&peer)
    }

    pub(super) fn blacklisted(&self) -> usize {
        self.blacklist.len()
    }

    /// The score auctions weigh bids with (an unknown executor has the prior's).
    pub(super) fn score(&self, peer: PeerId) -> f64 {
        self.records.get(&peer).map_or(PRIOR, |r| r.score)
    }

    /// Takes the peers whose gauges need an update.
    pub(super) fn take_dirty(&mut self) -> BTreeSet<PeerId> {
        std::mem::take(&mut self.dirty)
    }

    /// Records a task result against `peer`.
    #[instrumented(
        span = "reputation.record",
        counter = "zerostate_reputation_operations_total",
        histogram = "zerostate_reputation_operation_duration_seconds",
        labels(operation = "record"),
        fields(peer_id = %peer, task.success = success, task.cost = cost),
        skip(self, peer, duration, now)
    )]
    pub(super) fn record(
        &mut self,
        peer: PeerId,
        success: bool,
        duration: Duration,
        cost: u64,
        now: Instant,
    ) {
        let record = self.records.entry(peer).or_insert_with(|| Record::new(now));
        let recent = record.recent_at(now);
        record.recent = (1.0 - ALPHA) * recent + if success { ALPHA } else { 0.0 };
        record.recent_at = now;
        if success {
            record.successes += 1;
        } else {
            record.failures += 1;
        }
        record.total_duration += duration;
        record.total_cost = record.total_cost.saturating_add(cost);
        self.dirty.insert(peer);
        let result = if success { "success" } else { "failed" };
        metrics::counter!(
            "zerostate_reputation_tasks_total",
            "peer_id" => peer.to_string(),
            "result" => result
        )
        .increment(1);
    }

    /// Recalculates `peer`'s score at `now`.
    #[instrumented(
        span = "reputation.calculate",
        counter = "zerostate_reputation_operations_total",
        histogram = "zerostate_reputation_operation_duration_seconds",
        labels(operation = "calculate"),
        fields(peer_id = %peer, reputation.score),
        skip(self, peer, now),
        err(level = "warn")
    )]
    pub(super) fn calculate(&mut self, peer: PeerId, now: Instant) -> Result<f64, ReputationError> {
        let record = self
            .records
            .get_mut(&peer)
            .ok_or(ReputationError::Unknown(peer))?;
        let n = record.tasks() as f64;
        let lifetime = (record.successes as f64 + PRIOR * PRIOR_WEIGHT) / (n + PRIOR_WEIGHT);
        let speed = 1.0 / (1.0 + record.average_duration().as_secs_f64() / SLOW_TASK.as_secs_f64());
        let score = ((RECENT_WEIGHT * record.recent_at(now) + (1.0 - RECENT_WEIGHT) * lifetime)
            * speed)
            .clamp(0.0, 1.0);
        record.score = score;
        self.dirty.insert(peer);
        zs_observe::record_current("reputation.score", score);
        Ok(score)
    }

    /// Blacklists `peer` (its score fell below the threshold) for at most `ban`.
    #[instrumented(
        span = "reputation.blacklist",
        counter = "zerostate_reputation_operations_total",
        histogram = "zerostate_reputation_operation_duration_seconds",
        labels(operation = "blacklist"),
        fields(peer_id = %peer, reputation.score = score, reputation.ban_seconds = ban.as_secs_f64()),
        skip(self, peer, ban, now),
        err(level = "warn")
    )]
    pub(super) fn blacklist(
        &mut self,
        peer: PeerId,
        score: f64,
        ban: Duration,
        now: Instant,
    ) -> Result<(), ReputationError> {
        if self.blacklist.contains_key(&peer) {
            return Err(ReputationError::AlreadyBlacklisted(peer));
        }
        self.blacklist.insert(peer, Ban { until: now + ban });
        tracing::warn!(peer_id = %peer, reputation.score = score, "executor blacklisted");
        metrics::counter!("zerostate_blacklist_events_total", "event" => "added").increment(1);
        Ok(())
    }

    /// Records a result, recalculates, and blacklists (for `ban`) when the score crossed
    /// the threshold.
    pub(super) fn update(
        &mut self,
        peer: PeerId,
        success: bool,
        duration: Duration,
        cost: u64,
        ban: Duration,
        now: Instant,
    ) {
        self.record(peer, success, duration, cost, now);
        if let Ok(score) = self.calculate(peer, now) {
            if score < BLACKLIST_BELOW && !self.is_blacklisted(peer) {
                let _ = self.blacklist(peer, score, ban, now);
            }
        }
    }

    #[cfg(test)]
    pub(super) fn ban_until(&mut self, peer: PeerId, until: Instant) {
        self.blacklist.insert(peer, Ban { until });
    }

    /// Lifts bans: expired ones, and those whose executor's score recovered
    /// (`recalculate`: also recalculate the blacklisted executors' scores).
    pub(super) fn review(&mut self, now: Instant, recalculate: bool) {
        let banned: Vec<(PeerId, Ban)> = self.blacklist.iter().map(|(p, b)| (*p, *b)).collect();
        for (peer, ban) in banned {
            let event = if now >= ban.until {
                "expired"
            } else if recalculate
                && self
                    .calculate(peer, now)
                    .is_ok_and(|score| score >= REINSTATE_AT)
            {
                "removed"
            } else {
                continue;
            };
            self.blacklist.remove(&peer);
            tracing::info!(peer_id = %peer, event, "executor back from the blacklist");
            metrics::counter!("zerostate_blacklist_events_total", "event" => event).increment(1);
        }
    }
}
