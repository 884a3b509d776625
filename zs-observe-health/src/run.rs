//! How checks run: each run in its own task under its timeout with panics caught, one run in
//! flight per check (single-flight), results kept for the cache TTL (then served for one
//! more TTL while a run refreshes them) or refreshed in the background.

use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::{Duration, Instant, SystemTime};

use futures::future::{BoxFuture, Shared};
use futures::FutureExt;

use crate::check::{Check, CheckResult, Kind, Status};
use crate::metrics::MetricNames;
use crate::registry::Inner;
use crate::report::{CheckMeta, CheckOutcome};

/// How long a probe waits past a check's timeout for the check's own task to report, before
/// it reports the timeout itself (only matters when a check blocks its thread).
const WAIT_GRACE: Duration = Duration::from_millis(50);

/// How a probe treats a check's latest result.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Mode {
    /// Reuse a result younger than the TTL, else run (or join the run in flight).
    Cached(Duration),
    /// Reuse any result; run (or join) only when there is none yet.
    Background,
    /// Run now (or join the run in flight).
    Force,
}

pub(crate) type Run = Shared<BoxFuture<'static, Option<Arc<CheckOutcome>>>>;

pub(crate) struct Slot {
    pub(crate) meta: Arc<CheckMeta>,
    pub(crate) check: Arc<dyn Check>,
    pub(crate) state: Mutex<SlotState>,
    /// For startup checks: passed (or warned) once, after which the result is kept and the
    /// check is not run again.
    pub(crate) passed_once: AtomicBool,
}

#[derive(Default)]
pub(crate) struct SlotState {
    latest: Option<(Arc<CheckOutcome>, Instant)>,
    inflight: Option<(Instant, Run)>,
}

impl Slot {
    fn lock(&self) -> MutexGuard<'_, SlotState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn latched(&self) -> bool {
        self.meta.kind == Kind::Startup && self.passed_once.load(Ordering::Acquire)
    }

    /// The outcome to report under `mode`: the latest one, or that of a run started or joined
    /// here, waited for no longer than the check's timeout (plus a small grace).
    pub(crate) async fn current(
        self: Arc<Self>,
        mode: Mode,
        metrics: Option<Arc<MetricNames>>,
    ) -> Arc<CheckOutcome> {
        let (started, run) = {
            let mut state = self.lock();
            if let Some((outcome, finished)) = &state.latest {
                let reuse = self.latched()
                    || match mode {
                        Mode::Cached(ttl) => finished.elapsed() < ttl,
                        Mode::Background => true,
                        Mode::Force => false,
                    };
                if reuse {
                    return Arc::clone(outcome);
                }
                // Stale-while-revalidate: for one more TTL the last result answers at once
                // while a run refreshes it, so a probe never waits on a slow or hanging
                // check once a first result exists.
                if let Mode::Cached(ttl) = mode {
                    if !ttl.is_zero() && finished.elapsed() < ttl.saturating_mul(2) {
                        let outcome = Arc::clone(outcome);
                        if state.inflight.is_none() {
                            let run = Arc::clone(&self).spawn_run(metrics);
                            state.inflight = Some((Instant::now(), run));
                        }
                        return outcome;
                    }
                }
            }
            match &state.inflight {
                Some((started, run)) => (*started, run.clone()),
                None => {
                    let started = Instant::now();
                    let run = Arc::clone(&self).spawn_run(metrics);
                    state.inflight = Some((started, run.clone()));
                    (started, run)
                }
            }
        };
        let deadline = started + self.meta.timeout + WAIT_GRACE;
        match tokio::time::timeout_at(deadline.into(), run).await {
            Ok(Some(outcome)) => outcome,
            Ok(None) => Arc::new(self.synthetic("the check's task failed")),
            Err(_) => Arc::new(self.synthetic(&format!(
                "timed out after {:?} (the check's task did not finish in time: the check \
                 blocks its thread, or the runtime is saturated)",
                self.meta.timeout
            ))),
        }
    }

    fn synthetic(&self, output: &str) -> CheckOutcome {
        CheckOutcome {
            result: CheckResult::fail(output),
            time: SystemTime::now(),
            duration: self.meta.timeout,
        }
    }

    /// Starts a run in its own task; the task stores its outcome and clears the in-flight
    /// marker itself, so the run completes even if every probe waiting on it goes away.
    fn spawn_run(self: Arc<Self>, metrics: Option<Arc<MetricNames>>) -> Run {
        let handle = tokio::spawn(async move {
            let _clear = ClearInflight(Arc::clone(&self));
            let start = Instant::now();
            let check = Arc::clone(&self.check);
            let run = AssertUnwindSafe(async move { check.check().await }).catch_unwind();
            let result = match tokio::time::timeout(self.meta.timeout, run).await {
                Ok(Ok(result)) => result,
                Ok(Err(panic)) => CheckResult::fail(format!(
                    "the check panicked: {}",
                    panic_message(panic.as_ref())
                )),
                Err(_) => CheckResult::fail(format!("timed out after {:?}", self.meta.timeout)),
            };
            let outcome = Arc::new(CheckOutcome {
                result,
                time: SystemTime::now(),
                duration: start.elapsed(),
            });
            let status = outcome.result.status();
            if let Some(names) = &metrics {
                names.record(&self.meta.name, self.meta.kind, status, outcome.duration);
            }
            if self.meta.kind == Kind::Startup && status != Status::Fail {
                self.passed_once.store(true, Ordering::Release);
            }
            self.lock().latest = Some((Arc::clone(&outcome), Instant::now()));
            outcome
        });
        handle.map(Result::ok).boxed().shared()
    }
}

/// Clears a slot's in-flight marker when its run's task ends, however it ends.
struct ClearInflight(Arc<Slot>);

impl Drop for ClearInflight {
    fn drop(&mut self) {
        self.0.lock().inflight = None;
    }
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> &str {
    if let Some(s) = panic.downcast_ref::<&'static str>() {
        s
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s
    } else {
        "(non-string panic payload)"
    }
}

/// Every `interval` (the first runs were started by `build()`), starts a run of every check
/// that is not in flight, until the registry is dropped.
pub(crate) async fn refresh_loop(inner: Weak<Inner>, interval: Duration) {
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticks.tick().await; // the first tick is immediate
    loop {
        ticks.tick().await;
        let Some(inner) = inner.upgrade() else {
            return;
        };
        start_runs(&inner);
    }
}

/// Starts a run of every check that is not in flight (and not a startup check that passed).
pub(crate) fn start_runs(inner: &Inner) {
    for slot in &inner.slots {
        if slot.latched() {
            continue;
        }
        let mut state = slot.lock();
        if state.inflight.is_none() {
            let run = Arc::clone(slot).spawn_run(inner.metrics.clone());
            state.inflight = Some((Instant::now(), run));
        }
    }
}
