//! https backends through the real binary: a backend whose certificate a test CA signed is
//! called when `ca_file` trusts that CA, and one signed by another CA fails its call with a
//! `connect` error naming the certificate problem while the rest of the page stands.

use crate::support::{Gateway, get_json, temp_dir};
use mockend::{MockServer, RouteSpec, ServiceSpec, TestCa};
use serde_json::json;

async fn https_backend(ca: &TestCa, body: serde_json::Value) -> MockServer {
    let routes = vec![RouteSpec::json("/r/{id}", body)];
    MockServer::spawn_tls(ServiceSpec::new(routes), &ca.issue("localhost").unwrap()).await.unwrap()
}

#[tokio::test]
async fn https_backends_are_called_with_the_trusted_ca_and_refused_without_it() {
    let ca = TestCa::new().unwrap();
    let trusted = https_backend(&ca, json!({"id": "{id}", "secure": true})).await;
    let stranger = https_backend(&TestCa::new().unwrap(), json!({"never": "seen"})).await;
    let ca_file = temp_dir().join("backend-ca.pem");
    std::fs::write(&ca_file, ca.pem()).unwrap();
    let yaml = format!(
        "server:\n  listen: 127.0.0.1:0\n  admin_listen: 127.0.0.1:0\nbackends:\n  \
         trusted: {{ url: \"{}\", ca_file: \"{}\" }}\n  \
         stranger: {{ url: \"{}\", ca_file: \"{}\" }}\n\
         endpoints:\n  - route: GET /page/{{id}}\n    calls:\n      \
         trusted: {{ backend: trusted, path: \"/r/{{id}}\", required: true }}\n      \
         stranger: {{ backend: stranger, path: \"/r/{{id}}\" }}\n",
        trusted.url(),
        ca_file.display(),
        stranger.url(),
        ca_file.display(),
    );
    let gateway = Gateway::start(&yaml);
    let (status, headers, body) = get_json(&format!("{}/page/7", gateway.url)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["trusted"], json!({"id": "7", "secure": true}));
    assert_eq!(headers["x-fanout-complete"], "false");
    assert_eq!(body["_errors"]["stranger"]["error"], "connect", "{body}");
    let detail = body["_errors"]["stranger"]["detail"].as_str().unwrap();
    assert!(detail.contains("invalid peer certificate") && detail.contains("UnknownIssuer"), "{detail}");
    assert!(stranger.requests().is_empty(), "a request crossed an untrusted connection");
    assert_eq!(trusted.requests().len(), 1);
    if let Some(dir) = ca_file.parent() {
        let _ = std::fs::remove_dir_all(dir);
    }
}
