//! Connection lifetimes on both listeners: idle keep-alive connections stay open for
//! `keep_alive_timeout` and no longer (h2 PINGs do not count), request heads must be complete
//! in time however slowly they trickle, `max_connection_age` retires connections, and the admin
//! listener has the public one's head limits, first-request deadline and its own connection cap.
//! HTTP/1.1 is spoken over raw sockets, h2 with hand-written frames.

use crate::support::{Config, Gateway, MANY_SOCKETS, config, raw_status, wait_until};
use futures_util::StreamExt;
use mockend::{MockServer, RouteSpec, ServiceSpec};
use serde_json::json;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

/// A gateway with one route (`GET /page` → a backend answering after `latency`) and the
/// test config's server settings plus those in `server` (YAML lines, one setting each).
async fn gateway(server: &str, latency: Duration) -> (Gateway, MockServer) {
    let backend = MockServer::spawn(ServiceSpec::new(vec![
        RouteSpec::json("/x", json!({"ok": true})).latency(latency),
    ]))
    .await
    .unwrap();
    // A slow backend gets twice its latency as the call's timeout (which must fit in `server`'s
    // request_timeout).
    let timeout = match latency.is_zero() {
        true => String::new(),
        false => format!(", timeout: {}ms", (latency * 2).as_millis()),
    };
    let endpoint =
        format!("  - route: GET /page\n    calls:\n      x: {{ backend: b, path: /x{timeout} }}\n");
    let config = server
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .fold(Config::new(&[("b", &backend)], &endpoint), |config, setting| config.server(setting));
    (Gateway::start(&config.render()), backend)
}

const GET: &[u8] = b"GET /nothing-here HTTP/1.1\r\nHost: gw\r\n\r\n";
/// The route that calls the backend.
const PAGE: &[u8] = b"GET /page HTTP/1.1\r\nHost: gw\r\n\r\n";

/// Reads one HTTP/1.1 answer (head and `Content-Length` body); returns its head, lowercased,
/// or `None` if the connection closed first.
async fn read_answer(stream: &mut TcpStream) -> Option<String> {
    let mut data = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        if let Some(end) = data.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&data[..end]).to_ascii_lowercase();
            let length: usize = head
                .lines()
                .find_map(|line| line.strip_prefix("content-length:"))
                .and_then(|value| value.trim().parse().ok())
                .unwrap_or(0);
            if data.len() >= end + 4 + length {
                return Some(head);
            }
        }
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => data.extend_from_slice(&buf[..n]),
        }
    }
}

/// Connects, sends one request and reads its answer: a kept-alive connection.
async fn kept_alive(addr: SocketAddr) -> TcpStream {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(GET).await.unwrap();
    let head = read_answer(&mut stream).await.expect("an answer");
    assert!(head.starts_with("http/1.1 404"), "{head}");
    stream
}

/// Waits up to `limit` for the peer to close `stream`; returns when it did, from `since`.
async fn closed_after(stream: &mut TcpStream, since: Instant, limit: Duration) -> Option<Duration> {
    let mut sink = Vec::new();
    let read = tokio::time::timeout(limit, stream.read_to_end(&mut sink)).await;
    read.is_ok().then(|| since.elapsed())
}

/// Asks for 20 pages on one connection, which create what lasts for the process (runtime,
/// route, backend pools), closes it, and returns the gateway's RSS a second later.
async fn warmed_up_rss(gateway: &Gateway) -> u64 {
    let mut warm_up = TcpStream::connect(gateway.addr).await.unwrap();
    for _ in 0..20 {
        warm_up.write_all(PAGE).await.unwrap();
        assert!(read_answer(&mut warm_up).await.is_some_and(|head| head.starts_with("http/1.1 200")));
    }
    drop(warm_up);
    tokio::time::sleep(Duration::from_secs(1)).await;
    gateway.rss().0
}

#[tokio::test]
async fn ten_thousand_idle_keep_alive_connections_stay_open_and_working() {
    const CONNECTIONS: usize = 10_000;
    let _many = MANY_SOCKETS.lock().await;
    let (gateway, _backend) = gateway("", Duration::ZERO).await;
    let addr = gateway.addr;
    let rss_before = gateway.rss().0 / 1024;
    let started = Instant::now();
    let mut streams: Vec<TcpStream> = futures_util::stream::iter(0..CONNECTIONS)
        .map(|_| kept_alive(addr))
        .buffer_unordered(200)
        .collect()
        .await;
    let opened = started.elapsed();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss_idle = gateway.rss().0 / 1024;
    // Well past the test config's 2 s header_read_timeout, well within the 75 s default.
    tokio::time::sleep(Duration::from_secs(28)).await;
    let answered = futures_util::stream::iter(streams.iter_mut())
        .map(|stream| async move {
            stream.write_all(GET).await.is_ok()
                && read_answer(stream).await.is_some_and(|h| h.contains(" 404 "))
        })
        .buffer_unordered(200)
        .filter(|ok| std::future::ready(*ok))
        .count()
        .await;
    eprintln!(
        "{CONNECTIONS} keep-alive connections: opened in {opened:?}; gateway RSS {rss_before} KiB before, \
         {rss_idle} KiB with them idle ({} bytes each); test took {:?}",
        (rss_idle.saturating_sub(rss_before) * 1024) / CONNECTIONS as u64,
        started.elapsed()
    );
    assert_eq!(answered, CONNECTIONS, "idle keep-alive connections were closed or broken");
}

/// Guards the memory an idle client connection costs (issue 10): an idle HTTP/1.1 connection
/// holds no hyper buffer once 100 ms idle (see `connection.rs`). 2,000 connections, opened one
/// by one, each answered one page that calls a backend, then left idle, grow the gateway's RSS
/// by at most [`IDLE_CONNECTION_BOUND`] each within a few seconds (released, then trimmed).
/// Measured in a release build (`cargo test --release`, which asserts the 4 KiB goal itself):
/// 3.6–3.9 KiB; ~30 KiB when hyper's buffers stayed with idle connections.
#[tokio::test]
async fn two_thousand_idle_connections_stay_under_the_memory_goal() {
    const CONNECTIONS: u64 = 2_000;
    /// The goal, 4 KiB, in a release build; twice that in a debug build (CI's), whose futures
    /// and buffers are larger.
    const IDLE_CONNECTION_BOUND: u64 = if cfg!(debug_assertions) { 8 * 1024 } else { 4 * 1024 };
    let (gateway, _backend) = gateway("", Duration::ZERO).await;
    let before = warmed_up_rss(&gateway).await;
    let mut streams = Vec::new();
    for _ in 0..CONNECTIONS {
        let mut stream = TcpStream::connect(gateway.addr).await.unwrap();
        stream.write_all(PAGE).await.unwrap();
        let head = read_answer(&mut stream).await.expect("an answer");
        assert!(head.starts_with("http/1.1 200"), "{head}");
        streams.push(stream);
    }
    // Each connection releases its hyper connection after a second idle, and the allocator is
    // trimmed once that memory is free.
    let each = || gateway.rss().0.saturating_sub(before) / CONNECTIONS;
    let settled = wait_until(Duration::from_secs(10), || each() <= IDLE_CONNECTION_BOUND).await;
    eprintln!("{CONNECTIONS} idle keep-alive connections: {} bytes of gateway RSS each", each());
    assert!(settled, "an idle connection costs {} bytes", each());
    for stream in &mut streams[..10] {
        stream.write_all(PAGE).await.unwrap();
        let head = read_answer(stream).await.expect("an idle connection answers again");
        assert!(head.starts_with("http/1.1 200"), "{head}");
    }
}

/// Guards what a burst leaves behind (issue 10): 2,000 client connections each ask for a
/// five-call page at once (10,000 backend calls in flight), then all stay open and idle. The
/// gateway's RSS must come back within a few seconds to at most [`BURST_BOUND`] over what it
/// was before the burst: the idle client connections, the backend pools' idle (parked)
/// connections and what the allocator keeps of the burst's peak. Measured (release): peak
/// +90–115 MB, +17–20 MiB once settled, 2–3 s after the burst (+112 MB before the pools
/// parked idle connections and the allocator was trimmed); debug build +18 MiB. The bound is
/// twice the 20 MB goal: room for the debug build and the machine.
#[tokio::test]
async fn a_burst_of_two_thousand_pages_leaves_little_memory_behind() {
    const CONNECTIONS: usize = 2_000;
    const BURST_BOUND: u64 = 40 * 1024 * 1024;
    let _many = MANY_SOCKETS.lock().await;
    let mut backends = Vec::new();
    for _ in 0..5 {
        let body = json!({"items": (0..40).map(|i| format!("item-{i:04}")).collect::<Vec<_>>()});
        backends.push(MockServer::spawn(ServiceSpec::new(vec![RouteSpec::json("/x", body)])).await.unwrap());
    }
    let names = ["a", "b", "c", "d", "e"];
    let named: Vec<(&str, &MockServer)> = names.iter().copied().zip(&backends).collect();
    let calls: String =
        names.iter().map(|name| format!("      {name}: {{ backend: {name}, path: /x }}\n")).collect();
    let gateway = Gateway::start(&config(&named, &format!("  - route: GET /page\n    calls:\n{calls}")));
    let before = warmed_up_rss(&gateway).await;
    gateway.reset_peak_rss();
    let addr = gateway.addr;
    let answered = futures_util::future::join_all((0..CONNECTIONS).map(|_| async move {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream.write_all(PAGE).await.unwrap();
        (read_answer(&mut stream).await, stream)
    }))
    .await;
    let (answered, _streams): (Vec<_>, Vec<_>) = answered.into_iter().unzip();
    let failed: Vec<_> = answered
        .iter()
        .filter(|head| !head.as_ref().is_some_and(|h| h.starts_with("http/1.1 200")))
        .collect();
    assert!(failed.is_empty(), "{} pages failed, e.g. {:?}", failed.len(), failed[0]);
    // The pools park their idle connections and the allocator gives the burst's memory back
    // within a few seconds (the upkeep runs every second).
    let settled =
        wait_until(Duration::from_secs(10), || gateway.rss().0.saturating_sub(before) <= BURST_BOUND).await;
    let (after, peak) = gateway.rss();
    let left = after.saturating_sub(before);
    eprintln!(
        "burst of {CONNECTIONS} pages: RSS {} KiB before, peak {} KiB, {} KiB after (+{} KiB)",
        before / 1024,
        peak / 1024,
        after / 1024,
        left / 1024
    );
    assert!(settled, "the burst left {} KiB behind", left / 1024);
}

/// Two requests and the start of a third in one write, the rest of the third later: all are
/// answered in order on the one connection (the partial head read with the first two is kept
/// while the connection waits for the rest without hyper's buffers).
#[tokio::test]
async fn pipelined_requests_and_a_head_split_across_idleness_are_answered_in_order() {
    let (gateway, _backend) = gateway("", Duration::ZERO).await;
    let mut stream = kept_alive(gateway.addr).await;
    let mut first = PAGE.to_vec();
    first.extend_from_slice(GET);
    first.extend_from_slice(b"GET /pa");
    stream.write_all(&first).await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    stream.write_all(b"ge HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\r\n").await.unwrap();
    let mut answers = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut answers)).await;
    assert!(read.is_ok(), "the connection was not closed after `Connection: close`");
    let answers = String::from_utf8_lossy(&answers);
    let statuses: Vec<&str> =
        answers.match_indices("HTTP/1.1 ").map(|(at, _)| &answers[at + 9..at + 12]).collect();
    assert_eq!(statuses, ["200", "404", "200"], "{answers}");
}

#[tokio::test]
async fn an_idle_keep_alive_connection_closes_at_keep_alive_timeout() {
    // Both other limits are longer, so only keep_alive_timeout can close the connection at 1 s.
    let server = "  keep_alive_timeout: 1s\n  header_read_timeout: 5s\n  request_timeout: 5s\n";
    let (gateway, _backend) = gateway(server, Duration::ZERO).await;
    let mut stream = kept_alive(gateway.addr).await;
    let answered = Instant::now();
    let closed = closed_after(&mut stream, answered, Duration::from_secs(8)).await;
    let closed = closed.expect("an idle connection was not closed");
    assert!(closed >= Duration::from_millis(800), "closed before keep_alive_timeout: {closed:?}");
    assert!(closed < Duration::from_millis(3500), "not closed at keep_alive_timeout (1 s): {closed:?}");
}

#[tokio::test]
async fn a_trickled_head_on_a_kept_alive_connection_is_closed_from_its_first_byte() {
    let (gateway, _backend) = gateway("", Duration::ZERO).await;
    let stream = kept_alive(gateway.addr).await;
    // Longer than header_read_timeout (2 s) of idleness first: that alone must not close it.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (mut reader, mut writer) = stream.into_split();
    let first_byte = Instant::now();
    let trickle = tokio::spawn(async move {
        for byte in b"GET /page HTTP/1.1\r\nHost: gw\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa" {
            if writer.write_all(&[*byte]).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    });
    let mut sink = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), reader.read_to_end(&mut sink)).await;
    trickle.abort();
    assert!(read.is_ok(), "a head trickled for 10 s was never closed");
    let closed = first_byte.elapsed();
    assert!(closed >= Duration::from_millis(1500), "closed before header_read_timeout: {closed:?}");
    assert!(closed < Duration::from_millis(5000), "closed late: {closed:?}");
    assert!(sink.is_empty(), "answered a request that was never complete");
}

#[tokio::test]
async fn max_connection_age_answers_http1_with_connection_close() {
    let (gateway, _backend) = gateway("  max_connection_age: 1s\n", Duration::ZERO).await;
    let mut stream = TcpStream::connect(gateway.addr).await.unwrap();
    stream.write_all(GET).await.unwrap();
    let young = read_answer(&mut stream).await.unwrap();
    assert!(!young.contains("connection: close"), "{young}");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    stream.write_all(GET).await.unwrap();
    let old = read_answer(&mut stream).await.expect("the request after max_connection_age is answered");
    assert!(old.starts_with("http/1.1 404") && old.contains("connection: close"), "{old}");
    let closed = closed_after(&mut stream, Instant::now(), Duration::from_secs(3)).await;
    assert!(closed.is_some(), "the connection stayed open after Connection: close");
}

/// The HTTP/2 client connection preface.
const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const HEADERS: u8 = 0x1;
const SETTINGS: u8 = 0x4;
const PING: u8 = 0x6;
const GOAWAY: u8 = 0x7;
const END_STREAM: u8 = 0x1;
const ACK: u8 = 0x1;

/// One HTTP/2 frame: 9-byte header (length, type, flags, stream id) and payload.
fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let length = u32::try_from(payload.len()).unwrap().to_be_bytes();
    let mut bytes = vec![length[1], length[2], length[3], kind, flags];
    bytes.extend_from_slice(&stream.to_be_bytes());
    bytes.extend_from_slice(payload);
    bytes
}

/// Preface, empty SETTINGS and `GET http://gw{path}` on stream 1 (HPACK: indexed `:method GET`
/// and `:scheme http`, then `:path` and `:authority: gw` as literals with indexed names).
fn h2_start_with_get(path: &str) -> Vec<u8> {
    let mut block = vec![0x82, 0x86, 0x04, u8::try_from(path.len()).unwrap()];
    block.extend_from_slice(path.as_bytes());
    block.extend_from_slice(&[0x01, 0x02, b'g', b'w']);
    let mut bytes = PREFACE.to_vec();
    bytes.extend(frame(SETTINGS, 0, 0, &[]));
    bytes.extend(frame(HEADERS, 0x4 | END_STREAM, 1, &block));
    bytes
}

/// A frame the gateway sent.
struct Frame {
    kind: u8,
    flags: u8,
    stream: u32,
    payload: Vec<u8>,
}

/// A raw h2 connection: frames the gateway sends arrive on `frames` as (type, flags, stream)
/// until it closes (the channel then ends); its PINGs and SETTINGS are acknowledged; `send`
/// writes bytes.
struct H2 {
    send: mpsc::UnboundedSender<Vec<u8>>,
    frames: mpsc::UnboundedReceiver<Frame>,
    opened: Instant,
}

impl H2 {
    async fn connect(addr: SocketAddr, first: Vec<u8>) -> H2 {
        let stream = TcpStream::connect(addr).await.unwrap();
        let opened = Instant::now();
        let (mut reader, mut writer) = stream.into_split();
        let (send, mut outgoing) = mpsc::unbounded_channel::<Vec<u8>>();
        let (incoming, frames) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Some(bytes) = outgoing.recv().await {
                if writer.write_all(&bytes).await.is_err() {
                    return;
                }
            }
        });
        let acks = send.clone();
        tokio::spawn(async move {
            let mut header = [0u8; 9];
            while reader.read_exact(&mut header).await.is_ok() {
                let length = u32::from_be_bytes([0, header[0], header[1], header[2]]) as usize;
                let (kind, flags) = (header[3], header[4]);
                let stream = u32::from_be_bytes([header[5], header[6], header[7], header[8]]) & 0x7fff_ffff;
                let mut payload = vec![0u8; length];
                if reader.read_exact(&mut payload).await.is_err() {
                    return;
                }
                if matches!(kind, PING | SETTINGS) && flags & ACK == 0 {
                    let _ = acks.send(frame(kind, ACK, 0, if kind == PING { &payload } else { &[] }));
                }
                let _ = incoming.send(Frame { kind, flags, stream, payload });
            }
        });
        send.send(first).unwrap();
        H2 { send, frames, opened }
    }

    /// Sends a PING every `period` until the returned task is aborted or the connection closes.
    fn ping_every(&self, period: Duration) -> tokio::task::JoinHandle<()> {
        let pings = self.send.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(period).await;
                if pings.send(frame(PING, 0, 0, b"12345678")).is_err() {
                    return;
                }
            }
        })
    }

    /// Waits up to `limit` for a frame matching `wanted`; returns it and when it came, from
    /// `since`.
    async fn frame_after(
        &mut self,
        since: Instant,
        limit: Duration,
        wanted: impl Fn(&Frame) -> bool,
    ) -> Option<(Duration, Frame)> {
        let deadline = tokio::time::Instant::now() + limit;
        while let Ok(Some(frame)) = tokio::time::timeout_at(deadline, self.frames.recv()).await {
            if wanted(&frame) {
                return Some((since.elapsed(), frame));
            }
        }
        None
    }

    /// Waits up to `limit` for the gateway to close the connection; returns when, from `since`.
    async fn closed_after(&mut self, since: Instant, limit: Duration) -> Option<Duration> {
        self.frame_after(since, limit, |_| false).await;
        self.frames.is_closed().then(|| since.elapsed())
    }
}

#[tokio::test]
async fn an_h2_connection_that_only_pings_is_closed_at_keep_alive_timeout() {
    let (gateway, _backend) = gateway("  keep_alive_timeout: 2s\n", Duration::ZERO).await;
    let mut h2 = H2::connect(gateway.addr, h2_start_with_get("/")).await;
    let response = h2.frame_after(h2.opened, Duration::from_secs(5), |frame| {
        frame.stream == 1 && frame.flags & END_STREAM != 0
    });
    assert!(response.await.is_some(), "no answer to the request");
    let idle_from = Instant::now();
    let pinger = h2.ping_every(Duration::from_millis(300));
    let goaway = h2
        .frame_after(idle_from, Duration::from_secs(10), |frame| frame.kind == GOAWAY)
        .await
        .map(|(at, _)| at);
    let closed = h2.closed_after(idle_from, Duration::from_secs(6)).await;
    pinger.abort();
    let goaway = goaway.expect("PINGs kept an idle h2 connection open (no GOAWAY in 10 s)");
    assert!(goaway >= Duration::from_millis(1500), "GOAWAY before keep_alive_timeout: {goaway:?}");
    assert!(goaway < Duration::from_millis(5000), "GOAWAY late: {goaway:?}");
    assert!(closed.is_some(), "the connection stayed open after GOAWAY");
}

#[tokio::test]
async fn a_trickled_h2_preface_is_closed_at_header_read_timeout() {
    let (gateway, _backend) = gateway("", Duration::ZERO).await;
    let stream = TcpStream::connect(gateway.addr).await.unwrap();
    let opened = Instant::now();
    let (mut reader, mut writer) = stream.into_split();
    let trickle = tokio::spawn(async move {
        for byte in h2_start_with_get("/") {
            if writer.write_all(&[byte]).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    });
    let mut sink = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), reader.read_to_end(&mut sink)).await;
    trickle.abort();
    assert!(read.is_ok(), "a preface trickled for 10 s was never closed");
    let closed = opened.elapsed();
    assert!(closed >= Duration::from_millis(1500), "closed before header_read_timeout: {closed:?}");
    assert!(closed < Duration::from_millis(5000), "closed late: {closed:?}");
}

#[tokio::test]
async fn a_long_h2_request_is_not_cut_by_keep_alive_timeout() {
    let server = "  keep_alive_timeout: 1s\n  request_timeout: 8s\n";
    let (gateway, _backend) = gateway(server, Duration::from_secs(3)).await;
    let mut h2 = H2::connect(gateway.addr, h2_start_with_get("/page")).await;
    let first = h2.frame_after(h2.opened, Duration::from_secs(10), |frame| {
        frame.kind == GOAWAY || frame.kind == HEADERS && frame.stream == 1
    });
    let (at, frame) = first.await.expect("neither an answer nor GOAWAY");
    assert_eq!(frame.kind, HEADERS, "GOAWAY after {at:?}, while the request was in flight");
    // HPACK 0x88: `:status: 200` from the static table.
    assert_eq!(frame.payload.first(), Some(&0x88), "the slow request was not answered 200");
    assert!(at >= Duration::from_millis(2500), "answered before the backend did: {at:?}");
}

#[tokio::test]
async fn max_connection_age_sends_h2_goaway() {
    let (gateway, _backend) = gateway("  max_connection_age: 1s\n", Duration::ZERO).await;
    let mut h2 = H2::connect(gateway.addr, h2_start_with_get("/")).await;
    // Traffic all along: only the age can end this connection.
    let pinger = h2.ping_every(Duration::from_millis(300));
    let opened = h2.opened;
    let goaway =
        h2.frame_after(opened, Duration::from_secs(8), |frame| frame.kind == GOAWAY).await.map(|(at, _)| at);
    pinger.abort();
    let goaway = goaway.expect("no GOAWAY after max_connection_age");
    assert!(goaway >= Duration::from_millis(800), "GOAWAY before max_connection_age: {goaway:?}");
    assert!(goaway < Duration::from_millis(4000), "GOAWAY late: {goaway:?}");
}

fn admin_addr(gateway: &Gateway) -> SocketAddr {
    gateway.admin.trim_start_matches("http://").parse().unwrap()
}

/// Sends `request` on a new connection (a write cut short by the peer is fine) and reads the
/// answer until close or `limit`.
async fn send_and_read(addr: SocketAddr, request: &[u8], limit: Duration) -> String {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let _ = stream.write_all(request).await;
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(limit, stream.read_to_end(&mut answer)).await;
    String::from_utf8_lossy(&answer).into_owned()
}

#[tokio::test]
async fn the_admin_listener_limits_heads_and_closes_silent_connections() {
    let (gateway, _backend) = gateway("", Duration::ZERO).await;
    let admin = admin_addr(&gateway);
    for size in [40 * 1024, 500 * 1024] {
        let request = format!("GET /healthz HTTP/1.1\r\nHost: a\r\nX-Big: {}\r\n\r\n", "a".repeat(size));
        let answer = send_and_read(admin, request.as_bytes(), Duration::from_secs(5)).await;
        let status = raw_status(&answer);
        assert!(
            status == Some(431) || (size > 40 * 1024 && status.is_none()),
            "{size} B head: {answer:.200}"
        );
    }
    let many: String = (0..101).map(|i| format!("X-H{i}: v\r\n")).collect();
    let answer = send_and_read(
        admin,
        format!("GET /healthz HTTP/1.1\r\n{many}\r\n").as_bytes(),
        Duration::from_secs(5),
    )
    .await;
    assert_eq!(raw_status(&answer), Some(431), "{answer:.200}");

    let mut silent = TcpStream::connect(admin).await.unwrap();
    let closed = closed_after(&mut silent, Instant::now(), Duration::from_secs(8)).await;
    let closed = closed.expect("a silent admin connection was never closed");
    assert!(closed >= Duration::from_millis(1500), "closed before header_read_timeout: {closed:?}");
}

#[tokio::test]
async fn admin_connections_beyond_admin_max_connections_are_refused() {
    let (gateway, _backend) = gateway("  admin_max_connections: 2\n", Duration::ZERO).await;
    let admin = admin_addr(&gateway);
    let healthz = b"GET /healthz HTTP/1.1\r\nHost: a\r\n\r\n";
    let mut open = Vec::new();
    for _ in 0..2 {
        let mut stream = TcpStream::connect(admin).await.unwrap();
        stream.write_all(healthz).await.unwrap();
        assert!(read_answer(&mut stream).await.unwrap().starts_with("http/1.1 200"));
        open.push(stream);
    }
    let refused = send_and_read(admin, healthz, Duration::from_secs(3)).await;
    assert!(refused.is_empty(), "a connection beyond admin_max_connections was served: {refused}");
    drop(open.pop());
    tokio::time::sleep(Duration::from_millis(200)).await;
    let served = send_and_read(
        admin,
        b"GET /healthz HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
        Duration::from_secs(3),
    )
    .await;
    assert_eq!(raw_status(&served), Some(200), "a freed slot was not reused: {served}");
}
