//! Head sampling before any OpenTelemetry data is built.
//!
//! `tracing-opentelemetry` builds a span builder (name, attributes, ids) for every
//! span it sees and asks the sampler only when the span starts, so an unsampled
//! span costs almost as much as a sampled one. With a parent-based sampler (the
//! default) the decision can be made earlier, from the parent alone: this per-layer
//! filter decides when a span is created whether the OTel layer sees it at all.
//!
//! - A span whose parent the OTel layer sees is sampled with it (same trace).
//! - A span whose parent the OTel layer does not see is not sampled either.
//! - A span with a remote parent (a `traceparent` read by `RequestTraceLayer`)
//!   follows the parent's sampled flag.
//! - A root span is sampled with the configured probability.
//!
//! Spans it keeps go to the SDK with a parent-based always-on sampler, so the
//! decisions agree. Unsampled spans never reach the OTel layer: logs inside them
//! carry no trace id (their trace is not recorded anywhere to link to), and
//! outgoing requests carry a `traceparent` with the sampled flag off, so the next
//! service does not start a trace of its own.

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, Ordering};

use tracing::subscriber::Interest;
use tracing::{Metadata, Subscriber};
use tracing_subscriber::layer::{Context, Filter};
use tracing_subscriber::registry::LookupSpan;

thread_local! {
    /// While a server span is being created: `Some(Some(flag))` for a remote parent's
    /// sampled flag, `Some(None)` for a new root; `None` otherwise.
    static REMOTE_PARENT: Cell<Option<Option<bool>>> = const { Cell::new(None) };
    static RNG: Cell<u64> = Cell::new(seed());
}

/// Set once a head-sampling subscriber is installed.
static ACTIVE: AtomicBool = AtomicBool::new(false);

fn seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(0x9E37_79B9_7F4A_7C15);
    h.finish() | 1
}

/// A uniformly distributed `u64` (xorshift64*, per thread).
pub(crate) fn random_u64() -> u64 {
    RNG.with(|state| {
        let mut x = state.get();
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        state.set(x);
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    })
}

/// Whether head sampling decides which spans reach the OTel layer.
pub(crate) fn is_active() -> bool {
    ACTIVE.load(Ordering::Relaxed)
}

/// Runs `create` (which creates a server span) with a remote parent's sampled flag
/// in effect: `Some(flag)` for a valid `traceparent`, `None` for a new root.
pub(crate) fn with_remote_parent<T>(sampled: Option<bool>, create: impl FnOnce() -> T) -> T {
    struct Reset(Option<Option<bool>>);
    impl Drop for Reset {
        fn drop(&mut self) {
            REMOTE_PARENT.with(|r| r.set(self.0));
        }
    }
    let _reset = Reset(REMOTE_PARENT.with(|r| r.replace(Some(sampled))));
    create()
}

/// Sets the remote-parent state for the span about to be created (the call site
/// that rolled for a new root passes `Some(true)`); returns the previous state.
pub(crate) fn force_remote_parent(sampled: Option<bool>) -> Option<Option<bool>> {
    REMOTE_PARENT
        .try_with(|r| r.replace(Some(sampled)))
        .unwrap_or(None)
}

/// Puts back what [`force_remote_parent`] returned.
pub(crate) fn restore_remote_parent(previous: Option<Option<bool>>) {
    let _ = REMOTE_PARENT.try_with(|r| r.set(previous));
}

/// The per-layer filter of the OTel layer.
#[derive(Debug)]
pub(crate) struct HeadSampler {
    /// Roots are kept when [`roll`] says so for this threshold.
    threshold: u64,
}

/// The threshold of [`roll`] for a sampling ratio (`u64::MAX`: always, `0`: never).
pub(crate) fn threshold(ratio: f64) -> u64 {
    let ratio = ratio.clamp(0.0, 1.0);
    if ratio >= 1.0 {
        u64::MAX
    } else {
        (ratio * u64::MAX as f64) as u64
    }
}

/// Whether a new root is sampled: a random `u64` below `threshold`.
pub(crate) fn roll(threshold: u64) -> bool {
    threshold == u64::MAX || (threshold > 0 && random_u64() < threshold)
}

impl HeadSampler {
    /// Marks head sampling active (the propagation helpers depend on it).
    pub(crate) fn new(root_ratio: f64) -> HeadSampler {
        ACTIVE.store(true, Ordering::Relaxed);
        HeadSampler {
            threshold: threshold(root_ratio),
        }
    }

    fn roll(&self) -> bool {
        roll(self.threshold)
    }
}

impl<S> Filter<S> for HeadSampler
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn enabled(&self, meta: &Metadata<'_>, cx: &Context<'_, S>) -> bool {
        if crate::light::is_carrier(meta) {
            return false;
        }
        if !meta.is_span() {
            // Events attach to the nearest span the layer sees, if any.
            return true;
        }
        match REMOTE_PARENT.with(Cell::get) {
            Some(Some(sampled)) => return sampled,
            Some(None) => return self.roll(),
            None => {}
        }
        if let Some(sampled) = crate::light::current_light_sampled() {
            // A span opened inside an `#[instrumented]` call follows it; inside a
            // sampled one, its parent is the call's context, attached while it is
            // entered (`crate::otel::bridge`).
            return sampled;
        }
        match cx.current_span().id() {
            // `cx` is filtered: the parent is found only if this layer sees it.
            Some(parent) => cx.span(parent).is_some(),
            None => self.roll(),
        }
    }

    fn event_enabled(&self, event: &tracing::Event<'_>, _cx: &Context<'_, S>) -> bool {
        // Inside an `#[instrumented]` call's light span, the OTel layer would put the
        // event on a span outside it: events of sampled calls are recorded by the
        // bridge, those of unsampled calls nowhere.
        !(event.is_contextual() && crate::light::current_light_sampled().is_some())
    }

    fn on_enter(&self, _id: &tracing::span::Id, _cx: Context<'_, S>) {
        // Called only for spans this filter kept: the entered span is sampled.
        crate::light::entering_sampled();
    }

    fn callsite_enabled(&self, meta: &'static Metadata<'static>) -> Interest {
        if meta.is_span() {
            Interest::sometimes()
        } else {
            Interest::always()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ratios() {
        let never = HeadSampler::new(0.0);
        assert!((0..1000).all(|_| !never.roll()));
        let always = HeadSampler::new(1.0);
        assert!((0..1000).all(|_| always.roll()));
        let tenth = HeadSampler::new(0.1);
        let kept = (0..100_000).filter(|_| tenth.roll()).count();
        assert!((9_000..11_000).contains(&kept), "kept {kept} of 100000");
    }
}
