//! `fanout check`: a valid config prints the plan; a config with several mistakes exits 2 and
//! names every mistake with its key path; `serve` refuses a bad config the same way.

use crate::support::{run_fanout, run_fanout_with_env};

const BROKEN: &str = "server:
  listen: localhost
  request_timeout: soon
backends:
  users: { url: \"http://users:8080\", timeout: 250 }
  orders: { url: \"http://orders:8080\", tmeout: 1s }
endpoints:
  - route: GET /api/page/{id}
    forward_headers: [connection]
    calls:
      user: { backend: user, path: \"/users/{id}\" }
      orders: { backend: orders, path: \"/orders/{uid}\" }
  - route: DELETE /x
    calls:
      a: { backend: users, path: /a }
";

#[test]
fn check_reports_every_mistake_with_its_key_path_and_exits_2() {
    for command in ["check", "serve"] {
        let output = run_fanout(&[command], BROKEN);
        assert_eq!(output.status.code(), Some(2), "{command}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        for path in [
            "server.listen: invalid address \"localhost\"",
            "server.request_timeout: invalid duration \"soon\"",
            "backends.users.timeout: invalid duration \"250\"",
            "backends.orders.tmeout: unknown field `tmeout`",
            "endpoints[0].forward_headers[0]: \"connection\" is a hop-by-hop header",
            "endpoints[0].calls.user.backend: unknown backend \"user\" (known: users, orders)",
            "endpoints[0].calls.orders.path: \"/orders/{uid}\": unknown route parameter or call {uid}",
            "endpoints[1].route: method \"DELETE\" is not supported",
        ] {
            assert!(stderr.contains(path), "{command}: missing {path:?} in:\n{stderr}");
        }
        assert!(stderr.contains("has 8 error(s)"), "{stderr}");
        assert!(!stderr.contains("panicked") && !stderr.contains("RUST_BACKTRACE"), "{stderr}");
    }
}

#[test]
fn check_prints_the_plan_of_a_valid_config() {
    let yaml = "backends:\n  users: { url: \"http://users:8080\", timeout: 250ms }\n\
                endpoints:\n  - route: GET /api/page/{id}\n    calls:\n      \
                user: { backend: users, path: \"/users/{id}\", required: true }\n";
    let output = run_fanout(&["check"], yaml);
    assert_eq!(output.status.code(), Some(0), "{}", String::from_utf8_lossy(&output.stderr));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("GET /api/page/{id}"), "{stdout}");
    assert!(stdout.contains("users http://users:8080/users/{id} timeout 250ms required"), "{stdout}");
    assert!(stdout.contains("config OK"));
}

#[test]
fn check_prints_the_effective_settings_as_json_with_overrides_applied_and_secrets_hidden() {
    let yaml = "server:\n  listen: 127.0.0.1:8081\n\
                telemetry:\n  otlp_endpoint: \"http://ann:s3cret@collector:4318\"\n\
                backends:\n  users: { url: \"http://users:8080\", headers: { x-api-key: k3y } }\n\
                endpoints:\n  - route: GET /api/page/{id}\n    calls:\n      \
                user: { backend: users, path: \"/users/{id}\", timeout: 250ms }\n";
    let output = run_fanout_with_env(
        &["check", "--format", "json"],
        yaml,
        &[("FANOUT__SERVER__SHUTDOWN_GRACE", "7s")],
    );
    assert_eq!(output.status.code(), Some(0), "{}", String::from_utf8_lossy(&output.stderr));
    let text = String::from_utf8_lossy(&output.stdout);
    let settings: serde_json::Value = serde_json::from_str(&text).unwrap();
    let server = &settings["server"];
    assert_eq!(server["listen"], "127.0.0.1:8081", "as written");
    assert_eq!(server["shutdown_grace"], 7000, "the environment override, in ms");
    assert_eq!(server["admin_listen"], "0.0.0.0:9901", "a default");
    assert_eq!(server["max_request_body"], 1024 * 1024, "a default, in bytes");
    assert_eq!(settings["telemetry"]["otlp_endpoint"], "http://ann:***@collector:4318");
    assert_eq!(settings["backends"][0]["url"], "http://users:8080");
    assert_eq!(settings["endpoints"][0]["calls"][0]["timeout"], 250);
    assert!(!text.contains("s3cret") && !text.contains("k3y"), "{text}");
}

#[test]
fn unreadable_and_non_yaml_configs_exit_2() {
    let output = run_fanout(&["check"], "endpoints: [unclosed\n");
    assert_eq!(output.status.code(), Some(2));
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_fanout"))
        .args(["check", "--config", "/nonexistent/fanout.yaml"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("cannot read config file"));
}

#[test]
fn check_warns_when_a_list_call_could_pass_the_endpoint_cap() {
    let yaml = |max_fanout: usize| {
        format!(
            "backends:\n  b: {{ url: \"http://b:8080\", max_response_body: 64KiB }}\n\
             endpoints:\n  - route: GET /x\n    max_fanout: {max_fanout}\n    max_response_body: 1MiB\n    calls:\n      \
             list: {{ backend: b, path: /l }}\n      each: {{ backend: b, path: \"/e/{{list.ids[*]}}\" }}\n"
        )
    };
    // 20 × 64 KiB = 1.25 MiB is over 1 MiB; 10 × 64 KiB is not.
    let output = run_fanout(&["check"], &yaml(20));
    assert_eq!(output.status.code(), Some(0));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("warning: each may return up to max_fanout 20 × 65536 bytes (backends.b.max_response_body) = 1310720 bytes, over the endpoint's max_response_body (1048576 bytes)"),
        "{stdout}"
    );
    let output = run_fanout(&["check"], &yaml(10));
    assert!(!String::from_utf8_lossy(&output.stdout).contains("warning"));
}

#[test]
fn durations_under_a_millisecond_are_config_errors_not_panics() {
    let yaml = "server:\n  header_read_timeout: 1ns\n  request_timeout: 1ns\n\
                backends:\n  b: { url: \"http://b:8080\" }\n\
                endpoints:\n  - route: GET /x\n    calls:\n      a: { backend: b, path: /a }\n";
    let output = run_fanout(&["serve"], yaml);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("server.header_read_timeout: duration \"1ns\" must be at least 1ms"), "{stderr}");
    assert!(stderr.contains("server.request_timeout: duration \"1ns\" must be at least 1ms"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn an_https_backend_with_an_unreadable_ca_file_is_refused_with_its_key_path() {
    let yaml = "backends:\n  secure: { url: \"https://api.example.com\", ca_file: /nonexistent/fanout-ca.pem }\n\
                endpoints:\n  - route: GET /x\n    calls:\n      a: { backend: secure, path: /a }\n";
    for command in ["check", "serve"] {
        let output = run_fanout(&[command], yaml);
        assert_eq!(output.status.code(), Some(2), "{command}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.contains("backends.secure.ca_file: TLS: cannot use /nonexistent/fanout-ca.pem"),
            "{command}: {stderr}"
        );
    }
}
