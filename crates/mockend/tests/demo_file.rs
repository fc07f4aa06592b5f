//! Tests of the YAML format read by the `mockend` binary, of the demo file
//! shipped with the repository, and of the binary itself.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use mockend::{Behavior, DemoFile, Latency, MockError, MockServer, RouteSpec};
use serde_json::json;

const SAMPLE: &str = r#"
services:
  shop:
    listen: 127.0.0.1:0
    routes:
      - path: /products/{id}
        latency: 20ms
        body:
          id: "{id}"
          reviewCount: 3
          camelCase: { innerKey: [1, 2.5, true, null, "x"] }
          empty: {}
          none: []
      - path: /jitter
        latency: { min: 5ms, max: 25ms }
        status: 202
      - path: /huge
        body_size: 1048576
      - path: /flaky
        error_rate: 0.25
        error_status: 503
      - { path: /hang, behavior: hang }
      - { path: /reset, behavior: reset }
      - { path: /garbage, behavior: garbage }
      - { path: /normal, behavior: normal }
"#;

fn demo_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../demo/backends.yaml")
}

#[test]
fn sample_parses_with_every_form() {
    let demo = DemoFile::parse(SAMPLE).unwrap();
    let shop = &demo.services["shop"];
    assert_eq!(shop.listen.as_deref(), Some("127.0.0.1:0"));
    let routes = &shop.routes;
    assert_eq!(routes.len(), 8);

    let expected = RouteSpec::json(
        "/products/{id}",
        json!({
            "id": "{id}",
            "reviewCount": 3,
            "camelCase": {"innerKey": [1, 2.5, true, null, "x"]},
            "empty": {},
            "none": [],
        }),
    )
    .latency(Duration::from_millis(20));
    assert_eq!(routes[0], expected);

    assert_eq!(
        routes[1].latency,
        Latency::Jitter { min: Duration::from_millis(5), max: Duration::from_millis(25) }
    );
    assert_eq!(routes[1].status, 202);
    assert_eq!(routes[1].body, json!({}));
    assert_eq!(routes[2].body_size, Some(1 << 20));
    assert_eq!((routes[3].error_rate, routes[3].error_status), (0.25, 503));
    let behaviors: Vec<_> = routes[4..].iter().map(|route| route.behavior).collect();
    assert_eq!(behaviors, [Behavior::Hang, Behavior::Reset, Behavior::Garbage, Behavior::Normal]);
    assert_eq!(routes[7], RouteSpec::new("/normal"));
}

#[test]
fn mistakes_are_rejected() {
    let cases = [
        ("unknown route field", "services: {a: {listen: x, routes: [{path: /a, colour: red}]}}"),
        ("unknown service field", "services: {a: {listen: x, routes: [], port: 1}}"),
        ("bad duration", "services: {a: {listen: x, routes: [{path: /a, latency: soon}]}}"),
        (
            "unknown jitter key",
            "services: {a: {listen: x, routes: [{path: /a, latency: {min: 1ms, avg: 2ms}}]}}",
        ),
        ("bad behavior", "services: {a: {listen: x, routes: [{path: /a, behavior: explode}]}}"),
        ("bad body_size", "services: {a: {listen: x, routes: [{path: /a, body_size: lots}]}}"),
    ];
    for (what, yaml) in cases {
        let err = DemoFile::parse(yaml).expect_err(what);
        assert!(matches!(err, MockError::Parse(_)), "{what}: {err:?}");
    }

    let err = DemoFile::parse("services: {a: {routes: []}}").unwrap_err();
    assert!(matches!(err, MockError::MissingListen { ref service } if service == "a"));

    let yaml = "services: {a: {listen: x, routes: [{path: /a, latency: {min: 9ms, max: 1ms}}]}}";
    let err = DemoFile::parse(yaml).unwrap_err();
    assert!(
        matches!(err, MockError::Service { ref source, .. } if matches!(**source, MockError::Jitter { .. }))
    );
}

#[test]
fn missing_file_reports_its_path() {
    let err = DemoFile::load("/nonexistent/backends.yaml").unwrap_err();
    assert!(matches!(err, MockError::Load { .. }));
    assert!(err.to_string().contains("/nonexistent/backends.yaml"), "{err}");
}

#[test]
fn demo_file_loads() {
    let demo = DemoFile::load(demo_path()).unwrap();
    let names: Vec<_> = demo.services.keys().map(String::as_str).collect();
    assert_eq!(names, ["carts", "catalog", "inventory", "pricing", "recommendations", "reviews", "sellers"]);
    let mut ports: Vec<_> = demo.services.values().map(|service| service.listen.clone().unwrap()).collect();
    ports.sort();
    assert_eq!(ports, (7101..=7107).map(|port| format!("127.0.0.1:{port}")).collect::<Vec<_>>());
    let storefront = ["catalog", "inventory", "pricing", "recommendations", "reviews"];
    for (name, service) in demo.services.iter().filter(|(name, _)| storefront.contains(&name.as_str())) {
        let bench = service
            .routes
            .iter()
            .find(|route| route.path == "/bench/{id}")
            .unwrap_or_else(|| panic!("{name} has no /bench/{{id}}"));
        assert_eq!(bench.latency, Latency::default());
        let size = bench.body.to_string().len();
        assert!((800..=1300).contains(&size), "bench body is {size} bytes");
    }
    let recommendations = &demo.services["recommendations"].routes[0];
    assert_eq!(recommendations.error_rate, 0.1);
    let product = &demo.services["catalog"].routes[0];
    let size = product.body.to_string().len();
    assert!((800..=1500).contains(&size), "product body is {size} bytes");
    assert!(demo.services["reviews"].routes[0].body["reviewCount"].is_number());
    let cart = &demo.services["carts"].routes[0];
    assert_eq!(
        cart.body["items"].as_array().map(Vec::len),
        Some(3),
        "the cart page fans out over three items"
    );
}

#[tokio::test]
async fn demo_services_answer() {
    let mut demo = DemoFile::load(demo_path()).unwrap();
    let mut catalog = demo.services.remove("catalog").unwrap();
    catalog.listen = None;
    let server = MockServer::spawn(catalog).await.unwrap();
    let mut stream = tokio::net::TcpStream::connect(server.addr()).await.unwrap();
    let request = b"GET /products/42 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    tokio::io::AsyncWriteExt::write_all(&mut stream, request).await.unwrap();
    let mut raw = Vec::new();
    tokio::io::AsyncReadExt::read_to_end(&mut stream, &mut raw).await.unwrap();
    let text = String::from_utf8(raw).unwrap();
    let (_, body) = text.split_once("\r\n\r\n").unwrap();
    let product: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(product["id"], "42");
    assert_eq!(product["images"][0]["url"], "https://cdn.example.com/products/42/front.jpg");
}

#[cfg(unix)]
mod binary {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};

    fn temp_file(name: &str, text: &str) -> std::path::PathBuf {
        let path = std::env::temp_dir().join(format!("mockend-{}-{name}.yaml", std::process::id()));
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn bad_config_exits_with_2() {
        let path = temp_file("bad", "services: {a: {routes: []}}");
        let output = Command::new(env!("CARGO_BIN_EXE_mockend")).arg("--config").arg(&path).output().unwrap();
        std::fs::remove_file(&path).unwrap();
        assert_eq!(output.status.code(), Some(2));
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains("no listen address"), "{stderr}");
    }

    #[test]
    fn serves_until_sigterm() {
        let path = temp_file(
            "good",
            "services:\n  alpha: {listen: 127.0.0.1:0, routes: [{path: /a}]}\n  \
             beta: {listen: 127.0.0.1:0, routes: []}\n",
        );
        let mut child = Command::new(env!("CARGO_BIN_EXE_mockend"))
            .arg("--config")
            .arg(&path)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let first = lines.next().unwrap().unwrap();
        let second = lines.next().unwrap().unwrap();
        std::fs::remove_file(&path).unwrap();
        assert!(first.starts_with("alpha listening on http://127.0.0.1:"), "{first}");
        assert!(second.starts_with("beta listening on http://127.0.0.1:"), "{second}");

        let addr = first.rsplit("http://").next().unwrap();
        let mut stream = std::net::TcpStream::connect(addr).unwrap();
        std::io::Write::write_all(&mut stream, b"GET /a HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .unwrap();
        let mut reply = String::new();
        std::io::Read::read_to_string(&mut stream, &mut reply).unwrap();
        assert!(reply.starts_with("HTTP/1.1 200 OK"), "{reply}");

        let killed = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
        assert!(killed.success());
        assert_eq!(child.wait().unwrap().code(), Some(0));
    }
}
