//! End-to-end tests of `MockServer` over real sockets with a raw HTTP/1.1
//! client.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use mockend::{Behavior, MockServer, RouteSpec, ServiceSpec};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A parsed HTTP/1.1 response.
#[derive(Debug)]
struct Reply {
    status: u16,
    head: String,
    body: Vec<u8>,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap()
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().skip(1).find_map(|line| {
            let (key, value) = line.split_once(':')?;
            key.eq_ignore_ascii_case(name).then(|| value.trim())
        })
    }
}

/// Sends `request` verbatim and reads until the server closes.
async fn exchange(addr: SocketAddr, request: &str) -> io::Result<Vec<u8>> {
    let mut stream = TcpStream::connect(addr).await?;
    stream.write_all(request.as_bytes()).await?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await?;
    Ok(raw)
}

fn parse(raw: &[u8]) -> Reply {
    let end = raw.windows(4).position(|window| window == b"\r\n\r\n").expect("a complete response head");
    let head = String::from_utf8(raw[..end].to_vec()).unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    Reply { status, head, body: raw[end + 4..].to_vec() }
}

async fn get(server: &MockServer, path: &str) -> Reply {
    let request = format!("GET {path} HTTP/1.1\r\nHost: mock\r\nConnection: close\r\n\r\n");
    parse(&exchange(server.addr(), &request).await.unwrap())
}

async fn spawn(routes: Vec<RouteSpec>) -> MockServer {
    MockServer::spawn(ServiceSpec::new(routes)).await.unwrap()
}

/// Polls `condition` for up to two seconds.
async fn eventually(mut condition: impl FnMut() -> bool) -> bool {
    for _ in 0..200 {
        if condition() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    condition()
}

#[tokio::test]
async fn normal_route_substitutes_params_and_records_the_request() {
    let server =
        spawn(vec![RouteSpec::json("/users/{id}", json!({"id": "{id}", "greeting": "hello {id}", "n": 1}))])
            .await;
    assert_eq!(server.url(), format!("http://{}", server.addr()));

    let request = "GET /users/a%20b%22?x=1&y=%2F HTTP/1.1\r\nHost: mock\r\n\
                   X-Request-Id: r-1\r\nConnection: close\r\n\r\n";
    let reply = parse(&exchange(server.addr(), request).await.unwrap());
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("content-type"), Some("application/json"));
    assert_eq!(reply.json(), json!({"id": "a b\"", "greeting": "hello a b\"", "n": 1}));

    let records = server.requests();
    assert_eq!(records.len(), 1);
    let record = &records[0];
    assert_eq!(record.method, http::Method::GET);
    assert_eq!(record.path_and_query, "/users/a%20b%22?x=1&y=%2F");
    assert_eq!(record.headers["x-request-id"], "r-1");
    assert_eq!(record.headers["host"], "mock");
    assert!(record.completed.is_some_and(|done| done >= record.arrived));
    assert!(!record.cancelled);
    assert_eq!(server.cancelled(), 0);
    assert_eq!(server.peak_in_flight(), 1);
}

#[tokio::test]
async fn fixed_body_status_and_method_independence() {
    let server = spawn(vec![RouteSpec::json("/created", json!({"ok": true})).status(201)]).await;
    let request = "POST /created HTTP/1.1\r\nHost: mock\r\nContent-Length: 2\r\n\
                   Connection: close\r\n\r\n{}";
    let reply = parse(&exchange(server.addr(), request).await.unwrap());
    assert_eq!(reply.status, 201);
    assert_eq!(reply.json(), json!({"ok": true}));
    assert_eq!(server.requests()[0].method, http::Method::POST);
}

#[tokio::test]
async fn fixed_latency_delays_the_answer() {
    let delay = Duration::from_millis(80);
    let server = spawn(vec![RouteSpec::new("/slow").latency(delay)]).await;
    let started = Instant::now();
    let reply = get(&server, "/slow").await;
    assert!(started.elapsed() >= delay);
    assert_eq!(reply.status, 200);
    assert_eq!(reply.json(), json!({}));
    let record = &server.requests()[0];
    assert!(record.completed.unwrap() - record.arrived >= delay);
}

#[tokio::test]
async fn jitter_stays_within_bounds() {
    let (min, max) = (Duration::from_millis(30), Duration::from_millis(60));
    let server = spawn(vec![RouteSpec::new("/j").jitter(min, max)]).await;
    for _ in 0..3 {
        assert_eq!(get(&server, "/j").await.status, 200);
    }
    for record in server.requests() {
        let took = record.completed.unwrap() - record.arrived;
        assert!(took >= min && took < max + Duration::from_millis(50), "{took:?}");
    }
}

#[tokio::test]
async fn unknown_path_is_a_json_404() {
    let server = spawn(vec![RouteSpec::new("/known")]).await;
    let reply = get(&server, "/unknown?q=1").await;
    assert_eq!(reply.status, 404);
    assert_eq!(reply.header("content-type"), Some("application/json"));
    assert_eq!(reply.json(), json!({"error": "not found"}));
    assert_eq!(server.requests()[0].path_and_query, "/unknown?q=1");
}

#[tokio::test]
async fn garbage_is_not_json() {
    let server = spawn(vec![RouteSpec::new("/g").behavior(Behavior::Garbage)]).await;
    let reply = get(&server, "/g").await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("content-type"), Some("application/json"));
    assert_eq!(reply.body, b"this is not json {{{");
    assert!(serde_json::from_slice::<Value>(&reply.body).is_err());
}

#[tokio::test]
async fn body_size_answers_valid_json_of_that_size() {
    let size = 3 * 1024 * 1024 + 7;
    let server = spawn(vec![RouteSpec::new("/huge").body_size(size)]).await;
    let reply = get(&server, "/huge").await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.body.len(), size);
    assert!(reply.json()["data"].is_string());
}

#[tokio::test]
async fn error_rate_one_always_fails() {
    let server = spawn(vec![RouteSpec::new("/e").error_rate(1.0, 503)]).await;
    for _ in 0..3 {
        let reply = get(&server, "/e").await;
        assert_eq!(reply.status, 503);
        assert_eq!(reply.json(), json!({"error": "simulated"}));
    }
}

#[tokio::test]
async fn error_rate_fails_about_that_fraction() {
    let server = spawn(vec![RouteSpec::new("/e").error_rate(0.5, 500)]).await;
    let mut failures = 0;
    for _ in 0..200 {
        if get(&server, "/e").await.status == 500 {
            failures += 1;
        }
    }
    assert!((40..=160).contains(&failures), "{failures} failures");
}

#[tokio::test]
async fn fail_first_fails_that_many_requests_then_answers_normally() {
    let server = spawn(vec![RouteSpec::json("/d", json!({"ok": true})).fail_first(3, 503)]).await;
    let mut statuses = Vec::new();
    for _ in 0..5 {
        statuses.push(get(&server, "/d").await.status);
    }
    assert_eq!(statuses, [503, 503, 503, 200, 200]);
    assert_eq!(get(&server, "/d").await.json(), json!({"ok": true}));
}

#[tokio::test]
async fn reset_aborts_the_connection_without_a_response() {
    let server = spawn(vec![
        RouteSpec::new("/r").behavior(Behavior::Reset).latency(Duration::from_millis(20)),
        RouteSpec::new("/ok"),
    ])
    .await;
    let request = "GET /r HTTP/1.1\r\nHost: mock\r\nConnection: close\r\n\r\n";
    match exchange(server.addr(), request).await {
        Err(err) => assert_eq!(err.kind(), io::ErrorKind::ConnectionReset),
        Ok(raw) => panic!("expected a reset, got {:?}", String::from_utf8_lossy(&raw)),
    }
    assert_eq!(server.requests().len(), 1);
    assert_eq!(server.cancelled(), 0);
    // Other routes of the same server still answer.
    assert_eq!(get(&server, "/ok").await.status, 200);
}

#[tokio::test]
async fn hang_until_the_client_goes_away_counts_a_cancellation() {
    let server = spawn(vec![RouteSpec::new("/h").behavior(Behavior::Hang)]).await;
    let mut stream = TcpStream::connect(server.addr()).await.unwrap();
    stream.write_all(b"GET /h HTTP/1.1\r\nHost: mock\r\n\r\n").await.unwrap();
    assert!(eventually(|| server.requests().len() == 1).await);
    let mut buf = [0; 1];
    let read = tokio::time::timeout(Duration::from_millis(100), stream.read(&mut buf)).await;
    assert!(read.is_err(), "a hanging route must not answer");
    assert_eq!(server.cancelled(), 0);
    assert!(server.requests()[0].completed.is_none());

    drop(stream);
    assert!(eventually(|| server.cancelled() == 1).await);
    let record = &server.requests()[0];
    assert!(record.cancelled && record.completed.is_some());
}

#[tokio::test]
async fn peak_in_flight_counts_concurrent_handlers() {
    let server = spawn(vec![RouteSpec::new("/slow").latency(Duration::from_millis(200))]).await;
    let calls = (0..5).map(|_| get(&server, "/slow"));
    let replies = futures_join(calls).await;
    assert!(replies.iter().all(|reply| reply.status == 200));
    assert_eq!(server.peak_in_flight(), 5);
}

/// Runs the futures concurrently on the current task.
async fn futures_join<F: Future<Output = Reply>>(calls: impl Iterator<Item = F>) -> Vec<Reply> {
    let mut pending: Vec<_> = calls.map(Box::pin).collect();
    let mut done: Vec<Option<Reply>> = pending.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        for (call, slot) in pending.iter_mut().zip(done.iter_mut()) {
            if slot.is_none()
                && let std::task::Poll::Ready(reply) = call.as_mut().poll(cx)
            {
                *slot = Some(reply);
            }
        }
        if done.iter().all(Option::is_some) { std::task::Poll::Ready(()) } else { std::task::Poll::Pending }
    })
    .await;
    done.into_iter().map(Option::unwrap).collect()
}

#[tokio::test]
async fn keep_alive_serves_several_requests_per_connection() {
    let server = spawn(vec![RouteSpec::json("/k/{n}", json!({"n": "{n}"}))]).await;
    let request = "GET /k/1 HTTP/1.1\r\nHost: mock\r\n\r\n\
                   GET /k/2 HTTP/1.1\r\nHost: mock\r\nConnection: close\r\n\r\n";
    let raw = exchange(server.addr(), request).await.unwrap();
    let text = String::from_utf8(raw).unwrap();
    assert_eq!(text.matches("HTTP/1.1 200 OK").count(), 2);
    assert!(text.contains(r#"{"n":"1"}"#) && text.contains(r#"{"n":"2"}"#));
    assert_eq!(server.requests().len(), 2);
}

#[tokio::test]
async fn dropping_the_handle_stops_the_server() {
    let server = spawn(vec![RouteSpec::new("/h").behavior(Behavior::Hang)]).await;
    let addr = server.addr();
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(b"GET /h HTTP/1.1\r\nHost: mock\r\n\r\n").await.unwrap();
    assert!(eventually(|| server.requests().len() == 1).await);
    drop(server);
    // The open connection is closed and no new one is accepted.
    let mut rest = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(2), stream.read_to_end(&mut rest)).await;
    assert!(read.is_ok_and(|read| read.is_err() || rest.is_empty()));
    assert!(eventually(|| std::net::TcpStream::connect(addr).is_err()).await);
}

#[tokio::test]
async fn invalid_specs_fail_to_spawn() {
    let err = MockServer::spawn(ServiceSpec::new(vec![RouteSpec::new("/a").status(1000)])).await.unwrap_err();
    assert!(err.to_string().contains("invalid status code 1000"), "{err}");
    let err = MockServer::spawn(ServiceSpec::new(vec![]).listen("256.0.0.1:1")).await.unwrap_err();
    assert!(matches!(err, mockend::MockError::Bind { .. }), "{err}");
}

#[tokio::test]
async fn a_tail_slows_the_first_requests_then_that_fraction() {
    let slow = Duration::from_millis(300);
    let server =
        spawn(vec![RouteSpec::new("/t").tail(0.0, 1, slow), RouteSpec::new("/all").tail(1.0, 0, slow)]).await;
    let timed = |path: &'static str| {
        let server = &server;
        async move {
            let started = Instant::now();
            assert_eq!(get(server, path).await.status, 200);
            started.elapsed()
        }
    };
    assert!(timed("/t").await >= slow, "the first request is slow");
    assert!(timed("/t").await < slow, "the rest are not (rate 0)");
    assert!(timed("/all").await >= slow, "rate 1: every request");
    assert!(timed("/all").await >= slow);
}

#[tokio::test]
async fn an_outage_fails_the_requests_in_it_and_the_stats_route_counts_them() {
    let (after, lasts) = (Duration::from_millis(200), Duration::from_millis(300));
    let server = spawn(vec![RouteSpec::json("/o", json!({})).outage(after, lasts, 503)]).await;
    assert_eq!(get(&server, "/o").await.status, 200);
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert_eq!(get(&server, "/o").await.status, 503);
    assert_eq!(get(&server, "/o").await.status, 503);
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(get(&server, "/o").await.status, 200);
    let stats = get(&server, "/_mockend/requests").await;
    assert_eq!(stats.json(), json!({"requests": 4, "outage_requests": 2}));
    assert_eq!(server.requests().len(), 4, "the stats route is not recorded");
}
