//! The runtime stall detector. Every request future is wrapped in [`Watched`], which notes in
//! its worker thread's slot when a poll starts and which request (its `request` span) is being
//! polled. A watchdog thread looks at the slots every quarter of `telemetry.stall_warning`:
//! a poll running longer than that means the task is not yielding — a blocking call or a long
//! computation on a worker thread, the async world's classic trap — so it logs a warning inside
//! that request's span (so the line carries its request id and route) and counts it in
//! `fanout_runtime_stalls_total`; when the poll ends, the total blocked time is logged too.
//! Cost on the hot path: per poll, one clock read and a few atomic stores. The warning carries
//! the request's fields when its `request` span is enabled (log level `info` or finer).

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

const STALLS: &str = "fanout_runtime_stalls_total";

/// The time base of the slots' timestamps.
fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

fn now_nanos() -> u64 {
    u64::try_from(epoch().elapsed().as_nanos()).unwrap_or(u64::MAX).max(1)
}

/// What one worker thread is polling.
#[derive(Debug, Default)]
struct Slot {
    /// When the current poll started (nanoseconds since [`epoch`]); 0 when idle.
    poll_started: AtomicU64,
    /// Whether the current poll was already reported as a stall.
    reported: AtomicBool,
    /// The id of the `request` span being polled (0: none, e.g. when the span is disabled).
    span: AtomicU64,
    /// Whether that span belongs to the tracing subscriber ([`super::otel::dispatch`]) rather
    /// than the global one.
    traced: AtomicBool,
}

/// Every worker thread's slot.
fn slots() -> &'static Mutex<Vec<Arc<Slot>>> {
    static SLOTS: OnceLock<Mutex<Vec<Arc<Slot>>>> = OnceLock::new();
    SLOTS.get_or_init(Mutex::default)
}

thread_local! {
    static SLOT: Arc<Slot> = {
        let slot = Arc::new(Slot::default());
        slots().lock().unwrap_or_else(PoisonError::into_inner).push(Arc::clone(&slot));
        slot
    };
}

pin_project_lite::pin_project! {
    /// A future whose polls are watched for stalls.
    #[derive(Debug)]
    pub struct Watched<F> {
        #[pin]
        inner: F,
        span: tracing::Span,
        traced: bool,
    }
}

/// Wraps `future`, attributing any stall to `span`; `traced` when the span was created under
/// the tracing subscriber (a sampled request).
pub fn watch<F: Future>(future: F, span: tracing::Span, traced: bool) -> Watched<F> {
    Watched { inner: future, span, traced }
}

impl<F: Future> Future for Watched<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        let (span, traced, inner) = (this.span, *this.traced, this.inner);
        SLOT.with(|slot| {
            let started = now_nanos();
            slot.span.store(span.id().map_or(0, |id| id.into_u64()), Ordering::Relaxed);
            slot.traced.store(traced, Ordering::Relaxed);
            slot.poll_started.store(started, Ordering::Release);
            let result = inner.poll(cx);
            slot.poll_started.store(0, Ordering::Release);
            if slot.reported.load(Ordering::Acquire) && slot.reported.swap(false, Ordering::AcqRel) {
                let blocked = Duration::from_nanos(now_nanos().saturating_sub(started));
                tracing::warn!(parent: &*span, blocked_ms = downstream::millis(blocked), "runtime unblocked");
            }
            result
        })
    }
}

/// The watchdog thread; it stops when this is dropped.
#[derive(Debug)]
pub struct StallDetector {
    stop: Arc<AtomicBool>,
}

impl StallDetector {
    /// Starts the watchdog for polls longer than `threshold`.
    pub fn start(threshold: Duration) -> std::io::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = Arc::clone(&stop);
        let period = (threshold / 4).max(Duration::from_millis(1));
        let threshold_nanos = u64::try_from(threshold.as_nanos()).unwrap_or(u64::MAX);
        ::metrics::describe_counter!(
            STALLS,
            "Polls that blocked a runtime worker longer than telemetry.stall_warning."
        );
        let stalls = ::metrics::counter!(STALLS);
        std::thread::Builder::new().name("stall-detector".to_owned()).spawn(move || {
            while !stopped.load(Ordering::Relaxed) {
                std::thread::sleep(period);
                let now = now_nanos();
                for slot in slots().lock().unwrap_or_else(PoisonError::into_inner).iter() {
                    let started = slot.poll_started.load(Ordering::Acquire);
                    if started == 0 || now.saturating_sub(started) < threshold_nanos {
                        continue;
                    }
                    if slot.reported.swap(true, Ordering::AcqRel) {
                        continue;
                    }
                    if slot.poll_started.load(Ordering::Acquire) != started {
                        // That poll ended meanwhile; a later one is not (yet) a stall.
                        slot.reported.store(false, Ordering::Release);
                        continue;
                    }
                    stalls.increment(1);
                    let blocked_ms = downstream::millis(Duration::from_nanos(now - started));
                    // The span stays open while its request is being polled, so its id is valid here.
                    let span = std::num::NonZeroU64::new(slot.span.load(Ordering::Relaxed)).map(tracing::Id::from_non_zero_u64);
                    let warn = || tracing::warn!(parent: span.clone(), blocked_ms, "runtime worker blocked: a task is not yielding");
                    // A span id means something only to the subscriber that created it.
                    match super::otel::dispatch().filter(|_| slot.traced.load(Ordering::Relaxed)) {
                        Some(dispatch) => tracing::dispatcher::with_default(dispatch, warn),
                        None => warn(),
                    }
                }
            }
        })?;
        Ok(Self { stop })
    }
}

impl Drop for StallDetector {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}
