//! Composition over real sockets: dependent calls start the moment their inputs are ready,
//! lists fan out under a concurrency cap and come back in order, identical requests are sent
//! once, failures propagate as `dependency_failed`, and shaping produces the documented JSON.

use crate::support::{Gateway, config, get_json, run_fanout};
use mockend::{MockServer, RouteSpec, ServiceSpec};
use serde_json::json;
use std::time::{Duration, Instant};

async fn spawn(routes: Vec<RouteSpec>) -> MockServer {
    MockServer::spawn(ServiceSpec::new(routes)).await.unwrap()
}

#[tokio::test]
async fn a_dependent_call_gets_the_value_and_starts_after_its_dependency() {
    let orders = spawn(vec![
        RouteSpec::json("/orders/{id}", json!({"id": "{id}", "items": [{"sku": "A 1/x"}, {"sku": "B2"}]}))
            .latency(Duration::from_millis(100)),
    ])
    .await;
    let catalog = spawn(vec![RouteSpec::json("/items/{sku}", json!({"sku": "{sku}"}))]).await;
    let endpoint = "  - route: GET /page/{id}\n    calls:\n      \
                    orders: { backend: orders, path: \"/orders/{id}\" }\n      \
                    first: { backend: catalog, path: \"/items/{orders.items[1].sku}?q={orders.items[0].sku}\" }\n";
    let gateway = Gateway::start(&config(&[("orders", &orders), ("catalog", &catalog)], endpoint));

    let (status, _, body) = get_json(&format!("{}/page/9", gateway.url)).await;

    assert_eq!(status, 200, "{body}");
    assert_eq!(body["first"], json!({"sku": "B2"}));
    let order = &orders.requests()[0];
    let item = &catalog.requests()[0];
    assert_eq!(item.path_and_query, "/items/B2?q=A%201%2Fx");
    assert!(
        item.arrived >= order.completed.unwrap(),
        "the dependent call started before its input was ready"
    );
}

#[tokio::test]
async fn each_call_starts_when_its_own_inputs_are_ready_not_in_waves() {
    let a =
        spawn(vec![RouteSpec::json("/a", json!({"next": "c1"})).latency(Duration::from_millis(10))]).await;
    let b = spawn(vec![RouteSpec::json("/b", json!({})).latency(Duration::from_millis(300))]).await;
    let c = spawn(vec![RouteSpec::json("/c/{id}", json!({"id": "{id}"}))]).await;
    let endpoint = "  - route: GET /page\n    calls:\n      \
                    a: { backend: a, path: /a }\n      b: { backend: b, path: /b }\n      \
                    c: { backend: c, path: \"/c/{a.next}\" }\n";
    let gateway = Gateway::start(&config(&[("a", &a), ("b", &b), ("c", &c)], endpoint));

    let (status, _, body) = get_json(&format!("{}/page", gateway.url)).await;

    assert_eq!(status, 200, "{body}");
    assert_eq!(body["c"], json!({"id": "c1"}));
    let c_arrived = c.requests()[0].arrived;
    let b_done = b.requests()[0].completed.unwrap();
    assert!(c_arrived < b_done, "C waited for the unrelated B");
    let a_done = a.requests()[0].completed.unwrap();
    assert!(a_done <= c_arrived, "C went out before the A it reads");
}

fn list_endpoint(concurrency: usize) -> String {
    format!(
        "  - route: GET /list\n    calls:\n      \
         ids: {{ backend: lists, path: /ids }}\n      \
         els: {{ backend: elements, path: \"/el/{{ids.ids[*]}}\", concurrency: {concurrency} }}\n"
    )
}

async fn list_servers() -> (MockServer, MockServer) {
    let ids: Vec<u32> = (0..100).collect();
    let lists = spawn(vec![RouteSpec::json("/ids", json!({ "ids": ids }))]).await;
    let elements =
        spawn(vec![RouteSpec::json("/el/{n}", json!({"n": "{n}"})).latency(Duration::from_millis(100))])
            .await;
    (lists, elements)
}

#[tokio::test]
async fn a_hundred_elements_run_concurrently_and_come_back_in_order() {
    let (lists, elements) = list_servers().await;
    let gateway = Gateway::start(&config(&[("lists", &lists), ("elements", &elements)], &list_endpoint(100)));

    let started = Instant::now();
    let (status, _, body) = get_json(&format!("{}/list", gateway.url)).await;
    let elapsed = started.elapsed();

    assert_eq!(status, 200);
    assert!(elapsed < Duration::from_millis(600), "took {elapsed:?}");
    let expected: Vec<_> = (0..100).map(|n| json!({"n": n.to_string()})).collect();
    assert_eq!(body["els"], json!(expected));
    assert_eq!(elements.requests().len(), 100);
}

#[tokio::test]
async fn the_concurrency_cap_is_real() {
    let (lists, elements) = list_servers().await;
    let gateway = Gateway::start(&config(&[("lists", &lists), ("elements", &elements)], &list_endpoint(10)));

    let (status, _, body) = get_json(&format!("{}/list", gateway.url)).await;

    assert_eq!(status, 200, "{body}");
    assert!(elements.peak_in_flight() <= 10, "peak in flight {}", elements.peak_in_flight());
    assert_eq!(body["els"][99], json!({"n": "99"}));
}

#[tokio::test]
async fn failed_elements_are_null_or_fail_the_call_as_configured() {
    let lists = spawn(vec![RouteSpec::json("/ids", json!({"ids": [1, 2, 3], "bad": [1, null]}))]).await;
    let elements = spawn(vec![
        RouteSpec::json("/el/{n}", json!({"n": "{n}"})),
        RouteSpec::json("/el/2", json!({})).status(500),
    ])
    .await;
    let endpoint = "  - route: GET /list\n    calls:\n      \
                    ids: { backend: lists, path: /ids }\n      \
                    lenient: { backend: elements, path: \"/el/{ids.ids[*]}\" }\n      \
                    strict: { backend: elements, path: \"/el/{ids.ids[*]}\", on_element_error: fail }\n      \
                    holes: { backend: elements, path: \"/el/{ids.bad[*]}\" }\n";
    let gateway = Gateway::start(&config(&[("lists", &lists), ("elements", &elements)], endpoint));

    let (status, headers, body) = get_json(&format!("{}/list", gateway.url)).await;

    assert_eq!(status, 200, "{body}");
    assert_eq!(headers["x-fanout-complete"], "false");
    assert_eq!(body["lenient"], json!([{"n": "1"}, null, {"n": "3"}]));
    assert_eq!(body["_errors"]["lenient[1]"]["error"], "status");
    assert_eq!(body["_errors"]["lenient[1]"]["status"], 500);
    assert!(body.get("strict").is_none());
    assert_eq!(body["_errors"]["strict"]["error"], "status");
    assert_eq!(body["holes"], json!([{"n": "1"}, null]));
    assert_eq!(body["_errors"]["holes[1]"]["error"], "invalid_reference");
    assert_eq!(body["_errors"]["holes[1]"]["detail"], "{ids.bad[*]} is null");
    let mut seen: Vec<_> = elements.requests().into_iter().map(|r| r.path_and_query).collect();
    seen.sort();
    assert_eq!(seen, ["/el/1", "/el/2", "/el/3"], "identical element requests are sent once");
}

#[tokio::test]
async fn failures_propagate_as_dependency_failed_and_lists_are_bounded() {
    let broken = spawn(vec![RouteSpec::json("/x", json!({})).status(500)]).await;
    let ok = spawn(vec![
        RouteSpec::json("/list", json!({"ids": (0..20).collect::<Vec<_>>()})),
        RouteSpec::json("/v/{v}", json!({"v": "{v}"})),
    ])
    .await;
    let endpoints = "  - route: GET /optional\n    max_fanout: 10\n    calls:\n      \
                     a: { backend: broken, path: /x }\n      \
                     b: { backend: ok, path: \"/v/{a.id}\" }\n      \
                     c: { backend: ok, path: \"/v/{b.v}\" }\n      \
                     list: { backend: ok, path: /list }\n      \
                     each: { backend: ok, path: \"/v/{list.ids[*]}\" }\n  \
                     - route: GET /required\n    calls:\n      \
                     a: { backend: broken, path: /x }\n      \
                     b: { backend: ok, path: \"/v/{a.id}\", required: true }\n";
    let gateway = Gateway::start(&config(&[("broken", &broken), ("ok", &ok)], endpoints));

    let (status, _, body) = get_json(&format!("{}/optional", gateway.url)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["_errors"]["a"]["error"], "status");
    assert_eq!(body["_errors"]["b"]["error"], "dependency_failed");
    assert_eq!(body["_errors"]["b"]["detail"], "a");
    assert_eq!(body["_errors"]["c"]["error"], "dependency_failed", "failure propagates down the chain");
    assert_eq!(body["_errors"]["each"]["error"], "fanout_limit");
    assert!(body["list"]["ids"].is_array());

    let (status, _, body) = get_json(&format!("{}/required", gateway.url)).await;
    assert_eq!(status, 502);
    assert_eq!(body["call"], "b");
    assert_eq!(body["error"], "dependency_failed");
    let values: Vec<_> = ok.requests().into_iter().filter(|r| r.path_and_query.starts_with("/v/")).collect();
    assert!(values.is_empty(), "a call whose input failed must not be sent");
}

#[tokio::test]
async fn identical_requests_within_one_request_reach_the_backend_once() {
    let users =
        spawn(vec![RouteSpec::json("/users/{id}", json!({"id": "{id}"})).latency(Duration::from_millis(50))])
            .await;
    let endpoint = "  - route: GET /page/{id}\n    calls:\n      \
                    author: { backend: users, path: \"/users/{id}\" }\n      \
                    viewer: { backend: users, path: \"/users/{id}\" }\n      \
                    other: { backend: users, path: \"/users/{author.id}\" }\n";
    let gateway = Gateway::start(&config(&[("users", &users)], endpoint));

    let (status, _, body) = get_json(&format!("{}/page/5", gateway.url)).await;

    assert_eq!(status, 200);
    assert_eq!(body, json!({"author": {"id": "5"}, "viewer": {"id": "5"}, "other": {"id": "5"}}));
    assert_eq!(users.requests().len(), 1, "three identical requests, one backend call");
    let (_, _, _) = get_json(&format!("{}/page/5", gateway.url)).await;
    assert_eq!(users.requests().len(), 2, "sharing is per inbound request, not a cache");
}

#[tokio::test]
async fn shaping_and_flat_merge_produce_the_documented_json() {
    let server = spawn(vec![
        RouteSpec::json(
            "/product",
            json!({"id": 7, "name": "Hoodie", "meta": {"rating": 4.5, "internal": "x"}, "debug": true}),
        ),
        RouteSpec::json("/price", json!({"data": {"price": {"amount": 59, "currency": "EUR"}}})),
        RouteSpec::json("/stock", json!({"count": 3, "warehouse": "AMS"})),
        RouteSpec::json("/list", json!([{"id": 1, "secret": "s"}, {"id": 2, "secret": "t"}])),
    ])
    .await;
    let endpoints = "  - route: GET /grouped\n    calls:\n      \
                     product: { backend: s, path: /product, select: [id, name, meta.rating] }\n      \
                     price: { backend: s, path: /price, pick: data.price }\n      \
                     stock: { backend: s, path: /stock, omit: [warehouse], rename: { count: in_stock } }\n      \
                     bad: { backend: s, path: /list, select: [id] }\n  \
                     - route: GET /flat\n    merge: flat\n    calls:\n      \
                     product: { backend: s, path: /product, omit: [debug, meta] }\n      \
                     price: { backend: s, path: /price, pick: data.price }\n      \
                     stock: { backend: s, path: /stock, rename: { count: id } }\n";
    let gateway = Gateway::start(&config(&[("s", &server)], endpoints));

    let (status, _, body) = get_json(&format!("{}/grouped", gateway.url)).await;
    assert_eq!(status, 200);
    assert_eq!(body["product"], json!({"id": 7, "name": "Hoodie", "meta": {"rating": 4.5}}));
    assert_eq!(body["price"], json!({"amount": 59, "currency": "EUR"}));
    assert_eq!(body["stock"], json!({"in_stock": 3}));
    assert_eq!(body["_errors"]["bad"]["error"], "invalid_body");
    assert_eq!(body["_errors"]["bad"]["detail"], "select needs an object, got a list");

    let (status, _, body) = get_json(&format!("{}/flat", gateway.url)).await;
    assert_eq!(status, 200);
    assert_eq!(body, json!({"id": 3, "name": "Hoodie", "amount": 59, "currency": "EUR", "warehouse": "AMS"}));
    let keys: Vec<_> = body.as_object().unwrap().keys().cloned().collect();
    assert_eq!(keys, ["id", "name", "amount", "currency", "warehouse"], "declared order, later call wins");
}

#[test]
fn check_rejects_a_cycle_naming_its_calls_and_prints_the_graph() {
    let cyclic = "backends:\n  b: { url: \"http://b\" }\nendpoints:\n  - route: GET /x\n    calls:\n      \
                  a: { backend: b, path: \"/a/{c.id}\" }\n      b: { backend: b, path: \"/b/{a.id}\" }\n      \
                  c: { backend: b, path: \"/c/{b.id}\" }\n";
    let output = run_fanout(&["check"], cyclic);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(
            "endpoints[0].calls: dependency cycle: a → c → b → a (each reads the next one's response)"
        ),
        "{stderr}"
    );

    let chain = "backends:\n  b: { url: \"http://b\", timeout: 100ms }\nendpoints:\n  - route: GET /x\n    timeout: 2s\n    \
                 calls:\n      a: { backend: b, path: /a }\n      b: { backend: b, path: \"/b/{a.id}\", timeout: 300ms }\n      \
                 c: { backend: b, path: \"/c/{a.list[*]}\", concurrency: 500 }\n";
    let output = run_fanout(&["check"], chain);
    assert_eq!(output.status.code(), Some(0), "{}", String::from_utf8_lossy(&output.stderr));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("b http://b/b/{a.id} timeout 300ms after a"), "{stdout}");
    assert!(
        stdout.contains("b http://b/c/{a.list[*]} timeout 100ms after a per element, 500 at once"),
        "{stdout}"
    );
    assert!(
        stdout.contains("worst case 400ms along a → b (capped at the endpoint timeout, 400ms)"),
        "{stdout}"
    );
}

#[tokio::test]
async fn a_shared_request_still_honours_each_calls_own_timeout() {
    let users =
        spawn(vec![RouteSpec::json("/u", json!({"ok": true})).latency(Duration::from_millis(400))]).await;
    let endpoint = "  - route: GET /page\n    calls:\n      \
                    fast: { backend: users, path: /u, timeout: 100ms }\n      \
                    slow: { backend: users, path: /u, timeout: 1500ms }\n";
    let gateway = Gateway::start(&config(&[("users", &users)], endpoint));

    let (status, _, body) = get_json(&format!("{}/page", gateway.url)).await;

    assert_eq!(status, 200);
    assert_eq!(body["_errors"]["fast"]["error"], "timeout");
    assert_eq!(body["slow"], json!({"ok": true}), "the first caller's timeout must not cut the second short");
    assert_eq!(users.requests().len(), 1);
}

#[tokio::test]
async fn list_elements_that_cannot_be_shaped_become_null_and_flat_merge_guards_errors() {
    let server = spawn(vec![
        RouteSpec::json("/ids", json!({"ids": [1, 2, 3]})),
        RouteSpec::json("/el/{n}", json!({"n": "{n}", "extra": 1})),
        RouteSpec::json("/el/2", json!(["not", "an", "object"])),
        RouteSpec::json("/spoof", json!({"_errors": {"fake": {"error": "timeout"}}, "x": 1})),
        RouteSpec::json("/plain", json!({"y": 2})),
    ])
    .await;
    let endpoints = "  - route: GET /list\n    calls:\n      \
                     ids: { backend: s, path: /ids }\n      \
                     els: { backend: s, path: \"/el/{ids.ids[*]}\", select: [n] }\n  \
                     - route: GET /flat\n    merge: flat\n    calls:\n      \
                     spoof: { backend: s, path: /spoof }\n      plain: { backend: s, path: /plain }\n";
    let gateway = Gateway::start(&config(&[("s", &server)], endpoints));

    let (status, _, body) = get_json(&format!("{}/list", gateway.url)).await;
    assert_eq!(status, 200);
    assert_eq!(body["els"], json!([{"n": "1"}, null, {"n": "3"}]));
    assert_eq!(body["_errors"]["els[1]"]["error"], "invalid_body");
    assert_eq!(body["_errors"]["els[1]"]["detail"], "select needs an object, got a list");

    let (status, headers, body) = get_json(&format!("{}/flat", gateway.url)).await;
    assert_eq!(status, 200);
    assert_eq!(headers["x-fanout-complete"], "false");
    assert_eq!(body["y"], 2);
    assert!(body.get("x").is_none());
    assert_eq!(
        body["_errors"],
        json!({"spoof": {"error": "invalid_body", "elapsed_ms": body["_errors"]["spoof"]["elapsed_ms"],
        "detail": "has a top-level `_errors` field, which merge: flat reserves for the gateway"}})
    );
}
