//! The response cache end to end: the real binary against mock backends that send
//! `Cache-Control` and `Vary`, go down, or answer slowly; checked by what reached the backend,
//! the answers (`_stale`, `Server-Timing`), the metrics and the process's memory.

use crate::support::{Config, Gateway, client, get_json, samples};
use mockend::{MockServer, RouteSpec, ServiceSpec};
use serde_json::json;
use std::time::{Duration, Instant};

async fn spawn(routes: Vec<RouteSpec>) -> MockServer {
    MockServer::spawn(ServiceSpec::new(routes)).await.unwrap()
}

/// `GET /page/{path}` calling `b`'s `/{path}` as `x`, forwarding `Accept-Language`.
const PAGE: &str = "  - route: GET /page/{path}\n    forward_headers: [accept-language]\n    \
                    calls:\n      x: { backend: b, path: \"/{path}\" }\n";

async fn metric(gateway: &Gateway, series: &str) -> Option<f64> {
    let text = client().get(format!("{}/metrics", gateway.admin)).send().await.unwrap().text().await.unwrap();
    samples(&text).get(series).copied()
}

/// `x`'s `Server-Timing` entry.
/// A cached page whose backend answers `route` well for its first 2 s, then fails: the backend,
/// the gateway (its backend `b` set with `settings`), the page's URL, when the backend started
/// and when the first answer was stored (well within the good 2 s).
struct StoredBeforeTheFailure {
    backend: MockServer,
    gateway: Gateway,
    url: String,
    up: Instant,
    stored: Instant,
}

impl StoredBeforeTheFailure {
    async fn start(route: RouteSpec, path: &str, settings: &[&str]) -> Self {
        let backend = spawn(vec![route]).await;
        let up = Instant::now();
        let config = settings
            .iter()
            .fold(Config::new(&[("b", &backend)], PAGE), |config, setting| config.backend("b", setting));
        let gateway = Gateway::start(&config.render());
        let url = format!("{}/page/{path}", gateway.url);
        let stored = Instant::now();
        assert_eq!(get_json(&url).await.2, json!({"x": {"v": 1}}));
        assert!(stored < up + Duration::from_secs(2), "the gateway took too long to start for this timeline");
        StoredBeforeTheFailure { backend, gateway, url, up, stored }
    }
}

fn timing(headers: &reqwest::header::HeaderMap) -> String {
    let value = headers["server-timing"].to_str().unwrap();
    value.split(", ").find(|entry| entry.starts_with("x;")).unwrap_or_default().to_owned()
}

#[tokio::test]
async fn a_fresh_answer_is_served_from_the_cache_without_a_backend_request() {
    let backend =
        spawn(vec![RouteSpec::json("/a", json!({"n": 1})).header("cache-control", "max-age=60")]).await;
    let gateway = Gateway::start(&Config::new(&[("b", &backend)], PAGE).backend("b", "cache: {}").render());
    let url = format!("{}/page/a", gateway.url);

    let (_, first_headers, first) = get_json(&url).await;
    let (status, headers, second) = get_json(&url).await;

    assert_eq!((status, &second), (200, &first));
    assert_eq!(second, json!({"x": {"n": 1}}));
    assert_eq!(backend.requests().len(), 1, "the second answer came from the cache");
    assert!(!timing(&first_headers).contains("desc"), "{}", timing(&first_headers));
    assert!(timing(&headers).ends_with(";desc=\"hit\""), "{}", timing(&headers));
    let lookups = |result: &str| format!("fanout_cache_lookups_total{{backend=\"b\",result=\"{result}\"}}");
    assert_eq!(metric(&gateway, &lookups("miss")).await, Some(1.0));
    assert_eq!(metric(&gateway, &lookups("hit")).await, Some(1.0));
}

#[tokio::test]
async fn no_store_and_private_answers_are_never_cached_and_errors_never_are() {
    let backend = spawn(vec![
        RouteSpec::json("/ns", json!(1)).header("cache-control", "no-store, max-age=60"),
        RouteSpec::json("/pv", json!(2)).header("cache-control", "private, max-age=60"),
        RouteSpec::json("/err", json!(3)).status(503).header("cache-control", "max-age=60"),
    ])
    .await;
    // With a default TTL, only what the answers say keeps them out.
    let yaml = Config::new(&[("b", &backend)], PAGE).backend("b", "cache: { default_ttl: 60s }").render();
    let gateway = Gateway::start(&yaml);

    for path in ["ns", "pv", "err", "ns", "pv", "err"] {
        get_json(&format!("{}/page/{path}", gateway.url)).await;
    }

    let paths: Vec<String> = backend.requests().into_iter().map(|r| r.path_and_query).collect();
    assert_eq!(paths, ["/ns", "/pv", "/err", "/ns", "/pv", "/err"]);
}

#[tokio::test]
async fn vary_accept_language_keeps_one_entry_per_language() {
    let backend = spawn(vec![
        RouteSpec::json("/p", json!({"ok": true}))
            .header("cache-control", "public, max-age=60")
            .header("vary", "Accept-Language"),
    ])
    .await;
    let gateway = Gateway::start(&Config::new(&[("b", &backend)], PAGE).backend("b", "cache: {}").render());

    for language in ["en", "de", "en", "de", "en"] {
        let response = client()
            .get(format!("{}/page/p", gateway.url))
            .header("accept-language", language)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
    }

    let languages: Vec<String> = backend
        .requests()
        .iter()
        .map(|r| r.headers["accept-language"].to_str().unwrap().to_owned())
        .collect();
    assert_eq!(languages, ["en", "de"], "one request per language, then both from the cache");
}

#[tokio::test]
async fn a_backend_that_goes_down_is_answered_from_stale_within_stale_if_error_and_fails_after() {
    // Good for its first 2 s, then 503 for a minute.
    let route = RouteSpec::json("/s", json!({"v": 1}))
        .header("cache-control", "max-age=1, stale-if-error=3")
        .outage(Duration::from_secs(2), Duration::from_secs(60), 503);
    let StoredBeforeTheFailure { backend, gateway, url, up, stored } =
        StoredBeforeTheFailure::start(route, "s", &["cache: { stale_while_revalidate: off }"]).await;
    // Down, and the answer stored 1–4 s ago: stale, within stale-if-error.
    tokio::time::sleep((up + Duration::from_millis(2_500)).saturating_duration_since(Instant::now())).await;
    let (status, headers, stale) = get_json(&url).await;
    // Past max-age + stale-if-error.
    tokio::time::sleep((stored + Duration::from_millis(4_500)).saturating_duration_since(Instant::now()))
        .await;
    let (after_status, _, after) = get_json(&url).await;

    assert_eq!(status, 200);
    assert_eq!(stale["x"], json!({"v": 1}), "{stale}");
    assert_eq!(stale["_stale"]["x"]["reason"], "status", "{stale}");
    assert!((1..=3).contains(&stale["_stale"]["x"]["age_s"].as_u64().unwrap()), "{stale}");
    assert!(stale.get("_errors").is_none());
    assert_eq!(headers["x-fanout-complete"], "true");
    assert!(timing(&headers).ends_with(";desc=\"stale\""), "{}", timing(&headers));
    assert_eq!(after_status, 200);
    assert_eq!(after["_errors"]["x"]["status"], 503, "past the window the failure stands: {after}");
    assert!(after.get("_stale").is_none());
    assert_eq!(backend.requests().len(), 3, "the stale answer was served after the backend failed");
    let stale_served = "fanout_cache_stale_served_total{backend=\"b\",reason=\"status\"}";
    assert_eq!(metric(&gateway, stale_served).await, Some(1.0));
}

#[tokio::test]
async fn a_call_that_times_out_is_answered_from_stale_in_its_timeout() {
    // Good for its first 2 s, then it never answers.
    let route = RouteSpec::json("/h", json!({"v": 1}))
        .header("cache-control", "max-age=1")
        .hang_during(Duration::from_secs(2), Duration::from_secs(60));
    // Both servers held to the end of the test (a `_` pattern would drop them here).
    let StoredBeforeTheFailure { backend: _backend, gateway: _gateway, url, up, .. } =
        StoredBeforeTheFailure::start(
            route,
            "h",
            &["cache: { stale_while_revalidate: off }", "timeout: 300ms"],
        )
        .await;
    tokio::time::sleep((up + Duration::from_millis(2_500)).saturating_duration_since(Instant::now())).await;
    let asked = Instant::now();
    let (status, headers, stale) = get_json(&url).await;
    let waited = asked.elapsed();

    assert_eq!(status, 200);
    assert_eq!(
        (&stale["x"], &stale["_stale"]["x"]["reason"]),
        (&json!({"v": 1}), &json!("timeout")),
        "{stale}"
    );
    assert!(timing(&headers).ends_with(";desc=\"stale\""), "{}", timing(&headers));
    assert!(waited >= Duration::from_millis(300), "it waited the call's timeout first: {waited:?}");
    assert!(waited < Duration::from_millis(1_500), "then answered at once: {waited:?}");
}

#[tokio::test]
async fn a_stale_answer_is_served_at_once_and_refreshed_by_one_background_request() {
    let route = RouteSpec::json("/r", json!({"v": 1}))
        .header("cache-control", "max-age=1, stale-while-revalidate=30")
        .latency(Duration::from_secs(1));
    let backend = spawn(vec![route]).await;
    let yaml =
        Config::new(&[("b", &backend)], PAGE).backend("b", "cache: {}").backend("b", "timeout: 3s").render();
    let gateway = Gateway::start(&yaml);
    let url = format!("{}/page/r", gateway.url);

    get_json(&url).await;
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let started = Instant::now();
    let answers = futures_util::future::join_all((0..5).map(|_| get_json(&url))).await;
    let waited = started.elapsed();
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let (_, headers, refreshed) = get_json(&url).await;

    for (status, _, body) in &answers {
        assert_eq!(*status, 200);
        assert_eq!(body["_stale"]["x"]["reason"], "revalidating", "{body}");
    }
    assert!(waited < Duration::from_millis(600), "stale answers waited {waited:?} (the backend takes 1 s)");
    assert_eq!(backend.requests().len(), 2, "the first request, then one refresh for all five");
    assert!(refreshed.get("_stale").is_none(), "{refreshed}");
    assert!(timing(&headers).ends_with(";desc=\"hit\""), "the refresh was stored: {}", timing(&headers));
}

#[tokio::test]
async fn memory_stays_under_max_bytes_with_ten_times_that_volume() {
    // 20 MiB of distinct 16 KiB answers through a 2 MiB cache.
    assert_cache_memory_bounded(16 * 1024, 1_280, 12 << 20).await;
}

/// Small answers come in one read, as views into the connection's 8 KiB read buffer: stored as
/// they are, ~1,900 entries weighed at ~1 KiB each would hold ~16 MiB.
#[tokio::test]
async fn small_answers_hold_no_more_than_they_weigh() {
    // 3,000 distinct 512-byte answers (~3 MiB weighed) through a 2 MiB cache.
    assert_cache_memory_bounded(512, 3_000, 8 << 20).await;
}

/// Sends `requests` distinct pages of `body_size`-byte cacheable answers through a 2 MiB
/// cache: the cache holds between 1 and 2 MiB as weighed, evicts what has no room, and the RSS
/// grows by less than `max_growth` bytes.
async fn assert_cache_memory_bounded(body_size: usize, requests: usize, max_growth: u64) {
    let route = RouteSpec::new("/items/{id}").body_size(body_size).header("cache-control", "max-age=300");
    let backend = spawn(vec![route]).await;
    let endpoints =
        "  - route: GET /items/{id}\n    calls:\n      x: { backend: b, path: \"/items/{id}\" }\n";
    let yaml = Config::new(&[("b", &backend)], endpoints).backend("b", "cache: { max_bytes: 2MiB }").render();
    let gateway = Gateway::start(&yaml);
    let client = client();
    let get = |i: usize| client.get(format!("{}/items/{i}", gateway.url)).send();
    // Warm up allocator and connections first, so the growth measured is the cache's.
    for i in 0..128 {
        assert_eq!(get(i).await.unwrap().status(), 200);
    }
    let (before, _) = gateway.rss();
    for i in 128..requests {
        assert_eq!(get(i).await.unwrap().status(), 200);
    }

    let started = Instant::now();
    let held = loop {
        // The gauge is refreshed every second.
        let held = metric(&gateway, "fanout_cache_bytes{backend=\"b\"}").await;
        if held.is_some_and(|bytes| bytes > 0.0) || started.elapsed() > Duration::from_secs(5) {
            break held.unwrap_or_default();
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(held <= 2.0 * 1024.0 * 1024.0 && held > 1024.0 * 1024.0, "{held} bytes held");
    let evicted = metric(&gateway, "fanout_cache_evictions_total{backend=\"b\"}").await.unwrap_or_default();
    // At least three quarters of the answers the cache had no room for (each weighs its body
    // plus 512 bytes).
    let room = (2 << 20) / (body_size + 512);
    assert!(evicted >= 0.75 * (requests - room) as f64, "{evicted} evictions");
    let (after, _) = gateway.rss();
    let grown = after.saturating_sub(before);
    assert!(grown < max_growth, "RSS grew {} KiB for {requests} answers of {body_size} bytes", grown >> 10);
}
