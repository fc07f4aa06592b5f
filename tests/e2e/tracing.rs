//! OpenTelemetry traces over real sockets: a small OTLP/HTTP receiver in the test decodes what
//! the real binary exports; a backend records the `traceparent` it receives.

use crate::support::{Config, Gateway, client, config};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use mockend::{MockServer, RouteSpec, ServiceSpec};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use opentelemetry_proto::tonic::trace::v1::Span;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use prost::Message;
use serde_json::json;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What an OTLP receiver got: the spans of every export, and whatever it could not take (a
/// wrong path, a body that is not an export). The receiver's tasks record problems rather than
/// assert: a panic there would be swallowed; the test asserts on them ([`spans_of`]).
#[derive(Default)]
struct Received {
    spans: Vec<Span>,
    problems: Vec<String>,
}

/// Starts an OTLP/HTTP receiver on 127.0.0.1:0; returns its base URL and what it receives.
async fn receiver() -> (String, Arc<Mutex<Received>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let received = Arc::new(Mutex::new(Received::default()));
    let sink = Arc::clone(&received);
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let sink = Arc::clone(&sink);
            let service = hyper::service::service_fn(move |request: http::Request<hyper::body::Incoming>| {
                let sink = Arc::clone(&sink);
                async move {
                    let path = request.uri().path().to_owned();
                    let body = request.into_body().collect().await.map(|body| body.to_bytes());
                    let export = body
                        .map_err(|e| e.to_string())
                        .and_then(|body| ExportTraceServiceRequest::decode(body).map_err(|e| e.to_string()));
                    let mut received = sink.lock().unwrap();
                    match export {
                        Ok(_) if path != "/v1/traces" => {
                            received.problems.push(format!("an export to {path}"))
                        }
                        Ok(export) => {
                            let spans = export.resource_spans.into_iter().flat_map(|r| r.scope_spans);
                            received.spans.extend(spans.flat_map(|scope| scope.spans));
                        }
                        Err(error) => received.problems.push(format!("an undecodable export: {error}")),
                    }
                    let mut response = http::Response::new(Full::new(Bytes::new()));
                    response
                        .headers_mut()
                        .insert("content-type", http::HeaderValue::from_static("application/x-protobuf"));
                    Ok::<_, std::convert::Infallible>(response)
                }
            });
            tokio::spawn(
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service),
            );
        }
    });
    (url, received)
}

/// The spans received so far, once the receiver is known to have had no problem.
fn spans_of(received: &Mutex<Received>) -> Vec<Span> {
    let received = received.lock().unwrap();
    assert!(received.problems.is_empty(), "the OTLP receiver got {:?}", received.problems);
    received.spans.clone()
}

fn attribute(span: &Span, key: &str) -> Option<AnyValue> {
    span.attributes.iter().find(|kv| kv.key == key)?.value.clone()?.value
}

fn text(span: &Span, key: &str) -> String {
    match attribute(span, key) {
        Some(AnyValue::StringValue(text)) => text,
        other => panic!("{key} is {other:?} on {}", span.name),
    }
}

fn number(span: &Span, key: &str) -> i64 {
    match attribute(span, key) {
        Some(AnyValue::IntValue(n)) => n,
        other => panic!("{key} is {other:?} on {}", span.name),
    }
}

#[tokio::test]
async fn spans_are_exported_with_parents_attributes_and_propagated_context() {
    let (otlp, received) = receiver().await;
    let a = MockServer::spawn(ServiceSpec::new(vec![RouteSpec::json("/a", json!({}))])).await.unwrap();
    let b = MockServer::spawn(ServiceSpec::new(vec![RouteSpec::json("/b", json!({}))])).await.unwrap();
    let endpoint = "  - route: GET /page\n    calls:\n      one: { backend: a, path: /a }\n      two: { backend: b, path: /b }\n";
    let yaml =
        Config::new(&[("a", &a), ("b", &b)], endpoint).telemetry(&format!("otlp_endpoint: {otlp}")).render();
    let mut gateway = Gateway::start(&yaml);

    let response = client().get(format!("{}/page", gateway.url)).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let caller_trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let caller_span = "00f067aa0ba902b7";
    let response = client()
        .get(format!("{}/page", gateway.url))
        .header("traceparent", format!("00-{caller_trace}-{caller_span}-01"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    gateway.terminate();
    assert_eq!(gateway.wait_exit(Duration::from_secs(10)).and_then(|s| s.code()), Some(0));
    let flushed =
        crate::support::wait_until(Duration::from_secs(5), || received.lock().unwrap().spans.len() >= 6)
            .await;
    let spans = spans_of(&received);
    assert!(flushed, "spans were not flushed at shutdown: {} received", spans.len());

    let servers: Vec<&Span> = spans.iter().filter(|s| s.kind == SpanKind::Server as i32).collect();
    assert_eq!(servers.len(), 2, "{spans:#?}");
    for server in &servers {
        assert_eq!(server.name, "GET /page");
        assert_eq!(text(server, "http.route"), "GET /page");
        assert_eq!(text(server, "http.request.method"), "GET");
        assert_eq!(number(server, "http.response.status_code"), 200);
        let clients: Vec<&Span> = spans
            .iter()
            .filter(|s| s.kind == SpanKind::Client as i32 && s.trace_id == server.trace_id)
            .collect();
        assert_eq!(clients.len(), 2, "one client span per backend call");
        for client_span in clients {
            assert_eq!(
                client_span.parent_span_id, server.span_id,
                "client spans are children of the server span"
            );
            assert_eq!(client_span.name, "GET");
            let backend = text(client_span, "backend");
            let (server_for_backend, call) = if backend == "a" { (&a, "one") } else { (&b, "two") };
            assert_eq!(text(client_span, "call"), call);
            assert_eq!(text(client_span, "server.address"), server_for_backend.addr().to_string());
            assert_eq!(number(client_span, "http.response.status_code"), 200);
            let expected = format!("00-{}-{}-01", hex(&server.trace_id), hex(&client_span.span_id));
            let seen: Vec<String> = server_for_backend
                .requests()
                .iter()
                .filter_map(|r| r.headers.get("traceparent")?.to_str().ok().map(str::to_owned))
                .collect();
            assert!(seen.contains(&expected), "backend {backend} got {seen:?}, expected {expected}");
        }
    }
    let joined =
        servers.iter().find(|s| hex(&s.trace_id) == caller_trace).expect("the caller's trace was joined");
    assert_eq!(hex(&joined.parent_span_id), caller_span, "the server span is a child of the caller's span");
    let fresh = servers.iter().find(|s| hex(&s.trace_id) != caller_trace).unwrap();
    assert!(fresh.parent_span_id.is_empty(), "without traceparent the server span is a root");
    let logged: Vec<String> = gateway
        .json_logs()
        .into_iter()
        .filter(|v| v["message"] == "request")
        .filter_map(|v| v["span"]["trace_id"].as_str().map(str::to_owned))
        .collect();
    let mut expected = vec![hex(&fresh.trace_id), caller_trace.to_owned()];
    expected.sort();
    let mut logged_sorted = logged.clone();
    logged_sorted.sort();
    assert_eq!(logged_sorted, expected, "request log lines carry the trace id");
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Sends one request without trace context, one with a sampled and one with an unsampled
/// `traceparent` to a gateway exporting to a fresh receiver at `sampling_ratio: 0` (plus an
/// `extra` telemetry setting, if not empty); returns the spans exported and the backend.
async fn three_requests_at_ratio_zero(extra: &str) -> (Vec<Span>, MockServer) {
    let (otlp, received) = receiver().await;
    let a = MockServer::spawn(ServiceSpec::new(vec![RouteSpec::json("/a", json!({}))])).await.unwrap();
    let endpoint = "  - route: GET /page\n    calls:\n      one: { backend: a, path: /a }\n";
    let mut config = Config::new(&[("a", &a)], endpoint)
        .telemetry(&format!("otlp_endpoint: {otlp}"))
        .telemetry("sampling_ratio: 0");
    if !extra.is_empty() {
        config = config.telemetry(extra);
    }
    let yaml = config.render();
    let mut gateway = Gateway::start(&yaml);
    for traceparent in [None, Some(SAMPLED), Some(UNSAMPLED)] {
        let mut request = client().get(format!("{}/page", gateway.url));
        if let Some(traceparent) = traceparent {
            request = request.header("traceparent", traceparent);
        }
        assert_eq!(request.send().await.unwrap().status(), 200);
    }
    gateway.terminate();
    assert_eq!(gateway.wait_exit(Duration::from_secs(10)).and_then(|s| s.code()), Some(0));
    crate::support::wait_until(Duration::from_secs(3), || received.lock().unwrap().spans.len() >= 2).await;
    let spans = spans_of(&received);
    (spans, a)
}

const SAMPLED_TRACE: &str = "0af7651916cd43dd8448eb211c80319c";
const SAMPLED: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
const UNSAMPLED: &str = "00-11111111111111111111111111111111-b7ad6b7169203331-00";

fn traceparents_seen(backend: &MockServer) -> Vec<String> {
    backend
        .requests()
        .iter()
        .filter_map(|r| r.headers.get("traceparent")?.to_str().ok().map(str::to_owned))
        .collect()
}

#[tokio::test]
async fn a_clients_sampled_flag_is_followed_only_when_trusted() {
    let (spans, a) = three_requests_at_ratio_zero("trust_client_sampling: true").await;
    let traces: std::collections::HashSet<String> = spans.iter().map(|s| hex(&s.trace_id)).collect();
    assert_eq!(traces.len(), 1, "only the caller-sampled request is exported: {traces:?}");
    assert!(traces.contains(SAMPLED_TRACE));
    assert_eq!(spans.len(), 2, "its server span and its client span");
    let seen = traceparents_seen(&a);
    assert_eq!(seen.len(), 2, "the traced request sends its own context, the other passes the caller's on");
    assert!(seen.contains(&UNSAMPLED.to_owned()), "{seen:?}");

    let (spans, a) = three_requests_at_ratio_zero("").await;
    assert!(spans.is_empty(), "by default a client cannot have its requests exported: {spans:#?}");
    assert_eq!(
        traceparents_seen(&a),
        [SAMPLED, UNSAMPLED],
        "unexported requests pass the caller's context on"
    );
}

#[tokio::test]
async fn without_export_the_clients_trace_context_reaches_every_backend_unchanged() {
    let a = MockServer::spawn(ServiceSpec::new(vec![RouteSpec::json("/a", json!({}))])).await.unwrap();
    let b = MockServer::spawn(ServiceSpec::new(vec![RouteSpec::json("/b", json!({}))])).await.unwrap();
    let endpoint = "  - route: GET /page\n    calls:\n      one: { backend: a, path: /a }\n      two: { backend: b, path: /b }\n";
    let gateway = Gateway::start(&config(&[("a", &a), ("b", &b)], endpoint));
    let send = |traceparent: &'static str, tracestate: String| {
        client()
            .get(format!("{}/page", gateway.url))
            .header("traceparent", traceparent)
            .header("tracestate", tracestate)
            .send()
    };

    assert_eq!(
        send(SAMPLED, "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE".to_owned()).await.unwrap().status(),
        200
    );
    for backend in [&a, &b] {
        let seen = &backend.requests()[0].headers;
        assert_eq!(seen["traceparent"], SAMPLED);
        assert_eq!(seen["tracestate"], "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE");
    }
    // An oversized or malformed tracestate is dropped; a malformed traceparent is not passed on.
    assert_eq!(send(SAMPLED, format!("k={}", "v".repeat(600))).await.unwrap().status(), 200);
    assert_eq!(send(SAMPLED, "Not Valid".to_owned()).await.unwrap().status(), 200);
    assert_eq!(send("00-xyz-b7ad6b7169203331-01", "a=1".to_owned()).await.unwrap().status(), 200);
    for backend in [&a, &b] {
        let requests = backend.requests();
        for request in &requests[1..3] {
            assert_eq!(request.headers["traceparent"], SAMPLED);
            assert!(!request.headers.contains_key("tracestate"), "{:?}", request.headers);
        }
        assert!(!requests[3].headers.contains_key("traceparent"));
        assert!(!requests[3].headers.contains_key("tracestate"));
    }
}

#[tokio::test]
async fn clients_cannot_invent_methods_or_span_names() {
    let (otlp, received) = receiver().await;
    let a = MockServer::spawn(ServiceSpec::new(vec![RouteSpec::json("/a", json!({}))])).await.unwrap();
    let endpoint = "  - route: GET /page\n    calls:\n      one: { backend: a, path: /a }\n";
    let yaml = Config::new(&[("a", &a)], endpoint).telemetry(&format!("otlp_endpoint: {otlp}")).render();
    let mut gateway = Gateway::start(&yaml);
    let invented = format!("X{}", "M".repeat(20_000));
    let request = format!("{invented} /nowhere HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\r\n");
    let answer = crate::support::raw_exchange(gateway.addr, request.as_bytes(), Duration::from_secs(5)).await;
    assert_eq!(crate::support::raw_status(&answer), Some(404), "{}", &answer[..answer.len().min(200)]);
    let request = "BREW /page HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\r\n";
    let answer = crate::support::raw_exchange(gateway.addr, request.as_bytes(), Duration::from_secs(5)).await;
    assert_eq!(crate::support::raw_status(&answer), Some(405));
    gateway.terminate();
    assert_eq!(gateway.wait_exit(Duration::from_secs(10)).and_then(|s| s.code()), Some(0));
    crate::support::wait_until(Duration::from_secs(3), || received.lock().unwrap().spans.len() >= 2).await;

    let lines: Vec<_> = gateway.json_logs().into_iter().filter(|l| l["message"] == "request").collect();
    assert_eq!(lines.len(), 2);
    for line in &lines {
        assert_eq!(line["span"]["http.request.method"], "_OTHER", "{line}");
        assert!(line.to_string().len() < 2_000, "a log line of {} bytes", line.to_string().len());
    }
    let spans = spans_of(&received);
    let names: Vec<&str> = spans.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names.len(), 2, "{names:?}");
    assert!(names.contains(&"HTTP"), "an unmatched route has one fixed span name: {names:?}");
    assert!(names.contains(&"GET /page"), "a matched route names its span: {names:?}");
    assert!(spans.iter().all(|s| text(s, "http.request.method") == "_OTHER"));
}

#[tokio::test]
async fn with_tracing_on_a_stall_names_its_request_whether_sampled_or_not() {
    let (otlp, _spans) = receiver().await;
    let a = MockServer::spawn(ServiceSpec::new(vec![RouteSpec::json("/a", json!({}))])).await.unwrap();
    let endpoint = "  - route: GET /page\n    calls:\n      one: { backend: a, path: /a }\n";
    let yaml = Config::new(&[("a", &a)], endpoint)
        .telemetry(&format!("otlp_endpoint: {otlp}"))
        .telemetry("sampling_ratio: 0")
        .telemetry("trust_client_sampling: true")
        .telemetry("stall_warning: 50ms")
        .telemetry("debug_endpoints: true")
        .render();
    let gateway = Gateway::start(&yaml);
    let block = |id: &'static str, traceparent: Option<&'static str>| {
        let mut request =
            client().get(format!("{}/_fanout/debug/block/200", gateway.url)).header("x-request-id", id);
        if let Some(traceparent) = traceparent {
            request = request.header("traceparent", traceparent);
        }
        request.send()
    };
    let sampled = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    assert_eq!(block("traced-blocker", Some(sampled)).await.unwrap().status(), 200);
    assert_eq!(block("plain-blocker", None).await.unwrap().status(), 200);

    let both = crate::support::wait_until(Duration::from_secs(3), || {
        gateway.logs().iter().filter(|l| l.contains("runtime worker blocked")).count() == 2
    })
    .await;
    assert!(both, "{:?}", gateway.logs());
    let named: Vec<String> = gateway
        .json_logs()
        .iter()
        .filter(|l| l["message"] == "runtime worker blocked: a task is not yielding")
        .map(|l| l["span"]["request_id"].as_str().unwrap_or("<none>").to_owned())
        .collect();
    assert_eq!(named, ["traced-blocker", "plain-blocker"]);
}

#[tokio::test]
async fn a_retried_or_hedged_call_says_so_on_its_span() {
    let (otlp, received) = receiver().await;
    let retried =
        MockServer::spawn(ServiceSpec::new(vec![RouteSpec::json("/r", json!({})).fail_first(1, 503)]))
            .await
            .unwrap();
    let hedged = MockServer::spawn(ServiceSpec::new(vec![
        RouteSpec::json("/h", json!({})).tail(0.0, 1, Duration::from_secs(2)),
        RouteSpec::json("/warm", json!({})),
    ]))
    .await
    .unwrap();
    let shared = MockServer::spawn(ServiceSpec::new(vec![
        RouteSpec::json("/c", json!({})).latency(Duration::from_millis(500)),
    ]))
    .await
    .unwrap();
    let endpoints = "  - route: GET /retried\n    calls:\n      r: { backend: r, path: /r }\n  \
                     - route: GET /hedged\n    calls:\n      h: { backend: h, path: /h, timeout: 5s }\n  \
                     - route: GET /warm\n    calls:\n      w: { backend: h, path: /warm }\n  \
                     - route: GET /coalesced\n    calls:\n      c: { backend: c, path: /c }\n";
    let yaml = Config::new(&[("r", &retried), ("h", &hedged), ("c", &shared)], endpoints)
        .backend("r", "retry: {}")
        .backend("r", "deadline_header: x-deadline-ms")
        .backend("h", "hedge: { after: 100ms }")
        .backend("c", "coalesce: true")
        .telemetry(&format!("otlp_endpoint: {otlp}"))
        .render();
    let mut gateway = Gateway::start(&yaml);
    // Twenty calls to the backend, so its 5 % hedge cap allows one.
    for _ in 0..20 {
        assert_eq!(client().get(format!("{}/warm", gateway.url)).send().await.unwrap().status(), 200);
    }
    for page in ["retried", "hedged"] {
        assert_eq!(client().get(format!("{}/{page}", gateway.url)).send().await.unwrap().status(), 200);
    }
    let coalesced = || client().get(format!("{}/coalesced", gateway.url)).send();
    let (first, second) = tokio::join!(coalesced(), coalesced());
    assert_eq!((first.unwrap().status().as_u16(), second.unwrap().status().as_u16()), (200, 200));
    assert_eq!(shared.requests().len(), 1);
    gateway.terminate();
    assert_eq!(gateway.wait_exit(Duration::from_secs(10)).and_then(|s| s.code()), Some(0));
    let call_span = |call: &str| {
        let spans = spans_of(&received);
        spans.into_iter().find(|s| {
            s.kind == SpanKind::Client as i32 && attribute(s, "call").is_some() && text(s, "call") == call
        })
    };
    assert!(crate::support::wait_until(Duration::from_secs(5), || call_span("h").is_some()).await);

    let r = call_span("r").unwrap();
    assert_eq!(number(&r, "attempts"), 2);
    assert_eq!(attribute(&r, "hedges"), None);
    let told = number(&r, "time_left_ms");
    assert!((900..=995).contains(&told), "the retry was told {told} ms, less than 1 s less the margin");
    let joined: Vec<Span> = spans_of(&received)
        .into_iter()
        .filter(|s| attribute(s, "call").is_some() && text(s, "call") == "c")
        .collect();
    assert_eq!(joined.len(), 2, "{joined:#?}");
    let flags: Vec<Option<AnyValue>> = joined.iter().map(|s| attribute(s, "coalesced")).collect();
    assert!(flags.contains(&Some(AnyValue::BoolValue(true))) && flags.contains(&None), "{flags:?}");
    let h = call_span("h").unwrap();
    assert_eq!((number(&h, "hedges"), number(&h, "hedges_won")), (1, 1));
    assert_eq!(attribute(&h, "attempts"), None, "one attempt, hedged");
}
