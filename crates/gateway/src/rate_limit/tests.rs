//! The limiter in process, on tokio's paused clock.

use super::*;
use futures_util::FutureExt;
use std::net::Ipv4Addr;

fn settings(key: KeySource, count: u32, burst: u32, max_keys: usize) -> RateLimitSettings {
    RateLimitSettings { key, count, per: Duration::from_secs(1), burst, max_keys }
}

/// A check of a limiter without shared state: it never waits, so it is ready at once.
fn local(limiter: &RateLimiter, headers: &HeaderMap, peer: Option<IpAddr>) -> Checked {
    limiter.check(headers, peer, &[]).now_or_never().unwrap()
}

fn peer(last: u8) -> Option<IpAddr> {
    Some(IpAddr::V4(Ipv4Addr::new(192, 0, 2, last)))
}

#[tokio::test(start_paused = true)]
async fn each_client_gets_its_burst_then_the_rate() {
    let limiter = RateLimiter::new(&settings(KeySource::ClientIp, 10, 3, 100), "/r");
    let none = HeaderMap::new();
    let allowed = |p| (0..5).filter(|_| local(&limiter, &none, p).allowed()).count();
    assert_eq!(allowed(peer(1)), 3);
    assert_eq!(allowed(peer(2)), 3, "another client has its own bucket");
    let refused = local(&limiter, &none, peer(1));
    assert!(!refused.allowed());
    assert_eq!(refused.retry_after(), Duration::from_millis(100));
    tokio::time::advance(Duration::from_millis(100)).await;
    assert!(local(&limiter, &none, peer(1)).allowed());
    assert!(!local(&limiter, &none, peer(1)).allowed());
}

#[tokio::test(start_paused = true)]
async fn answers_carry_the_policy_and_what_is_left() {
    let limiter = RateLimiter::new(&settings(KeySource::ClientIp, 100, 200, 100), "/r");
    let mut headers = HeaderMap::new();
    let checked = local(&limiter, &HeaderMap::new(), peer(1));
    limiter.set_headers(checked, &mut headers);
    assert_eq!(headers[RATELIMIT_POLICY], "\"client_ip\";q=200;w=2");
    assert_eq!(headers[RATELIMIT], "\"client_ip\";r=199;t=1");
    for _ in 0..199 {
        assert!(local(&limiter, &HeaderMap::new(), peer(1)).allowed());
    }
    let refused = local(&limiter, &HeaderMap::new(), peer(1));
    limiter.set_headers(refused, &mut headers);
    assert_eq!(headers[RATELIMIT], "\"client_ip\";r=0;t=2");
}

#[tokio::test(start_paused = true)]
async fn concurrent_requests_never_take_more_than_the_bucket_holds() {
    // One a day: the threads read the real clock, and nothing refills while they run.
    let settings =
        RateLimitSettings { per: Duration::from_secs(86_400), ..settings(KeySource::Global, 1, 1_000, 10) };
    let limiter = Arc::new(RateLimiter::new(&settings, "/r"));
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let limiter = Arc::clone(&limiter);
            std::thread::spawn(move || {
                (0..1_000).filter(|_| local(&limiter, &HeaderMap::new(), None).allowed()).count()
            })
        })
        .collect();
    let allowed: usize = threads.into_iter().map(|t| t.join().unwrap()).sum();
    assert_eq!(allowed, 1_000);
}

#[tokio::test(start_paused = true)]
async fn rotating_keys_cannot_grow_the_limiter_past_max_keys() {
    let limiter = RateLimiter::new(
        &settings(KeySource::Header(HeaderName::from_static("x-api-key")), 10, 1, 1_000),
        "/r",
    );
    for i in 0..10_000u32 {
        let mut headers = HeaderMap::new();
        headers.insert("x-api-key", HeaderValue::from(i));
        assert!(local(&limiter, &headers, None).allowed(), "a new key starts full");
    }
    let tracked = limiter.tracked_keys();
    assert!(tracked <= 1_000, "{tracked} keys tracked");
    assert!(tracked >= 500, "{tracked}: the cap, not an accident, bounds it");
}
