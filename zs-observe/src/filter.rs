//! Level directives as a per-layer filter whose verdict is cached per callsite.
//!
//! `EnvFilter` behind `reload::Layer` (what the runtime used first) takes a shared
//! `RwLock` read in every span's enter, exit and close, once for the reload layer
//! and once for the filter's own span table: several atomic read-modify-writes on
//! one cache line per call, which two threads on two cores fight over. Here the
//! directives are read through an `ArcSwap` (no shared write on a read). Directives
//! made only of `target=level` pairs (all the runtime's defaults, and the usual
//! `RUST_LOG`) need none of that: the verdict depends on the callsite alone, so it
//! is answered once per callsite (`Interest::always`/`never`) and reloading
//! rebuilds the callsite cache. Directives that name spans or fields
//! (`[span{field=value}]=debug`) still work: they fall back to `EnvFilter` and its
//! per-span bookkeeping.

use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwap;
use tracing::level_filters::LevelFilter;
use tracing::span::{Attributes, Id, Record};
use tracing::subscriber::Interest;
use tracing::{Metadata, Subscriber};
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::{Context, Filter};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::EnvFilter;

enum Parsed {
    /// `target=level` pairs and a default level: decided per callsite.
    Targets(Targets),
    /// Span or field directives: `EnvFilter`, with its per-span hooks (boxed: it
    /// is large and rare).
    Env(Box<EnvFilter>),
}

impl Parsed {
    fn parse(text: &str) -> Result<Parsed, String> {
        let text = text.trim();
        // `Targets` would read `[span{field=1}]=debug` as a target named `[span{field`.
        let names_spans = text.contains(['[', '{']);
        match Targets::from_str(text) {
            Ok(targets) if !names_spans => Ok(Parsed::Targets(targets)),
            _ => EnvFilter::try_new(text)
                .map(|e| Parsed::Env(Box::new(e)))
                .map_err(|e| e.to_string()),
        }
    }
}

/// Changes whenever any directives change: verdicts remembered under an older
/// epoch are stale.
static EPOCH: AtomicU64 = AtomicU64::new(0);

/// The current epoch of the directives (see [`EPOCH`]).
pub(crate) fn epoch() -> u64 {
    EPOCH.load(Ordering::Acquire)
}

/// Reloadable level directives (`EnvFilter` syntax). Read through an `ArcSwap`:
/// a read touches no shared cache line for writing, unlike a `RwLock` read.
#[derive(Clone)]
pub(crate) struct Directives {
    /// The parsed directives and their text, swapped together.
    parsed: Arc<ArcSwap<(Parsed, String)>>,
    /// Whether `parsed` is `Env`: only then do the span hooks load it.
    dynamic: Arc<AtomicBool>,
}

impl std::fmt::Debug for Directives {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Directives").field(&self.current()).finish()
    }
}

impl Directives {
    pub(crate) fn parse(text: &str) -> Result<Directives, String> {
        let parsed = Parsed::parse(text)?;
        Ok(Directives {
            dynamic: Arc::new(AtomicBool::new(matches!(parsed, Parsed::Env(_)))),
            parsed: Arc::new(ArcSwap::from_pointee((parsed, text.trim().to_owned()))),
        })
    }

    /// Replaces the directives; every callsite's cached verdict is recomputed.
    pub(crate) fn set(&self, text: &str) -> Result<(), String> {
        let parsed = Parsed::parse(text)?;
        let dynamic = matches!(parsed, Parsed::Env(_));
        self.parsed
            .store(Arc::new((parsed, text.trim().to_owned())));
        self.dynamic.store(dynamic, Ordering::Release);
        EPOCH.fetch_add(1, Ordering::AcqRel);
        tracing::callsite::rebuild_interest_cache();
        Ok(())
    }

    pub(crate) fn current(&self) -> String {
        self.parsed.load().1.clone()
    }

    /// The verdict for `meta` when it depends on the callsite alone (`None`: the
    /// directives name spans or fields, and only `EnvFilter` can tell).
    pub(crate) fn static_verdict(&self, meta: &Metadata<'_>) -> Option<bool> {
        self.with(|p| match p {
            Parsed::Targets(t) => Some(t.would_enable(meta.target(), meta.level())),
            Parsed::Env(_) => None,
        })
    }

    fn with<T>(&self, f: impl FnOnce(&Parsed) -> T) -> T {
        f(&self.parsed.load().0)
    }

    fn dynamic(&self) -> bool {
        self.dynamic.load(Ordering::Acquire)
    }
}

impl<S> Filter<S> for Directives
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn enabled(&self, meta: &Metadata<'_>, cx: &Context<'_, S>) -> bool {
        self.with(|p| match p {
            Parsed::Targets(t) => t.would_enable(meta.target(), meta.level()),
            Parsed::Env(e) => Filter::<S>::enabled(&**e, meta, cx),
        })
    }

    fn callsite_enabled(&self, meta: &'static Metadata<'static>) -> Interest {
        self.with(|p| match p {
            Parsed::Targets(t) => {
                if t.would_enable(meta.target(), meta.level()) {
                    Interest::always()
                } else {
                    Interest::never()
                }
            }
            Parsed::Env(e) => Filter::<S>::callsite_enabled(&**e, meta),
        })
    }

    fn max_level_hint(&self) -> Option<LevelFilter> {
        self.with(|p| match p {
            Parsed::Targets(t) => Filter::<S>::max_level_hint(t),
            Parsed::Env(e) => Filter::<S>::max_level_hint(&**e),
        })
    }

    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, cx: Context<'_, S>) {
        if self.dynamic() {
            self.with(|p| {
                if let Parsed::Env(e) = p {
                    Filter::<S>::on_new_span(&**e, attrs, id, cx);
                }
            });
        }
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, cx: Context<'_, S>) {
        if self.dynamic() {
            self.with(|p| {
                if let Parsed::Env(e) = p {
                    Filter::<S>::on_record(&**e, id, values, cx);
                }
            });
        }
    }

    fn on_enter(&self, id: &Id, cx: Context<'_, S>) {
        if self.dynamic() {
            self.with(|p| {
                if let Parsed::Env(e) = p {
                    Filter::<S>::on_enter(&**e, id, cx);
                }
            });
        }
    }

    fn on_exit(&self, id: &Id, cx: Context<'_, S>) {
        if self.dynamic() {
            self.with(|p| {
                if let Parsed::Env(e) = p {
                    Filter::<S>::on_exit(&**e, id, cx);
                }
            });
        }
    }

    fn on_close(&self, id: Id, cx: Context<'_, S>) {
        if self.dynamic() {
            self.with(|p| {
                if let Parsed::Env(e) = p {
                    Filter::<S>::on_close(&**e, id, cx);
                }
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_directives_are_decided_per_callsite_and_span_directives_fall_back() {
        let d = Directives::parse("info,zerostate::p2p=debug").unwrap();
        assert!(!d.dynamic());
        assert_eq!(d.current(), "info,zerostate::p2p=debug");
        d.set("warn,[task{id=1}]=debug").unwrap();
        assert!(d.dynamic());
        d.set(" off ").unwrap();
        assert!(!d.dynamic());
        assert_eq!(d.current(), "off");
        assert!(Directives::parse("info,[=").is_err());
    }
}
