//! CORS (`server.cors`): an allowed origin gets its answer shared (with credentials, the
//! gateway's headers exposed, and `Timing-Allow-Origin` so the page can read Server-Timing);
//! other origins get nothing; preflights are answered before routing; without `cors` no CORS
//! header is ever sent.

use crate::support::{Config, Gateway, client};
use mockend::{MockServer, RouteSpec, ServiceSpec};
use reqwest::Method;
use serde_json::json;

const SHOP: &str = "https://shop.example.com";

async fn gateway(cors: Option<&str>) -> (Gateway, MockServer) {
    let backend = MockServer::spawn(ServiceSpec::new(vec![RouteSpec::json("/r", json!({}))])).await.unwrap();
    let mut config = Config::new(
        &[("b", &backend)],
        "  - route: GET /page\n    calls:\n      a: { backend: b, path: /r }\n",
    );
    if let Some(cors) = cors {
        // `cors` is the section's lines, indented as under `server:`.
        let lines: Vec<&str> = cors.lines().map(|line| line.strip_prefix("  ").unwrap_or(line)).collect();
        config = config.server(&format!("cors:\n{}", lines.join("\n")));
    }
    (Gateway::start(&config.render()), backend)
}

fn header<'h>(response: &'h reqwest::Response, name: &str) -> Option<&'h str> {
    response.headers().get(name).map(|v| v.to_str().unwrap())
}

#[tokio::test]
async fn an_allowed_origin_reads_the_answer_and_its_timing() {
    let cors = "    allow_origins: [\"https://shop.example.com\"]\n    allow_headers: [authorization]\n    max_age: 5m\n";
    let (gateway, _backend) = gateway(Some(cors)).await;
    let http = client();
    let page = format!("{}/page", gateway.url);

    let shared = http.get(&page).header("origin", SHOP).send().await.unwrap();
    assert_eq!(shared.status(), 200);
    assert_eq!(header(&shared, "access-control-allow-origin"), Some(SHOP));
    assert_eq!(header(&shared, "access-control-allow-credentials"), Some("true"));
    assert_eq!(header(&shared, "timing-allow-origin"), Some(SHOP));
    let exposed = header(&shared, "access-control-expose-headers").unwrap();
    for name in ["server-timing", "x-fanout-complete", "x-request-id"] {
        assert!(exposed.contains(name), "{exposed}");
    }
    assert!(header(&shared, "vary").unwrap().contains("origin"));

    let other = http.get(&page).header("origin", "https://evil.example").send().await.unwrap();
    assert_eq!(other.status(), 200, "CORS is enforced by the browser; the answer is not shared");
    assert_eq!(header(&other, "access-control-allow-origin"), None);
    assert_eq!(header(&other, "timing-allow-origin"), None);

    let preflight = http
        .request(Method::OPTIONS, &page)
        .header("origin", SHOP)
        .header("access-control-request-method", "GET")
        .header("access-control-request-headers", "authorization")
        .send()
        .await
        .unwrap();
    assert!(preflight.status().is_success(), "{}", preflight.status());
    assert_eq!(header(&preflight, "access-control-allow-origin"), Some(SHOP));
    assert!(header(&preflight, "access-control-allow-methods").unwrap().contains("GET"));
    assert_eq!(header(&preflight, "access-control-allow-headers"), Some("authorization"));
    assert_eq!(header(&preflight, "access-control-max-age"), Some("300"));
}

#[tokio::test]
async fn any_origin_is_shared_without_credentials() {
    let (gateway, _backend) = gateway(Some("    allow_origins: [\"*\"]\n")).await;
    let shared = client().get(format!("{}/page", gateway.url)).header("origin", SHOP).send().await.unwrap();
    assert_eq!(header(&shared, "access-control-allow-origin"), Some("*"));
    assert_eq!(header(&shared, "access-control-allow-credentials"), None);
    assert_eq!(header(&shared, "timing-allow-origin"), Some("*"));
}

#[tokio::test]
async fn without_cors_no_cors_header_is_sent_and_preflights_are_405() {
    let (gateway, _backend) = gateway(None).await;
    let http = client();
    let page = format!("{}/page", gateway.url);
    let plain = http.get(&page).header("origin", SHOP).send().await.unwrap();
    assert_eq!(header(&plain, "access-control-allow-origin"), None);
    assert_eq!(header(&plain, "timing-allow-origin"), None);
    let preflight = http
        .request(Method::OPTIONS, &page)
        .header("origin", SHOP)
        .header("access-control-request-method", "GET")
        .send()
        .await
        .unwrap();
    assert_eq!(preflight.status(), 405);
}
