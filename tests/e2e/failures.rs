//! Degraded answers: optional calls that fail give 200 with `_errors`; required calls that fail
//! give 502 / 504 problem+json naming the call.

use crate::support::{Config, Gateway, client, config, get_json};
use mockend::{Behavior, MockServer, RouteSpec, ServiceSpec};
use serde_json::json;
use std::time::{Duration, Instant};

async fn spawn(route: RouteSpec) -> MockServer {
    MockServer::spawn(ServiceSpec::new(vec![route])).await.unwrap()
}

#[tokio::test]
async fn an_optional_timeout_degrades_the_answer_within_its_timeout() {
    let fast = spawn(RouteSpec::json("/x/{id}", json!({"fast": true}))).await;
    let slow = spawn(RouteSpec::json("/x/{id}", json!({"slow": true})).latency(Duration::from_secs(2))).await;
    let endpoint = "  - route: GET /page/{id}\n    calls:\n      \
                    fast: { backend: fast, path: \"/x/{id}\", required: true }\n      \
                    slow: { backend: slow, path: \"/x/{id}\", timeout: 150ms }\n";
    let gateway = Gateway::start(&config(&[("fast", &fast), ("slow", &slow)], endpoint));

    let started = Instant::now();
    let (status, headers, body) = get_json(&format!("{}/page/1", gateway.url)).await;
    let elapsed = started.elapsed();

    assert_eq!(status, 200);
    // Exact timings are the executor's tests'; here, wide margins: not before the 150 ms
    // timeout, well before the 2 s backend would have answered.
    assert!(elapsed >= Duration::from_millis(150), "answered before the timeout: {elapsed:?}");
    assert!(elapsed < Duration::from_millis(1500), "waited for the slow backend: {elapsed:?}");
    assert_eq!(headers["x-fanout-complete"], "false");
    assert_eq!(body["fast"], json!({"fast": true}));
    assert!(body.get("slow").is_none());
    assert_eq!(body["_errors"]["slow"]["error"], "timeout");
    let elapsed_ms = body["_errors"]["slow"]["elapsed_ms"].as_u64().unwrap();
    assert!((150..1500).contains(&elapsed_ms), "elapsed_ms {elapsed_ms}");
}

#[tokio::test]
async fn each_optional_failure_has_its_error_kind_and_the_rest_stands() {
    let ok = spawn(RouteSpec::json("/r", json!({"fine": 1}))).await;
    let status = spawn(RouteSpec::json("/r", json!({})).status(500)).await;
    let garbage = spawn(RouteSpec::json("/r", json!({})).behavior(Behavior::Garbage)).await;
    let reset = spawn(RouteSpec::json("/r", json!({})).behavior(Behavior::Reset)).await;
    let huge = spawn(RouteSpec::json("/r", json!({})).body_size(512 * 1024)).await;
    let yaml = format!(
        "server:\n  listen: 127.0.0.1:0\n  admin_listen: 127.0.0.1:0\nbackends:\n  \
         ok: {{ url: \"{}\" }}\n  status: {{ url: \"{}\" }}\n  garbage: {{ url: \"{}\" }}\n  \
         reset: {{ url: \"{}\" }}\n  huge: {{ url: \"{}\", max_response_body: 64KiB }}\n  \
         closed: {{ url: \"http://127.0.0.1:1\" }}\n\
         endpoints:\n  - route: GET /all\n    calls:\n      \
         ok: {{ backend: ok, path: /r }}\n      status: {{ backend: status, path: /r }}\n      \
         garbage: {{ backend: garbage, path: /r }}\n      reset: {{ backend: reset, path: /r }}\n      \
         huge: {{ backend: huge, path: /r }}\n      closed: {{ backend: closed, path: /r }}\n",
        ok.url(),
        status.url(),
        garbage.url(),
        reset.url(),
        huge.url()
    );
    let gateway = Gateway::start(&yaml);

    let (code, headers, body) = get_json(&format!("{}/all", gateway.url)).await;

    assert_eq!(code, 200);
    assert_eq!(headers["x-fanout-complete"], "false");
    assert_eq!(body["ok"], json!({"fine": 1}));
    let errors = &body["_errors"];
    assert_eq!(errors["status"]["error"], "status");
    assert_eq!(errors["status"]["status"], 500);
    assert_eq!(errors["garbage"]["error"], "invalid_body");
    assert_eq!(errors["reset"]["error"], "connect");
    assert_eq!(errors["huge"]["error"], "too_large");
    assert_eq!(errors["closed"]["error"], "connect");
    assert!(errors["closed"]["detail"].as_str().unwrap().contains("connection failed"), "{errors}");
    let keys: Vec<_> = body.as_object().unwrap().keys().cloned().collect();
    assert_eq!(keys, ["ok", "_errors"]);
}

#[tokio::test]
async fn a_required_failure_is_502_and_a_required_timeout_is_504() {
    let ok = spawn(RouteSpec::json("/r", json!({"fine": 1}))).await;
    let broken = spawn(RouteSpec::json("/r", json!({})).status(503)).await;
    let slow = spawn(RouteSpec::json("/r", json!({})).latency(Duration::from_secs(2))).await;
    let endpoints = "  - route: GET /broken\n    calls:\n      \
                     ok: { backend: ok, path: /r }\n      \
                     user: { backend: broken, path: /r, required: true }\n  \
                     - route: GET /slow\n    calls:\n      \
                     ok: { backend: ok, path: /r }\n      \
                     user: { backend: slow, path: /r, required: true, timeout: 100ms }\n  \
                     - route: GET /deadline\n    timeout: 120ms\n    calls:\n      \
                     user: { backend: slow, path: /r, required: true }\n";
    let gateway = Gateway::start(&config(&[("ok", &ok), ("broken", &broken), ("slow", &slow)], endpoints));

    let (status, headers, body) = get_json(&format!("{}/broken", gateway.url)).await;
    assert_eq!(status, 502);
    assert_eq!(headers["content-type"], "application/problem+json");
    assert_eq!(body["status"], 502);
    assert_eq!(body["call"], "user");
    assert_eq!(body["error"], "status");
    assert!(body["detail"].as_str().unwrap().contains("status 503"), "{body}");
    assert!(headers.contains_key("server-timing") && headers.contains_key("x-request-id"));

    let started = Instant::now();
    let (status, headers, body) = get_json(&format!("{}/slow", gateway.url)).await;
    assert_eq!(status, 504);
    assert!(started.elapsed() < Duration::from_millis(1500), "waited for the 2 s backend");
    assert_eq!(headers["content-type"], "application/problem+json");
    assert_eq!(body["call"], "user");
    assert_eq!(body["error"], "timeout");

    let (status, _, body) = get_json(&format!("{}/deadline", gateway.url)).await;
    assert_eq!(status, 504);
    assert_eq!(body["error"], "cancelled", "the endpoint deadline, not the call timeout, ended it");

    let response = client().get(format!("{}/broken", gateway.url)).send().await.unwrap();
    assert_eq!(response.status(), 502, "the gateway keeps serving");
}

#[tokio::test]
async fn a_required_failure_answers_at_once_and_cancels_the_other_calls() {
    let broken = spawn(RouteSpec::json("/r", json!({})).status(500)).await;
    let slow = spawn(RouteSpec::json("/r", json!({})).latency(Duration::from_millis(1500))).await;
    let endpoint = "  - route: GET /page\n    calls:\n      \
                    slow: { backend: slow, path: /r, timeout: 2s }\n      \
                    user: { backend: broken, path: /r, required: true }\n";
    let gateway = Gateway::start(&config(&[("broken", &broken), ("slow", &slow)], endpoint));

    let started = Instant::now();
    let (status, headers, body) = get_json(&format!("{}/page", gateway.url)).await;
    assert_eq!(status, 502);
    assert_eq!(body["call"], "user");
    assert!(
        started.elapsed() < Duration::from_millis(1200),
        "waited for the 1.5 s call: {:?}",
        started.elapsed()
    );
    let timing = headers["server-timing"].to_str().unwrap();
    assert!(timing.starts_with("user;dur=") && !timing.contains("slow;"), "{timing}");
    let cancelled = crate::support::wait_until(Duration::from_secs(1), || slow.cancelled() == 1).await;
    assert!(cancelled, "the slow call kept running after the 502");
}

#[tokio::test]
async fn bodies_without_a_declared_length_are_cut_at_the_limit_while_streaming() {
    let chunk = |n: usize| format!("{n:x}\r\n{}\r\n", "x".repeat(n)).into_bytes();
    // 400 KiB in 4 KiB chunks, no Content-Length: cut at 64 KiB, before any JSON check.
    let mut huge = vec![b"a\r\n[\"xxxxxxx\"\r\n".to_vec()];
    huge.extend((0..100).map(|_| chunk(4096)));
    huge.push(b"1\r\n]\r\n0\r\n\r\n".to_vec());
    let chunked = crate::support::raw_backend(
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
        huge,
        Duration::ZERO,
    )
    .await;
    let small = vec![b"4\r\n\"xx\"\r\n0\r\n\r\n".to_vec()];
    let fine = crate::support::raw_backend(
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
        small,
        Duration::ZERO,
    )
    .await;
    let yaml = format!(
        "server:\n  listen: 127.0.0.1:0\n  admin_listen: 127.0.0.1:0\nbackends:\n  \
         chunked: {{ url: \"{chunked}\", max_response_body: 64KiB }}\n  fine: {{ url: \"{fine}\" }}\n\
         endpoints:\n  - route: GET /page\n    calls:\n      \
         big: {{ backend: chunked, path: /b }}\n      small: {{ backend: fine, path: /s }}\n"
    );
    let gateway = Gateway::start(&yaml);

    let (status, _, body) = get_json(&format!("{}/page", gateway.url)).await;
    assert_eq!(status, 200);
    assert_eq!(body["_errors"]["big"]["error"], "too_large");
    assert_eq!(body["small"], "xx", "a chunked body under the limit is spliced as it is");
}

#[tokio::test]
async fn bodies_under_the_limit_pass_however_many_pieces_they_arrive_in() {
    // 60,000 bytes under a 64 KiB cap, written in three 20,000-byte pieces with pauses, so the
    // gateway reads them as separate chunks (the first one was once counted twice).
    let body = format!("\"{}\"", "x".repeat(59_998)).into_bytes();
    let pieces: Vec<Vec<u8>> = body.chunks(20_000).map(<[u8]>::to_vec).collect();
    let pause = Duration::from_millis(30);
    let length_head = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", body.len());
    let with_length = crate::support::raw_backend(&length_head, pieces.clone(), pause).await;
    let chunk = |piece: &Vec<u8>| {
        [format!("{:x}\r\n", piece.len()).into_bytes(), piece.clone(), b"\r\n".to_vec()].concat()
    };
    let mut chunked_pieces: Vec<Vec<u8>> = pieces.iter().map(chunk).collect();
    chunked_pieces.push(b"0\r\n\r\n".to_vec());
    let chunked = crate::support::raw_backend(
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
        chunked_pieces,
        pause,
    )
    .await;
    let yaml = format!(
        "server:\n  listen: 127.0.0.1:0\n  admin_listen: 127.0.0.1:0\nbackends:\n  \
         sized: {{ url: \"{with_length}\", max_response_body: 64KiB }}\n  \
         chunked: {{ url: \"{chunked}\", max_response_body: 64KiB }}\n\
         endpoints:\n  - route: GET /page\n    calls:\n      \
         sized: {{ backend: sized, path: /a }}\n      chunked: {{ backend: chunked, path: /b }}\n"
    );
    let gateway = Gateway::start(&yaml);

    for round in 0..3 {
        let (status, headers, body) = get_json(&format!("{}/page", gateway.url)).await;
        assert_eq!(status, 200, "round {round}: {body}");
        assert_eq!(headers["x-fanout-complete"], "true", "round {round}: {}", body["_errors"]);
        assert_eq!(body["sized"].as_str().map(str::len), Some(59_998), "round {round}");
        assert_eq!(body["chunked"].as_str().map(str::len), Some(59_998), "round {round}");
    }
}

#[tokio::test]
async fn compressed_bodies_are_never_decompressed() {
    // `{"a":1}` gzipped: a gateway that decompressed would splice it; fanout never asks for
    // compression and never inflates a body (no decompression bomb), so it is not JSON.
    let gzipped = vec![
        31, 139, 8, 0, 0, 0, 0, 0, 2, 3, 171, 86, 74, 84, 178, 50, 172, 5, 0, 175, 172, 27, 86, 7, 0, 0, 0,
    ];
    let head = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Encoding: gzip\r\nContent-Length: {}\r\n\r\n",
        gzipped.len()
    );
    let backend = crate::support::raw_backend(&head, vec![gzipped], Duration::ZERO).await;
    let yaml = format!(
        "server:\n  listen: 127.0.0.1:0\n  admin_listen: 127.0.0.1:0\nbackends:\n  z: {{ url: \"{backend}\" }}\n\
         endpoints:\n  - route: GET /page\n    forward_headers: [accept-language]\n    calls:\n      z: {{ backend: z, path: /z }}\n"
    );
    let gateway = Gateway::start(&yaml);

    let response =
        client().get(format!("{}/page", gateway.url)).header("accept-encoding", "gzip").send().await.unwrap();
    assert_eq!(response.status(), 200);
    let body: serde_json::Value = serde_json::from_slice(&response.bytes().await.unwrap()).unwrap();
    assert_eq!(body["_errors"]["z"]["error"], "invalid_body", "{body}");
    assert!(body.get("z").is_none());
}

#[tokio::test]
async fn a_backend_at_its_max_in_flight_gets_no_more_calls_they_fail_at_once_as_overloaded() {
    let ids = spawn(RouteSpec::json("/ids", json!({"ids": [0, 1, 2, 3, 4]}))).await;
    let slow =
        spawn(RouteSpec::json("/el/{n}", json!({"n": "{n}"})).latency(Duration::from_millis(800))).await;
    let endpoint = "  - route: GET /page\n    calls:\n      \
                    ids: { backend: ids, path: /ids }\n      \
                    els: { backend: slow, path: \"/el/{ids.ids[*]}\", concurrency: 5, timeout: 1500ms }\n  \
                    - route: GET /one\n    calls:\n      \
                    one: { backend: slow, path: /el/9, required: true, timeout: 1500ms }\n";
    let yaml =
        Config::new(&[("ids", &ids), ("slow", &slow)], endpoint).backend("slow", "max_in_flight: 2").render();
    let gateway = Gateway::start(&yaml);

    let (status, headers, body) = get_json(&format!("{}/page", gateway.url)).await;

    assert_eq!(status, 200, "{body}");
    assert_eq!(headers["x-fanout-complete"], "false");
    assert_eq!(slow.requests().len(), 2, "only max_in_flight requests reached the backend");
    assert!(slow.peak_in_flight() <= 2, "peak {}", slow.peak_in_flight());
    let elements = body["els"].as_array().unwrap();
    assert_eq!(elements.iter().filter(|e| !e.is_null()).count(), 2, "{body}");
    let overloaded: Vec<&serde_json::Value> =
        (0..5).filter_map(|i| body["_errors"].get(format!("els[{i}]"))).collect();
    assert_eq!(overloaded.len(), 3, "{body}");
    assert!(overloaded.iter().all(|entry| entry["error"] == "overloaded"), "{body}");

    // A required call refused by the bulkhead: 502, answered while the backend's two requests
    // are still in flight (it does not wait for a slot).
    let page = tokio::spawn(client().get(format!("{}/page", gateway.url)).send());
    assert!(crate::support::wait_until(Duration::from_secs(5), || slow.requests().len() == 4).await);
    let (status, _, body) = get_json(&format!("{}/one", gateway.url)).await;
    let answered = Instant::now();
    assert_eq!((status, &body["error"]), (502, &json!("overloaded")), "{body}");
    let in_flight =
        slow.requests().into_iter().skip(2).filter(|r| r.completed.is_none_or(|done| done > answered));
    assert_eq!(in_flight.count(), 2, "answered only once a slot was free");
    assert_eq!(page.await.unwrap().unwrap().status(), 200);
}
