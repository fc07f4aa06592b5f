//! Telemetry over real sockets: `/metrics` on the admin port after a few requests (complete,
//! partial, failed, unmatched), one `request` log line per request carrying its id, the last
//! lines written before the process exits, and a stalled stdout costing log lines (counted),
//! never requests.

use crate::support::{Config, Gateway, client, config, get_json, samples};
use mockend::{MockServer, RouteSpec, ServiceSpec};
use serde_json::json;

#[tokio::test]
async fn metrics_count_requests_calls_errors_and_partial_answers() {
    let ok = MockServer::spawn(ServiceSpec::new(vec![RouteSpec::json("/r", json!({}))])).await.unwrap();
    let broken = MockServer::spawn(ServiceSpec::new(vec![RouteSpec::json("/r", json!({})).status(503)]))
        .await
        .unwrap();
    let endpoints = "  - route: GET /page\n    calls:\n      \
                     a: { backend: ok, path: /r }\n      b: { backend: broken, path: /r }\n  \
                     - route: GET /strict\n    calls:\n      b: { backend: broken, path: /r, required: true }\n";
    let gateway = Gateway::start(&config(&[("ok", &ok), ("broken", &broken)], endpoints));
    for _ in 0..3 {
        assert_eq!(get_json(&format!("{}/page", gateway.url)).await.0, 200);
    }
    assert_eq!(get_json(&format!("{}/strict", gateway.url)).await.0, 502);
    assert_eq!(get_json(&format!("{}/nowhere/at/all", gateway.url)).await.0, 404);

    let response = client().get(format!("{}/metrics", gateway.admin)).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let text = response.text().await.unwrap();
    let m = samples(&text);
    let get = |series: &str| m.get(series).copied().unwrap_or_else(|| panic!("no {series} in\n{text}"));
    let request = |route: &str, class: &str| {
        format!(
            "http_server_request_duration_seconds_count{{http_route=\"{route}\",http_response_status_class=\"{class}\"}}"
        )
    };
    assert_eq!(get(&request("GET /page", "2xx")), 3.0);
    assert_eq!(get(&request("GET /strict", "5xx")), 1.0);
    assert_eq!(get(&request("unmatched", "4xx")), 1.0);
    let call = |backend: &str, outcome: &str| {
        format!("http_client_request_duration_seconds_count{{backend=\"{backend}\",outcome=\"{outcome}\"}}")
    };
    assert_eq!(get(&call("ok", "ok")), 3.0);
    assert_eq!(get(&call("broken", "status")), 4.0);
    assert_eq!(get("fanout_backend_errors_total{backend=\"broken\",error_kind=\"status\"}"), 4.0);
    assert_eq!(get("fanout_partial_responses_total{http_route=\"GET /page\"}"), 3.0);
    assert_eq!(get("fanout_partial_responses_total{http_route=\"GET /strict\"}"), 0.0);
    assert!(get("process_resident_memory_bytes") > 1_000_000.0);
    assert_eq!(get("http_server_active_requests"), 0.0);
    assert!(
        text.contains("http_server_request_duration_seconds_bucket{http_route=\"GET /page\",http_response_status_class=\"2xx\",le=\"0.0005\"}"),
        "histograms resolve half a millisecond"
    );
    assert!(!text.contains("/nowhere"), "label values never come from request paths");
}

#[tokio::test]
async fn open_connections_are_counted_while_open() {
    let ok = MockServer::spawn(ServiceSpec::new(vec![RouteSpec::json("/r", json!({}))])).await.unwrap();
    let gateway = Gateway::start(&config(
        &[("ok", &ok)],
        "  - route: GET /page\n    calls:\n      a: { backend: ok, path: /r }\n",
    ));
    let open = || async {
        let text =
            client().get(format!("{}/metrics", gateway.admin)).send().await.unwrap().text().await.unwrap();
        samples(&text).get("fanout_open_connections").copied()
    };
    let until = |want: f64| async move {
        let started = std::time::Instant::now();
        while started.elapsed() < std::time::Duration::from_secs(5) {
            if open().await == Some(want) {
                return true;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        false
    };
    assert!(until(0.0).await, "no client connection yet");
    let held: Vec<_> = (0..3).map(|_| std::net::TcpStream::connect(gateway.addr).unwrap()).collect();
    assert!(until(3.0).await, "three connections open: {:?}", open().await);
    drop(held);
    assert!(until(0.0).await, "all closed: {:?}", open().await);
}

#[tokio::test]
async fn every_request_logs_one_line_with_its_request_id_and_call_outcomes() {
    let ok = MockServer::spawn(ServiceSpec::new(vec![RouteSpec::json("/r", json!({}))])).await.unwrap();
    let endpoint = "  - route: GET /page\n    calls:\n      a: { backend: ok, path: /r }\n";
    let gateway = Gateway::start(&config(&[("ok", &ok)], endpoint));
    for id in ["req-1", "req-2"] {
        let response =
            client().get(format!("{}/page", gateway.url)).header("x-request-id", id).send().await.unwrap();
        assert_eq!(response.status(), 200);
    }
    let lines = crate::support::wait_until(std::time::Duration::from_secs(2), || {
        gateway.logs().iter().filter(|l| l.contains("\"message\":\"request\"")).count() == 2
    })
    .await;
    assert!(lines, "{:?}", gateway.logs());
    let access: Vec<serde_json::Value> =
        gateway.json_logs().into_iter().filter(|v| v["message"] == "request").collect();
    assert_eq!(access.len(), 2);
    for (line, id) in access.iter().zip(["req-1", "req-2"]) {
        assert_eq!(line["span"]["request_id"], id);
        assert_eq!(line["http.route"], "GET /page");
        assert_eq!(line["calls"], "a:ok");
        assert_eq!(line["status"], 200);
        assert!(line["duration_ms"].as_f64().unwrap() > 0.0);
    }
}

#[tokio::test]
async fn the_last_log_lines_are_written_before_the_process_exits() {
    let ok = MockServer::spawn(ServiceSpec::new(vec![RouteSpec::json("/r", json!({}))])).await.unwrap();
    let endpoint = "  - route: GET /page\n    calls:\n      a: { backend: ok, path: /r }\n";
    let mut gateway = Gateway::start(&config(&[("ok", &ok)], endpoint));
    let response = client()
        .get(format!("{}/page", gateway.url))
        .header("x-request-id", "the-last")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    gateway.terminate();
    assert_eq!(gateway.wait_exit(std::time::Duration::from_secs(10)).and_then(|s| s.code()), Some(0));
    // The process is gone; what it wrote is in the pipe, read to its end by the test's reader.
    let stopped = crate::support::wait_until(std::time::Duration::from_secs(2), || {
        gateway.logs().last().is_some_and(|l| l.contains("\"message\":\"stopped\""))
    })
    .await;
    assert!(stopped, "the last line is `stopped`: {:?}", gateway.logs());
    let last = gateway.json_logs().into_iter().filter(|v| v["message"] == "request").collect::<Vec<_>>();
    assert_eq!(last.len(), 1, "{last:?}");
    assert_eq!(last[0]["span"]["request_id"], "the-last");
}

#[tokio::test]
async fn a_stalled_stdout_costs_log_lines_counted_never_requests() {
    let ok = MockServer::spawn(ServiceSpec::new(vec![RouteSpec::json("/r", json!({}))])).await.unwrap();
    // A 6,000-byte route: every POST to it gets a 405 and a ~6 KB log line naming the route.
    let path = format!("/{}", "x".repeat(6_000));
    let endpoint = format!("  - route: GET {path}\n    calls:\n      a: {{ backend: ok, path: /r }}\n");
    let gateway = Gateway::start(&config(&[("ok", &ok)], &endpoint));
    let http = client();
    let dropped = || async {
        let text = http.get(format!("{}/metrics", gateway.admin)).send().await.unwrap().text().await.unwrap();
        samples(&text).get("fanout_log_lines_dropped_total").copied()
    };
    assert_eq!(dropped().await, Some(0.0));

    const REQUESTS: usize = 600;
    let stalled = gateway.stall_stdout().await;
    // 600 lines of ~6 KB (3.6 MB): more than the pipe, the batch stuck in its write and the
    // writer's 1 MiB buffer hold. A blocking writer would hang the requests here.
    let answered = tokio::time::timeout(std::time::Duration::from_secs(60), async {
        for _ in 0..REQUESTS {
            assert_eq!(http.post(format!("{}{path}", gateway.url)).send().await.unwrap().status(), 405);
        }
    })
    .await;
    assert!(answered.is_ok(), "requests waited for the stalled stdout");
    let lost = dropped().await.unwrap();
    assert!(lost > 0.0, "nothing dropped");
    drop(stalled);

    // Every line is either written or counted as dropped.
    let accounted = crate::support::wait_until(std::time::Duration::from_secs(5), || {
        let written = gateway.logs().iter().filter(|l| l.contains("\"message\":\"request\"")).count();
        written as f64 + lost == REQUESTS as f64
    })
    .await;
    let written = gateway.logs().iter().filter(|l| l.contains("\"message\":\"request\"")).count();
    assert!(accounted, "{written} request lines written, {lost} dropped, of {REQUESTS}");
}

#[tokio::test]
async fn a_blocked_worker_is_reported_with_the_request_that_blocked_it() {
    let ok = MockServer::spawn(ServiceSpec::new(vec![RouteSpec::json("/r", json!({}))])).await.unwrap();
    let endpoint = "  - route: GET /page\n    calls:\n      a: { backend: ok, path: /r }\n";
    let yaml = Config::new(&[("ok", &ok)], endpoint)
        .telemetry("stall_warning: 50ms")
        .telemetry("debug_endpoints: true")
        .render();
    let gateway = Gateway::start(&yaml);

    let fine =
        client().get(format!("{}/page", gateway.url)).header("x-request-id", "quick").send().await.unwrap();
    assert_eq!(fine.status(), 200);
    let blocked = client()
        .get(format!("{}/_fanout/debug/block/300", gateway.url))
        .header("x-request-id", "the-blocker")
        .send()
        .await
        .unwrap();
    assert_eq!(blocked.status(), 200);

    let reported = crate::support::wait_until(std::time::Duration::from_secs(2), || {
        gateway.logs().iter().any(|l| l.contains("runtime unblocked"))
    })
    .await;
    assert!(reported, "{:?}", gateway.logs());
    let warnings: Vec<serde_json::Value> =
        gateway.json_logs().into_iter().filter(|v| v["level"] == "WARN").collect();
    let detected =
        warnings.iter().find(|w| w["message"] == "runtime worker blocked: a task is not yielding").unwrap();
    assert_eq!(detected["span"]["request_id"], "the-blocker", "the stall names the request in progress");
    assert!(detected["blocked_ms"].as_f64().unwrap() >= 50.0);
    let ended = warnings.iter().find(|w| w["message"] == "runtime unblocked").unwrap();
    assert!(ended["blocked_ms"].as_f64().unwrap() >= 290.0, "{ended}");
    assert!(warnings.iter().all(|w| w["span"]["request_id"] != "quick"), "a fast request is never reported");

    let text = client().get(format!("{}/metrics", gateway.admin)).send().await.unwrap().text().await.unwrap();
    assert_eq!(samples(&text).get("fanout_runtime_stalls_total"), Some(&1.0), "{text}");
}

#[tokio::test]
async fn debug_endpoints_are_off_unless_configured() {
    let ok = MockServer::spawn(ServiceSpec::new(vec![RouteSpec::json("/r", json!({}))])).await.unwrap();
    let endpoint = "  - route: GET /page\n    calls:\n      a: { backend: ok, path: /r }\n";
    let gateway = Gateway::start(&config(&[("ok", &ok)], endpoint));
    assert_eq!(get_json(&format!("{}/_fanout/debug/block/300", gateway.url)).await.0, 404);
}
