//! The backend client against real servers on ephemeral ports: HTTP/1.1 framing, connection
//! reuse and when a connection must not be reused, the body cap, h2c, and TLS with a test CA.
//! Backends here are scripted byte by byte (one scripted reply per request received), so each
//! test says exactly what the wire carries.

// Test helpers panic on setup failures by design: a failed setup is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use bytes::Bytes;
use compose::Graph;
use downstream::{Backend, BackendSettings, CallError, CallRequest, ForwardHeaders, Output, Step, execute};
use http::HeaderMap;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::time::Instant;

const JSON: &str = "{\"ok\":true}";

/// What a scripted backend does with the next request it reads.
#[derive(Clone)]
enum Reply {
    /// Write these bytes and keep the connection open.
    Send(Vec<u8>),
    /// Write these bytes, then close the connection after the pause.
    SendThenClose(Vec<u8>, Duration),
    /// Write nothing and keep the connection open (a hanging backend).
    Hang,
}

fn ok_with_length(body: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

fn ok_chunked(pieces: &[&str]) -> Vec<u8> {
    let mut out = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n".to_vec();
    for piece in pieces {
        out.extend_from_slice(format!("{:x}\r\n{piece}\r\n", piece.len()).as_bytes());
    }
    out.extend_from_slice(b"0\r\n\r\n");
    out
}

/// A backend that answers requests with `replies`, in order (the last one repeats), and counts
/// the connections it accepted and those the client closed.
struct Scripted {
    url: String,
    connections: Arc<AtomicUsize>,
    closed: Arc<AtomicUsize>,
}

async fn scripted(replies: Vec<Reply>) -> Scripted {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let connections = Arc::new(AtomicUsize::new(0));
    let queue = Arc::new(Mutex::new(VecDeque::from(replies)));
    let closed = Arc::new(AtomicUsize::new(0));
    let (accepted, ended) = (connections.clone(), closed.clone());
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            accepted.fetch_add(1, Ordering::SeqCst);
            let queue = queue.clone();
            let ended = ended.clone();
            tokio::spawn(async move {
                let mut seen = Vec::new();
                let mut buf = [0u8; 4096];
                loop {
                    while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                        match stream.read(&mut buf).await {
                            Ok(0) | Err(_) => {
                                ended.fetch_add(1, Ordering::SeqCst);
                                return;
                            }
                            Ok(n) => seen.extend_from_slice(&buf[..n]),
                        }
                    }
                    let end = seen.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
                    seen.drain(..end);
                    let reply = {
                        let mut queue = queue.lock().unwrap();
                        if queue.len() > 1 {
                            queue.pop_front().unwrap()
                        } else {
                            queue.front().unwrap().clone()
                        }
                    };
                    match reply {
                        Reply::Send(bytes) => {
                            if stream.write_all(&bytes).await.is_err() {
                                return;
                            }
                        }
                        Reply::SendThenClose(bytes, pause) => {
                            let _ = stream.write_all(&bytes).await;
                            tokio::time::sleep(pause).await;
                            return;
                        }
                        Reply::Hang => {
                            tokio::time::sleep(Duration::from_secs(3600)).await;
                            return;
                        }
                    }
                }
            });
        }
    });
    Scripted { url, connections, closed }
}

fn settings(url: &str) -> BackendSettings {
    BackendSettings {
        name: "b".into(),
        base_url: url.into(),
        headers: HeaderMap::new(),
        max_response_body: 1024,
        http2: false,
        connect_timeout: Duration::from_secs(2),
        max_idle_connections: 8,
        ca_file: None,
        max_in_flight: 64,
        retry: None,
        circuit_breaker: None,
        hedge: None,
        deadline_header: None,
        coalesce: false,
        cache: None,
    }
}

/// Forwards nothing.
struct NoHeaders;

impl ForwardHeaders for NoHeaders {
    fn write(&self, _: usize, _: &mut HeaderMap) {}
}

async fn call(backend: &Arc<Backend>, timeout: Duration) -> Result<Bytes, CallError> {
    let request = CallRequest {
        name: "c",
        backend,
        path_and_query: "/item?id=1".into(),
        headers: &NoHeaders,
        header_set: 0,
        timeout,
        required: false,
        element: None,
        propagate: None,
    };
    // Through the executor, as the gateway sends it: one call, no dependencies.
    let graph = Graph::new(vec![vec![]]).unwrap();
    let mut request = Some(request);
    let deadline = Instant::now() + Duration::from_secs(10);
    let execution = execute(&graph, &[false], false, usize::MAX, deadline, |_, _| {
        Step::Call(request.take().expect("prepared once"))
    })
    .await;
    match execution.outcomes.into_iter().next().flatten().unwrap().result? {
        Output::Body(body) => Ok(body),
        Output::List(_) => panic!("a single call gave a list"),
    }
}

const SHORT: Duration = Duration::from_secs(5);

#[tokio::test]
async fn reads_content_length_chunked_and_close_delimited_bodies() {
    let framings = [
        ok_with_length(JSON),
        ok_chunked(&["{\"ok\"", ":true}"]),
        format!("HTTP/1.1 200 OK\r\nconnection: close\r\n\r\n{JSON}").into_bytes(),
        format!("HTTP/1.0 200 OK\r\n\r\n{JSON}").into_bytes(),
    ];
    for framing in framings {
        let shown = String::from_utf8_lossy(&framing).into_owned();
        let server = scripted(vec![Reply::SendThenClose(framing, Duration::ZERO)]).await;
        let backend = Arc::new(Backend::new(settings(&server.url)).unwrap());
        assert_eq!(call(&backend, SHORT).await.as_deref(), Ok(JSON.as_bytes()), "{shown}");
    }
}

#[tokio::test]
async fn bodiless_statuses_fail_without_waiting_for_a_body() {
    let server = scripted(vec![
        Reply::Send(b"HTTP/1.1 204 No Content\r\n\r\n".to_vec()),
        Reply::Send(b"HTTP/1.1 304 Not Modified\r\ncontent-length: 11\r\n\r\n".to_vec()),
    ])
    .await;
    let backend = Arc::new(Backend::new(settings(&server.url)).unwrap());
    let started = std::time::Instant::now();
    assert!(matches!(call(&backend, SHORT).await, Err(CallError::InvalidBody(_))), "204 has no JSON body");
    assert_eq!(call(&backend, SHORT).await, Err(CallError::Status(304)));
    assert!(started.elapsed() < Duration::from_secs(4), "a bodiless answer waited for the timeout");
}

#[tokio::test]
async fn keeps_the_connection_for_the_next_call() {
    let server = scripted(vec![Reply::Send(ok_with_length(JSON))]).await;
    let backend = Arc::new(Backend::new(settings(&server.url)).unwrap());
    for _ in 0..3 {
        assert_eq!(call(&backend, SHORT).await.as_deref(), Ok(JSON.as_bytes()));
    }
    assert_eq!(server.connections.load(Ordering::SeqCst), 1, "three calls in a row share one connection");
}

#[tokio::test]
async fn a_connection_the_backend_closed_while_idle_is_replaced() {
    let server = scripted(vec![Reply::SendThenClose(ok_with_length(JSON), Duration::from_millis(20))]).await;
    let backend = Arc::new(Backend::new(settings(&server.url)).unwrap());
    assert_eq!(call(&backend, SHORT).await.as_deref(), Ok(JSON.as_bytes()));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(call(&backend, SHORT).await.as_deref(), Ok(JSON.as_bytes()), "the closed connection was used");
    assert_eq!(server.connections.load(Ordering::SeqCst), 2);
}

/// Longer than a sweep period: a connection idle this long is parked by the next sweep.
const PARKED: Duration = Duration::from_millis(1_200);

#[tokio::test]
async fn a_connection_parked_by_the_sweep_carries_the_next_call() {
    let server = scripted(vec![Reply::Send(ok_with_length(JSON))]).await;
    let backend = Arc::new(Backend::new(settings(&server.url)).unwrap());
    assert_eq!(call(&backend, SHORT).await.as_deref(), Ok(JSON.as_bytes()));
    tokio::time::sleep(PARKED).await;
    backend.sweep_idle();
    for _ in 0..2 {
        assert_eq!(call(&backend, SHORT).await.as_deref(), Ok(JSON.as_bytes()));
    }
    assert_eq!(server.connections.load(Ordering::SeqCst), 1, "the parked connection was not used again");
    assert_eq!(server.closed.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn a_parked_connection_the_backend_closed_is_replaced() {
    let server = scripted(vec![Reply::SendThenClose(ok_with_length(JSON), Duration::from_millis(20))]).await;
    let backend = Arc::new(Backend::new(settings(&server.url)).unwrap());
    assert_eq!(call(&backend, SHORT).await.as_deref(), Ok(JSON.as_bytes()));
    tokio::time::sleep(PARKED).await;
    backend.sweep_idle();
    assert_eq!(call(&backend, SHORT).await.as_deref(), Ok(JSON.as_bytes()), "the closed connection was used");
    assert_eq!(server.connections.load(Ordering::SeqCst), 2);
}

/// Paused time: the sweep closes a connection idle past [`downstream::IDLE_TIMEOUT`] even
/// though no call comes to find it expired.
#[tokio::test(start_paused = true)]
async fn the_sweep_closes_connections_idle_past_the_idle_timeout() {
    let server = scripted(vec![Reply::Send(ok_with_length(JSON))]).await;
    let backend = Arc::new(Backend::new(settings(&server.url)).unwrap());
    assert_eq!(call(&backend, SHORT).await.as_deref(), Ok(JSON.as_bytes()));
    tokio::time::advance(downstream::IDLE_TIMEOUT - Duration::from_secs(1)).await;
    backend.sweep_idle();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(server.closed.load(Ordering::SeqCst), 0, "closed before its idle timeout");
    tokio::time::advance(Duration::from_secs(1)).await;
    backend.sweep_idle();
    let closed = async {
        while server.closed.load(Ordering::SeqCst) == 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    assert!(tokio::time::timeout(SHORT, closed).await.is_ok(), "the expired connection is still open");
}

#[tokio::test]
async fn no_reuse_after_a_timeout_or_a_cancelled_call() {
    let server = scripted(vec![Reply::Hang, Reply::Hang, Reply::Send(ok_with_length(JSON))]).await;
    let backend = Arc::new(Backend::new(settings(&server.url)).unwrap());
    let timed_out = call(&backend, Duration::from_millis(100)).await;
    assert_eq!(timed_out, Err(CallError::Timeout(Duration::from_millis(100))));
    // Dropped from outside, as when the inbound request goes away.
    let cancelled = tokio::time::timeout(Duration::from_millis(100), call(&backend, SHORT)).await;
    assert!(cancelled.is_err(), "the hanging backend answered");
    assert_eq!(call(&backend, SHORT).await.as_deref(), Ok(JSON.as_bytes()));
    assert_eq!(
        server.connections.load(Ordering::SeqCst),
        3,
        "a connection whose answer was never read must not carry the next request"
    );
}

#[tokio::test]
async fn bodies_over_the_cap_fail_and_their_connection_is_dropped() {
    let big = format!("[{}0]", "0,".repeat(600));
    let server = scripted(vec![
        Reply::Send(ok_with_length(&big)),
        Reply::Send(ok_chunked(&[&big[..700], &big[700..]])),
        Reply::Send(ok_with_length(JSON)),
    ])
    .await;
    let backend = Arc::new(Backend::new(settings(&server.url)).unwrap());
    assert_eq!(call(&backend, SHORT).await, Err(CallError::TooLarge(1024)), "declared length");
    assert_eq!(call(&backend, SHORT).await, Err(CallError::TooLarge(1024)), "counted while streaming");
    assert_eq!(call(&backend, SHORT).await.as_deref(), Ok(JSON.as_bytes()));
    assert_eq!(server.connections.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn a_refused_connection_is_a_connect_error_naming_the_cause() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let backend = Arc::new(Backend::new(settings(&url)).unwrap());
    match call(&backend, SHORT).await {
        Err(CallError::Connect(reason)) => {
            assert!(reason.starts_with("connection failed: ") && reason.contains("refused"), "{reason}")
        }
        other => panic!("expected a connect error, got {other:?}"),
    }
}

#[tokio::test]
async fn speaks_h2c_to_http2_backends() {
    use hyper::service::service_fn;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let connections = Arc::new(AtomicUsize::new(0));
    let accepted = connections.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            accepted.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let service = service_fn(|request: http::Request<hyper::body::Incoming>| async move {
                    let body =
                        format!("{{\"path\":\"{}\",\"version\":\"{:?}\"}}", request.uri(), request.version());
                    Ok::<_, std::convert::Infallible>(http::Response::new(http_body_util::Full::new(
                        Bytes::from(body),
                    )))
                });
                let _ = hyper::server::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    let backend = Arc::new(Backend::new(BackendSettings { http2: true, ..settings(&url) }).unwrap());
    let calls = (0..4).map(|_| call(&backend, SHORT));
    for answer in futures_util::future::join_all(calls).await {
        let body = answer.unwrap();
        let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(json["version"], "HTTP/2.0");
        assert!(json["path"].as_str().unwrap().ends_with("/item?id=1"), "{json}");
    }
    assert_eq!(connections.load(Ordering::SeqCst), 1, "concurrent h2 calls share one connection");
}

/// TLS backends: a test CA signs the server's certificate for `localhost`.
mod tls {
    use super::*;
    use mockend::{MockServer, RouteSpec, ServiceSpec, TestCa};

    /// An HTTPS backend whose certificate, signed by `ca`, is valid for `name`.
    async fn https_server(ca: &TestCa, name: &str) -> MockServer {
        let routes = vec![RouteSpec::json("/item", serde_json::json!({"ok": true}))];
        MockServer::spawn_tls(ServiceSpec::new(routes), &ca.issue(name).unwrap()).await.unwrap()
    }

    /// A file in the temp dir, removed when dropped.
    struct TempFile(std::path::PathBuf);

    impl Drop for TempFile {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }

    fn temp_file(test: &str, content: &str) -> TempFile {
        let path = std::env::temp_dir().join(format!("downstream-{}-{test}-ca.pem", std::process::id()));
        std::fs::write(&path, content).unwrap();
        TempFile(path)
    }

    fn ca_file(ca: &TestCa, test: &str) -> TempFile {
        temp_file(test, ca.pem())
    }

    /// A backend for `server` trusting the CA in `ca_file` (read now: the file may go).
    fn https(server: &MockServer, ca_file: TempFile) -> Arc<Backend> {
        Arc::new(
            Backend::new(BackendSettings { ca_file: Some(ca_file.0.clone()), ..settings(&server.url()) })
                .unwrap(),
        )
    }

    #[tokio::test]
    async fn calls_a_backend_whose_certificate_the_ca_file_trusts() {
        let ca = TestCa::new().unwrap();
        let server = https_server(&ca, "localhost").await;
        let backend = https(&server, ca_file(&ca, "trusted"));
        assert_eq!(call(&backend, SHORT).await.as_deref(), Ok(JSON.as_bytes()));
        assert_eq!(call(&backend, SHORT).await.as_deref(), Ok(JSON.as_bytes()));
        assert_eq!(server.requests().len(), 2);
    }

    #[tokio::test]
    async fn speaks_h2_over_tls_by_alpn() {
        let ca = TestCa::new().unwrap();
        let server = https_server(&ca, "localhost").await;
        let pem = ca_file(&ca, "h2");
        let settings =
            BackendSettings { http2: true, ca_file: Some(pem.0.clone()), ..settings(&server.url()) };
        let backend = Arc::new(Backend::new(settings).unwrap());
        assert_eq!(call(&backend, SHORT).await.as_deref(), Ok(JSON.as_bytes()));
        assert_eq!(server.requests()[0].version, http::Version::HTTP_2);
    }

    #[tokio::test]
    async fn a_certificate_for_another_name_is_a_connect_error() {
        let ca = TestCa::new().unwrap();
        let server = https_server(&ca, "other.example").await;
        let backend = https(&server, ca_file(&ca, "wrong-name"));
        match call(&backend, SHORT).await {
            Err(CallError::Connect(reason)) => {
                assert!(reason.contains("certificate not valid for name \"localhost\""), "{reason}")
            }
            other => panic!("expected a connect error, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn a_certificate_from_an_unknown_ca_is_a_connect_error() {
        let server = https_server(&TestCa::new().unwrap(), "localhost").await;
        let backend = https(&server, ca_file(&TestCa::new().unwrap(), "other-ca"));
        match call(&backend, SHORT).await {
            Err(CallError::Connect(reason)) => {
                assert!(reason.contains("certificate") && reason.contains("UnknownIssuer"), "{reason}")
            }
            other => panic!("expected a connect error, got {other:?}"),
        }
    }

    #[test]
    fn an_unreadable_or_empty_ca_file_is_an_error_naming_it() {
        let missing = std::env::temp_dir().join("downstream-no-such-ca.pem");
        let error = Backend::new(BackendSettings {
            ca_file: Some(missing.clone()),
            ..settings("https://localhost:1")
        })
        .unwrap_err();
        assert_eq!(error.key(), "ca_file");
        assert!(error.to_string().contains(&missing.display().to_string()), "{error}");
        let empty = temp_file("empty", "not a certificate\n");
        let error = Backend::new(BackendSettings {
            ca_file: Some(empty.0.clone()),
            ..settings("https://localhost:1")
        })
        .unwrap_err();
        assert!(error.to_string().contains("no PEM certificate"), "{error}");
    }
}
