//! Light spans: the spans of `#[instrumented]` calls (unsampled ones, and sampled ones
//! exported through the bridge), kept out of the `tracing-subscriber` registry.
//!
//! Under head sampling most calls are not traced, yet every span they open went
//! through the whole registry: a slab slot, per-layer filter bookkeeping, the log
//! layer's field capture, enter/exit/close hooks of every layer. Callgrind put that
//! at ~4,000 instructions per call, twenty times the metrics it carried.
//!
//! Here the decision is taken at the call site, before the span is built
//! ([`begin_call`]): when the current context is not sampled (the innermost entered span
//! is an unsampled one) or a new root loses the sampling roll, the span becomes a
//! *light* span: a small frame with an id of its own, holding its metadata and its
//! fields as recorded (rendered for the JSON log layer only if a line is written
//! inside it). The call site builds it itself, without the dispatcher
//! (`crate::call_span`), when the filters alone decide the span (otherwise it
//! builds an ordinary span); [`crate::subscriber::ZsSubscriber`] keeps light ids
//! away from the registry and its layers. Entering it pushes it on a per-thread
//! stack ([`STACK`]); the log layer
//! reads that stack and places light frames between the registry's spans, so log
//! lines inside an unsampled call carry the same span fields as before.
//!
//! What a light span does not do: it has no registry entry, so `Span::current()`
//! inside it returns a stand-in registry span (the *carrier*, invisible to the OTel
//! layer) with the light span's metadata; `record` on it reaches the light frame.
//! OpenTelemetry extension calls on it act on the carrier, which has no trace
//! context.
//!
//! A *sampled* call's span is a light frame too, carrying its OpenTelemetry data
//! ([`crate::otel::bridge`]): its id has the [`SAMPLED`] bit, entering it attaches
//! its OpenTelemetry context, and closing it hands the span to the export queue.
//!
//! Light spans are used only where every consumer understands them: the runtime's
//! own subscriber with its log layer (JSON or console) and head sampling (or no
//! tracing). With another sampler, or a subscriber of the application's own, call
//! sites build ordinary spans.

use std::borrow::Cow;
use std::cell::{Cell, RefCell};
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;

use serde_json::Value;
use tracing::span::Id;
use tracing::Metadata;

use crate::otel::bridge::OtelFrame;
use crate::raw_fields::RawFields;

/// Span fields as the JSON log layer keeps them.
pub(crate) type Fields = Vec<(Cow<'static, str>, Value)>;

/// Whether call sites may build light spans (set when the runtime's subscriber is
/// installed in a configuration that supports them).
static ACTIVE: AtomicBool = AtomicBool::new(false);

/// Roots are sampled when a random `u64` is below this (`0`: never).
static ROOT_THRESHOLD: AtomicU64 = AtomicU64::new(0);

/// The registry id of the carrier span (`0`: none).
static CARRIER: AtomicU64 = AtomicU64::new(0);

pub(crate) fn activate(root_ratio: Option<f64>) {
    let threshold = root_ratio.map_or(0, crate::otel::head::threshold);
    ROOT_THRESHOLD.store(threshold, Ordering::Relaxed);
    ACTIVE.store(true, Ordering::Release);
}

pub(crate) fn set_carrier(id: &Id) {
    CARRIER.store(raw_id(id), Ordering::Release);
}

/// Whether `id` is the carrier's.
#[inline]
pub(crate) fn is_carrier_id(id: &Id) -> bool {
    CARRIER.load(Ordering::Relaxed) == raw_id(id)
}

pub(crate) fn carrier() -> Option<Id> {
    match CARRIER.load(Ordering::Acquire) {
        0 => None,
        id => Some(id_from(id)),
    }
}

/// The carrier: a registry span no layer records, which `Span::current()` names
/// inside a light span (see the module documentation).
pub(crate) static CARRIER_CALLSITE: tracing::callsite::DefaultCallsite =
    tracing::callsite::DefaultCallsite::new(&CARRIER_META);
static CARRIER_META: Metadata<'static> = tracing::metadata! {
    name: "zs.light",
    target: "zs_observe::light",
    level: tracing::Level::ERROR,
    fields: &[],
    callsite: &CARRIER_CALLSITE,
    kind: tracing::metadata::Kind::SPAN,
};

pub(crate) fn is_carrier(meta: &Metadata<'_>) -> bool {
    std::ptr::eq(meta, &CARRIER_META)
}

pub(crate) fn carrier_meta() -> &'static Metadata<'static> {
    &CARRIER_META
}

/// One light span.
///
/// Frames live in [`arena`] slots that are never freed, only reused: a stale id
/// (kept by a caller past its span's close) names a valid frame of a later span,
/// or none once the slot's generation moved on, never freed memory.
#[derive(Default)]
pub(crate) struct Frame {
    /// The span's metadata (null: a free slot). Only ever a `&'static Metadata`.
    meta: AtomicPtr<Metadata<'static>>,
    /// Bumped when the slot is freed: ids of earlier spans stop naming it.
    generation: AtomicU32,
    fields: Mutex<RawFields>,
    /// A sampled call's span data (`crate::otel::bridge`).
    otel: Mutex<Option<Box<OtelFrame>>>,
    refs: AtomicUsize,
}

impl Frame {
    pub(crate) fn name(&self) -> &'static str {
        self.meta().map_or("", |m| m.name())
    }

    pub(crate) fn meta(&self) -> Option<&'static Metadata<'static>> {
        let meta = self.meta.load(Ordering::Acquire);
        #[allow(unsafe_code)]
        // SAFETY: `meta` is null or was stored from a `&'static Metadata<'static>`
        // (`create`), which lives for the whole process and is only ever read.
        unsafe {
            meta.as_ref()
        }
    }

    #[inline]
    pub(crate) fn fields(&self) -> std::sync::MutexGuard<'_, RawFields> {
        self.fields.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The fields, unless they are being recorded right now. Recording formats user
    /// values (`Display`, `Debug`) with the fields locked; a value whose formatting
    /// logs, or records into the same span, comes back here on the same thread,
    /// where waiting for the lock would never end.
    pub(crate) fn try_fields(&self) -> Option<std::sync::MutexGuard<'_, RawFields>> {
        try_lock(&self.fields)
    }

    /// The span data, unless it is being recorded right now (see [`Frame::try_fields`]).
    pub(crate) fn try_otel(&self) -> Option<std::sync::MutexGuard<'_, Option<Box<OtelFrame>>>> {
        try_lock(&self.otel)
    }

    /// Runs `f` on a sampled frame's span data; nothing for an unsampled frame, or
    /// while the span data is busy (see [`Frame::try_fields`]).
    pub(crate) fn with_span_data(&self, f: impl FnOnce(&mut OtelFrame)) {
        if let Some(mut otel) = self.try_otel() {
            if let Some(otel) = otel.as_mut() {
                f(otel);
            }
        }
    }

    /// The span data of a sampled frame (`None` inside: an unsampled one).
    pub(crate) fn otel(&self) -> std::sync::MutexGuard<'_, Option<Box<OtelFrame>>> {
        self.otel.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Empties a slot whose last reference is gone (keeps the fields' capacity).
    /// Only a sampled frame has span data to drop.
    #[inline]
    fn clear(&self, sampled: bool) {
        self.fields().clear();
        if sampled {
            *self.otel() = None;
        }
        self.meta.store(std::ptr::null_mut(), Ordering::Release);
        self.generation.fetch_add(1, Ordering::Release);
    }
}

/// The lock unless it is held (a poisoned one is taken: frames hold plain data).
fn try_lock<T>(mutex: &Mutex<T>) -> Option<std::sync::MutexGuard<'_, T>> {
    match mutex.try_lock() {
        Ok(guard) => Some(guard),
        Err(std::sync::TryLockError::Poisoned(e)) => Some(e.into_inner()),
        Err(std::sync::TryLockError::WouldBlock) => None,
    }
}

/// Where frames live: chunks of slots, allocated as needed and never freed, and
/// free lists of slot indices, one per thread (no lock, no atomic read-modify-write
/// on the common path) plus a shared one that threads fill when theirs grows long
/// and take from when theirs is empty.
///
/// Replaces a `sharded-slab` pool: its create, get and clear (with their generation
/// and lifecycle CAS loops) were ~400 of the ~1,400 instructions of an unsampled
/// `#[instrumented]` call (callgrind).
mod arena {
    use std::cell::RefCell;
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::{Mutex, OnceLock};

    use super::Frame;

    /// Slots per chunk.
    const CHUNK: usize = 1024;
    /// Chunks at most: 4 M frames alive at once (beyond it, spans are ordinary ones).
    const CHUNKS: usize = 4096;
    /// Bits of a slot index in a key; the generation takes the bits above.
    pub(super) const INDEX_BITS: u32 = 22;
    /// Indices a thread takes from the shared list (or from fresh slots) at once.
    const BATCH: usize = 64;
    /// A thread's list longer than this gives half to the shared one.
    const LOCAL_MAX: usize = 4 * BATCH;

    static SLOTS: [OnceLock<Box<[Frame]>>; CHUNKS] = [const { OnceLock::new() }; CHUNKS];
    /// Slots never used yet start here.
    static FRESH: AtomicU32 = AtomicU32::new(0);
    static SHARED: Mutex<Vec<u32>> = Mutex::new(Vec::new());

    /// A thread's free list; what is left in it goes back to the shared one when the
    /// thread exits.
    struct Local(Vec<u32>);

    impl Drop for Local {
        fn drop(&mut self) {
            give_back(std::mem::take(&mut self.0));
        }
    }

    thread_local! {
        static LOCAL: RefCell<Local> = const { RefCell::new(Local(Vec::new())) };
    }

    fn give_back(indices: Vec<u32>) {
        if !indices.is_empty() {
            let mut shared = SHARED.lock().unwrap_or_else(|e| e.into_inner());
            shared.extend(indices);
        }
    }

    /// Slots handed out so far.
    #[cfg(test)]
    pub(super) fn fresh() -> u32 {
        FRESH.load(Ordering::Relaxed)
    }

    /// The slot at `index` (`None`: beyond the slots handed out).
    #[inline]
    pub(super) fn slot(index: u32) -> Option<&'static Frame> {
        let index = index as usize;
        SLOTS
            .get(index / CHUNK)?
            .get()
            .and_then(|chunk| chunk.get(index % CHUNK))
    }

    /// A free slot's index (`None`: every slot is in use). Inlined: the common case
    /// is a pop from this thread's list.
    #[inline]
    pub(super) fn take() -> Option<u32> {
        let popped = LOCAL.try_with(|l| l.try_borrow_mut().ok().and_then(|mut l| l.0.pop()));
        match popped {
            Ok(Some(index)) => Some(index),
            _ => take_slow(),
        }
    }

    /// [`take`] when this thread's list is empty (or the thread is exiting).
    #[inline(never)]
    fn take_slow() -> Option<u32> {
        let local = LOCAL.try_with(|l| {
            let mut l = l.borrow_mut();
            if let Some(index) = l.0.pop() {
                return Some(index);
            }
            refill(&mut l.0);
            l.0.pop()
        });
        match local {
            Ok(index) => index,
            // The thread is exiting: one index straight from the shared list.
            Err(_) => {
                let mut batch = Vec::new();
                refill(&mut batch);
                let index = batch.pop();
                give_back(batch);
                index
            }
        }
    }

    /// Frees `index` (its frame already cleared). Inlined: the common case is a
    /// push onto this thread's list.
    #[inline]
    pub(super) fn put(index: u32) {
        let pushed = LOCAL
            .try_with(|l| match l.try_borrow_mut() {
                Ok(mut l) if l.0.len() < LOCAL_MAX => {
                    l.0.push(index);
                    true
                }
                _ => false,
            })
            .unwrap_or(false);
        if !pushed {
            put_slow(index);
        }
    }

    /// [`put`] when this thread's list is long (or the thread is exiting).
    #[inline(never)]
    fn put_slow(index: u32) {
        let kept = LOCAL.try_with(|l| {
            let mut l = l.borrow_mut();
            l.0.push(index);
            if l.0.len() > LOCAL_MAX {
                let half = l.0.len() / 2;
                let rest = l.0.split_off(half);
                give_back(rest);
            }
        });
        if kept.is_err() {
            give_back(vec![index]);
        }
    }

    /// Fills an empty list with up to [`BATCH`] indices: from the shared list, or
    /// fresh slots (allocating their chunk).
    fn refill(list: &mut Vec<u32>) {
        {
            let mut shared = SHARED.lock().unwrap_or_else(|e| e.into_inner());
            let from = shared.len().saturating_sub(BATCH);
            list.extend(shared.drain(from..));
        }
        if !list.is_empty() {
            return;
        }
        let limit = (CHUNK * CHUNKS) as u32;
        let Ok(first) = FRESH.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
            (n < limit).then(|| n.saturating_add(BATCH as u32).min(limit))
        }) else {
            return;
        };
        let last = first.saturating_add(BATCH as u32).min(limit);
        let chunks = (first as usize / CHUNK)..=((last as usize - 1) / CHUNK);
        for chunk in &SLOTS[chunks] {
            chunk.get_or_init(|| (0..CHUNK).map(|_| Frame::default()).collect());
        }
        // Popped from the end: lowest index first.
        list.extend((first..last).rev());
    }
}

// Ids. The registry's ids are its sharded-slab keys plus one; bits 38..51 of a
// key hold the index of the thread that allocated it, below 4,096
// (`DefaultConfig`). A light id has all thirteen of those bits set, which no
// registry id has, and its frame's key below them: the slot index, then the
// slot's generation.
const TAG: u64 = 0x1FFF << 38;
const KEY_MASK: u64 = (1 << 38) - 1;
/// Set in the id of a sampled frame (above the tag; registry ids are told apart by
/// the tag alone).
const SAMPLED: u64 = 1 << 52;
const INDEX_MASK: u64 = (1 << arena::INDEX_BITS) - 1;

/// `id` as a number (`Id::into_u64` is not inlined across crates; this is).
#[inline]
pub(crate) fn raw_id(id: &Id) -> u64 {
    id.into_non_zero_u64().get()
}

/// The id numbered `raw` (never 0 here: ids are made by [`encode`] and the
/// registry, both non-zero).
#[inline]
fn id_from(raw: u64) -> Id {
    Id::from_non_zero_u64(std::num::NonZeroU64::new(raw).unwrap_or(std::num::NonZeroU64::MIN))
}

#[inline]
fn encode(key: u64, sampled: bool) -> Option<Id> {
    let flag = if sampled { SAMPLED } else { 0 };
    (key <= KEY_MASK).then(|| id_from(((key | TAG) + 1) | flag))
}

#[inline]
fn decode(id: &Id) -> Option<u64> {
    let raw = raw_id(id).wrapping_sub(1);
    (raw & TAG == TAG).then_some(raw & KEY_MASK)
}

/// A frame's key: its slot index, and the slot's generation above it.
#[inline]
fn key(index: u32, generation: u32) -> u64 {
    let generation = u64::from(generation) & (KEY_MASK >> arena::INDEX_BITS);
    (generation << arena::INDEX_BITS) | u64::from(index)
}

/// The slot index of a key, and its frame while the key's generation is current.
fn lookup(key: u64) -> Option<(u32, &'static Frame)> {
    let index = (key & INDEX_MASK) as u32;
    let frame = arena::slot(index)?;
    let generation = u64::from(frame.generation.load(Ordering::Acquire));
    let current = generation & (KEY_MASK >> arena::INDEX_BITS);
    (current == key >> arena::INDEX_BITS).then_some((index, frame))
}

/// Whether `id` is a light span's.
#[inline]
pub(crate) fn is_light(id: &Id) -> bool {
    raw_id(id).wrapping_sub(1) & TAG == TAG
}

/// Whether `id` is a sampled light span's (its data goes to the trace bridge).
#[inline]
pub(crate) fn is_sampled_light(id: &Id) -> bool {
    is_light(id) && raw_id(id) & SAMPLED != 0
}

/// The frame of a light id (`None`: its span was closed).
pub(crate) fn frame(id: &Id) -> Option<&'static Frame> {
    lookup(decode(id)?).map(|(_, frame)| frame)
}

thread_local! {
    /// Set by the head sampler when the span being entered is sampled.
    static ENTERING_SAMPLED: Cell<bool> = const { Cell::new(false) };
    /// The spans entered on this thread, light and registry ones, innermost last.
    static STACK: RefCell<Vec<Entry>> = const { RefCell::new(Vec::new()) };
}

#[derive(Clone, Copy)]
struct Entry {
    id: u64,
    /// A light span's frame (`None`: a registry span, or a light id whose span was
    /// closed): kept here so that `Span::current()`, the carrier's records and log
    /// lines need not look the id up.
    frame: Option<&'static Frame>,
    light: bool,
    sampled: bool,
    /// Entered again while already on the stack (the registry skips these too).
    duplicate: bool,
}

/// A light span of an unsampled call.
pub(crate) const UNSAMPLED: u8 = 1;
/// A light span of a sampled call, exported through `crate::otel::bridge`.
pub(crate) const SAMPLED_FRAME: u8 = 2;

/// Whether sampled calls get light frames exported by the bridge.
static BRIDGE: AtomicBool = AtomicBool::new(false);

pub(crate) fn activate_bridge() {
    BRIDGE.store(true, Ordering::Release);
}

/// Builds a light frame and returns its id (`None`: build an ordinary span).
/// `fill` records the values the span starts with into its (empty) fields; `otel`
/// is the span data of a sampled call.
#[inline]
pub(crate) fn create(
    meta: &'static Metadata<'static>,
    fill: impl FnOnce(&mut RawFields),
    otel: Option<Box<OtelFrame>>,
) -> Option<(Id, &'static Frame)> {
    let sampled = otel.is_some();
    let index = arena::take()?;
    let Some(frame) = arena::slot(index) else {
        arena::put(index);
        return None;
    };
    fill(&mut frame.fields());
    if let Some(otel) = otel {
        *frame.otel() = Some(otel);
    }
    frame.refs.store(1, Ordering::Relaxed);
    let meta: *const Metadata<'static> = meta;
    frame.meta.store(meta.cast_mut(), Ordering::Release);
    let generation = frame.generation.load(Ordering::Relaxed);
    Some((encode(key(index, generation), sampled)?, frame))
}

pub(crate) fn clone(id: &Id) {
    if let Some(frame) = frame(id) {
        frame.refs.fetch_add(1, Ordering::Relaxed);
    }
}

/// Drops one reference; frees the frame with the last. Returns whether it was the last.
pub(crate) fn release(id: &Id) -> bool {
    let Some((index, frame)) = decode(id).and_then(lookup) else {
        return false;
    };
    release_frame(id, index, frame)
}

/// [`release`] by the owner of a reference who kept the frame (`crate::call_span`):
/// no slot lookup, the reference keeps the frame's generation current.
#[inline]
pub(crate) fn release_owned(id: &Id, frame: &'static Frame) -> bool {
    let Some(key) = decode(id) else { return false };
    release_frame(id, (key & INDEX_MASK) as u32, frame)
}

#[inline]
fn release_frame(id: &Id, index: u32, frame: &'static Frame) -> bool {
    if frame.refs.fetch_sub(1, Ordering::AcqRel) != 1 {
        return false;
    }
    let sampled = is_sampled_light(id);
    if sampled {
        finish_span_data(frame);
    }
    frame.clear(sampled);
    arena::put(index);
    true
}

/// A sampled frame's span data goes to the export queue (out of line: most frames
/// are not sampled).
#[inline(never)]
fn finish_span_data(frame: &Frame) {
    let otel = frame.otel().take();
    if let Some(otel) = otel {
        otel.finish();
    }
}

/// Restores what [`begin_call`] forced on the head sampler once the call site's span
/// exists.
pub(crate) struct Scope {
    forced: Option<Option<Option<bool>>>,
}

impl Drop for Scope {
    #[inline]
    fn drop(&mut self) {
        if let Some(previous) = self.forced {
            crate::otel::head::restore_remote_parent(previous);
        }
    }
}

/// How an `#[instrumented]` call's span is built ([`begin_call`]).
pub(crate) enum Start {
    /// As a light frame, by the call site itself (`crate::call_span`), without the
    /// dispatcher: an unsampled call under the runtime's own subscriber.
    Direct,
    /// As a light frame with span data for the bridge, by the call site itself: a
    /// sampled call under the runtime's own subscriber, the bridge installed.
    DirectSampled,
    /// Not at all: the log level disables it.
    Disabled,
    /// Through `tracing`, as an ordinary span; the scope restores what was forced
    /// on the head sampler once the span exists.
    Tracing(Scope),
}

/// Called by an `#[instrumented]` call site before it builds its span: decides
/// whether the span is sampled, and whether the filters alone decide it. Then the
/// call site builds a light frame itself (with span data for the bridge when
/// sampled), or no span, or an ordinary span through `tracing` (another
/// subscriber is current, or the filters need the layers).
#[inline]
pub(crate) fn begin_call(
    meta: &'static Metadata<'static>,
    verdict: &crate::call_span::SpanVerdict,
) -> Start {
    let mut scope = Scope { forced: None };
    if !ACTIVE.load(Ordering::Relaxed) {
        return Start::Tracing(scope);
    }
    let current = crate::subscriber::is_current();
    // Disabled either way (a `debug` span under `info`, say): no sampling decision,
    // no look at the span stack.
    if current && crate::subscriber::cached_disabled(verdict) {
        return Start::Disabled;
    }
    let sampled = match innermost() {
        Some(entry) => entry.sampled,
        None => {
            let sampled = crate::otel::head::roll(ROOT_THRESHOLD.load(Ordering::Relaxed));
            if sampled {
                // The head sampler must keep the root this roll kept, when the span
                // goes to the registry after all (an ordinary span, below).
                scope.forced = Some(crate::otel::head::force_remote_parent(Some(true)));
            }
            sampled
        }
    };
    if current {
        if !sampled {
            match crate::subscriber::direct_verdict(meta, UNSAMPLED, &verdict.unsampled) {
                Some(true) => return Start::Direct,
                Some(false) => return Start::Disabled,
                // Not decided by the levels alone: the subscriber's filters decide.
                None => {}
            }
        } else if BRIDGE.load(Ordering::Relaxed) {
            // The span never reaches the registry: what `scope` forced on the head
            // sampler for it is put back when `scope` drops here.
            match crate::subscriber::direct_verdict(meta, SAMPLED_FRAME, &verdict.sampled) {
                Some(true) => return Start::DirectSampled,
                Some(false) => return Start::Disabled,
                None => {}
            }
        }
    }
    Start::Tracing(scope)
}

/// Called by the head sampler's `on_enter`: the span being entered is sampled.
pub(crate) fn entering_sampled() {
    let _ = ENTERING_SAMPLED.try_with(|c| c.set(true));
}

pub(crate) fn push(id: &Id, light: bool) {
    let (sampled, frame) = if light {
        (is_sampled_light(id), frame(id))
    } else {
        let sampled = ENTERING_SAMPLED
            .try_with(|c| c.replace(false))
            .unwrap_or(false);
        (sampled, None)
    };
    push_entry(id, frame, light, sampled);
}

/// Pushes a light frame whose kind the caller knows (`crate::call_span`).
#[inline]
pub(crate) fn push_light(id: &Id, frame: &'static Frame, sampled: bool) {
    push_entry(id, Some(frame), true, sampled);
}

fn push_entry(id: &Id, frame: Option<&'static Frame>, light: bool, sampled: bool) {
    let raw = raw_id(id);
    let _ = STACK.try_with(|s| {
        let mut stack = s.borrow_mut();
        let duplicate = stack.iter().any(|e| e.id == raw && !e.duplicate);
        stack.push(Entry {
            id: raw,
            frame,
            light,
            sampled,
            duplicate,
        });
    });
}

pub(crate) fn pop(id: &Id) {
    let raw = raw_id(id);
    let _ = STACK.try_with(|s| {
        let mut stack = s.borrow_mut();
        // Spans are usually exited in the reverse order of entering.
        if stack.last().is_some_and(|e| e.id == raw) {
            stack.pop();
        } else if let Some(i) = stack.iter().rposition(|e| e.id == raw) {
            stack.remove(i);
        }
    });
}

impl Entry {
    /// The light frame of this entry while its span is open: a frame closed while
    /// still entered (a leaked guard) may hold a later span by now, which its
    /// generation tells.
    #[inline]
    fn live_frame(&self) -> Option<&'static Frame> {
        let frame = self.frame?;
        let key = decode(&id_from(self.id))?;
        let generation = u64::from(frame.generation.load(Ordering::Acquire));
        (generation & (KEY_MASK >> arena::INDEX_BITS) == key >> arena::INDEX_BITS).then_some(frame)
    }
}

/// The innermost entered span (entries re-entered while on the stack skipped).
fn innermost() -> Option<Entry> {
    STACK
        .try_with(|s| s.borrow().iter().rev().find(|e| !e.duplicate).copied())
        .ok()
        .flatten()
}

/// The innermost entered span if it is light, and whether it is sampled.
pub(crate) fn innermost_light() -> Option<(Id, bool)> {
    innermost()
        .filter(|e| e.light)
        .map(|e| (id_from(e.id), e.sampled))
}

/// Records `value` under `name` into the innermost entered span if it is a light
/// frame, as `Span::record` would through the carrier (a name the span does not have
/// is ignored; a busy frame drops the record, see [`Frame::try_fields`]). `false`:
/// the innermost span is not light (or nothing is entered); nothing was done.
// Unused with the `disabled` feature: `crate::call_span::record_current` goes straight to
// `tracing` then.
#[cfg_attr(feature = "disabled", allow(dead_code))]
pub(crate) fn record_in_innermost(name: &str, value: &dyn tracing::Value) -> bool {
    let Some(entry) = innermost() else {
        return false;
    };
    if !entry.light {
        return false;
    }
    // A frame closed while entered: its span is gone, the record with it.
    let Some(frame) = entry.live_frame() else {
        return true;
    };
    let Some(field) = frame.meta().and_then(|meta| meta.fields().field(name)) else {
        return true;
    };
    if let Some(mut fields) = frame.try_fields() {
        value.record(&field, &mut *fields);
    }
    if entry.sampled {
        frame.with_span_data(|otel| otel.record(|v| value.record(&field, v)));
    }
    true
}

/// The frame of the innermost entered span if it is light.
pub(crate) fn current_light_frame() -> Option<&'static Frame> {
    innermost().filter(|e| e.light).and_then(|e| e.live_frame())
}

/// When the innermost entered span is light: whether it is sampled (a span
/// created now follows it). `None`: it is not light, or nothing is entered.
pub(crate) fn current_light_sampled() -> Option<bool> {
    innermost_light().map(|(_, sampled)| sampled)
}

thread_local! {
    /// The contexts attached by the sampled frames entered on this thread.
    static ATTACHED: RefCell<Vec<(u64, opentelemetry::ContextGuard)>> = const { RefCell::new(Vec::new()) };
}

/// Entering a sampled frame: its context becomes the current one (the parent of
/// spans created inside, the trace id of log lines) and its timings advance.
pub(crate) fn enter_sampled(id: &Id) {
    let Some(frame) = frame(id) else { return };
    let cx = {
        let mut otel = frame.otel();
        let Some(otel) = otel.as_mut() else { return };
        otel.entered();
        otel.context().clone()
    };
    let guard = cx.attach();
    let _ = ATTACHED.try_with(|a| a.borrow_mut().push((raw_id(id), guard)));
}

pub(crate) fn exit_sampled(id: &Id) {
    let raw = raw_id(id);
    let guard = ATTACHED
        .try_with(|a| {
            let mut attached = a.borrow_mut();
            let i = attached.iter().rposition(|(g, _)| *g == raw)?;
            Some(attached.remove(i))
        })
        .ok()
        .flatten();
    drop(guard);
    if let Some(frame) = frame(id) {
        if let Some(otel) = frame.otel().as_mut() {
            otel.exited();
        }
    }
}

/// The light frames entered on this thread, innermost last, each with the
/// registry span entered just before it (`None`: none).
pub(crate) fn entered_frames(out: &mut Vec<(Option<u64>, Id)>) {
    let _ = STACK.try_with(|s| {
        let stack = s.borrow();
        if !stack.iter().any(|e| e.light) {
            return;
        }
        let mut registry = None;
        for e in stack.iter() {
            if e.light {
                out.push((registry, id_from(e.id)));
            } else if !e.duplicate {
                registry = Some(e.id);
            }
        }
    });
}

/// Finds the entered light frame whose metadata has `callsite` (records made
/// through `Span::current()`, which names the carrier).
pub(crate) fn entered_frame_of(
    callsite: &tracing::callsite::Identifier,
) -> Option<(Id, &'static Frame)> {
    STACK
        .try_with(|s| {
            s.borrow()
                .iter()
                .rev()
                .filter(|e| e.light)
                .filter_map(|e| Some((id_from(e.id), e.live_frame()?)))
                .find(|(_, f)| f.meta().is_some_and(|m| &m.callsite() == callsite))
        })
        .ok()
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn light_ids_round_trip_and_never_look_like_registry_ids() {
        for key in [0u64, 1, 12345, (1 << 38) - 1] {
            for sampled in [false, true] {
                let id = encode(key, sampled).expect("a key below 2^38 encodes");
                assert!(is_light(&id));
                assert_eq!(is_sampled_light(&id), sampled);
                assert_eq!(decode(&id), Some(key));
            }
        }
        assert!(encode(1 << 38, false).is_none());
        // Registry ids: sharded-slab keys + 1 with a thread index below 4,096.
        for tid in [0u64, 1, 17, 4095] {
            for generation in [0u64, 1, 0x1FFF] {
                for addr in [0u64, 31, (1 << 38) - 1] {
                    let key = addr | (tid << 38) | (generation << 51);
                    assert!(!is_light(&Id::from_u64(key + 1)), "{key:#x}");
                }
            }
        }
    }

    #[test]
    fn frames_are_freed_with_their_last_reference() {
        let id = create(crate::light::carrier_meta(), |f| f.set_u64("a", 1), None)
            .unwrap()
            .0;
        clone(&id);
        assert!(!release(&id));
        assert_eq!(frame(&id).unwrap().fields().len(), 1);
        assert!(release(&id));
        assert!(frame(&id).is_none());
    }

    #[test]
    fn a_frame_closed_while_entered_is_not_read_through_the_stack() {
        let meta = crate::light::carrier_meta();
        let (id, frame) = create(meta, |f| f.set_u64("a", 1), None).unwrap();
        push_light(&id, frame, false);
        assert!(current_light_frame().is_some_and(|f| std::ptr::eq(f, frame)));
        assert!(entered_frame_of(&meta.callsite()).is_some_and(|(i, _)| i == id));
        // Closed while still on the stack (a leaked guard); the slot then holds a
        // later span.
        assert!(release_owned(&id, frame));
        let (later, reused) = create(meta, |_| {}, None).unwrap();
        assert!(
            std::ptr::eq(reused, frame),
            "this thread's free list reuses the slot"
        );
        assert!(current_light_frame().is_none());
        assert!(entered_frame_of(&meta.callsite()).is_none());
        pop(&id);
        assert!(release(&later));
    }

    #[test]
    fn a_freed_slot_is_reused_under_a_new_id_and_the_old_id_names_nothing() {
        let meta = crate::light::carrier_meta();
        let first = create(meta, |f| f.set_u64("a", 1), None).unwrap().0;
        assert!(release(&first));
        let second = create(meta, |_| {}, None).unwrap().0;
        // The same slot (this thread's free list), a new generation.
        let index = |id: &Id| decode(id).unwrap() & INDEX_MASK;
        assert_eq!(index(&first), index(&second));
        assert_ne!(first, second);
        assert!(frame(&first).is_none());
        // A stale id's clone and close change nothing.
        clone(&first);
        assert!(!release(&first));
        let frame2 = frame(&second).unwrap();
        assert!(frame2.fields().is_empty(), "the slot was cleared");
        assert_eq!(frame2.name(), "zs.light");
        assert!(release(&second));
        assert!(frame(&second).is_none());
    }

    #[test]
    fn frames_freed_on_another_thread_are_reused() {
        let meta = crate::light::carrier_meta();
        // More than a chunk's slots, alive at once.
        let ids: Vec<Id> = (0..3000u64)
            .map(|i| create(meta, |f| f.set_u64("i", i), None).unwrap().0)
            .collect();
        let distinct: std::collections::HashSet<u64> = ids.iter().map(Id::into_u64).collect();
        assert_eq!(distinct.len(), ids.len());
        for (i, id) in ids.iter().enumerate() {
            assert_eq!(
                frame(id).unwrap().fields().iter().next(),
                Some(("i", crate::raw_fields::RawValue::U64(i as u64)))
            );
        }
        let freed = ids.clone();
        std::thread::spawn(move || {
            for id in &freed {
                assert!(release(id));
            }
        })
        .join()
        .unwrap();
        assert!(ids.iter().all(|id| frame(id).is_none()));
        // The other thread's free list went to the shared one when it exited:
        // new frames reuse those slots instead of fresh ones.
        let fresh_before = arena_fresh();
        let again: Vec<Id> = (0..3000)
            .map(|_| create(meta, |_| {}, None).unwrap().0)
            .collect();
        assert!(
            arena_fresh() - fresh_before < 3000,
            "freed slots were reused"
        );
        for id in &again {
            assert!(release(id));
        }
    }

    fn arena_fresh() -> u32 {
        arena::fresh()
    }

    #[test]
    fn registry_ids_from_many_threads_are_not_light() {
        use tracing::Subscriber;
        let registry = std::sync::Arc::new(tracing_subscriber::registry());
        let handles: Vec<_> = (0..8)
            .map(|_| {
                let registry = registry.clone();
                std::thread::spawn(move || {
                    static CS: tracing::callsite::DefaultCallsite =
                        tracing::callsite::DefaultCallsite::new(&META);
                    static META: Metadata<'static> = tracing::metadata! {
                        name: "t",
                        target: "t",
                        level: tracing::Level::INFO,
                        fields: &[],
                        callsite: &CS,
                        kind: tracing::metadata::Kind::SPAN,
                    };
                    (0..1000).any(|_| {
                        let values = META.fields().value_set(&[]);
                        let id = registry.new_span(&tracing::span::Attributes::new(&META, &values));
                        let light = is_light(&id);
                        registry.try_close(id);
                        light
                    })
                })
            })
            .collect();
        for h in handles {
            assert!(!h.join().unwrap());
        }
    }
}
