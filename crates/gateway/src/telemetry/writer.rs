//! The non-blocking log writer: every log line (the per-request `request` line and every other
//! `tracing` line) is appended to one bounded in-memory buffer, and a thread of its own writes
//! that buffer out, many lines per `write(2)`. A request thread never waits on stdout: it takes
//! an uncontended lock, copies its line and, at most once per batch, wakes the writer thread.
//!
//! - **Batching.** After the first line of a batch the writer thread waits [`LINGER`] (or until
//!   the buffer is half full) so the lines of those milliseconds leave in one write: at most
//!   ~100 writes and ~100 wake-ups a second whatever the request rate, where writing each line
//!   to stdout cost one `write(2)` per request. A line reaches stdout at most ~[`LINGER`] late.
//! - **Bound.** At most [`BUFFER_BYTES`] of lines wait; while stdout is slower than the lines
//!   (a stalled log collector), a line that does not fit is dropped, never half-written, and
//!   counted ([`LogWriter::dropped_lines`], the `fanout_log_lines_dropped_total` metric): the
//!   gateway keeps serving instead of blocking on its log. Memory bound: the buffer filling and
//!   the one being written, 2 × [`BUFFER_BYTES`].
//! - **Flush.** Dropping the [`Flush`] guard writes every line still waiting and stops the
//!   thread: `main` holds it until the server has stopped, so the last lines (the last requests',
//!   `stopped`) are written before the process exits.

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tracing_subscriber::fmt::MakeWriter;

/// Most bytes of lines waiting to be written. A `request` line is ~250–400 bytes, so 1 MiB
/// holds ~3,000 of them: about a second of this gateway's traffic at its measured ~3k pages/s
/// per two cores, enough to ride out a log collector's hiccup, while a longer stall drops
/// lines (counted) rather than growing memory or blocking requests. Steady state, a batch is
/// [`LINGER`] of lines (~10 KB at 3k requests/s).
pub const BUFFER_BYTES: usize = 1 << 20;

/// How long the writer waits after a batch's first line for more lines to join it.
pub const LINGER: Duration = Duration::from_millis(10);

/// A handle that appends lines to the buffer; cheap to clone. Also the `tracing` formatter's
/// writer ([`MakeWriter`]): it writes each formatted line with one `write_all`.
#[derive(Clone, Debug)]
pub struct LogWriter {
    shared: Arc<Shared>,
}

/// Stops the writer thread when dropped, after it has written every waiting line.
#[derive(Debug)]
pub struct Flush {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

#[derive(Debug)]
struct Shared {
    state: Mutex<State>,
    /// Wakes the writer thread.
    wake: Condvar,
    /// [`BUFFER_BYTES`], or less in tests.
    capacity: usize,
    /// Lines dropped because the buffer was full.
    dropped: AtomicU64,
}

#[derive(Debug, Default)]
struct State {
    /// Whole lines, waiting to be written.
    pending: Vec<u8>,
    /// The writer thread waits on `wake` and nobody has woken it yet.
    asleep: bool,
    /// [`Flush`] was dropped: write what is pending and stop.
    closing: bool,
}

/// Starts the writer thread, writing to `out`, with at most `capacity` bytes of lines waiting.
pub fn spawn(out: impl Write + Send + 'static, capacity: usize) -> std::io::Result<(LogWriter, Flush)> {
    let shared = Arc::new(Shared {
        state: Mutex::default(),
        wake: Condvar::new(),
        capacity,
        dropped: AtomicU64::new(0),
    });
    let writer = Arc::clone(&shared);
    let thread = std::thread::Builder::new().name("fanout-log".to_owned()).spawn(move || writer.run(out))?;
    Ok((LogWriter { shared: Arc::clone(&shared) }, Flush { shared, thread: Some(thread) }))
}

impl LogWriter {
    /// Queues one or more whole lines (each ending in `\n`), or drops them all and counts one
    /// dropped line when they do not fit.
    pub fn write_line(&self, line: &[u8]) {
        let shared = &*self.shared;
        let mut state = shared.lock();
        if state.pending.len() + line.len() > shared.capacity {
            drop(state);
            shared.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let first = state.pending.is_empty();
        state.pending.extend_from_slice(line);
        // Only the first line of a batch wakes the writer (then lingering), and a line that fills
        // half the buffer cuts the lingering short.
        let wake = state.asleep && (first || state.pending.len() >= shared.capacity / 2);
        if wake {
            state.asleep = false;
        }
        drop(state);
        if wake {
            shared.wake.notify_one();
        }
    }

    /// Lines dropped so far because the buffer was full.
    pub fn dropped_lines(&self) -> u64 {
        self.shared.dropped.load(Ordering::Relaxed)
    }
}

impl Write for &LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.write_line(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for LogWriter {
    type Writer = &'a LogWriter;

    fn make_writer(&'a self) -> Self::Writer {
        self
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The writer thread: waits for a first line, lingers, writes the batch; until closing.
    fn run(&self, mut out: impl Write) {
        let mut batch = Vec::new();
        let mut state = self.lock();
        loop {
            while state.pending.is_empty() && !state.closing {
                state.asleep = true;
                state = self.wake.wait(state).unwrap_or_else(PoisonError::into_inner);
            }
            let until = Instant::now() + LINGER;
            while !state.closing && state.pending.len() < self.capacity / 2 {
                let left = until.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    break;
                }
                state.asleep = true;
                state = match self.wake.wait_timeout(state, left) {
                    Ok((state, _)) => state,
                    Err(poisoned) => poisoned.into_inner().0,
                };
            }
            state.asleep = false;
            std::mem::swap(&mut state.pending, &mut batch);
            let closing = state.closing;
            drop(state);
            if !batch.is_empty() {
                // Nowhere to report a failed write to: the lines are lost, as with any logger.
                let _ = out.write_all(&batch).and_then(|()| out.flush());
                batch.clear();
            }
            state = self.lock();
            if closing && state.pending.is_empty() {
                return;
            }
        }
    }
}

impl Drop for Flush {
    fn drop(&mut self) {
        self.shared.lock().closing = true;
        self.shared.wake.notify_one();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    /// A sink that hands each write to the test and blocks the writer thread on its first
    /// write until the test says go.
    struct Gated {
        writes: mpsc::Sender<Vec<u8>>,
        go: Option<mpsc::Receiver<()>>,
    }

    impl Write for Gated {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            let _ = self.writes.send(buf.to_vec());
            if let Some(go) = self.go.take() {
                let _ = go.recv();
            }
            Ok(buf.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_full_buffer_drops_whole_lines_counts_them_and_flush_writes_the_rest() {
        let (writes, written) = mpsc::channel();
        let (go, gate) = mpsc::channel();
        let (writer, flush) = spawn(Gated { writes, go: Some(gate) }, 40).unwrap();
        writer.write_line(b"first\n");
        // The writer thread is now stuck writing `first`: the buffer fills behind it.
        assert_eq!(written.recv().unwrap(), b"first\n");
        for n in 0..10 {
            writer.write_line(format!("line {n}\n").as_bytes());
        }
        // 40 bytes hold five 7-byte lines; the other five are dropped whole.
        assert_eq!(writer.dropped_lines(), 5);
        go.send(()).unwrap();
        drop(flush);
        let rest: Vec<u8> = written.try_iter().flatten().collect();
        assert_eq!(String::from_utf8(rest).unwrap(), "line 0\nline 1\nline 2\nline 3\nline 4\n");
    }

    #[test]
    fn lines_queued_together_leave_in_one_write() {
        let (writes, written) = mpsc::channel();
        let (go, gate) = mpsc::channel();
        let (writer, flush) = spawn(Gated { writes, go: Some(gate) }, BUFFER_BYTES).unwrap();
        writer.write_line(b"first\n");
        assert_eq!(written.recv().unwrap(), b"first\n");
        for n in 0..100 {
            writer.write_line(format!("line {n}\n").as_bytes());
        }
        go.send(()).unwrap();
        drop(flush);
        let batches: Vec<Vec<u8>> = written.try_iter().collect();
        assert_eq!(batches.len(), 1, "100 waiting lines, one write");
        assert_eq!(batches[0].iter().filter(|b| **b == b'\n').count(), 100);
        assert_eq!(writer.dropped_lines(), 0);
    }
}
