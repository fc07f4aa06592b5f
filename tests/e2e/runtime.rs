//! `server.runtime: per_core`: one worker thread per core, each with its own listening socket
//! and runtime, serving pages concurrently over many connections.

use crate::support::{Config, Gateway, wait_until};
use mockend::{MockServer, RouteSpec, ServiceSpec};
use serde_json::json;
use std::time::Duration;

/// The names of the gateway process's threads (one that ends while they are read is skipped).
fn thread_names(gateway: &Gateway) -> Vec<String> {
    let tasks = std::fs::read_dir(format!("/proc/{}/task", gateway.pid())).unwrap();
    tasks
        .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
        .map(|name| name.trim().to_owned())
        .collect()
}

#[tokio::test]
async fn per_core_serves_pages_from_a_worker_per_core() {
    let backend =
        MockServer::spawn(ServiceSpec::new(vec![RouteSpec::json("/r/{id}", json!({"id": "{id}"}))]))
            .await
            .unwrap();
    let endpoint = "  - route: GET /page/{id}\n    calls:\n      r: { backend: b, path: \"/r/{id}\" }\n";
    let yaml = Config::new(&[("b", &backend)], endpoint).server("runtime: per_core").render();
    let gateway = Gateway::start(&yaml);
    let cores = std::thread::available_parallelism().map_or(1, usize::from).min(downstream::MAX_WORKERS);
    let expected = if cores > 1 { cores } else { 0 };
    // The workers start right after the sockets listen (connections queue meanwhile).
    let started = wait_until(Duration::from_secs(5), || {
        thread_names(&gateway).iter().filter(|name| name.starts_with("fanout-worker-")).count() == expected
    })
    .await;
    // One core: the main runtime serves the port itself.
    assert!(started, "expected {expected} worker threads: {:?}", thread_names(&gateway));

    // Each page on a connection of its own, all at once: the kernel spreads them over the
    // workers' sockets.
    let pages = (0..64).map(|id| {
        let url = format!("{}/page/{id}", gateway.url);
        async move {
            let fresh = reqwest::Client::builder().no_proxy().pool_max_idle_per_host(0).build().unwrap();
            let response = fresh.get(url).send().await.unwrap();
            let status = response.status();
            (status, serde_json::from_slice::<serde_json::Value>(&response.bytes().await.unwrap()).unwrap())
        }
    });
    for (id, (status, body)) in futures_util::future::join_all(pages).await.into_iter().enumerate() {
        assert_eq!(status, 200);
        assert_eq!(body, json!({"r": {"id": id.to_string()}}));
    }
    assert_eq!(backend.requests().len(), 64);
}
