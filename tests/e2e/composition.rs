//! The success path: grouped bodies from concurrent backends and the contract's headers.

use crate::support::{Config, Gateway, config, get_json};
use mockend::{MockServer, RouteSpec, ServiceSpec};
use serde_json::json;
use std::time::{Duration, Instant};

const NAMES: [&str; 5] = ["catalog", "pricing", "inventory", "reviews", "recommendations"];

#[tokio::test]
async fn five_backends_of_200ms_answer_together_with_grouped_bodies() {
    // When calls start is the executor's (crates/downstream/tests/executor.rs, exact on a
    // paused clock); here only the order of real events is checked: every backend had its
    // request before any had answered.
    let mut servers = Vec::new();
    for name in NAMES {
        let route = RouteSpec::json("/items/{id}", json!({"service": name, "id": "{id}"}))
            .latency(Duration::from_millis(200));
        servers.push(MockServer::spawn(ServiceSpec::new(vec![route])).await.unwrap());
    }
    let backends: Vec<_> = NAMES.iter().copied().zip(servers.iter()).collect();
    let mut endpoint = String::from("  - route: GET /page/{id}\n    calls:\n");
    for name in NAMES {
        endpoint.push_str(&format!(
            "      {name}: {{ backend: {name}, path: \"/items/{{id}}\", required: true }}\n"
        ));
    }
    let gateway = Gateway::start(&config(&backends, &endpoint));

    let (status, headers, body) = get_json(&format!("{}/page/42", gateway.url)).await;

    assert_eq!(status, 200);
    let requests: Vec<_> = servers.iter().map(|server| server.requests()[0].clone()).collect();
    let last_arrived = requests.iter().map(|request| request.arrived).max().unwrap();
    let first_answered = requests.iter().filter_map(|request| request.completed).min().unwrap();
    assert!(last_arrived < first_answered, "calls did not run concurrently");
    let expected = json!({
        "catalog": {"service": "catalog", "id": "42"},
        "pricing": {"service": "pricing", "id": "42"},
        "inventory": {"service": "inventory", "id": "42"},
        "reviews": {"service": "reviews", "id": "42"},
        "recommendations": {"service": "recommendations", "id": "42"},
    });
    assert_eq!(body, expected);
    let keys: Vec<_> = body.as_object().unwrap().keys().cloned().collect();
    assert_eq!(keys, NAMES, "calls appear in declared order");
    assert_eq!(headers["content-type"], "application/json");
    assert_eq!(headers["x-fanout-complete"], "true");
    assert!(!headers["x-request-id"].is_empty());
    let timing = headers["server-timing"].to_str().unwrap();
    for name in NAMES.iter().chain(&["gateway", "total"]) {
        assert!(timing.contains(&format!("{name};dur=")), "Server-Timing {timing:?} lacks {name}");
    }
    let dur = |name: &str| -> f64 {
        let entry = timing.split(", ").find(|e| e.starts_with(&format!("{name};"))).unwrap();
        entry.split("dur=").nth(1).unwrap().parse().unwrap()
    };
    let slowest = NAMES.iter().map(|n| dur(n)).fold(0.0, f64::max);
    assert!(
        (dur("total") - slowest - dur("gateway")).abs() < 0.3,
        "gateway = total - critical path: {timing}"
    );
    assert!(dur("gateway") < 50.0, "the gateway's own time should be small: {timing}");
    for server in &servers {
        let requests = server.requests();
        assert_eq!(requests.len(), 1);
        assert_eq!(requests[0].path_and_query, "/items/42");
    }
}

#[tokio::test]
async fn head_is_answered_and_base_path_and_forwarded_query_reach_backends() {
    let server = MockServer::spawn(ServiceSpec::new(vec![
        RouteSpec::json("/v1/u/{id}", json!({"ok": true})),
        RouteSpec::json("/v1/search", json!([1, 2])),
    ]))
    .await
    .unwrap();
    let endpoint = "  - route: GET /p/{id}\n    forward_query: [locale]\n    calls:\n      \
                    user: { backend: b, path: \"/u/{id}\" }\n      \
                    hits: { backend: b, path: \"/search?q={id}\" }\n";
    let yaml =
        Config::new(&[("b", &server)], endpoint).backend("b", &format!("url: {}/v1/", server.url())).render();
    let gateway = Gateway::start(&yaml);

    let (status, _, body) = get_json(&format!("{}/p/7?locale=en+US&debug=1&locale=fr", gateway.url)).await;
    assert_eq!(status, 200);
    assert_eq!(body, json!({"user": {"ok": true}, "hits": [1, 2]}));
    let mut paths: Vec<_> = server.requests().into_iter().map(|r| r.path_and_query).collect();
    paths.sort();
    assert_eq!(paths, ["/v1/search?q=7&locale=en+US&locale=fr", "/v1/u/7?locale=en+US&locale=fr"]);

    let head = crate::support::client().head(format!("{}/p/7", gateway.url)).send().await.unwrap();
    assert_eq!(head.status(), 200);
    assert_eq!(head.headers()["x-fanout-complete"], "true");
}

#[tokio::test]
async fn h2c_is_served_and_spoken_to_backends_that_ask_for_it() {
    let server =
        MockServer::spawn(ServiceSpec::new(vec![RouteSpec::json("/x", json!({"ok": true}))])).await.unwrap();
    let endpoint = "  - route: GET /page\n    calls:\n      h1: { backend: plain, path: /x }\n      h2: { backend: h2, path: /x }\n";
    let yaml = Config::new(&[("plain", &server)], endpoint)
        .backend("h2", &format!("url: {}", server.url()))
        .backend("h2", "http2: true")
        .render();
    let gateway = Gateway::start(&yaml);

    let h2_client = reqwest::Client::builder().no_proxy().http2_prior_knowledge().build().unwrap();
    let response = h2_client.get(format!("{}/page", gateway.url)).send().await.unwrap();
    assert_eq!(response.version(), reqwest::Version::HTTP_2);
    assert_eq!(response.status(), 200);
    let body: serde_json::Value = serde_json::from_slice(&response.bytes().await.unwrap()).unwrap();
    assert_eq!(body, json!({"h1": {"ok": true}, "h2": {"ok": true}}));
    // HTTP/1.1 requests carry a Host header; HTTP/2 ones carry :authority instead.
    let mut with_host: Vec<_> = server.requests().iter().map(|r| r.headers.contains_key("host")).collect();
    with_host.sort();
    assert_eq!(with_host, [false, true]);
}

#[tokio::test]
async fn requests_beyond_max_in_flight_are_shed_with_503() {
    let server = MockServer::spawn(ServiceSpec::new(vec![
        RouteSpec::json("/x", json!({})).latency(Duration::from_millis(400)),
    ]))
    .await
    .unwrap();
    let endpoint = "  - route: GET /page\n    calls:\n      x: { backend: b, path: /x }\n";
    let yaml = Config::new(&[("b", &server)], endpoint).server("max_in_flight: 1").render();
    let gateway = Gateway::start(&yaml);

    let first = tokio::spawn(crate::support::client().get(format!("{}/page", gateway.url)).send());
    assert!(crate::support::wait_until(Duration::from_secs(2), || server.requests().len() == 1).await);
    let (status, headers, body) = get_json(&format!("{}/page", gateway.url)).await;
    let answered = Instant::now();
    assert_eq!(status, 503);
    let first_done = server.requests()[0].completed;
    assert!(first_done.is_none_or(|done| done > answered), "shed only once the first request was done");
    assert_eq!(headers["retry-after"], "1");
    assert_eq!(headers["content-type"], "application/problem+json");
    assert_eq!(body["status"], 503);
    assert_eq!(first.await.unwrap().unwrap().status(), 200);
    assert_eq!(server.requests().len(), 1, "the shed request reached no backend");
}
