//! Rate limits end to end: the real binary, a real backend, requests over real sockets; what
//! the client got (status, `Retry-After`, `RateLimit-Policy`, `RateLimit`), what reached the
//! backend, and the metrics.

use crate::support::{Config, Gateway, client, samples};
use mockend::{MockServer, RouteSpec, ServiceSpec};
use serde_json::json;
use std::time::{Duration, Instant};

async fn backend() -> MockServer {
    MockServer::spawn(ServiceSpec::new(vec![RouteSpec::json("/x", json!({"ok": true}))])).await.unwrap()
}

/// `GET /a` and `GET /b`, one call each, with `limits` (`a` and `b`: their `rate_limit` lines).
fn endpoints(a: &str, b: &str) -> String {
    let endpoint = |route: &str, limit: &str| {
        let limit = if limit.is_empty() { String::new() } else { format!("    rate_limit: {limit}\n") };
        format!("  - route: GET {route}\n{limit}    calls:\n      x: {{ backend: b, path: /x }}\n")
    };
    endpoint("/a", a) + &endpoint("/b", b)
}

/// GETs `url` with `headers`; returns the status and the answer's headers.
async fn get(url: &str, headers: &[(&str, &str)]) -> (u16, reqwest::header::HeaderMap) {
    let mut request = client().get(url);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await.unwrap();
    (response.status().as_u16(), response.headers().clone())
}

async fn metrics(gateway: &Gateway) -> std::collections::HashMap<String, f64> {
    let text = client().get(format!("{}/metrics", gateway.admin)).send().await.unwrap().text().await.unwrap();
    samples(&text)
}

#[tokio::test]
async fn over_the_limit_is_429_with_retry_after_and_ratelimit_fields_before_any_backend_call() {
    let backend = backend().await;
    let yaml = Config::new(&[("b", &backend)], &endpoints("{ rate: 1/m, burst: 2 }", "")).render();
    let gateway = Gateway::start(&yaml);
    let url = format!("{}/a", gateway.url);

    let (first, first_headers) = get(&url, &[]).await;
    let (second, second_headers) = get(&url, &[]).await;
    let response = client().get(&url).send().await.unwrap();

    assert_eq!((first, second), (200, 200));
    assert_eq!(first_headers["ratelimit-policy"], "\"client_ip\";q=2;w=120");
    assert_eq!(first_headers["ratelimit"], "\"client_ip\";r=1;t=60");
    assert_eq!(second_headers["ratelimit"], "\"client_ip\";r=0;t=120");
    assert_eq!(response.status(), 429);
    let headers = response.headers().clone();
    assert_eq!(headers["content-type"], "application/problem+json");
    let retry_after: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((59..=60).contains(&retry_after), "{retry_after}");
    assert_eq!(headers["ratelimit"], "\"client_ip\";r=0;t=120");
    let body: serde_json::Value = serde_json::from_slice(&response.bytes().await.unwrap()).unwrap();
    assert_eq!((&body["status"], &body["title"]), (&json!(429), &json!("Too Many Requests")));
    assert_eq!(backend.requests().len(), 2, "the refused request made no backend call");
    let (unlimited, unlimited_headers) = get(&format!("{}/b", gateway.url), &[]).await;
    assert_eq!(unlimited, 200);
    assert!(unlimited_headers.get("ratelimit").is_none(), "an endpoint without a limit says nothing");
    let metrics = metrics(&gateway).await;
    let series = |outcome: &str| {
        metrics
            .get(&format!("fanout_rate_limit_requests_total{{http_route=\"GET /a\",outcome=\"{outcome}\"}}"))
    };
    assert_eq!((series("allowed"), series("limited")), (Some(&2.0), Some(&1.0)));
    assert!(!metrics.keys().any(|series| series.contains("127.0.0.1")), "keys are never labels");
}

#[tokio::test]
async fn the_server_limit_is_every_endpoints_default_and_off_opts_out() {
    let backend = backend().await;
    let yaml = Config::new(&[("b", &backend)], &endpoints("", "\"off\""))
        .server("rate_limit: { rate: 1/m, burst: 1 }")
        .render();
    let gateway = Gateway::start(&yaml);

    let a: Vec<u16> = statuses(&format!("{}/a", gateway.url), 3).await;
    let b: Vec<u16> = statuses(&format!("{}/b", gateway.url), 3).await;

    assert_eq!(a, [200, 429, 429]);
    assert_eq!(b, [200, 200, 200]);
}

/// The statuses of `n` GETs of `url`, one after another.
async fn statuses(url: &str, n: usize) -> Vec<u16> {
    let mut statuses = Vec::new();
    for _ in 0..n {
        statuses.push(get(url, &[]).await.0);
    }
    statuses
}

#[tokio::test]
async fn each_api_key_has_its_own_bucket_and_requests_without_one_share_the_anonymous_bucket() {
    let backend = backend().await;
    let limit = "{ key: \"header:X-Api-Key\", rate: 1/m, burst: 1 }";
    let gateway = Gateway::start(&Config::new(&[("b", &backend)], &endpoints(limit, "")).render());
    let url = format!("{}/a", gateway.url);

    let mut statuses = Vec::new();
    for key in ["k1", "k1", "k2", "", ""] {
        let headers: &[(&str, &str)] = if key.is_empty() { &[] } else { &[("x-api-key", key)] };
        statuses.push(get(&url, headers).await.0);
    }

    assert_eq!(statuses, [200, 429, 200, 200, 429]);
}

#[tokio::test]
async fn behind_a_trusted_proxy_the_forwarded_client_is_limited_and_a_forged_entry_changes_nothing() {
    let backend = backend().await;
    let limit = "{ rate: 1/m, burst: 1 }";
    let trusted = Gateway::start(
        &Config::new(&[("b", &backend)], &endpoints(limit, ""))
            .server("trusted_proxies: [127.0.0.1]")
            .render(),
    );
    let url = format!("{}/a", trusted.url);

    let first = get(&url, &[("x-forwarded-for", "1.1.1.1, 203.0.113.1")]).await.0;
    let forged = get(&url, &[("x-forwarded-for", "9.9.9.9, 203.0.113.1")]).await.0;
    let other = get(&url, &[("x-forwarded-for", "203.0.113.2")]).await.0;

    assert_eq!((first, forged, other), (200, 429, 200));

    // Without trusted proxies the header is not read: the peer is the client.
    let direct = Gateway::start(&Config::new(&[("b", &backend)], &endpoints(limit, "")).render());
    let url = format!("{}/a", direct.url);
    let first = get(&url, &[("x-forwarded-for", "203.0.113.1")]).await.0;
    let second = get(&url, &[("x-forwarded-for", "203.0.113.2")]).await.0;
    assert_eq!((first, second), (200, 429));
}

#[tokio::test]
async fn rotating_keys_stay_under_max_keys_and_the_evictions_are_counted() {
    let backend = backend().await;
    let limit = "{ key: \"header:X-Api-Key\", rate: 1/m, burst: 1, max_keys: 100 }";
    let gateway = Gateway::start(&Config::new(&[("b", &backend)], &endpoints(limit, "")).render());
    let url = format!("{}/a", gateway.url);

    for i in 0..1_000 {
        let key = format!("key-{i}");
        assert_eq!(get(&url, &[("x-api-key", &key)]).await.0, 200, "a new key starts with a full bucket");
    }

    let route = "http_route=\"GET /a\"";
    // The gauge is refreshed every second by the upkeep.
    let started = Instant::now();
    let (keys, evicted) = loop {
        let metrics = metrics(&gateway).await;
        let keys = metrics.get(&format!("fanout_rate_limit_keys{{{route}}}")).copied();
        let evicted = metrics.get(&format!("fanout_rate_limit_evictions_total{{{route}}}")).copied();
        let settled =
            matches!((keys, evicted), (Some(keys), Some(evicted)) if keys <= 100.0 && evicted >= 800.0);
        if settled || started.elapsed() > Duration::from_secs(10) {
            break (keys, evicted);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(keys.is_some_and(|keys| (50.0..=100.0).contains(&keys)), "tracked keys: {keys:?}");
    assert!(evicted.is_some_and(|evicted| evicted >= 800.0), "evictions: {evicted:?}");
}
