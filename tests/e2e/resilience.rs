//! The resilience policies end to end: the real binary against mock backends that fail on
//! purpose (always, or the first N requests, or slowly), checked by what reached the backend,
//! what the client got, the metrics and the log.

use crate::support::{Config, Gateway, client, get_json, samples};
use mockend::{MockServer, RouteSpec, ServiceSpec};
use serde_json::json;
use std::time::{Duration, Instant};

async fn spawn(route: RouteSpec) -> MockServer {
    MockServer::spawn(ServiceSpec::new(vec![route])).await.unwrap()
}

/// One optional call `x` and one required call `r` to the backend `b`.
const PAGES: &str = "  - route: GET /page\n    calls:\n      x: { backend: b, path: /x }\n  \
                     - route: GET /required\n    calls:\n      r: { backend: b, path: /x, required: true }\n";

async fn metric(gateway: &Gateway, series: &str) -> Option<f64> {
    let text = client().get(format!("{}/metrics", gateway.admin)).send().await.unwrap().text().await.unwrap();
    samples(&text).get(series).copied()
}

#[tokio::test]
async fn a_transient_503_is_retried_and_the_answer_is_complete() {
    let backend = spawn(RouteSpec::json("/x", json!({"ok": true})).fail_first(1, 503)).await;
    let yaml = Config::new(&[("b", &backend)], PAGES).backend("b", "retry: {}").render();
    let gateway = Gateway::start(&yaml);

    let (status, headers, body) = get_json(&format!("{}/required", gateway.url)).await;

    assert_eq!((status, &body), (200, &json!({"r": {"ok": true}})));
    assert_eq!(headers["x-fanout-complete"], "true");
    assert_eq!(backend.requests().len(), 2, "the 503, then the retry");
    assert_eq!(
        metric(&gateway, "fanout_backend_retries_total{backend=\"b\",outcome=\"sent\"}").await,
        Some(1.0)
    );
}

#[tokio::test]
async fn without_retry_the_same_503_fails_the_call() {
    let backend = spawn(RouteSpec::json("/x", json!({"ok": true})).fail_first(1, 503)).await;
    let gateway = Gateway::start(&Config::new(&[("b", &backend)], PAGES).render());

    let (status, _, body) = get_json(&format!("{}/page", gateway.url)).await;

    assert_eq!(status, 200);
    assert_eq!(
        body["_errors"]["x"],
        json!({"error": "status", "status": 503, "elapsed_ms": body["_errors"]["x"]["elapsed_ms"]})
    );
    assert_eq!(backend.requests().len(), 1);
}

#[tokio::test]
async fn attempts_run_out_and_the_error_says_how_many_were_made() {
    let backend = spawn(RouteSpec::new("/x").error_rate(1.0, 503)).await;
    let yaml = Config::new(&[("b", &backend)], PAGES).backend("b", "retry: { attempts: 3 }").render();
    let gateway = Gateway::start(&yaml);

    let (_, _, body) = get_json(&format!("{}/page", gateway.url)).await;

    let entry = &body["_errors"]["x"];
    assert_eq!(
        (&entry["error"], &entry["status"], &entry["attempts"]),
        (&json!("status"), &json!(503), &json!(3)),
        "{body}"
    );
    assert_eq!(backend.requests().len(), 3);
}

#[tokio::test]
async fn a_failure_not_in_the_list_is_not_retried() {
    let backend = spawn(RouteSpec::new("/x").error_rate(1.0, 500)).await;
    let yaml = Config::new(&[("b", &backend)], PAGES).backend("b", "retry: {}").render();
    let gateway = Gateway::start(&yaml);

    let (_, _, body) = get_json(&format!("{}/page", gateway.url)).await;

    assert_eq!(body["_errors"]["x"]["attempts"], 1, "{body}");
    assert_eq!(backend.requests().len(), 1, "500 is not in the default list");
}

#[tokio::test]
async fn the_timeout_bounds_each_attempt_not_the_call() {
    let backend = spawn(RouteSpec::json("/x", json!({})).latency(Duration::from_millis(400))).await;
    let endpoints = "  - route: GET /page\n    timeout: 2s\n    calls:\n      \
                     x: { backend: b, path: /x, timeout: 150ms }\n";
    let yaml = Config::new(&[("b", &backend)], endpoints).backend("b", "retry: { attempts: 3 }").render();
    let gateway = Gateway::start(&yaml);

    let started = Instant::now();
    let (_, _, body) = get_json(&format!("{}/page", gateway.url)).await;
    let took = started.elapsed();

    assert_eq!(
        (&body["_errors"]["x"]["error"], &body["_errors"]["x"]["attempts"]),
        (&json!("timeout"), &json!(3)),
        "{body}"
    );
    assert_eq!(backend.requests().len(), 3);
    // Three attempts of 150 ms and two backoffs of at most 10 and 20 ms; far under the 2 s
    // deadline and under one attempt per 400 ms answer.
    assert!(took >= Duration::from_millis(450) && took < Duration::from_millis(1200), "{took:?}");
}

#[tokio::test]
async fn the_budget_caps_retries_to_a_failing_backend() {
    let backend = spawn(RouteSpec::new("/x").error_rate(1.0, 503)).await;
    // No share of calls, a reserve of 1 retry per second over a 3 s window: three retries.
    let retry = "retry: { attempts: 3, budget: { ratio: 0, min_per_second: 1, window: 3s } }";
    let yaml = Config::new(&[("b", &backend)], PAGES).backend("b", retry).render();
    let gateway = Gateway::start(&yaml);

    let mut attempts = Vec::new();
    for _ in 0..6 {
        let (_, _, body) = get_json(&format!("{}/page", gateway.url)).await;
        attempts.push(body["_errors"]["x"]["attempts"].as_u64().unwrap());
    }

    // Six calls and the three retries the budget allows, not the 12 that three attempts each
    // would send.
    assert_eq!(attempts.iter().sum::<u64>(), 9, "{attempts:?}");
    assert_eq!(backend.requests().len(), 9);
    let series =
        |outcome: &str| format!("fanout_backend_retries_total{{backend=\"b\",outcome=\"{outcome}\"}}");
    assert_eq!(metric(&gateway, &series("sent")).await, Some(3.0));
    assert_eq!(metric(&gateway, &series("refused")).await, Some(5.0), "calls 2 to 6 each had one refused");
}

#[tokio::test]
async fn an_open_breaker_fails_calls_at_once_then_lets_a_trial_through_and_closes() {
    // Down for its first four requests, then healthy.
    let backend = spawn(RouteSpec::json("/x", json!({"ok": true})).fail_first(4, 503)).await;
    let breaker = "circuit_breaker: { min_calls: 4, failure_rate: 50%, open_for: 1s, half_open_calls: 1 }";
    let yaml = Config::new(&[("b", &backend)], PAGES).backend("b", breaker).render();
    let gateway = Gateway::start(&yaml);
    let state = "fanout_circuit_breaker_state{backend=\"b\"}";
    assert_eq!(metric(&gateway, state).await, Some(0.0), "shown closed from the start");

    for _ in 0..4 {
        let (_, _, body) = get_json(&format!("{}/page", gateway.url)).await;
        assert_eq!(body["_errors"]["x"]["error"], "status", "{body}");
    }
    let opened = Instant::now();
    assert_eq!(metric(&gateway, state).await, Some(2.0));

    // Open: nothing reaches the backend; an optional call is listed, a required one is a 503.
    let (_, _, body) = get_json(&format!("{}/page", gateway.url)).await;
    assert_eq!(body["_errors"]["x"]["error"], "circuit_open", "{body}");
    let response = client().get(format!("{}/required", gateway.url)).send().await.unwrap();
    assert_eq!(response.status(), 503);
    assert_eq!(response.headers()["retry-after"], "1");
    let problem: serde_json::Value = serde_json::from_slice(&response.bytes().await.unwrap()).unwrap();
    assert_eq!((&problem["call"], &problem["error"]), (&json!("r"), &json!("circuit_open")), "{problem}");
    assert_eq!(backend.requests().len(), 4);
    // An open breaker does not make the gateway unready.
    assert_eq!(client().get(format!("{}/readyz", gateway.admin)).send().await.unwrap().status(), 200);

    // After open_for, one trial call goes through; it succeeds and the breaker closes.
    tokio::time::sleep(Duration::from_secs(1).saturating_sub(opened.elapsed()) + Duration::from_millis(100))
        .await;
    let (status, _, body) = get_json(&format!("{}/required", gateway.url)).await;
    assert_eq!((status, &body), (200, &json!({"r": {"ok": true}})));
    assert_eq!(backend.requests().len(), 5);
    assert_eq!(metric(&gateway, state).await, Some(0.0));
    let transitions =
        |to: &str| format!("fanout_circuit_breaker_transitions_total{{backend=\"b\",to=\"{to}\"}}");
    for to in ["open", "half_open", "closed"] {
        assert_eq!(metric(&gateway, &transitions(to)).await, Some(1.0), "{to}");
    }
    let changes: Vec<String> = gateway
        .json_logs()
        .iter()
        .filter(|line| line["message"] == "circuit breaker changed state")
        .map(|line| format!("{}→{}", line["from"].as_str().unwrap(), line["to"].as_str().unwrap()))
        .collect();
    assert_eq!(changes, ["closed→open", "open→half_open", "half_open→closed"]);
}

/// A chain a → b → c of backends answering after these milliseconds, each told the time left
/// in `x-deadline-ms`.
async fn chain(latencies: [u64; 3]) -> (Vec<MockServer>, String) {
    let mut servers = Vec::new();
    for ms in latencies {
        servers.push(
            spawn(RouteSpec::json("/{step}", json!({"v": 1})).latency(Duration::from_millis(ms))).await,
        );
    }
    let endpoints = "  - route: GET /chain\n    timeout: 1s\n    calls:\n      \
                     a: { backend: a, path: /a }\n      \
                     b: { backend: b, path: \"/b?after={a.v}\" }\n      \
                     c: { backend: c, path: \"/c?after={b.v}\" }\n";
    let mut config = Config::new(&[("a", &servers[0]), ("b", &servers[1]), ("c", &servers[2])], endpoints)
        .server("deadline_header: x-request-timeout-ms");
    for name in ["a", "b", "c"] {
        config = config.backend(name, "deadline_header: x-deadline-ms");
    }
    (servers, config.render())
}

/// The `x-deadline-ms` each backend of the chain received last, in order.
fn told(servers: &[MockServer]) -> Vec<u64> {
    servers
        .iter()
        .map(|server| {
            let last = server.requests().pop().unwrap();
            last.headers["x-deadline-ms"].to_str().unwrap().parse().unwrap()
        })
        .collect()
}

#[tokio::test]
async fn each_backend_is_told_the_time_left_which_shrinks_along_a_chain() {
    let (servers, yaml) = chain([100, 100, 100]).await;
    let gateway = Gateway::start(&yaml);

    let (status, _, body) = get_json(&format!("{}/chain", gateway.url)).await;
    assert_eq!(status, 200, "{body}");

    let left = told(&servers);
    // 1 s less the safety margin, then ~100 ms less at each step.
    assert!(left[0] <= 995 && left[0] >= 900, "{left:?}");
    assert!(left[1] <= left[0] - 90 && left[2] <= left[1] - 90, "{left:?}");
}

#[tokio::test]
async fn a_clients_budget_shortens_the_deadline_and_a_bad_one_is_a_400() {
    let (servers, yaml) = chain([10, 500, 10]).await;
    let gateway = Gateway::start(&yaml);
    let page = |budget: &'static str| {
        client().get(format!("{}/chain", gateway.url)).header("x-request-timeout-ms", budget).send()
    };

    let started = Instant::now();
    let response = page("250").await.unwrap();
    let took = started.elapsed();
    let body: serde_json::Value = serde_json::from_slice(&response.bytes().await.unwrap()).unwrap();
    // a answers at ~10 ms; b (500 ms) is cut by the client's 250 ms, not the endpoint's 1 s (which
    // it would have made); c never runs.
    assert_eq!(body["a"], json!({"v": 1}), "{body}");
    assert_eq!(body["_errors"]["b"]["error"], "cancelled", "{body}");
    assert_eq!(body["_errors"]["c"]["error"], "dependency_failed", "{body}");
    assert!(took < Duration::from_millis(700), "{took:?}");
    let a_told: u64 = servers[0].requests()[0].headers["x-deadline-ms"].to_str().unwrap().parse().unwrap();
    assert!(a_told <= 245, "{a_told}");

    // A longer budget never lengthens the endpoint's own deadline.
    let response = page("60000").await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(told(&servers)[0] <= 995);

    let shortened = "fanout_client_deadlines_shortened_total{http_route=\"GET /chain\"}";
    assert_eq!(metric(&gateway, shortened).await, Some(1.0), "the 250 ms budget, not the 60 s one");

    let response = page("soon").await.unwrap();
    assert_eq!(response.status(), 400);
    assert_eq!(response.headers()["content-type"], "application/problem+json");
    let problem: serde_json::Value = serde_json::from_slice(&response.bytes().await.unwrap()).unwrap();
    assert_eq!(
        problem["detail"],
        "header x-request-timeout-ms must be one whole number of milliseconds (e.g. 800)"
    );
}

/// Sends `count` requests for `/page` at once, the i-th with `authorization(i)`; returns the
/// bodies.
async fn concurrent_pages(
    gateway: &Gateway,
    count: usize,
    authorization: impl Fn(usize) -> String,
) -> Vec<serde_json::Value> {
    let http = client();
    let pages = (0..count).map(|i| {
        let request = http.get(format!("{}/page", gateway.url)).header("authorization", authorization(i));
        async move { serde_json::from_slice(&request.send().await.unwrap().bytes().await.unwrap()).unwrap() }
    });
    futures_util::future::join_all(pages).await
}

#[tokio::test]
async fn concurrent_identical_requests_share_one_backend_call_but_two_users_never_do() {
    // Slow enough that all fifty requests arrive while the first is in flight.
    let backend = spawn(RouteSpec::json("/x", json!({"ok": true})).latency(Duration::from_secs(1))).await;
    let endpoints = "  - route: GET /page\n    forward_headers: [authorization]\n    calls:\n      \
                     x: { backend: b, path: /x, timeout: 5s }\n";
    let yaml = Config::new(&[("b", &backend)], endpoints).backend("b", "coalesce: true").render();
    let gateway = Gateway::start(&yaml);

    let bodies = concurrent_pages(&gateway, 50, |_| "Bearer same".to_owned()).await;
    assert!(bodies.iter().all(|body| *body == json!({"x": {"ok": true}})), "{bodies:?}");
    assert_eq!(backend.requests().len(), 1, "one backend request for fifty pages");
    assert_eq!(metric(&gateway, "fanout_backend_coalesced_total{backend=\"b\"}").await, Some(49.0));

    let bodies = concurrent_pages(&gateway, 50, |i| format!("Bearer user-{i}")).await;
    assert!(bodies.iter().all(|body| *body == json!({"x": {"ok": true}})));
    let requests = backend.requests();
    assert_eq!(requests.len(), 51, "each user's token got its own request");
    let mut tokens: Vec<&str> =
        requests[1..].iter().map(|r| r.headers["authorization"].to_str().unwrap()).collect();
    tokens.sort_unstable();
    tokens.dedup();
    assert_eq!(tokens.len(), 50);
}

#[tokio::test]
async fn without_coalesce_concurrent_pages_each_call_the_backend() {
    let backend = spawn(RouteSpec::json("/x", json!({"ok": true})).latency(Duration::from_millis(300))).await;
    let gateway = Gateway::start(&Config::new(&[("b", &backend)], PAGES).render());

    concurrent_pages(&gateway, 10, |_| "Bearer same".to_owned()).await;

    assert_eq!(backend.requests().len(), 10);
}

#[tokio::test]
async fn a_slow_request_is_hedged_and_the_fast_answer_wins() {
    // /x: its first request takes 2 s, the rest answer at once.
    let backend = MockServer::spawn(ServiceSpec::new(vec![
        RouteSpec::json("/x", json!({"ok": true})).tail(0.0, 1, Duration::from_secs(2)),
        RouteSpec::json("/warm", json!({})),
    ]))
    .await
    .unwrap();
    let endpoints = "  - route: GET /page\n    calls:\n      x: { backend: b, path: /x, timeout: 1500ms }\n  \
                     - route: GET /warm\n    calls:\n      w: { backend: b, path: /warm }\n";
    let yaml = Config::new(&[("b", &backend)], endpoints)
        .backend("b", "hedge: { after: 100ms }")
        .backend("b", "deadline_header: x-deadline-ms")
        .render();
    let gateway = Gateway::start(&yaml);
    // Hedges are capped at 5 % of the backend's calls: twenty calls allow one.
    for _ in 0..20 {
        assert_eq!(get_json(&format!("{}/warm", gateway.url)).await.0, 200);
    }

    let started = Instant::now();
    let (status, _, body) = get_json(&format!("{}/page", gateway.url)).await;
    let took = started.elapsed();

    assert_eq!((status, &body), (200, &json!({"x": {"ok": true}})));
    assert!(took < Duration::from_millis(1500), "answered by the hedge, not after 2 s: {took:?}");
    let to_x: Vec<u64> = backend
        .requests()
        .iter()
        .filter(|r| r.path_and_query == "/x")
        .map(|r| r.headers["x-deadline-ms"].to_str().unwrap().parse().unwrap())
        .collect();
    assert_eq!(to_x.len(), 2, "the slow request and its hedge");
    // Both are cut at the attempt's limit (1.5 s from its start, before the 2 s deadline): the
    // hedge, sent at least 100 ms later, is told 100 ms less.
    assert!(to_x[0] > 1_400 && to_x[1] <= 1_395, "{to_x:?}");
    let series =
        |outcome: &str| format!("fanout_backend_hedges_total{{backend=\"b\",outcome=\"{outcome}\"}}");
    assert_eq!(metric(&gateway, &series("sent")).await, Some(1.0));
    assert_eq!(metric(&gateway, &series("won")).await, Some(1.0));
    assert!(
        crate::support::wait_until(Duration::from_secs(3), || backend.cancelled() >= 1).await,
        "the losing request is dropped"
    );
}

#[tokio::test]
async fn a_hung_shared_request_ends_at_its_first_callers_timeout_so_later_pages_start_afresh() {
    // /x: its first request hangs for 10 s, the rest answer at once.
    let backend =
        spawn(RouteSpec::json("/x", json!({"ok": true})).tail(0.0, 1, Duration::from_secs(10))).await;
    let endpoints = "  - route: GET /page\n    calls:\n      x: { backend: b, path: /x, timeout: 1s }\n";
    let yaml = Config::new(&[("b", &backend)], endpoints).backend("b", "coalesce: true").render();
    let gateway = Gateway::start(&yaml);
    let page = |delay_ms: u64| {
        let url = format!("{}/page", gateway.url);
        async move {
            tokio::time::sleep(Duration::from_millis(delay_ms)).await;
            get_json(&url).await.2
        }
    };

    // The first page starts the hung request and gives up at 1 s; the second joins it at 0.4 s
    // and would wait until 1.4 s; the third comes at 1.2 s, after the shared request ended at the
    // first page's limit, and starts a new one (joining would have made it time out too).
    let (first, second, third) = tokio::join!(page(0), page(400), page(1200));

    assert_eq!(first["_errors"]["x"]["error"], "timeout", "{first}");
    assert_eq!(second["_errors"]["x"]["error"], "timeout", "{second}");
    assert_eq!(third, json!({"x": {"ok": true}}));
    assert_eq!(backend.requests().len(), 2, "the hung request, then a fresh one");
}
