//! The OpenAPI document: `fanout openapi` describes every endpoint (parameters with the 400
//! rule, forwarded query and headers, one property per call with its declared schema, `_errors`,
//! headers, problem answers), refuses a bad config like `check`, and the admin port serves the
//! document of the config serving now.

use crate::support::{Gateway, client, config, replace_once, run_fanout};
use mockend::{MockServer, RouteSpec, ServiceSpec};
use serde_json::{Value, json};
use std::time::Duration;

const ENDPOINTS: &str = r#"  - route: GET /api/users/{id}/feed/{tag}
    forward_query: [locale]
    forward_headers: [authorization, x-tenant]
    calls:
      user: { backend: users, path: "/users/{id}?tag={tag}", required: true, schema: { type: object, required: [name] } }
      posts: { backend: users, path: "/posts?user={id}" }
      authors: { backend: users, path: "/users/{posts.items[*].author}" }
  - route: GET /flat/{id}
    merge: flat
    calls:
      a: { backend: users, path: "/users/{id}" }
"#;

fn document(yaml: &str) -> Value {
    let output = run_fanout(&["openapi", "--format", "json"], yaml);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_slice(&output.stdout).unwrap()
}

async fn users() -> MockServer {
    MockServer::spawn(ServiceSpec::new(vec![RouteSpec::json("/users/{id}", json!({"name": "n"}))]))
        .await
        .unwrap()
}

#[tokio::test]
async fn the_document_describes_parameters_calls_errors_and_headers() {
    let users = users().await;
    let doc = document(&config(&[("users", &users)], ENDPOINTS));
    assert_eq!(doc["openapi"], "3.1.0");
    let op = &doc["paths"]["/api/users/{id}/feed/{tag}"]["get"];
    assert_eq!(op["operationId"], "get_api_users_id_feed_tag");

    let params: Vec<(String, String)> = op["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["name"].as_str().unwrap().to_owned(), p["in"].as_str().unwrap().to_owned()))
        .collect();
    let expected = [("id", "path"), ("tag", "path"), ("locale", "query"), ("x-tenant", "header")];
    assert_eq!(
        params,
        expected.map(|(n, i)| (n.to_owned(), i.to_owned())),
        "authorization is not declarable"
    );
    assert!(op["description"].as_str().unwrap().contains("Also forwarded to every call: authorization."));
    let id = &op["parameters"][0]["schema"];
    assert_eq!(id["minLength"], 1, "{{id}} fills a backend path segment");
    assert!(id["pattern"].as_str().unwrap().starts_with("^(?!"));
    assert_eq!(op["parameters"][1]["schema"], json!({"type": "string"}), "{{tag}} only fills a query value");

    let ok = &op["responses"]["200"];
    let schema = &ok["content"]["application/json"]["schema"];
    assert_eq!(schema["required"], json!(["user"]));
    assert_eq!(schema["additionalProperties"], false);
    assert_eq!(
        schema["properties"]["user"],
        json!({"type": "object", "required": ["name"]}),
        "declared schema"
    );
    assert!(schema["properties"]["posts"].get("type").is_none(), "undeclared: any JSON value");
    assert_eq!(schema["properties"]["authors"]["type"], "array", "a call over a list");
    assert_eq!(schema["properties"]["_errors"]["$ref"], "#/components/schemas/Errors");
    for header in ["X-Fanout-Complete", "Server-Timing", "X-Request-Id"] {
        assert!(ok["headers"].get(header).is_some(), "200 declares {header}");
    }
    for status in ["400", "404", "405", "413", "502", "504"] {
        let reference = op["responses"][status]["$ref"].as_str().unwrap();
        let name = reference.rsplit('/').next().unwrap();
        let response = &doc["components"]["responses"][name];
        assert_eq!(
            response["content"]["application/problem+json"]["schema"]["$ref"], "#/components/schemas/Problem",
            "{status}"
        );
    }
    let kinds = &doc["components"]["schemas"]["CallError"]["properties"]["error"]["enum"];
    assert!(kinds.as_array().unwrap().contains(&json!("dependency_failed")));

    let flat =
        &doc["paths"]["/flat/{id}"]["get"]["responses"]["200"]["content"]["application/json"]["schema"];
    assert!(flat.get("additionalProperties").is_none(), "a flat merge has open properties");
    assert_eq!(doc["paths"]["/readyz"]["get"]["tags"], json!(["admin"]));
}

#[tokio::test]
async fn a_bad_config_gets_no_document_and_exit_2() {
    let users = users().await;
    let yaml = replace_once(
        &config(&[("users", &users)], ENDPOINTS),
        "backend: users, path: \"/posts",
        "backend: nope, path: \"/posts",
    );
    let output = run_fanout(&["openapi"], &yaml);
    assert_eq!(output.status.code(), Some(2));
    assert!(output.stdout.is_empty());
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("endpoints[0].calls.posts.backend: unknown backend")
    );
}

#[tokio::test]
async fn the_admin_port_serves_the_live_document() {
    let users = users().await;
    let yaml = config(&[("users", &users)], ENDPOINTS);
    let gateway = Gateway::start(&yaml);
    let http = client();
    let live: Value = serde_json::from_slice(
        &http.get(format!("{}/openapi.json", gateway.admin)).send().await.unwrap().bytes().await.unwrap(),
    )
    .unwrap();
    assert_eq!(live, document(&yaml), "the admin port serves what `fanout openapi` prints");
    let yaml_doc = http.get(format!("{}/openapi.yaml", gateway.admin)).send().await.unwrap();
    assert_eq!(yaml_doc.headers()["content-type"], "application/yaml");
    assert!(yaml_doc.text().await.unwrap().contains("openapi: 3.1.0"));

    let post = http.post(format!("{}/healthz", gateway.admin)).send().await.unwrap();
    assert_eq!(post.status(), 405);
    assert_eq!(post.headers()["allow"], "GET, HEAD");

    let grown =
        format!("{yaml}  - route: GET /new\n    calls:\n      a: {{ backend: users, path: /users/1 }}\n");
    std::fs::write(gateway.config_file(), grown).unwrap();
    gateway.signal("HUP");
    let started = std::time::Instant::now();
    loop {
        let text =
            http.get(format!("{}/openapi.json", gateway.admin)).send().await.unwrap().text().await.unwrap();
        if text.contains("\"/new\"") {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "the live document never showed the reloaded endpoint"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
