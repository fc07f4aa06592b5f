//! Hot reload with the real binary: SIGHUP and file changes (including the symlink swap of a
//! Kubernetes ConfigMap volume) swap the plan while requests keep flowing; requests in flight
//! finish on the old plan; an invalid config is rejected with every error logged and the old
//! plan keeps serving; listener changes are logged, not applied.

use crate::support::{Gateway, client, replace_once, samples, temp_dir, wait_until};
use mockend::{MockServer, RouteSpec, ServiceSpec};
use serde_json::{Value, json};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Two backends and one endpoint, `GET /page/{id}`, whose single call is named `call` and goes
/// to `backend` at `path`: the answer's shape says which config served it.
fn shaped(a: &MockServer, b: &MockServer, call: &str, backend: &str, path: &str, poll: &str) -> String {
    format!(
        "server:\n  listen: 127.0.0.1:0\n  admin_listen: 127.0.0.1:0\n  config_poll: {poll}\n\
         telemetry:\n  log_format: json\n\
         backends:\n  a:\n    url: {}\n  b:\n    url: {}\n\
         endpoints:\n  - route: GET /page/{{id}}\n    calls:\n      {call}: {{ backend: {backend}, path: \"{path}\", required: true }}\n",
        a.url(),
        b.url()
    )
}

async fn backends() -> (MockServer, MockServer) {
    let a = MockServer::spawn(ServiceSpec::new(vec![
        RouteSpec::json("/one/{id}", json!({"from": "a"})),
        RouteSpec::json("/slow/{id}", json!({"slow": true})).latency(Duration::from_millis(700)),
    ]))
    .await
    .unwrap();
    let b = MockServer::spawn(ServiceSpec::new(vec![RouteSpec::json("/two/{id}", json!({"from": "b"}))]))
        .await
        .unwrap();
    (a, b)
}

/// Replaces `file` the way editors and config tools do: write aside, then rename over it.
fn replace(file: &Path, yaml: &str) {
    let aside = file.with_extension("new");
    std::fs::write(&aside, yaml).unwrap();
    std::fs::rename(&aside, file).unwrap();
}

async fn page(url: &str) -> (u16, Value) {
    let response = client().get(url).send().await.unwrap();
    let status = response.status().as_u16();
    (status, serde_json::from_slice(&response.bytes().await.unwrap()).unwrap_or(Value::Null))
}

/// Polls `url` until its answer has the top-level key `key`.
async fn wait_for_shape(url: &str, key: &str) -> bool {
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(5) {
        if page(url).await.1.get(key).is_some() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

async fn admin_json(gateway: &Gateway, path: &str) -> Value {
    page(&format!("{}{path}", gateway.admin)).await.1
}

async fn metric(gateway: &Gateway, series: &str) -> Option<f64> {
    let text = client().get(format!("{}/metrics", gateway.admin)).send().await.unwrap().text().await.unwrap();
    samples(&text).get(series).copied()
}

/// Log lines whose message starts with `prefix`.
fn count_logs(gateway: &Gateway, prefix: &str) -> usize {
    gateway
        .json_logs()
        .iter()
        .filter(|l| l["message"].as_str().is_some_and(|m| m.starts_with(prefix)))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_reloads_under_load_lose_no_request_and_switch_the_shape() {
    let (a, b) = backends().await;
    let v1 = shaped(&a, &b, "v1", "a", "/one/{id}", "off");
    let v2 = shaped(&a, &b, "v2", "b", "/two/{id}", "off");
    let gateway = Gateway::start(&v1);
    let url = format!("{}/page/7", gateway.url);

    let stop = Arc::new(AtomicBool::new(false));
    let failures = Arc::new(AtomicUsize::new(0));
    let (seen_v1, seen_v2) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let load: Vec<_> = (0..4)
        .map(|_| {
            let (url, stop, failures) = (url.clone(), Arc::clone(&stop), Arc::clone(&failures));
            let (seen_v1, seen_v2) = (Arc::clone(&seen_v1), Arc::clone(&seen_v2));
            tokio::spawn(async move {
                let http = client();
                while !stop.load(Ordering::Relaxed) {
                    let body = match http.get(&url).send().await {
                        Ok(response) if response.status() == 200 => {
                            serde_json::from_slice(&response.bytes().await.unwrap_or_default())
                                .unwrap_or(Value::Null)
                        }
                        _ => Value::Null,
                    };
                    let counter = match (body.get("v1"), body.get("v2")) {
                        (Some(_), None) => &seen_v1,
                        (None, Some(_)) => &seen_v2,
                        _ => &failures,
                    };
                    counter.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();

    let first_version = admin_json(&gateway, "/readyz").await["config_version"].clone();
    for round in 0..10 {
        let (yaml, key) = if round % 2 == 0 { (&v2, "v2") } else { (&v1, "v1") };
        replace(gateway.config_file(), yaml);
        gateway.signal("HUP");
        assert!(wait_for_shape(&url, key).await, "round {round}: answers never switched to {key}");
        let readyz = admin_json(&gateway, "/readyz").await;
        assert_eq!(readyz["last_reload"], "applied", "{readyz}");
        assert_eq!(readyz["config_version"] == first_version, key == "v1", "round {round}: {readyz}");
    }
    stop.store(true, Ordering::Relaxed);
    for task in load {
        task.await.unwrap();
    }

    let (v1_answers, v2_answers) = (seen_v1.load(Ordering::Relaxed), seen_v2.load(Ordering::Relaxed));
    assert_eq!(failures.load(Ordering::Relaxed), 0, "failed requests during reloads");
    assert!(v1_answers > 0 && v2_answers > 0, "load saw v1 {v1_answers} and v2 {v2_answers} answers");
    assert_eq!(count_logs(&gateway, "config reloaded"), 10);
    assert_eq!(metric(&gateway, r#"fanout_config_reloads_total{result="applied"}"#).await, Some(10.0));
    let version = u64::from_str_radix(first_version.as_str().unwrap(), 16).unwrap();
    assert_eq!(metric(&gateway, "fanout_config_hash").await, Some(version as f64), "back on v1 after ten");
}

#[tokio::test]
async fn a_request_in_flight_finishes_on_the_plan_it_started_with() {
    let (a, b) = backends().await;
    let slow = shaped(&a, &b, "old", "a", "/slow/{id}", "off");
    let gateway = Gateway::start(&slow);
    let url = format!("{}/page/1", gateway.url);

    let in_flight = tokio::spawn({
        let url = url.clone();
        async move { page(&url).await }
    });
    assert!(wait_until(Duration::from_secs(2), || a.requests().len() == 1).await);
    replace(gateway.config_file(), &shaped(&a, &b, "new", "b", "/two/{id}", "off"));
    gateway.signal("HUP");
    assert!(wait_for_shape(&url, "new").await, "the new plan never served");

    let (status, body) = in_flight.await.unwrap();
    assert_eq!(status, 200);
    assert_eq!(body, json!({"old": {"slow": true}}), "the request that started before the reload");
}

#[tokio::test]
async fn a_configmap_symlink_swap_is_picked_up_without_a_signal() {
    let (a, b) = backends().await;
    // The layout kubelet writes: fanout.yaml → ..data/fanout.yaml, ..data → ..<timestamp>.
    let dir = temp_dir();
    let version = |name: &str, yaml: &str| {
        std::fs::create_dir(dir.join(name)).unwrap();
        std::fs::write(dir.join(name).join("fanout.yaml"), yaml).unwrap();
    };
    version("..2026_11_25_v1", &shaped(&a, &b, "v1", "a", "/one/{id}", "100ms"));
    std::os::unix::fs::symlink("..2026_11_25_v1", dir.join("..data")).unwrap();
    std::os::unix::fs::symlink("..data/fanout.yaml", dir.join("fanout.yaml")).unwrap();
    let file = dir.join("fanout.yaml");
    let gateway = Gateway::start_file(dir.clone(), file, &[]);
    let url = format!("{}/page/3", gateway.url);
    assert!(page(&url).await.1.get("v1").is_some());

    version("..2026_11_25_v2", &shaped(&a, &b, "v2", "b", "/two/{id}", "100ms"));
    std::os::unix::fs::symlink("..2026_11_25_v2", dir.join("..data_tmp")).unwrap();
    std::fs::rename(dir.join("..data_tmp"), dir.join("..data")).unwrap();

    assert!(wait_for_shape(&url, "v2").await, "the swapped ConfigMap was never loaded");
    // Log lines reach stdout up to the log writer's linger (10 ms) after they are logged.
    assert!(wait_until(Duration::from_secs(2), || count_logs(&gateway, "config reloaded") > 0).await);
    let reloads: Vec<Value> =
        gateway.json_logs().into_iter().filter(|l| l["message"] == "config reloaded").collect();
    assert_eq!(reloads.len(), 1, "{reloads:?}");
    assert_eq!(reloads[0]["trigger"], "file change");
    let changes = reloads[0]["changes"].as_str().unwrap();
    assert!(changes.contains("endpoints[GET /page/{id}] changed"), "{changes}");
    assert!(!changes.contains("server"), "unchanged keys are not listed: {changes}");
}

#[tokio::test]
async fn an_invalid_config_is_rejected_with_every_error_and_the_old_plan_keeps_serving() {
    let (a, b) = backends().await;
    let gateway = Gateway::start(&shaped(&a, &b, "v1", "a", "/one/{id}", "off"));
    let url = format!("{}/page/9", gateway.url);
    let before = admin_json(&gateway, "/readyz").await;

    let broken = replace_once(
        &shaped(&a, &b, "v2", "nowhere", "/two/{id}", "off"),
        "config_poll: off",
        "config_poll: soon",
    );
    replace(gateway.config_file(), &broken);
    gateway.signal("HUP");
    assert!(
        wait_until(Duration::from_secs(5), || count_logs(&gateway, "config reload rejected") == 1).await,
        "no rejection logged"
    );
    let logs = gateway.logs().join("\n");
    assert!(logs.contains("endpoints[0].calls.v2.backend: unknown backend"), "{logs}");
    assert!(logs.contains("server.config_poll: invalid duration"), "{logs}");
    assert!(logs.contains("2 error(s)"), "{logs}");

    let (status, body) = page(&url).await;
    assert_eq!((status, body), (200, json!({"v1": {"from": "a"}})), "the old plan still serves");
    let after = admin_json(&gateway, "/readyz").await;
    assert_eq!(after["config_version"], before["config_version"]);
    assert_eq!(after["last_reload"], "rejected");
    assert_eq!(metric(&gateway, "fanout_config_last_reload_successful").await, Some(0.0));
    assert_eq!(metric(&gateway, r#"fanout_config_reloads_total{result="rejected"}"#).await, Some(1.0));
}

#[tokio::test]
async fn a_listener_change_is_logged_as_needing_a_restart_and_the_rest_applies() {
    let (a, b) = backends().await;
    let gateway = Gateway::start(&shaped(&a, &b, "v1", "a", "/one/{id}", "off"));
    let moved = replace_once(
        &shaped(&a, &b, "v2", "b", "/two/{id}", "off"),
        "listen: 127.0.0.1:0\n  admin",
        "listen: 127.0.0.1:1\n  admin",
    );
    replace(gateway.config_file(), &moved);
    gateway.signal("HUP");

    let url = format!("{}/page/4", gateway.url);
    assert!(wait_for_shape(&url, "v2").await, "the endpoint change applies on the old listener");
    // Log lines reach stdout up to the log writer's linger (10 ms) after they are logged.
    let logged = || gateway.logs().iter().any(|l| l.contains("server.listen not applied"));
    assert!(wait_until(Duration::from_secs(2), logged).await, "no warning");
    let warning =
        gateway.logs().into_iter().find(|l| l.contains("server.listen not applied")).expect("no warning");
    assert!(warning.contains("listener addresses cannot change on reload"), "{warning}");
    assert!(warning.contains("restart to apply"), "{warning}");

    replace(gateway.config_file(), &moved);
    gateway.signal("HUP");
    assert!(
        wait_until(Duration::from_secs(5), || count_logs(&gateway, "config reload: unchanged") == 1).await,
        "a reload of the same file is reported as unchanged"
    );
}

#[tokio::test]
async fn secrets_from_the_environment_never_reach_logs_or_the_version() {
    let (a, b) = backends().await;
    let with_key = |yaml: String| {
        replace_once(
            &yaml,
            &format!("  a:\n    url: {}\n", a.url()),
            &format!("  a:\n    url: {}\n    headers: {{ x-api-key: \"${{API_KEY}}\" }}\n", a.url()),
        )
    };
    let yaml = with_key(shaped(&a, &b, "v1", "a", "/one/{id}", "off"));
    let first =
        Gateway::start_with_env(&yaml, &[("API_KEY", "s3cr3t-KEY-123"), ("BAD_TIMEOUT", "s3cr3t-KEY-456")]);
    let second = Gateway::start_with_env(&yaml, &[("API_KEY", "other-secret-789"), ("BAD_TIMEOUT", "x")]);
    let version = admin_json(&first, "/readyz").await["config_version"].clone();
    assert_eq!(
        version,
        admin_json(&second, "/readyz").await["config_version"],
        "the version is computed before ${{VAR}} is filled, so it says nothing about the secret"
    );

    // A reload whose secret-filled values are invalid: the errors show the text as written.
    let broken = replace_once(&yaml, "    calls:\n", "    timeout: \"${BAD_TIMEOUT}\"\n    calls:\n");
    let broken = replace_once(
        &broken,
        &format!("url: {}\n    headers", a.url()),
        "url: \"http://ann:${API_KEY}@a\"\n    headers",
    );
    replace(first.config_file(), &broken);
    first.signal("HUP");
    assert!(
        wait_until(Duration::from_secs(5), || count_logs(&first, "config reload rejected") == 1).await,
        "no rejection logged"
    );
    let logs = first.logs().join("\n");
    assert!(logs.contains(r#"endpoints[0].timeout: invalid duration \"${BAD_TIMEOUT}\""#), "{logs}");
    assert!(logs.contains("backends.a.url: URL \\\"http://ann:***@a\\\" needs a host"), "{logs}");
    for secret in ["s3cr3t-KEY-123", "s3cr3t-KEY-456"] {
        assert!(!logs.contains(secret), "{secret} was logged:\n{logs}");
    }
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_fanout"))
        .args(["check", "--config"])
        .arg(first.config_file())
        .env("API_KEY", "s3cr3t-KEY-123")
        .env("BAD_TIMEOUT", "s3cr3t-KEY-456")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("endpoints[0].timeout: invalid duration \"${BAD_TIMEOUT}\""), "{stderr}");
    assert!(!stderr.contains("s3cr3t"), "{stderr}");
}
