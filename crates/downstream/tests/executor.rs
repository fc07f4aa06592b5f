//! The executor on tokio's paused clock, with stand-in requests whose exchange only waits:
//! when each call starts, how many requests of a list are in flight, which requests are shared,
//! and what a failed required call, a call timeout and the endpoint deadline do. Times are
//! exact: the paused clock moves only when every task waits.
#![allow(clippy::unwrap_used)]

use bytes::Bytes;
use compose::Graph;
use downstream::{
    CallError, CallOutcome, Exchanged, Execution, FanOut, Output, Request, RequestKey, Step, execute,
};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::time::Instant;

const MS: Duration = Duration::from_millis(1);
const DIGITS: [&str; 10] = ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"];

/// What the stand-in requests of one test did.
#[derive(Default)]
struct Log {
    exchanges: AtomicUsize,
    in_flight: AtomicUsize,
    most_in_flight: AtomicUsize,
    dropped: AtomicUsize,
}

/// A request whose exchange takes `takes`, then answers `answer`.
struct Standin {
    /// Requests with the same key are identical.
    key: usize,
    takes: Duration,
    timeout: Duration,
    answer: Result<&'static str, CallError>,
    log: Arc<Log>,
}

impl Standin {
    fn new(log: &Arc<Log>, key: usize, takes: Duration) -> Self {
        Standin { key, takes, timeout: Duration::from_secs(10), answer: Ok("{}"), log: Arc::clone(log) }
    }
}

/// Counts an exchange in flight while it lives; one dropped before it finished is counted too.
struct InFlight {
    log: Arc<Log>,
    finished: bool,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.log.in_flight.fetch_sub(1, Ordering::SeqCst);
        if !self.finished {
            self.log.dropped.fetch_add(1, Ordering::SeqCst);
        }
    }
}

impl<'a> Request<'a> for Standin {
    fn key(&self) -> RequestKey {
        (self.key, 0, Bytes::new())
    }

    fn span(&self) -> tracing::Span {
        tracing::Span::none()
    }

    fn limit(&self) -> Option<Duration> {
        Some(self.timeout)
    }

    async fn exchange(self, _deadline: Instant) -> Exchanged {
        self.log.exchanges.fetch_add(1, Ordering::SeqCst);
        let now = self.log.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.log.most_in_flight.fetch_max(now, Ordering::SeqCst);
        let mut in_flight = InFlight { log: Arc::clone(&self.log), finished: false };
        tokio::time::sleep(self.takes).await;
        in_flight.finished = true;
        let result = self.answer.map(|text| Bytes::from_static(text.as_bytes()));
        Exchanged::once(Some(200), result)
    }
}

/// Runs `graph` (calls by their dependencies) with `steps` made when each call is ready, and
/// returns the execution, when each call was ready and how long the whole took.
async fn run(
    deps: Vec<Vec<usize>>,
    required: &[bool],
    share_identical: bool,
    deadline: Duration,
    mut step: impl FnMut(usize) -> Step<Standin>,
) -> (Execution, Vec<Option<Duration>>, Duration) {
    let graph = Graph::new(deps).unwrap();
    let started = Instant::now();
    let mut ready = vec![None; graph.len()];
    let execution = execute(&graph, required, share_identical, 1 << 20, started + deadline, |call, _| {
        ready[call] = Some(started.elapsed());
        step(call)
    })
    .await;
    (execution, ready, started.elapsed())
}

fn outcome(execution: &Execution, call: usize) -> &CallOutcome {
    execution.outcomes[call].as_ref().unwrap()
}

#[tokio::test(start_paused = true)]
async fn each_call_starts_when_its_inputs_finish_not_in_waves() {
    // a (100 ms) and b (300 ms) start at once; c reads a, so it starts when a ends, while b
    // is still running; d reads c and b.
    let log = Arc::new(Log::default());
    let takes = [100, 300, 100, 50].map(|ms| ms * MS);
    let (execution, ready, took) =
        run(vec![vec![], vec![], vec![0], vec![2, 1]], &[false; 4], false, 10 * takes[1], |call| {
            Step::Call(Standin::new(&log, call, takes[call]))
        })
        .await;
    assert_eq!(ready, [Some(Duration::ZERO), Some(Duration::ZERO), Some(100 * MS), Some(300 * MS)]);
    assert_eq!(took, 350 * MS);
    assert!(execution.outcomes.iter().all(|o| o.as_ref().unwrap().result.is_ok()));
    assert_eq!(outcome(&execution, 2).elapsed, 100 * MS);
}

#[tokio::test(start_paused = true)]
async fn a_list_has_at_most_concurrency_requests_in_flight_and_keeps_its_order() {
    let log = Arc::new(Log::default());
    let (execution, _, took) = run(vec![vec![]], &[false], false, Duration::from_secs(10), |_| {
        Step::FanOut(FanOut {
            // Later elements answer sooner: the list still comes back in input order.
            requests: (0..10)
                .map(|i| {
                    Ok(Standin { answer: Ok(DIGITS[i]), ..Standin::new(&log, i, (100 - 5 * i as u32) * MS) })
                })
                .collect(),
            concurrency: 3,
            fail_on_element_error: false,
        })
    })
    .await;
    assert_eq!(log.most_in_flight.load(Ordering::SeqCst), 3);
    assert_eq!(log.exchanges.load(Ordering::SeqCst), 10);
    // Four rounds of at most three (buffered: a slot frees when the oldest request answers).
    assert!(took >= 4 * 55 * MS && took <= 4 * 100 * MS, "took {took:?}");
    let Ok(Output::List(elements)) = &outcome(&execution, 0).result else { panic!("not a list") };
    let texts: Vec<&[u8]> = elements.iter().map(|body| &body[..]).collect();
    assert_eq!(texts, DIGITS.map(str::as_bytes));
}

#[tokio::test(start_paused = true)]
async fn identical_requests_are_sent_once_when_sharing_is_on() {
    for (share, sent) in [(true, 1), (false, 2)] {
        let log = Arc::new(Log::default());
        let (execution, _, _) = run(vec![vec![], vec![]], &[false; 2], share, Duration::from_secs(1), |_| {
            Step::Call(Standin::new(&log, 7, 100 * MS))
        })
        .await;
        assert_eq!(log.exchanges.load(Ordering::SeqCst), sent, "sharing {share}");
        for call in 0..2 {
            assert!(matches!(&outcome(&execution, call).result, Ok(Output::Body(b)) if &b[..] == b"{}"));
        }
    }
}

#[tokio::test(start_paused = true)]
async fn a_failed_required_call_ends_the_execution_and_drops_the_others() {
    let log = Arc::new(Log::default());
    let (execution, _, took) =
        run(vec![vec![], vec![], vec![]], &[true, false, false], false, Duration::from_secs(10), |call| {
            Step::Call(match call {
                0 => Standin { answer: Err(CallError::Status(500)), ..Standin::new(&log, 0, 50 * MS) },
                other => Standin::new(&log, other, Duration::from_secs(1)),
            })
        })
        .await;
    assert_eq!(took, 50 * MS);
    assert_eq!(execution.failed_required, Some(0));
    assert!(execution.outcomes[1].is_none() && execution.outcomes[2].is_none());
    assert_eq!(log.dropped.load(Ordering::SeqCst), 2, "the other calls' exchanges are dropped");
}

#[tokio::test(start_paused = true)]
async fn a_call_past_its_timeout_is_timeout_and_past_the_deadline_is_cancelled() {
    let log = Arc::new(Log::default());
    let (execution, _, took) = run(vec![vec![], vec![]], &[false; 2], false, 200 * MS, |call| {
        let timeout = [Duration::from_secs(1), 100 * MS][call];
        Step::Call(Standin { timeout, ..Standin::new(&log, call, 500 * MS) })
    })
    .await;
    assert_eq!(took, 200 * MS);
    assert!(matches!(outcome(&execution, 0).result, Err(CallError::Cancelled)));
    assert_eq!(outcome(&execution, 0).elapsed, 200 * MS);
    assert!(matches!(outcome(&execution, 1).result, Err(CallError::Timeout(t)) if t == 100 * MS));
    assert_eq!(outcome(&execution, 1).elapsed, 100 * MS);
    assert_eq!(log.dropped.load(Ordering::SeqCst), 2);
}
