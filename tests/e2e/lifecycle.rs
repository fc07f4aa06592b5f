//! Lifecycle: a client that goes away cancels its backend calls; SIGTERM drains in-flight
//! requests while `/readyz` turns 503, then the process exits 0.

use crate::support::{Config, Gateway, client, wait_until};
use mockend::{Behavior, MockServer, RouteSpec, ServiceSpec};
use serde_json::json;
use std::time::Duration;

#[tokio::test]
async fn a_client_that_disconnects_cancels_its_backend_calls() {
    let hang = MockServer::spawn(ServiceSpec::new(vec![
        RouteSpec::json("/h/{n}", json!({})).behavior(Behavior::Hang),
    ]))
    .await
    .unwrap();
    let endpoint = "  - route: GET /page\n    calls:\n      \
                    a: { backend: hang, path: /h/1, timeout: 30s }\n      b: { backend: hang, path: /h/2, timeout: 30s }\n";
    let yaml = Config::new(&[("hang", &hang)], endpoint)
        .server_default("shutdown_grace")
        .server("request_timeout: 60s")
        .render();
    let gateway = Gateway::start(&yaml);

    let request = client().get(format!("{}/page", gateway.url)).timeout(Duration::from_millis(300)).send();
    assert!(request.await.is_err(), "the client gave up");
    assert_eq!(hang.requests().len(), 2, "both calls were in flight");
    assert!(
        wait_until(Duration::from_secs(3), || hang.cancelled() == 2).await,
        "backend calls still running after the client left: cancelled {}",
        hang.cancelled()
    );
}

#[tokio::test]
async fn sigterm_drains_in_flight_requests_and_exits_zero() {
    drains_in_flight_requests_and_exits_zero("work_stealing").await;
}

#[tokio::test]
async fn sigterm_drains_every_worker_with_a_runtime_per_core() {
    drains_in_flight_requests_and_exits_zero("per_core").await;
}

/// SIGTERM: the listener closes, `/readyz` turns 503, the request in flight is answered, and
/// the process exits 0, with `server.runtime: RUNTIME`.
async fn drains_in_flight_requests_and_exits_zero(runtime: &str) {
    let slow = MockServer::spawn(ServiceSpec::new(vec![
        RouteSpec::json("/s", json!({"done": true})).latency(Duration::from_millis(2000)),
    ]))
    .await
    .unwrap();
    let endpoint = "  - route: GET /page\n    calls:\n      s: { backend: slow, path: /s, required: true, timeout: 3s }\n";
    let yaml = Config::new(&[("slow", &slow)], endpoint)
        .server(&format!("runtime: {runtime}"))
        .server("request_timeout: 5s")
        .render();
    let mut gateway = Gateway::start(&yaml);
    let http = client();
    assert_eq!(http.get(format!("{}/healthz", gateway.admin)).send().await.unwrap().status(), 200);
    assert_eq!(http.get(format!("{}/readyz", gateway.admin)).send().await.unwrap().status(), 200);

    let in_flight = tokio::spawn(client().get(format!("{}/page", gateway.url)).send());
    assert!(wait_until(Duration::from_secs(2), || slow.requests().len() == 1).await);
    gateway.terminate();

    let ready =
        wait_until(Duration::from_secs(2), || std::net::TcpStream::connect(gateway.addr).is_err()).await;
    assert!(ready, "the public listener still accepts connections while draining");
    let readyz = http.get(format!("{}/readyz", gateway.admin)).send().await.unwrap();
    assert_eq!(readyz.status(), 503);

    let response = in_flight.await.unwrap().unwrap();
    assert_eq!(response.status(), 200);
    let body: serde_json::Value = serde_json::from_slice(&response.bytes().await.unwrap()).unwrap();
    assert_eq!(body, json!({"s": {"done": true}}));
    let status = gateway.wait_exit(Duration::from_secs(5)).expect("fanout did not exit after draining");
    assert_eq!(status.code(), Some(0));
    assert!(gateway.logs().iter().any(|l| l.contains("draining")));
}
