//! Shared state on Redis end to end: real gateways, a real `redis-server` per test (started,
//! killed and restarted by the test), real sockets. Limits hold across replicas; when Redis
//! dies under load no request fails and the local limits take over; when it returns the shared
//! limits resume.

use crate::support::{Config, Gateway, RedisServer, client, samples};
use mockend::{MockServer, RouteSpec, ServiceSpec};
use serde_json::json;
use std::time::{Duration, Instant};

async fn backend() -> MockServer {
    MockServer::spawn(ServiceSpec::new(vec![RouteSpec::json("/x", json!({"ok": true}))])).await.unwrap()
}

/// `GET /a` limited by client address with `limit`, its state in the Redis at `url`.
fn config(backend: &MockServer, limit: &str, redis: &str) -> String {
    let endpoints = format!(
        "  - route: GET /a\n    rate_limit: {limit}\n    calls:\n      x: {{ backend: b, path: /x }}\n"
    );
    Config::new(&[("b", backend)], &endpoints)
        .state(&format!("redis: {{ url: \"{redis}\", timeout: 200ms }}"))
        .render()
}

async fn metric(gateway: &Gateway, series: &str) -> f64 {
    let text = client().get(format!("{}/metrics", gateway.admin)).send().await.unwrap().text().await.unwrap();
    samples(&text).get(series).copied().unwrap_or(0.0)
}

/// What came of GETs of `url` sent one after another until `until`: (status, seconds taken);
/// a request that got no answer at all is status 0.
async fn hammer(url: String, until: Instant) -> Vec<(u16, f64)> {
    let client = client();
    let mut results = Vec::new();
    while Instant::now() < until {
        let started = Instant::now();
        let status = match client.get(&url).send().await {
            Ok(response) => {
                let status = response.status().as_u16();
                let _ = response.bytes().await;
                status
            }
            Err(_) => 0,
        };
        results.push((status, started.elapsed().as_secs_f64()));
    }
    results
}

#[tokio::test]
async fn two_gateways_sharing_redis_allow_the_limit_once_not_twice() {
    let redis = RedisServer::start();
    let backend = backend().await;
    let yaml = config(&backend, "{ rate: 100/s, burst: 100 }", &redis.url());
    let (one, two) = (Gateway::start(&yaml), Gateway::start(&yaml));

    // One bucket: what one gateway takes, the other sees.
    let remaining = |headers: &reqwest::header::HeaderMap| headers["ratelimit"].to_str().unwrap().to_owned();
    let first = client().get(format!("{}/a", one.url)).send().await.unwrap();
    let second = client().get(format!("{}/a", two.url)).send().await.unwrap();
    assert_eq!(remaining(first.headers()), "\"client_ip\";r=99;t=1");
    assert_eq!(remaining(second.headers()), "\"client_ip\";r=98;t=1");

    // 3 s of as many requests as both take, two clients on each: a shared 100/s with a burst
    // of 100 allows ~400; two separate limits would allow ~800.
    let until = Instant::now() + Duration::from_secs(3);
    let (a, b, c, d) = tokio::join!(
        hammer(format!("{}/a", one.url), until),
        hammer(format!("{}/a", one.url), until),
        hammer(format!("{}/a", two.url), until),
        hammer(format!("{}/a", two.url), until),
    );
    let results: Vec<_> = [a, b, c, d].into_iter().flatten().collect();
    let allowed = results.iter().filter(|(status, _)| *status == 200).count();
    assert!(
        results.len() > 1_000,
        "only {} requests sent: more than both limits together are needed",
        results.len()
    );
    assert!((340..=470).contains(&allowed), "{allowed} of {} allowed", results.len());
    assert!(results.iter().all(|(status, _)| *status == 200 || *status == 429));
    assert!(
        redis
            .cli(&["--scan", "--pattern", "fanout:rl:GET /a:ip:*"])
            .contains("fanout:rl:GET /a:ip:127.0.0.1"),
        "the bucket is in Redis under its documented key"
    );
}

#[tokio::test]
async fn when_redis_dies_under_load_no_request_fails_local_limits_apply_and_shared_ones_resume_when_it_returns()
 {
    let mut redis = RedisServer::start();
    let backend = backend().await;
    let gateway = Gateway::start(&config(&backend, "{ rate: 50/s, burst: 50 }", &redis.url()));
    let url = format!("{}/a", gateway.url);
    let ok = "fanout_redis_operations_total{op=\"rate_limit\",outcome=\"ok\"}";

    let up = hammer(url.clone(), Instant::now() + Duration::from_secs(1)).await;
    assert!(metric(&gateway, ok).await >= up.len() as f64, "every check went to Redis while it was up");

    redis.kill();
    let down = hammer(url.clone(), Instant::now() + Duration::from_secs(2)).await;
    let ok_while_down = metric(&gateway, ok).await;
    assert_eq!(metric(&gateway, "fanout_redis_up{purpose=\"rate_limit\"}").await, 0.0);

    redis.restart();
    // Redis is tried again at most a second after the last failure; then the shared limit.
    let back = hammer(url.clone(), Instant::now() + Duration::from_secs(3)).await;

    for (phase, results) in [("up", &up), ("down", &down), ("back", &back)] {
        let failed: Vec<_> = results.iter().filter(|(status, _)| *status != 200 && *status != 429).collect();
        assert!(
            failed.is_empty(),
            "{phase}: {} requests failed: {:?}",
            failed.len(),
            &failed[..failed.len().min(5)]
        );
        let slowest = results.iter().map(|(_, seconds)| *seconds).fold(0.0, f64::max);
        assert!(slowest < 1.0, "{phase}: a request took {slowest:.3} s (the Redis timeout is 200 ms)");
    }
    let allowed_down = down.iter().filter(|(status, _)| *status == 200).count();
    let limited_down = down.iter().filter(|(status, _)| *status == 429).count();
    // The local bucket (unused while Redis decided): 50 at once, then 50/s for 2 s — ~150 of
    // the ~2,000 requests one client sends here in 2 s.
    assert!(down.len() > 300, "only {} requests sent while Redis was down", down.len());
    assert!((100..=170).contains(&allowed_down), "{allowed_down} allowed while Redis was down");
    assert!(limited_down > 0, "while Redis was down the local limit still refused requests");
    assert!(metric(&gateway, ok).await > ok_while_down, "checks went to Redis again once it was back");
    assert_eq!(metric(&gateway, "fanout_redis_up{purpose=\"rate_limit\"}").await, 1.0);
    assert!(
        !redis.cli(&["--scan", "--pattern", "fanout:rl:*"]).trim().is_empty(),
        "buckets are in Redis again"
    );
    let warnings = gateway.logs().iter().filter(|line| line.contains("redis unavailable")).count();
    assert_eq!(warnings, 1, "the failure is logged once, not once per request");
}

#[tokio::test]
async fn a_gateway_whose_redis_is_down_at_start_serves_with_its_local_limits() {
    let mut redis = RedisServer::start();
    let url = redis.url();
    redis.kill();
    let backend = backend().await;
    let gateway = Gateway::start(&config(&backend, "{ rate: 1/m, burst: 2 }", &url));

    let results = hammer(format!("{}/a", gateway.url), Instant::now() + Duration::from_millis(300)).await;

    let statuses: Vec<u16> = results.iter().map(|(status, _)| *status).collect();
    assert_eq!(&statuses[..3], [200, 200, 429]);
    assert!(statuses[3..].iter().all(|status| *status == 429));
}

/// `GET /page` calling `b`'s `/item` as `x`, forwarding `Authorization`, with a shared cache.
fn cached_config(backend: &MockServer, redis: &str) -> String {
    let endpoints = "  - route: GET /page\n    forward_headers: [authorization]\n    \
                     calls:\n      x: { backend: b, path: /item }\n";
    Config::new(&[("b", backend)], endpoints)
        .backend("b", "cache: { shared: true }")
        .state(&format!("redis: {{ url: \"{redis}\", timeout: 200ms }}"))
        .render()
}

/// GETs `/page` of `gateway` as `token`; the status and `x`'s `Server-Timing` entry.
async fn page(gateway: &Gateway, token: &str) -> (u16, String) {
    let response = client()
        .get(format!("{}/page", gateway.url))
        .header("authorization", format!("Bearer {token}"))
        .send()
        .await
        .unwrap();
    let timing = response.headers()["server-timing"].to_str().unwrap().split(", ").next().unwrap().to_owned();
    (response.status().as_u16(), timing)
}

#[tokio::test]
async fn a_replica_that_starts_cold_serves_what_another_cached() {
    let redis = RedisServer::start();
    let route = RouteSpec::json("/item", json!({"v": 1})).header("cache-control", "max-age=60");
    let backend = MockServer::spawn(ServiceSpec::new(vec![route])).await.unwrap();
    let one = Gateway::start(&cached_config(&backend, &redis.url()));

    let (status, timing) = page(&one, "secret-token-1").await;
    assert_eq!(status, 200);
    assert!(!timing.contains("desc"), "{timing}");
    // Written to Redis in the background.
    let started = Instant::now();
    while redis.cli(&["--scan", "--pattern", "fanout:c:b:e:*"]).trim().is_empty() {
        assert!(started.elapsed() < Duration::from_secs(5), "the answer never reached Redis");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let two = Gateway::start(&cached_config(&backend, &redis.url()));
    let (status, timing) = page(&two, "secret-token-1").await;
    let (_, other_user) = page(&two, "secret-token-2").await;

    assert_eq!(status, 200);
    assert_eq!(timing.split(';').next_back(), Some("desc=\"hit\""), "{timing}");
    assert!(!other_user.contains("desc"), "another user's token is another entry: {other_user}");
    assert_eq!(
        backend.requests().len(),
        2,
        "one request per user; the cold replica asked Redis, not the backend"
    );
    let keys = redis.cli(&["--scan", "--pattern", "fanout:c:*"]);
    assert!(keys.contains("fanout:c:b:i:"), "{keys}");
    assert!(
        !keys.contains("/item") && !keys.contains("secret-token"),
        "URLs and tokens only as digests: {keys}"
    );
}

#[tokio::test]
async fn with_redis_down_the_cache_falls_back_to_its_local_tier() {
    let mut redis = RedisServer::start();
    let url = redis.url();
    redis.kill();
    let route = RouteSpec::json("/item", json!({"v": 1})).header("cache-control", "max-age=60");
    let backend = MockServer::spawn(ServiceSpec::new(vec![route])).await.unwrap();
    let gateway = Gateway::start(&cached_config(&backend, &url));

    let first = page(&gateway, "t").await;
    let started = Instant::now();
    let second = page(&gateway, "t").await;

    assert_eq!((first.0, second.0), (200, 200));
    assert!(second.1.ends_with("desc=\"hit\""), "{second:?}");
    assert!(started.elapsed() < Duration::from_secs(1));
    assert_eq!(backend.requests().len(), 1);
}
