//! What a server received: one record per request, in-flight accounting and
//! detection of handlers dropped before they completed.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use http::{HeaderMap, Method, Request, Version};

/// How many requests a server remembers; older records are discarded first.
pub const RECORD_LIMIT: usize = 100_000;

/// One request as received by a mock server.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// The request method.
    pub method: Method,
    /// The HTTP version it came in (HTTP/1.1 or HTTP/2).
    pub version: Version,
    /// Path and query exactly as received, e.g. `/products/7?lang=en`.
    pub path_and_query: String,
    /// Every request header.
    pub headers: HeaderMap,
    /// When the handler started.
    pub arrived: Instant,
    /// When the handler finished or was cancelled; `None` while in flight.
    pub completed: Option<Instant>,
    /// Whether the handler was dropped before completing (the client went
    /// away or the server stopped).
    pub cancelled: bool,
}

/// Shared between a server's handlers and its [`crate::MockServer`] handle.
#[derive(Debug, Default)]
pub(crate) struct Recorder {
    log: Mutex<Log>,
    in_flight: AtomicUsize,
    peak: AtomicUsize,
    cancelled: AtomicUsize,
}

/// The most recent records and the sequence number of the oldest one.
#[derive(Debug, Default)]
struct Log {
    entries: VecDeque<Recorded>,
    first: usize,
}

/// Marks a handler as in flight until it finishes or is dropped.
#[derive(Debug)]
pub(crate) struct InFlight<'r> {
    recorder: &'r Recorder,
    seq: usize,
    finished: bool,
}

impl Recorder {
    /// Records the arrival of `request` and counts it as in flight.
    pub(crate) fn begin<B>(&self, request: &Request<B>) -> InFlight<'_> {
        let record = Recorded {
            method: request.method().clone(),
            version: request.version(),
            path_and_query: request.uri().path_and_query().map_or("", |path| path.as_str()).to_owned(),
            headers: request.headers().clone(),
            arrived: Instant::now(),
            completed: None,
            cancelled: false,
        };
        let seq = self.lock().push(record);
        let now = self.in_flight.fetch_add(1, Ordering::Relaxed) + 1;
        self.peak.fetch_max(now, Ordering::Relaxed);
        InFlight { recorder: self, seq, finished: false }
    }

    /// A copy of the remembered records, oldest first.
    pub(crate) fn requests(&self) -> Vec<Recorded> {
        self.lock().entries.iter().cloned().collect()
    }

    /// How many requests arrived, those no longer remembered included.
    pub(crate) fn total(&self) -> usize {
        let log = self.lock();
        log.first + log.entries.len()
    }

    /// How many handlers were dropped before completing.
    pub(crate) fn cancelled(&self) -> usize {
        self.cancelled.load(Ordering::Relaxed)
    }

    /// The largest number of handlers that were in flight at once.
    pub(crate) fn peak_in_flight(&self) -> usize {
        self.peak.load(Ordering::Relaxed)
    }

    fn lock(&self) -> MutexGuard<'_, Log> {
        self.log.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Log {
    /// Appends `record` and returns its sequence number.
    fn push(&mut self, record: Recorded) -> usize {
        if self.entries.len() == RECORD_LIMIT {
            self.entries.pop_front();
            self.first += 1;
        }
        self.entries.push_back(record);
        self.first + self.entries.len() - 1
    }

    fn get_mut(&mut self, seq: usize) -> Option<&mut Recorded> {
        self.entries.get_mut(seq.checked_sub(self.first)?)
    }
}

impl InFlight<'_> {
    /// The handler completed; dropping the guard records it as such.
    pub(crate) fn finish(mut self) {
        self.finished = true;
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        let now = Instant::now();
        if let Some(record) = self.recorder.lock().get_mut(self.seq) {
            record.completed = Some(now);
            record.cancelled = !self.finished;
        }
        if !self.finished {
            self.recorder.cancelled.fetch_add(1, Ordering::Relaxed);
        }
        self.recorder.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use http::Request;

    use super::Recorder;

    #[test]
    fn finished_and_dropped_handlers_are_told_apart() {
        let recorder = Recorder::default();
        let request = Request::get("/a?b=c").header("x-k", "v").body(());
        let Ok(request) = request else {
            panic!("valid request");
        };
        let first = recorder.begin(&request);
        let second = recorder.begin(&request);
        first.finish();
        drop(second);
        let records = recorder.requests();
        assert_eq!(records.len(), 2);
        assert_eq!(records[0].path_and_query, "/a?b=c");
        assert_eq!(records[0].headers["x-k"], "v");
        assert!(records[0].completed.is_some() && !records[0].cancelled);
        assert!(records[1].completed.is_some() && records[1].cancelled);
        assert_eq!(recorder.cancelled(), 1);
        assert_eq!(recorder.peak_in_flight(), 2);
    }
}
