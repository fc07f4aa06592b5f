//! The attempt loop on tokio's paused clock, with scripted attempts: what is retried, when,
//! how often, under which timeout, and what the budget and the breaker refuse. Times are exact:
//! the paused clock moves only when every task waits.
#![allow(clippy::unwrap_used)]

use super::*;
use crate::exchanged::Hedges;
use bytes::Bytes;
use std::cell::RefCell;
use std::collections::VecDeque;

const MS: Duration = Duration::from_millis(1);

/// One scripted attempt: how long it takes, then what it gives.
type Script = (Duration, Result<&'static str, CallError>);

fn retry(attempts: u32) -> RetrySettings {
    RetrySettings {
        attempts,
        backoff: 10 * MS,
        max_backoff: 100 * MS,
        on: Failures::transient(),
        min_time_left: None,
        budget: BudgetSettings { ratio: 0.2, min_per_second: 10, window: Duration::from_secs(10) },
    }
}

fn breaker() -> BreakerSettings {
    BreakerSettings {
        window: Duration::from_secs(10),
        min_calls: 2,
        failure_rate: 0.5,
        open_for: Duration::from_secs(1),
        half_open_calls: 1,
        on: Failures::transient(),
    }
}

/// Runs one call whose attempts follow `script`; returns what it gave, the attempts started
/// and how long it took.
async fn run(
    policies: &Policies,
    timeout: Duration,
    deadline: Duration,
    script: &[Script],
) -> (Exchanged, usize, Duration) {
    let script = RefCell::new(script.iter().cloned().collect::<VecDeque<_>>());
    let started = RefCell::new(0);
    let start = Instant::now();
    let exchanged = policies
        .run(timeout, start + deadline, |_| {
            *started.borrow_mut() += 1;
            let (takes, answer) = script.borrow_mut().pop_front().unwrap_or((Duration::ZERO, Ok("{}")));
            async move {
                tokio::time::sleep(takes).await;
                let status = match &answer {
                    Err(CallError::Status(status)) => Some(*status),
                    _ => Some(200),
                };
                (status, answer.map(|text| Bytes::from_static(text.as_bytes())))
            }
        })
        .await;
    let started = *started.borrow();
    (exchanged, started, start.elapsed())
}

fn hedge(after: Duration) -> HedgeSettings {
    HedgeSettings { after: HedgeAfter::Fixed(after), min_delay: MS, max_delay: 200 * MS, max_extra: 0.05 }
}

/// Makes `count` quick calls, so the hedge cap (5 % of calls) allows one hedge per twenty.
async fn warm_up(policies: &Policies, count: usize) {
    for _ in 0..count {
        let (exchanged, _, _) = run(policies, 500 * MS, 1000 * MS, &[(MS, Ok("{}"))]).await;
        assert_eq!(exchanged.hedges, Hedges::default());
    }
}

const UNAVAILABLE: Script = (Duration::from_millis(5), Err(CallError::Status(503)));

#[tokio::test(start_paused = true)]
async fn a_transient_failure_is_retried_after_a_jittered_backoff() {
    let policies = Policies::new("b", Some(retry(3)), None, None);
    let (exchanged, started, took) =
        run(&policies, 50 * MS, 500 * MS, &[UNAVAILABLE, (5 * MS, Ok("{}"))]).await;
    assert_eq!(exchanged.result.unwrap(), "{}");
    assert_eq!((exchanged.attempts, started), (2, 2));
    // Two 5 ms attempts and a backoff of at most 10 ms.
    assert!(took >= 10 * MS && took <= 20 * MS, "{took:?}");
}

#[tokio::test(start_paused = true)]
async fn a_failure_not_in_the_list_is_not_retried() {
    let policies = Policies::new("b", Some(retry(3)), None, None);
    let (exchanged, started, _) =
        run(&policies, 50 * MS, 500 * MS, &[(5 * MS, Err(CallError::Status(404)))]).await;
    assert_eq!(exchanged.result.unwrap_err(), CallError::Status(404));
    assert_eq!(exchanged.status, Some(404));
    assert_eq!((exchanged.attempts, started), (1, 1));
}

#[tokio::test(start_paused = true)]
async fn the_timeout_bounds_each_attempt_and_attempts_run_out() {
    let policies = Policies::new("b", Some(retry(3)), None, None);
    let hang = (Duration::from_secs(60), Ok("{}"));
    let (exchanged, started, took) =
        run(&policies, 50 * MS, 1000 * MS, &[hang.clone(), hang.clone(), hang]).await;
    assert_eq!(exchanged.result.unwrap_err(), CallError::Timeout(50 * MS));
    assert_eq!((exchanged.attempts, started), (3, 3));
    // Three attempts of 50 ms, backoffs of at most 10 and 20 ms.
    assert!(took >= 150 * MS && took <= 180 * MS, "{took:?}");
}

#[tokio::test(start_paused = true)]
async fn no_attempt_starts_without_its_timeout_left_before_the_deadline() {
    let policies = Policies::new("b", Some(retry(5)), None, None);
    let hang = (Duration::from_secs(60), Ok("{}"));
    // Attempt 1 ends at 50 ms; attempt 2 starts by 60 ms and ends by 110 ms; attempt 3 would
    // start at 100 ms or later and need 50 ms more, which a 140 ms deadline never leaves.
    let (exchanged, started, took) =
        run(&policies, 50 * MS, 140 * MS, &[hang.clone(), hang.clone(), hang]).await;
    assert_eq!(exchanged.result.unwrap_err(), CallError::Timeout(50 * MS));
    assert_eq!((exchanged.attempts, started), (2, 2));
    assert!(took <= 110 * MS, "{took:?}");

    // With min_time_left 5 ms, attempt 3 (starting by 130 ms) always starts, and the deadline
    // cuts it before its own timeout.
    let mut settings = retry(5);
    settings.min_time_left = Some(5 * MS);
    let policies = Policies::new("b", Some(settings), None, None);
    let hang = (Duration::from_secs(60), Ok("{}"));
    let (exchanged, started, took) =
        run(&policies, 50 * MS, 140 * MS, &[hang.clone(), hang.clone(), hang]).await;
    assert_eq!(exchanged.result.unwrap_err(), CallError::Cancelled);
    assert_eq!(started, 3);
    assert_eq!(took, 140 * MS);
}

#[tokio::test(start_paused = true)]
async fn a_spent_budget_ends_the_call_with_its_last_failure() {
    let mut settings = retry(3);
    settings.budget = BudgetSettings { ratio: 0.0, min_per_second: 1, window: Duration::from_secs(2) };
    let policies = Policies::new("b", Some(settings), None, None);
    // The reserve: 1 per second over 2 s, so two retries in all.
    let (first, _, _) = run(&policies, 50 * MS, 500 * MS, &[UNAVAILABLE, UNAVAILABLE, (MS, Ok("{}"))]).await;
    assert_eq!(first.attempts, 3);
    let (second, started, _) = run(&policies, 50 * MS, 500 * MS, &[UNAVAILABLE, (MS, Ok("{}"))]).await;
    assert_eq!(second.result.unwrap_err(), CallError::Status(503));
    assert_eq!((second.attempts, started), (1, 1));
    // Once the retries have left the window, the budget is back.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (third, _, _) = run(&policies, 50 * MS, 500 * MS, &[UNAVAILABLE, (MS, Ok("{}"))]).await;
    assert_eq!(third.attempts, 2);
    assert!(third.result.is_ok());
}

#[tokio::test(start_paused = true)]
async fn an_open_breaker_fails_calls_at_once_until_a_trial_succeeds() {
    let policies = Policies::new("b", None, Some(breaker()), None);
    for _ in 0..2 {
        let (exchanged, _, _) = run(&policies, 50 * MS, 500 * MS, &[UNAVAILABLE]).await;
        assert_eq!(exchanged.result.unwrap_err(), CallError::Status(503));
    }
    assert_eq!(policies.circuit_state(), Some(CircuitState::Open));
    // Opened when the second call failed (at 10 ms), for a second.
    tokio::time::sleep(400 * MS).await;
    let (refused, started, took) = run(&policies, 50 * MS, 500 * MS, &[]).await;
    assert_eq!(refused.result.unwrap_err(), CallError::CircuitOpen(600 * MS));
    assert_eq!((refused.attempts, started, took), (0, 0, Duration::ZERO));
    tokio::time::sleep(600 * MS).await;
    assert_eq!(policies.circuit_state(), Some(CircuitState::HalfOpen));
    let (trial, started, _) = run(&policies, 50 * MS, 500 * MS, &[(MS, Ok("{}"))]).await;
    assert!(trial.result.is_ok());
    assert_eq!(started, 1);
    assert_eq!(policies.circuit_state(), Some(CircuitState::Closed));
}

#[tokio::test(start_paused = true)]
async fn a_retry_the_breaker_refuses_ends_with_the_real_failure() {
    let policies = Policies::new("b", Some(retry(3)), Some(breaker()), None);
    // The first call's two failed attempts open the breaker; its third attempt is refused.
    let (exchanged, started, _) =
        run(&policies, 50 * MS, 500 * MS, &[UNAVAILABLE, UNAVAILABLE, UNAVAILABLE]).await;
    assert_eq!(exchanged.result.unwrap_err(), CallError::Status(503));
    assert_eq!((exchanged.attempts, started), (2, 2));
    assert_eq!(policies.circuit_state(), Some(CircuitState::Open));
}

#[tokio::test(start_paused = true)]
async fn a_call_cut_by_the_deadline_does_not_count_against_the_breaker() {
    let policies = Policies::new("b", None, Some(breaker()), None);
    for _ in 0..3 {
        let (exchanged, _, _) =
            run(&policies, 500 * MS, 20 * MS, &[(Duration::from_secs(1), Ok("{}"))]).await;
        assert_eq!(exchanged.result.unwrap_err(), CallError::Cancelled);
    }
    assert_eq!(policies.circuit_state(), Some(CircuitState::Closed));
}

#[tokio::test(start_paused = true)]
async fn a_slow_attempt_is_hedged_and_the_first_good_answer_wins() {
    let policies = Policies::new("b", None, None, Some(hedge(20 * MS)));
    warm_up(&policies, 20).await;
    let (exchanged, started, took) =
        run(&policies, 500 * MS, 1000 * MS, &[(100 * MS, Ok("slow")), (5 * MS, Ok("hedge"))]).await;
    assert_eq!(exchanged.result.unwrap(), "hedge");
    assert_eq!(exchanged.hedges, Hedges { sent: 1, won: 1 });
    assert_eq!((exchanged.attempts, started, took), (1, 2, 25 * MS));
}

#[tokio::test(start_paused = true)]
async fn a_hedge_that_fails_does_not_end_the_attempt() {
    let policies = Policies::new("b", None, None, Some(hedge(20 * MS)));
    warm_up(&policies, 20).await;
    let (exchanged, started, took) =
        run(&policies, 500 * MS, 1000 * MS, &[(100 * MS, Ok("slow")), (5 * MS, Err(CallError::Status(503)))])
            .await;
    assert_eq!(exchanged.result.unwrap(), "slow");
    assert_eq!(exchanged.hedges, Hedges { sent: 1, won: 0 });
    assert_eq!((started, took), (2, 100 * MS));
}

#[tokio::test(start_paused = true)]
async fn hedges_stay_within_their_share_of_calls() {
    let policies = Policies::new("b", None, None, Some(hedge(20 * MS)));
    warm_up(&policies, 19).await;
    let slow = [(100 * MS, Ok("slow")), (5 * MS, Ok("hedge"))];
    // 20 calls: one hedge (5 %); the next slow call is not hedged.
    let (first, _, _) = run(&policies, 500 * MS, 1000 * MS, &slow).await;
    assert_eq!(first.hedges.sent, 1);
    let (second, started, took) = run(&policies, 500 * MS, 1000 * MS, &slow).await;
    assert_eq!((second.hedges.sent, started, took), (0, 1, 100 * MS));
}

#[tokio::test(start_paused = true)]
async fn an_attempt_answering_before_the_delay_is_not_hedged() {
    let policies = Policies::new("b", None, None, Some(hedge(20 * MS)));
    warm_up(&policies, 20).await;
    let (exchanged, started, _) = run(&policies, 500 * MS, 1000 * MS, &[(15 * MS, Ok("{}"))]).await;
    assert_eq!((exchanged.hedges.sent, started), (0, 1));
}

#[tokio::test(start_paused = true)]
async fn a_hedge_is_taken_from_the_retry_budget() {
    let mut settings = retry(3);
    settings.budget = BudgetSettings { ratio: 0.0, min_per_second: 0, window: Duration::from_secs(10) };
    let policies = Policies::new("b", Some(settings), None, Some(hedge(20 * MS)));
    warm_up(&policies, 20).await;
    let (exchanged, started, _) =
        run(&policies, 500 * MS, 1000 * MS, &[(100 * MS, Ok("slow")), (5 * MS, Ok("hedge"))]).await;
    assert_eq!((exchanged.hedges.sent, started), (0, 1), "no retry budget: no hedge");
    let cap = &policies.hedge.as_ref().unwrap().cap;
    assert!(cap.allows(Instant::now()), "a hedge not sent takes nothing from the hedge cap");
}

#[tokio::test(start_paused = true)]
async fn a_backend_whose_breaker_is_not_closed_is_never_hedged() {
    let policies = Policies::new("b", None, Some(breaker()), Some(hedge(20 * MS)));
    warm_up(&policies, 20).await;
    for _ in 0..20 {
        run(&policies, 500 * MS, 1000 * MS, &[UNAVAILABLE]).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(policies.circuit_state(), Some(CircuitState::HalfOpen));
    let (trial, started, _) =
        run(&policies, 500 * MS, 1000 * MS, &[(100 * MS, Ok("slow")), (5 * MS, Ok("hedge"))]).await;
    assert_eq!((trial.result.unwrap(), trial.hedges.sent, started), (Bytes::from_static(b"slow"), 0, 1));
}
