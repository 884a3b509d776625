//! Off-chain payment channels between the node (the tasks' creator) and each executor.
//!
//! A channel locks a deposit from both parties. Every payment is a new balance state
//! with the next nonce, signed by the creator; the executor accepts it only if the
//! creator's ed25519 signature verifies, the nonce is the next one and the balances
//! still add up to the deposits, and then countersigns it. Settlement closes the
//! channel on its last co-signed state. A dispute submits a co-signed state for a
//! unilateral close; after a challenge period the counterparty's evidence (the last
//! co-signed state) decides: the claim is upheld if it is the latest state and
//! rejected if it is stale.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::time::{Duration, Instant};

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};
use zs_observe::instrumented;

use crate::peer::PeerId;

/// What the creator locks in a new channel.
pub(super) const CREATOR_DEPOSIT: u64 = 20_000;
/// What the executor locks in a new channel (its bond).
pub(super) const EXECUTOR_DEPOSIT: u64 = 2_000;
/// Channels open at once at most (active and disputed).
pub(super) const MAX_CHANNELS: usize = 64;
/// How long a disputed channel waits for the counterparty's evidence.
pub(super) const CHALLENGE_PERIOD: Duration = Duration::from_millis(600);

/// Domain separation of the signed bytes.
const DOMAIN: &[u8; 16] = b"zerostate-chan/1";

/// A party of a channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Party {
    /// The task's creator: this node, who pays.
    Creator,
    /// The executor, who is paid.
    Executor,
}

impl Party {
    fn as_str(self) -> &'static str {
        match self {
            Party::Creator => "creator",
            Party::Executor => "executor",
        }
    }
}

/// One balance state of a channel: what each party gets if it closes now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct BalanceState {
    pub(super) channel_id: u64,
    pub(super) nonce: u64,
    pub(super) creator: u64,
    pub(super) executor: u64,
}

impl BalanceState {
    /// The signed bytes: domain, channel, nonce, balances (little endian).
    fn bytes(&self) -> [u8; 48] {
        let mut out = [0u8; 48];
        out[..16].copy_from_slice(DOMAIN);
        out[16..24].copy_from_slice(&self.channel_id.to_le_bytes());
        out[24..32].copy_from_slice(&self.nonce.to_le_bytes());
        out[32..40].copy_from_slice(&self.creator.to_le_bytes());
        out[40..48].copy_from_slice(&self.executor.to_le_bytes());
        out
    }

    fn total(&self) -> Option<u64> {
        self.creator.checked_add(self.executor)
    }
}

/// A balance state signed by both parties.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct CoSigned {
    pub(super) state: BalanceState,
    creator_sig: Signature,
    executor_sig: Signature,
}

impl CoSigned {
    fn verify(&self, creator: &VerifyingKey, executor: &VerifyingKey) -> Result<(), ChannelError> {
        let bytes = self.state.bytes();
        creator
            .verify_strict(&bytes, &self.creator_sig)
            .and_then(|()| executor.verify_strict(&bytes, &self.executor_sig))
            .map_err(|_| ChannelError::BadSignature)
    }
}

/// A fault injected into a payment on its way to the executor (`--payment-failure-rate`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Fault {
    /// A bit of the creator's signature flipped.
    CorruptSignature,
    /// The amount altered after signing.
    TamperedAmount,
    /// The previous state sent again instead of the new one.
    Replay,
}

impl Fault {
    pub(super) const ALL: [Fault; 3] = [
        Fault::CorruptSignature,
        Fault::TamperedAmount,
        Fault::Replay,
    ];
}

/// Why a payment was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum PaymentError {
    /// No such open channel.
    UnknownChannel,
    /// The channel is disputed: no more payments.
    Disputed,
    /// The creator's balance does not cover the amount.
    InsufficientBalance { available: u64, amount: u64 },
    /// The creator's signature does not verify.
    BadSignature,
    /// The nonce is not the next one (a replayed or stale state).
    StaleNonce { expected: u64, got: u64 },
    /// The balances do not add up to the deposits, or the executor would be paid less.
    NotConserved,
}

impl fmt::Display for PaymentError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PaymentError::UnknownChannel => f.write_str("unknown channel"),
            PaymentError::Disputed => f.write_str("channel is disputed"),
            PaymentError::InsufficientBalance { available, amount } => {
                write!(
                    f,
                    "insufficient balance: {available} available, {amount} needed"
                )
            }
            PaymentError::BadSignature => f.write_str("the creator's signature does not verify"),
            PaymentError::StaleNonce { expected, got } => {
                write!(f, "stale state: nonce {got}, expected {expected}")
            }
            PaymentError::NotConserved => f.write_str("balances do not conserve the deposits"),
        }
    }
}

impl std::error::Error for PaymentError {}

/// Why a channel could not be opened, settled or disputed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum ChannelError {
    /// The channel limit is reached.
    Limit,
    /// No such channel.
    UnknownChannel,
    /// A co-signature does not verify.
    BadSignature,
    /// The balances do not add up to the deposits.
    NotConserved,
    /// The channel is already disputed, or (settling) still is.
    Disputed,
    /// No older co-signed state to submit.
    NoStaleState,
}

impl fmt::Display for ChannelError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ChannelError::Limit => "channel limit reached",
            ChannelError::UnknownChannel => "unknown channel",
            ChannelError::BadSignature => "a co-signature does not verify",
            ChannelError::NotConserved => "balances do not conserve the deposits",
            ChannelError::Disputed => "channel is disputed",
            ChannelError::NoStaleState => "no older state to submit",
        })
    }
}

impl std::error::Error for ChannelError {}

/// The parties' signing keys. The node simulates its executors, so it holds their keys
/// too; each side only ever signs with its own key and verifies the other's.
pub(super) struct Keys {
    seed: u64,
    creator: SigningKey,
    executors: HashMap<PeerId, SigningKey>,
}

impl fmt::Debug for Keys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keys")
            .field("executors", &self.executors.len())
            .finish_non_exhaustive()
    }
}

impl Keys {
    /// Keys derived from `seed` (SHA-256 of the seed, the role and the peer).
    pub(super) fn new(seed: u64) -> Self {
        Keys {
            seed,
            creator: SigningKey::from_bytes(&derive(seed, 0, 0)),
            executors: HashMap::new(),
        }
    }

    fn creator_public(&self) -> VerifyingKey {
        self.creator.verifying_key()
    }

    fn executor(&mut self, peer: PeerId) -> &SigningKey {
        let seed = self.seed;
        self.executors
            .entry(peer)
            .or_insert_with(|| SigningKey::from_bytes(&derive(seed, 1, peer.0)))
    }
}

fn derive(seed: u64, role: u8, peer: u32) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"zerostate-economy-key");
    h.update(seed.to_le_bytes());
    h.update([role]);
    h.update(peer.to_le_bytes());
    h.finalize().into()
}

/// A dispute waiting for its challenge period to end.
#[derive(Debug, Clone)]
pub(super) struct Dispute {
    submitted: CoSigned,
    by: Party,
    pub(super) deadline: Instant,
}

/// How a dispute ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Resolution {
    /// The submitted state was the latest co-signed one.
    Upheld,
    /// The submitted state was stale: the latest co-signed state wins.
    Rejected,
}

impl Resolution {
    fn as_str(self) -> &'static str {
        match self {
            Resolution::Upheld => "upheld",
            Resolution::Rejected => "rejected",
        }
    }
}

/// One open channel.
#[derive(Debug, Clone)]
pub(super) struct Channel {
    pub(super) id: u64,
    pub(super) executor: PeerId,
    pub(super) deposit_creator: u64,
    pub(super) deposit_executor: u64,
    pub(super) latest: CoSigned,
    previous: Option<CoSigned>,
    pub(super) payments: u32,
    pub(super) opened: Instant,
    pub(super) dispute: Option<Dispute>,
}

impl Channel {
    /// The balances add up to the deposits.
    pub(super) fn conserves(&self) -> bool {
        self.deposit_creator.checked_add(self.deposit_executor) == self.latest.state.total()
    }
}

/// What a settlement paid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Settlement {
    pub(super) executor: PeerId,
    /// Back to the creator.
    pub(super) creator: u64,
    /// Out to the executor.
    pub(super) payout: u64,
}

/// Every open channel (active or disputed).
#[derive(Debug, Default)]
pub(super) struct ChannelBook {
    channels: BTreeMap<u64, Channel>,
    /// The active (undisputed) channel of each executor.
    active: HashMap<PeerId, u64>,
    next_id: u64,
    /// The last failed open, cleared by a successful one.
    pub(super) last_open_error: Option<ChannelError>,
}

impl ChannelBook {
    pub(super) fn channels(&self) -> impl Iterator<Item = &Channel> {
        self.channels.values()
    }

    pub(super) fn get(&self, id: u64) -> Option<&Channel> {
        self.channels.get(&id)
    }

    /// The executor's active channel.
    pub(super) fn active(&self, executor: PeerId) -> Option<u64> {
        self.active.get(&executor).copied()
    }

    /// Stops new payments on a channel (one that could not be settled).
    pub(super) fn deactivate(&mut self, id: u64) {
        self.active.retain(|_, c| *c != id);
    }

    /// Opens a channel with `executor`: both sign the opening state that locks the deposits.
    #[instrumented(
        span = "payment.channel.open",
        histogram = "zerostate_payment_channel_open_duration_seconds",
        fields(peer_id = %executor, channel.deposit = CREATOR_DEPOSIT + EXECUTOR_DEPOSIT),
        skip(self, keys, executor, now),
        err(level = "warn")
    )]
    pub(super) fn open(
        &mut self,
        keys: &mut Keys,
        executor: PeerId,
        now: Instant,
    ) -> Result<u64, ChannelError> {
        let result = self.try_open(keys, executor, now);
        self.last_open_error = result.as_ref().err().cloned();
        result
    }

    fn try_open(
        &mut self,
        keys: &mut Keys,
        executor: PeerId,
        now: Instant,
    ) -> Result<u64, ChannelError> {
        if self.channels.len() >= MAX_CHANNELS {
            return Err(ChannelError::Limit);
        }
        let id = self.next_id;
        let state = BalanceState {
            channel_id: id,
            nonce: 0,
            creator: CREATOR_DEPOSIT,
            executor: EXECUTOR_DEPOSIT,
        };
        let bytes = state.bytes();
        let creator_pk = keys.creator_public();
        let creator_sig = keys.creator.sign(&bytes);
        let executor_key = keys.executor(executor);
        // The executor checks the creator's signature before locking its own deposit.
        creator_pk
            .verify_strict(&bytes, &creator_sig)
            .map_err(|_| ChannelError::BadSignature)?;
        let latest = CoSigned {
            state,
            creator_sig,
            executor_sig: executor_key.sign(&bytes),
        };
        latest.verify(&creator_pk, &executor_key.verifying_key())?;
        self.next_id += 1;
        self.channels.insert(
            id,
            Channel {
                id,
                executor,
                deposit_creator: CREATOR_DEPOSIT,
                deposit_executor: EXECUTOR_DEPOSIT,
                latest,
                previous: None,
                payments: 0,
                opened: now,
                dispute: None,
            },
        );
        self.active.insert(executor, id);
        metrics::counter!("zerostate_payment_channel_events_total", "event" => "opened")
            .increment(1);
        Ok(id)
    }

    /// Pays `amount` to the executor: the creator signs the next state, the executor
    /// verifies it and countersigns. `fault` alters the update on its way.
    #[instrumented(
        span = "payment.send",
        counter = "zerostate_payments_total",
        histogram = "zerostate_payment_duration_seconds",
        fields(channel.id = channel_id, payment.amount = amount),
        skip(self, keys, fault),
        err(level = "warn")
    )]
    pub(super) fn pay(
        &mut self,
        keys: &mut Keys,
        channel_id: u64,
        amount: u64,
        fault: Option<Fault>,
    ) -> Result<BalanceState, PaymentError> {
        let creator_pk = keys.creator_public();
        let channel = self
            .channels
            .get_mut(&channel_id)
            .ok_or(PaymentError::UnknownChannel)?;
        if channel.dispute.is_some() {
            return Err(PaymentError::Disputed);
        }
        let current = channel.latest.state;
        let creator =
            current
                .creator
                .checked_sub(amount)
                .ok_or(PaymentError::InsufficientBalance {
                    available: current.creator,
                    amount,
                })?;
        let next = BalanceState {
            channel_id,
            nonce: current.nonce + 1,
            creator,
            executor: current.executor.saturating_add(amount),
        };
        // The creator signs; then the update travels to the executor.
        let mut sent = (next, keys.creator.sign(&next.bytes()));
        match fault {
            None => {}
            Some(Fault::CorruptSignature) => {
                let mut bytes = sent.1.to_bytes();
                bytes[7] ^= 0x10;
                sent.1 = Signature::from_bytes(&bytes);
            }
            Some(Fault::TamperedAmount) => {
                sent.0.creator = sent.0.creator.saturating_sub(1);
                sent.0.executor = sent.0.executor.saturating_add(1);
            }
            Some(Fault::Replay) => sent = (current, channel.latest.creator_sig),
        }
        let (received, signature) = sent;
        accept(channel, &received, &signature, &creator_pk)?;
        let executor_key = keys.executor(channel.executor);
        let cosigned = CoSigned {
            state: received,
            creator_sig: signature,
            executor_sig: executor_key.sign(&received.bytes()),
        };
        channel.previous = Some(std::mem::replace(&mut channel.latest, cosigned));
        channel.payments += 1;
        metrics::histogram!("zerostate_payment_amount_units").record(amount as f64);
        Ok(received)
    }

    /// Closes a channel on its last co-signed state: the creator gets its balance back,
    /// the executor is paid out.
    #[instrumented(
        span = "payment.settle",
        counter = "zerostate_settlements_total",
        histogram = "zerostate_settlement_duration_seconds",
        fields(channel.id = channel_id),
        skip(self, keys, now),
        err(level = "warn")
    )]
    pub(super) fn settle(
        &mut self,
        keys: &mut Keys,
        channel_id: u64,
        now: Instant,
    ) -> Result<Settlement, ChannelError> {
        let creator_pk = keys.creator_public();
        let channel = self
            .channels
            .get(&channel_id)
            .ok_or(ChannelError::UnknownChannel)?;
        if channel.dispute.is_some() {
            return Err(ChannelError::Disputed);
        }
        let executor_pk = keys.executor(channel.executor).verifying_key();
        channel.latest.verify(&creator_pk, &executor_pk)?;
        if !channel.conserves() {
            return Err(ChannelError::NotConserved);
        }
        let settlement = Settlement {
            executor: channel.executor,
            creator: channel.latest.state.creator,
            payout: channel.latest.state.executor,
        };
        let lifetime = now.saturating_duration_since(channel.opened);
        self.channels.remove(&channel_id);
        self.deactivate(channel_id);
        metrics::histogram!("zerostate_settlement_amount_units").record(settlement.payout as f64);
        metrics::histogram!("zerostate_payment_channel_lifetime_seconds")
            .record(lifetime.as_secs_f64());
        metrics::counter!("zerostate_payment_channel_events_total", "event" => "settled")
            .increment(1);
        tracing::debug!(
            peer_id = %settlement.executor,
            settlement.payout = settlement.payout,
            settlement.refund = settlement.creator,
            "channel settled"
        );
        Ok(settlement)
    }

    /// `by` submits a co-signed state for a unilateral close: the latest one, or (`stale`)
    /// the one before it. The channel takes no more payments.
    #[instrumented(
        span = "payment.dispute",
        fields(channel.id = channel_id, dispute.by = by.as_str(), dispute.stale = stale),
        skip(self, keys, by, now),
        err(level = "warn")
    )]
    pub(super) fn dispute(
        &mut self,
        keys: &mut Keys,
        channel_id: u64,
        by: Party,
        stale: bool,
        now: Instant,
    ) -> Result<(), ChannelError> {
        let creator_pk = keys.creator_public();
        let channel = self
            .channels
            .get_mut(&channel_id)
            .ok_or(ChannelError::UnknownChannel)?;
        if channel.dispute.is_some() {
            return Err(ChannelError::Disputed);
        }
        let submitted = if stale {
            channel.previous.clone().ok_or(ChannelError::NoStaleState)?
        } else {
            channel.latest.clone()
        };
        // Only a state both parties signed is admitted.
        submitted.verify(
            &creator_pk,
            &keys.executor(channel.executor).verifying_key(),
        )?;
        channel.dispute = Some(Dispute {
            submitted,
            by,
            deadline: now + CHALLENGE_PERIOD,
        });
        self.deactivate(channel_id);
        metrics::counter!("zerostate_payment_channel_events_total", "event" => "disputed")
            .increment(1);
        Ok(())
    }

    /// Ends a dispute: the counterparty's evidence is the last co-signed state; a claim
    /// with an older nonce is rejected. The channel can then be settled.
    #[instrumented(
        span = "payment.dispute.resolve",
        fields(channel.id = channel_id),
        skip(self),
        ret(Debug),
        err(level = "warn")
    )]
    pub(super) fn resolve(&mut self, channel_id: u64) -> Result<Resolution, ChannelError> {
        let channel = self
            .channels
            .get_mut(&channel_id)
            .ok_or(ChannelError::UnknownChannel)?;
        let dispute = channel.dispute.take().ok_or(ChannelError::UnknownChannel)?;
        let resolution = if dispute.submitted.state.nonce < channel.latest.state.nonce {
            Resolution::Rejected
        } else {
            Resolution::Upheld
        };
        tracing::info!(
            peer_id = %channel.executor,
            dispute.by = dispute.by.as_str(),
            dispute.nonce = dispute.submitted.state.nonce,
            channel.nonce = channel.latest.state.nonce,
            resolution = resolution.as_str(),
            "dispute resolved"
        );
        metrics::counter!("zerostate_disputes_total", "resolution" => resolution.as_str())
            .increment(1);
        Ok(resolution)
    }

    /// Channels whose dispute has run its challenge period.
    pub(super) fn disputes_due(&self, now: Instant) -> Vec<u64> {
        self.channels
            .values()
            .filter(|c| c.dispute.as_ref().is_some_and(|d| now >= d.deadline))
            .map(|c| c.id)
            .collect()
    }

    /// Whether the channel has an older co-signed state.
    pub(super) fn has_previous(&self, id: u64) -> bool {
        self.channels.get(&id).is_some_and(|c| c.previous.is_some())
    }

    #[cfg(test)]
    pub(super) fn corrupt_balance(&mut self, id: u64) {
        if let Some(c) = self.channels.get_mut(&id) {
            c.latest.state.executor += 1;
        }
    }
}

/// The executor's checks of a received update.
fn accept(
    channel: &Channel,
    received: &BalanceState,
    signature: &Signature,
    creator: &VerifyingKey,
) -> Result<(), PaymentError> {
    creator
        .verify_strict(&received.bytes(), signature)
        .map_err(|_| PaymentError::BadSignature)?;
    let current = channel.latest.state;
    if received.channel_id != channel.id || received.nonce != current.nonce + 1 {
        return Err(PaymentError::StaleNonce {
            expected: current.nonce + 1,
            got: received.nonce,
        });
    }
    let deposits = channel
        .deposit_creator
        .checked_add(channel.deposit_executor);
    if received.total() != deposits || received.executor < current.executor {
        return Err(PaymentError::NotConserved);
    }
    Ok(())
}
