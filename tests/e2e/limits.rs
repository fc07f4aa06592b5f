//! Answer size: a list call that repeats one id (one backend request, shared) cannot build an
//! answer past the endpoint's `max_response_body`, nor copy the shared body per element; the
//! call that would pass the cap fails with `too_large` and the rest of the answer stands.

use crate::support::{Config, Gateway, config, get_json, replace_once};
use mockend::{MockServer, RouteSpec, ServiceSpec};
use serde_json::json;

/// A cart holding one SKU `items` times, a 60,000-byte catalog entry, and a small profile.
async fn backends(items: usize) -> (MockServer, MockServer) {
    let cart = json!({"items": vec![json!({"sku": "same"}); items]});
    let carts = ServiceSpec::new(vec![
        RouteSpec::json("/carts/{id}", cart),
        RouteSpec::json("/profiles/{id}", json!({"name": "ada"})),
    ]);
    let catalog = ServiceSpec::new(vec![RouteSpec::new("/skus/{sku}").body_size(60_000)]);
    (MockServer::spawn(carts).await.unwrap(), MockServer::spawn(catalog).await.unwrap())
}

fn endpoint(extra: &str, items_required: bool) -> String {
    format!(
        "  - route: GET /carts/{{id}}\n{extra}    calls:\n      \
         cart: {{ backend: carts, path: \"/carts/{{id}}\", required: true }}\n      \
         profile: {{ backend: carts, path: \"/profiles/{{id}}\" }}\n      \
         items: {{ backend: catalog, path: \"/skus/{{cart.items[*].sku}}\", required: {items_required} }}\n"
    )
}

#[tokio::test]
async fn a_list_repeating_one_id_stays_within_the_cap_and_does_not_copy_per_element() {
    let (carts, catalog) = backends(1000).await;
    // Defaults: max_fanout 1000, max_response_body 8 MiB. 1000 × 60 KB would be a 60 MB answer.
    let gateway = Gateway::start(&config(&[("carts", &carts), ("catalog", &catalog)], &endpoint("", false)));
    let url = format!("{}/carts/1", gateway.url);

    let response = crate::support::client().get(&url).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["x-fanout-complete"], "false");
    let bytes = response.bytes().await.unwrap();
    assert!(bytes.len() < 8 << 20, "the answer is {} bytes, over the 8 MiB cap", bytes.len());
    let body: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(body["_errors"]["items"]["error"], "too_large", "{}", body["_errors"]);
    assert_eq!(body["profile"], json!({"name": "ada"}), "the rest of the answer stands");
    assert_eq!(catalog.requests().len(), 1, "identical element requests are sent once");

    gateway.reset_peak_rss();
    let (before, _) = gateway.rss();
    let requests = (0..4).map(|_| async {
        let (status, _, body) = get_json(&url).await;
        assert_eq!(status, 200);
        assert_eq!(body["_errors"]["items"]["error"], "too_large");
    });
    futures_util::future::join_all(requests).await;
    let (_, peak) = gateway.rss();
    let grown = peak.saturating_sub(before);
    assert!(grown < 40 << 20, "4 concurrent requests grew peak RSS by {} MiB", grown >> 20);
}

#[tokio::test]
async fn a_shared_list_under_the_cap_is_answered_whole() {
    let (carts, catalog) = backends(100).await;
    let gateway = Gateway::start(&config(&[("carts", &carts), ("catalog", &catalog)], &endpoint("", false)));

    let (status, headers, body) = get_json(&format!("{}/carts/1", gateway.url)).await;
    assert_eq!(status, 200);
    assert_eq!(headers["x-fanout-complete"], "true", "{}", body["_errors"]);
    let items = body["items"].as_array().unwrap();
    assert_eq!(items.len(), 100);
    assert!(items.iter().all(|item| item == &items[0] && item.to_string().len() == 60_000));
    assert_eq!(catalog.requests().len(), 1);
}

#[tokio::test]
async fn the_endpoint_cap_fails_an_optional_call_in_errors_and_a_required_one_with_502() {
    let (carts, catalog) = backends(20).await;
    // 20 × 60 KB = 1.2 MB: over a 1 MiB endpoint cap, under the server-wide default.
    let optional = endpoint("    max_response_body: 1MiB\n", false);
    let required =
        replace_once(&endpoint("    max_response_body: 1MiB\n", true), "/carts/{id}\n", "/required/{id}\n");
    let yaml = config(&[("carts", &carts), ("catalog", &catalog)], &format!("{optional}{required}"));
    let gateway = Gateway::start(&yaml);

    let (status, _, body) = get_json(&format!("{}/carts/1", gateway.url)).await;
    assert_eq!(status, 200);
    assert_eq!(body["_errors"]["items"]["error"], "too_large");
    assert_eq!(body["cart"]["items"].as_array().map(Vec::len), Some(20));

    let (status, _, body) = get_json(&format!("{}/required/1", gateway.url)).await;
    assert_eq!(status, 502, "{body}");
    assert_eq!(body["call"], "items");
    assert_eq!(body["error"], "too_large");

    // The server-wide default applies to endpoints that set none.
    let server_cap = Config::new(&[("carts", &carts), ("catalog", &catalog)], &endpoint("", false))
        .server("max_response_body: 1MiB")
        .render();
    let gateway = Gateway::start(&server_cap);
    let (_, _, body) = get_json(&format!("{}/carts/1", gateway.url)).await;
    assert_eq!(body["_errors"]["items"]["error"], "too_large");
}

#[tokio::test]
async fn a_value_too_long_for_a_url_is_an_invalid_reference_not_a_connect_error() {
    let carts = ServiceSpec::new(vec![RouteSpec::json("/carts/{id}", json!({"owner": "x".repeat(70_000)}))]);
    let carts = MockServer::spawn(carts).await.unwrap();
    let endpoint = "  - route: GET /carts/{id}\n    calls:\n      \
                    cart: { backend: carts, path: \"/carts/{id}\" }\n      \
                    owner: { backend: carts, path: \"/users/{cart.owner}\" }\n";
    let gateway = Gateway::start(&config(&[("carts", &carts)], endpoint));

    let (status, _, body) = get_json(&format!("{}/carts/1", gateway.url)).await;
    assert_eq!(status, 200);
    assert_eq!(body["_errors"]["owner"]["error"], "invalid_reference", "{}", body["_errors"]);
    let detail = body["_errors"]["owner"]["detail"].as_str().unwrap();
    assert!(detail.contains("over the 8192-byte limit"), "{detail}");
    assert_eq!(carts.requests().len(), 1, "no request is sent with the oversized value");
}
