//! The inbound stack in-process: requests go through [`stack`] with `oneshot`, no socket, for
//! every answer it gives before an endpoint runs (400, 404, 405, 413, 414, 503) and the headers
//! every answer carries (`X-Request-Id`, `Server-Timing`).

use super::*;
use crate::config;
use crate::limits::MAX_URI_LEN;
use crate::reload::Candidate;
use http::header::{ALLOW, CONNECTION, CONTENT_TYPE, RETRY_AFTER};
use http::{HeaderName, StatusCode};
use http_body_util::BodyExt;
use std::collections::HashMap;
use std::path::PathBuf;
use std::task::Poll;
use tower::ServiceExt;

/// A config with one endpoint calling `backend`.
fn config_calling(backend: &str) -> String {
    format!(
        "server:\n  max_request_body: 1KiB\n  max_in_flight: 1\n\
         backends:\n  b: {{ url: \"{backend}\" }}\n\
         endpoints:\n  - route: GET /page/{{id}}\n    calls:\n      x: {{ backend: b, path: \"/x/{{id}}\" }}\n"
    )
}

/// The config serving, and its server settings (for [`stack`]), with a backend that no test
/// here reaches (nothing listens there).
fn serving() -> (Arc<Live>, ServerSettings) {
    serving_with("http://127.0.0.1:9")
}

fn serving_with(backend: &str) -> (Arc<Live>, ServerSettings) {
    let env = HashMap::new();
    let candidate =
        Candidate::new(config::load_str(&config_calling(backend), "test", &env).unwrap()).unwrap();
    let server = candidate.plan.server.clone();
    (Arc::new(Live::new(candidate, PathBuf::new(), env, None)), server)
}

/// The answer of `service` to `request`.
async fn send<S>(service: &S, request: Request<()>) -> Response<Body>
where
    S: Service<Request<()>, Response = Response<Body>, Error = Infallible> + Clone,
{
    service.clone().oneshot(request).await.unwrap()
}

fn get(uri: &str) -> http::request::Builder {
    Request::builder().uri(uri)
}

/// The answer's status, headers and problem body.
async fn answer(response: Response<Body>) -> (StatusCode, http::HeaderMap, serde_json::Value) {
    let (parts, body) = response.into_parts();
    let bytes = body.collect().await.unwrap().to_bytes();
    (parts.status, parts.headers, serde_json::from_slice(&bytes).unwrap_or_default())
}

#[tokio::test]
async fn requests_refused_before_routing_get_their_problem() {
    let (live, server) = serving();
    let service = stack(live, &server);
    let long = format!("/page/{}", "a".repeat(MAX_URI_LEN));
    let cases = [
        (get("/nowhere"), StatusCode::NOT_FOUND, "no endpoint is configured for this path"),
        (get("/page/1").method("POST"), StatusCode::METHOD_NOT_ALLOWED, "this endpoint answers GET and HEAD"),
        (get(&long), StatusCode::URI_TOO_LONG, "request target exceeds 8192 bytes"),
        (
            get("/page/1").header("content-length", "1025"),
            StatusCode::PAYLOAD_TOO_LARGE,
            "request body exceeds 1024 bytes",
        ),
        (
            get("/page/1").header("transfer-encoding", "chunked"),
            StatusCode::BAD_REQUEST,
            "Transfer-Encoding is not accepted: endpoints take no request body",
        ),
        (get("/page/%2F"), StatusCode::BAD_REQUEST, "route parameter {id} contains a path separator"),
        (get("/page/.."), StatusCode::BAD_REQUEST, "route parameter {id} is a dot segment"),
    ];
    for (request, status, detail) in cases {
        let (got, headers, body) = answer(send(&service, request.body(()).unwrap()).await).await;
        assert_eq!((got, body["detail"].as_str()), (status, Some(detail)), "{body}");
        assert_eq!(headers[CONTENT_TYPE], "application/problem+json");
        assert!(headers["server-timing"].to_str().unwrap().starts_with("total;dur="), "{headers:?}");
        assert_eq!(headers["x-request-id"].len(), 32, "a generated id");
        match status {
            StatusCode::METHOD_NOT_ALLOWED => assert_eq!(headers[ALLOW], "GET, HEAD"),
            StatusCode::BAD_REQUEST if detail.starts_with("Transfer") => {
                assert_eq!(headers[CONNECTION], "close")
            }
            _ => {}
        }
    }
}

#[tokio::test]
async fn a_request_beyond_max_in_flight_is_shed_at_once() {
    // A backend that takes the connection (the kernel's backlog) and never answers: the first
    // request holds the only permit while it waits.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let (live, server) = serving_with(&format!("http://{}", silent.local_addr().unwrap()));
    let service = stack(live, &server);
    let mut first = Box::pin(send(&service, get("/page/1").body(()).unwrap()));
    let polled = std::future::poll_fn(|cx| Poll::Ready(first.as_mut().poll(cx).is_pending())).await;
    assert!(polled, "the first request waits for its backend");
    let (status, headers, body) = answer(send(&service, get("/page/2").body(()).unwrap()).await).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(headers[RETRY_AFTER], "1");
    drop(first);
    let (status, ..) = answer(send(&service, get("/nowhere").body(()).unwrap()).await).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "the permit came back with the first request");
}

#[tokio::test]
async fn a_usable_request_id_is_kept_and_any_other_replaced() {
    let (live, server) = serving();
    let service = stack(live, &server);
    let id = HeaderName::from_static("x-request-id");
    for (sent, kept) in [("abc-123_X.y:z", true), ("has space", false), (&*"a".repeat(129), false)] {
        let response = send(&service, get("/nowhere").header(&id, sent).body(()).unwrap()).await;
        let echoed = response.headers()[&id].to_str().unwrap().to_owned();
        assert_eq!(echoed == sent, kept, "{sent:?} came back as {echoed:?}");
        if !kept {
            assert!(echoed.len() == 32 && echoed.bytes().all(|b| b.is_ascii_hexdigit()), "{echoed}");
        }
    }
}
