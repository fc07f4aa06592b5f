//! The store in process, on tokio's paused clock: keys, windows, the memory bound.

use super::*;
use http::HeaderValue;

fn settings(max_bytes: usize) -> CacheSettings {
    CacheSettings {
        max_bytes,
        default_ttl: None,
        stale_while_revalidate: Duration::from_secs(10),
        stale_if_error: Duration::from_secs(60),
        shared: false,
    }
}

fn directives(cache_control: &str, vary: &str) -> Directives {
    let mut headers = HeaderMap::new();
    headers.insert(http::header::CACHE_CONTROL, HeaderValue::from_str(cache_control).unwrap());
    if !vary.is_empty() {
        headers.insert(http::header::VARY, HeaderValue::from_str(vary).unwrap());
    }
    Directives::of(&headers)
}

fn forwarded(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
    let mut headers = HeaderMap::new();
    for (name, value) in pairs {
        headers.insert(*name, HeaderValue::from_static(value));
    }
    headers
}

fn usable(cache: &ResponseCache, url: &'static str, headers: &HeaderMap) -> Option<Usable> {
    cache.lookup(&Bytes::from_static(url.as_bytes()), headers, Instant::now()).map(|(_, usable)| usable)
}

fn store(cache: &ResponseCache, url: &'static str, headers: &HeaderMap, directives: &Directives) {
    cache.store(Bytes::from_static(url.as_bytes()), headers, Bytes::from_static(b"{}"), directives);
}

#[tokio::test(start_paused = true)]
async fn an_answer_is_fresh_then_stale_while_revalidating_then_stale_if_error_then_gone() {
    let cache = ResponseCache::new("b", settings(1 << 20));
    let none = HeaderMap::new();
    store(&cache, "/x", &none, &directives("max-age=5", ""));
    assert_eq!(usable(&cache, "/x", &none), Some(Usable::Fresh));
    tokio::time::advance(Duration::from_secs(5)).await;
    assert_eq!(usable(&cache, "/x", &none), Some(Usable::Revalidate));
    tokio::time::advance(Duration::from_secs(10)).await;
    assert_eq!(usable(&cache, "/x", &none), Some(Usable::IfError));
    tokio::time::advance(Duration::from_secs(50)).await;
    assert_eq!(usable(&cache, "/x", &none), None);
    assert_eq!(usable(&cache, "/y", &none), None);
}

#[tokio::test(start_paused = true)]
async fn a_stored_body_does_not_keep_the_buffer_it_was_read_into() {
    let cache = ResponseCache::new("b", settings(1 << 20));
    let none = HeaderMap::new();
    let read_buffer = Bytes::from(vec![b' '; 8192]);
    let body = read_buffer.slice(..500);
    cache.store(Bytes::from_static(b"/x"), &none, body, &directives("max-age=60", ""));
    let (entry, _) = cache.lookup(&Bytes::from_static(b"/x"), &none, Instant::now()).unwrap();
    assert_eq!(entry.body.len(), 500);
    assert!(
        !read_buffer.as_ptr_range().contains(&entry.body.as_ptr()),
        "the entry is a view into the read buffer"
    );
}

#[tokio::test(start_paused = true)]
async fn answers_are_keyed_by_the_forwarded_headers_unless_public() {
    let cache = ResponseCache::new("b", settings(1 << 20));
    let alice = forwarded(&[("authorization", "Bearer alice"), ("x-request-id", "1")]);
    let alice_again = forwarded(&[("authorization", "Bearer alice"), ("x-request-id", "2")]);
    let bob = forwarded(&[("authorization", "Bearer bob"), ("x-request-id", "3")]);
    store(&cache, "/me", &alice, &directives("max-age=60", ""));
    assert_eq!(usable(&cache, "/me", &alice_again), Some(Usable::Fresh), "the request id never counts");
    assert_eq!(usable(&cache, "/me", &bob), None, "one user's answer is never another's");
    assert_eq!(usable(&cache, "/me", &HeaderMap::new()), None);

    store(&cache, "/catalog", &alice, &directives("public, max-age=60", ""));
    assert_eq!(usable(&cache, "/catalog", &bob), Some(Usable::Fresh), "a public answer is shared");
}

#[tokio::test(start_paused = true)]
async fn an_answer_stored_without_credentials_is_never_served_to_a_request_with_them() {
    let cache = ResponseCache::new("b", settings(1 << 20));
    let anonymous = forwarded(&[("x-request-id", "1")]);
    let bob = forwarded(&[("authorization", "Bearer bob")]);
    store(&cache, "/me", &anonymous, &directives("max-age=60", ""));
    assert_eq!(usable(&cache, "/me", &anonymous), Some(Usable::Fresh));
    assert_eq!(usable(&cache, "/me", &bob), None, "the anonymous answer is not Bob's");
    store(&cache, "/me", &bob, &directives("max-age=60", ""));
    assert_eq!(usable(&cache, "/me", &bob), Some(Usable::Fresh));
    assert_eq!(usable(&cache, "/me", &anonymous), Some(Usable::Fresh), "each keeps its own entry");
    assert_eq!(usable(&cache, "/me", &forwarded(&[("authorization", "Bearer eve")])), None);
}

#[tokio::test(start_paused = true)]
async fn vary_keeps_one_entry_per_value_even_for_public_answers() {
    let cache = ResponseCache::new("b", settings(1 << 20));
    let (en, de) = (forwarded(&[("accept-language", "en")]), forwarded(&[("accept-language", "de")]));
    let public = directives("public, max-age=60", "Accept-Language");
    store(&cache, "/p", &en, &public);
    assert_eq!(usable(&cache, "/p", &de), None);
    store(&cache, "/p", &de, &public);
    assert_eq!(usable(&cache, "/p", &en), Some(Usable::Fresh));
    assert_eq!(usable(&cache, "/p", &de), Some(Usable::Fresh));
    cache.entries.run_pending_tasks();
    assert_eq!(cache.entries.entry_count(), 2);
}

#[tokio::test(start_paused = true)]
async fn what_may_not_be_stored_is_not() {
    let cache = ResponseCache::new("b", settings(1 << 20));
    let none = HeaderMap::new();
    for (url, control, vary) in [
        ("/a", "no-store, max-age=60", ""),
        ("/b", "private, max-age=60", ""),
        ("/c", "max-age=60", "*"),
        ("/d", "", ""),
    ] {
        store(&cache, url, &none, &directives(control, vary));
        assert_eq!(usable(&cache, url, &none), None, "{control} {vary}");
    }
}

#[tokio::test(start_paused = true)]
async fn ten_times_max_bytes_of_answers_leave_the_cache_within_max_bytes() {
    let max_bytes = 256 * 1024;
    let cache = ResponseCache::new("b", settings(max_bytes));
    let body = Bytes::from(vec![b'1'; 4096]);
    let answer = directives("max-age=60", "");
    for i in 0..(10 * max_bytes / body.len()) {
        cache.store(Bytes::from(format!("/item/{i}")), &HeaderMap::new(), body.clone(), &answer);
    }
    let held = cache.weighed_bytes();
    assert!(held <= max_bytes as u64, "{held} bytes held");
    assert!(held >= max_bytes as u64 / 2, "{held}: the bound, not an accident, keeps it there");
    let last = format!("/item/{}", 10 * max_bytes / body.len() - 1);
    assert!(
        cache.lookup(&Bytes::from(last), &HeaderMap::new(), Instant::now()).is_some(),
        "recent answers stay"
    );
}
