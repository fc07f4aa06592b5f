//! Hostile input: route parameters that try to change the backend URL, headers that must not
//! be forwarded, request limits, and malformed HTTP that must never produce a 5xx or kill the
//! process.

use crate::support::{Config, Gateway, client, config, get_json, raw_exchange, raw_get, raw_status};
use mockend::{MockServer, RouteSpec, ServiceSpec};
use serde_json::json;
use std::time::Duration;

async fn echo_server() -> MockServer {
    MockServer::spawn(ServiceSpec::new(vec![
        RouteSpec::json("/items/{id}", json!({"ok": true})),
        RouteSpec::json("/search", json!({"ok": true})),
    ]))
    .await
    .unwrap()
}

#[tokio::test]
async fn hostile_route_parameters_never_change_backend_path_or_query() {
    let items = echo_server().await;
    let admin = echo_server().await;
    let endpoint = "  - route: GET /page/{id}\n    calls:\n      \
                    item: { backend: items, path: \"/items/{id}\" }\n      \
                    search: { backend: items, path: \"/search?q={id}&x=1\" }\n";
    let gateway = Gateway::start(&config(&[("items", &items), ("admin", &admin)], endpoint));

    let rejected = ["..%2F..%2Fadmin", "%2e%2e", "%2E", "..", "a%2Fb", "a%5Cb", "%0D%0AHost:%20evil", "a%00"];
    for value in rejected {
        let (status, body) = raw_get(gateway.addr, &format!("/page/{value}")).await;
        assert_eq!(status, Some(400), "{value}: {body}");
        let body: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert!(body["detail"].as_str().unwrap().starts_with("route parameter {id}"), "{body}");
    }
    assert!(items.requests().is_empty(), "a rejected request reached a backend");

    let accepted = [
        ("a%3Fx%3D1", "a%3Fx%3D1"),
        ("a%23frag", "a%23frag"),
        ("caf%C3%A9", "caf%C3%A9"),
        ("a%26q%3Dadmin", "a%26q%3Dadmin"),
        ("%25252e", "%25252e"),
        ("x;y=1", "x%3By%3D1"),
    ];
    for (value, encoded) in accepted {
        let before = items.requests().len();
        let (status, body) = raw_get(gateway.addr, &format!("/page/{value}")).await;
        assert_eq!(status, Some(200), "{value}: {body}");
        let mut seen: Vec<_> = items.requests().into_iter().skip(before).map(|r| r.path_and_query).collect();
        seen.sort();
        assert_eq!(seen, [format!("/items/{encoded}"), format!("/search?q={encoded}&x=1")], "value {value}");
    }
    assert!(admin.requests().is_empty(), "a parameter redirected a call to another backend");
}

#[tokio::test]
async fn only_listed_end_to_end_headers_reach_backends_with_the_request_id() {
    let a = echo_server().await;
    let b = echo_server().await;
    let endpoint = "  - route: GET /page/{id}\n    forward_headers: [authorization, accept-language, x-drop]\n    \
                    calls:\n      a: { backend: a, path: \"/items/{id}\" }\n      b: { backend: b, path: \"/items/{id}\" }\n";
    let gateway = Gateway::start(&config(&[("a", &a), ("b", &b)], endpoint));

    let request = "GET /page/1 HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer t\r\nAccept-Language: de\r\n\
                   Connection: close, x-drop\r\nX-Drop: 1\r\nX-Unlisted: 1\r\nKeep-Alive: timeout=5\r\nTE: trailers\r\n\
                   Proxy-Authorization: p\r\nUpgrade: websocket\r\nX-Request-Id: test-id-123\r\n\r\n";
    let answer = raw_exchange(gateway.addr, request.as_bytes(), Duration::from_secs(5)).await;
    assert_eq!(raw_status(&answer), Some(200), "{answer}");
    assert!(answer.to_ascii_lowercase().contains("x-request-id: test-id-123"), "{answer}");
    for server in [&a, &b] {
        let seen = &server.requests()[0].headers;
        assert_eq!(seen["authorization"], "Bearer t");
        assert_eq!(seen["accept-language"], "de");
        assert_eq!(seen["x-request-id"], "test-id-123");
        for absent in ["x-drop", "x-unlisted", "keep-alive", "te", "proxy-authorization", "upgrade"] {
            assert!(!seen.contains_key(absent), "{absent} reached a backend");
        }
    }

    let response = client().get(format!("{}/page/2", gateway.url)).send().await.unwrap();
    let generated = response.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert_eq!(generated.len(), 32);
    for server in [&a, &b] {
        assert_eq!(server.requests()[1].headers["x-request-id"], generated.as_str());
    }

    let backend_wins = "  - route: GET /own\n    forward_headers: [authorization]\n    calls:\n      \
                        a: { backend: keyed, path: \"/items/1\" }\n";
    let keyed_yaml = Config::new(&[("keyed", &a)], backend_wins)
        .backend("keyed", "headers: { authorization: \"Bearer backend\" }")
        .render();
    let keyed = Gateway::start(&keyed_yaml);
    let before = a.requests().len();
    let response = client().get(format!("{}/own", keyed.url)).bearer_auth("client").send().await.unwrap();
    assert_eq!(response.status(), 200);
    let seen = &a.requests()[before].headers;
    let values: Vec<_> = seen.get_all("authorization").iter().collect();
    assert_eq!(values, ["Bearer backend"], "a client header must not override the backend's own");

    let junk = "x".repeat(300);
    let response =
        client().get(format!("{}/page/3", gateway.url)).header("x-request-id", &junk).send().await.unwrap();
    assert_ne!(response.headers()["x-request-id"], junk.as_str(), "an oversized request id is replaced");
}

#[tokio::test]
async fn a_pooled_connection_s_next_request_carries_only_its_own_headers() {
    // Each backend request is written into the header map of the connection's last response
    // (which hyper parsed into the last request's map): nothing of either may be left over.
    let a = echo_server().await;
    let endpoint = "  - route: GET /page/{id}\n    forward_headers: [authorization]\n    \
                    calls:\n      a: { backend: a, path: \"/items/{id}\" }\n";
    let gateway = Gateway::start(&config(&[("a", &a)], endpoint));
    let first = client().get(format!("{}/page/1", gateway.url)).bearer_auth("t").send().await.unwrap();
    assert_eq!(first.status(), 200);
    let second = client().get(format!("{}/page/2", gateway.url)).send().await.unwrap();
    assert_eq!(second.status(), 200);
    let requests = a.requests();
    assert_eq!(requests.len(), 2);
    let names = |i: usize| {
        let mut names: Vec<_> = requests[i].headers.keys().map(|name| name.as_str().to_owned()).collect();
        names.sort();
        names
    };
    assert_eq!(names(0), ["authorization", "host", "x-request-id"]);
    assert_eq!(names(1), ["host", "x-request-id"], "the second request must not inherit any header");
    assert_eq!(requests[1].headers["x-request-id"], second.headers()["x-request-id"].to_str().unwrap());
}

#[tokio::test]
async fn a_call_s_own_forward_headers_replace_the_endpoint_s_and_identical_requests_stay_apart() {
    let a = echo_server().await;
    let b = echo_server().await;
    // The token reaches only `cart`; `same` asks the same URL as `cart` without it, so the two
    // must not be shared.
    let endpoint = "  - route: GET /page/{id}\n    forward_headers: [accept-language]\n    calls:\n      \
                    cart: { backend: a, path: \"/items/{id}\", forward_headers: [authorization, accept-language] }\n      \
                    same: { backend: a, path: \"/items/{id}\" }\n      \
                    other: { backend: b, path: \"/items/{id}\" }\n";
    let gateway = Gateway::start(&config(&[("a", &a), ("b", &b)], endpoint));

    let response = client()
        .get(format!("{}/page/1", gateway.url))
        .bearer_auth("secret")
        .header("accept-language", "de")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let to_a = a.requests();
    assert_eq!(to_a.len(), 2, "requests with different forwarded headers are not shared");
    let with_token =
        to_a.iter().filter(|r| r.headers.get("authorization").is_some_and(|v| v == "Bearer secret"));
    assert_eq!(with_token.count(), 1, "only the call that lists authorization gets it");
    assert!(to_a.iter().all(|r| r.headers["accept-language"] == "de"));
    let to_b = &b.requests()[0].headers;
    assert!(!to_b.contains_key("authorization"), "the token reached a call that does not list it");
    assert_eq!(to_b["accept-language"], "de");
}

#[tokio::test]
async fn h2_cookie_fields_reach_http1_backends_as_one_field() {
    let a = echo_server().await;
    let endpoint = "  - route: GET /page/{id}\n    forward_headers: [cookie]\n    calls:\n      \
                    a: { backend: a, path: \"/items/{id}\" }\n";
    let gateway = Gateway::start(&config(&[("a", &a)], endpoint));
    let h2 = reqwest::Client::builder().no_proxy().http2_prior_knowledge().build().unwrap();

    let mut headers = reqwest::header::HeaderMap::new();
    headers.append("cookie", "a=1".parse().unwrap());
    headers.append("cookie", "b=2".parse().unwrap());
    headers.append("cookie", "c=3".parse().unwrap());
    let response = h2.get(format!("{}/page/1", gateway.url)).headers(headers).send().await.unwrap();
    assert_eq!(response.version(), reqwest::Version::HTTP_2);
    assert_eq!(response.status(), 200);
    let seen: Vec<_> = a.requests()[0].headers.get_all("cookie").iter().cloned().collect();
    assert_eq!(seen, ["a=1; b=2; c=3"]);
}

#[tokio::test]
async fn unknown_paths_wrong_methods_and_large_bodies_get_problem_json() {
    let items = echo_server().await;
    let endpoint =
        "  - route: GET /page/{id}\n    calls:\n      item: { backend: items, path: \"/items/{id}\" }\n";
    let gateway = Gateway::start(&config(&[("items", &items)], endpoint));

    let (status, headers, body) = get_json(&format!("{}/nope", gateway.url)).await;
    assert_eq!((status, body["status"].as_u64()), (404, Some(404)));
    assert_eq!(headers["content-type"], "application/problem+json");
    assert!(headers["server-timing"].to_str().unwrap().starts_with("total;dur="));
    assert!(headers.contains_key("x-request-id"));

    let response = client().post(format!("{}/page/1", gateway.url)).body("{}").send().await.unwrap();
    assert_eq!(response.status(), 405);
    assert_eq!(response.headers()["allow"], "GET, HEAD");
    assert_eq!(response.headers()["content-type"], "application/problem+json");

    let big = "GET /page/1 HTTP/1.1\r\nHost: gw\r\nContent-Length: 5000000\r\n\r\n";
    let answer = raw_exchange(gateway.addr, big.as_bytes(), Duration::from_secs(3)).await;
    assert_eq!(raw_status(&answer), Some(413), "{answer}");
    assert!(answer.contains("application/problem+json"));
    assert!(items.requests().is_empty());
}

#[tokio::test]
async fn malformed_http_never_gets_a_5xx_nor_kills_the_process() {
    let items = echo_server().await;
    let endpoint =
        "  - route: GET /page/{id}\n    calls:\n      item: { backend: items, path: \"/items/{id}\" }\n";
    let mut gateway = Gateway::start(&config(&[("items", &items)], endpoint));

    let many_headers: String = (0..101).map(|i| format!("X-H{i}: v\r\n")).collect();
    let cases: Vec<(&str, Vec<u8>, Option<u16>)> = vec![
        ("garbage", b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03 garbage\r\n\r\n".to_vec(), Some(400)),
        ("no version", b"GET /page/1\r\n\r\n".to_vec(), Some(400)),
        ("bad header line", b"GET /page/1 HTTP/1.1\r\nHost: a\r\nBad Header\r\n\r\n".to_vec(), Some(400)),
        (
            "content-length with transfer-encoding",
            b"GET /page/1 HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
                .to_vec(),
            Some(400),
        ),
        ("obsolete line folding", b"GET /page/1 HTTP/1.1\r\nHost: a\r\nX-A: b\r\n c\r\n\r\n".to_vec(), Some(400)),
        ("nul in header", b"GET /page/1 HTTP/1.1\r\nHost: a\r\nX-A: b\x00c\r\n\r\n".to_vec(), Some(400)),
        ("too many headers", format!("GET /page/1 HTTP/1.1\r\n{many_headers}\r\n").into_bytes(), Some(431)),
        (
            "huge head",
            format!("GET /page/1 HTTP/1.1\r\nX-Big: {}\r\n\r\n", "a".repeat(40 * 1024)).into_bytes(),
            Some(431),
        ),
        ("long target", format!("GET /page/{} HTTP/1.1\r\nHost: a\r\n\r\n", "a".repeat(9000)).into_bytes(), Some(414)),
        ("bad h2 preface", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\ngarbage-frames".to_vec(), None),
    ];
    for (name, request, expected) in cases {
        let answer = raw_exchange(gateway.addr, &request, Duration::from_secs(3)).await;
        let status = raw_status(&answer);
        if let Some(code) = status {
            assert!(code < 500, "{name}: answered {code}");
        }
        if expected.is_some() {
            assert_eq!(status, expected, "{name}: {answer}");
        }
        assert!(gateway.is_running(), "{name} killed the gateway");
    }
    let (status, _, _) = get_json(&format!("{}/page/1", gateway.url)).await;
    assert_eq!(status, 200, "still serving after malformed input");
}

#[tokio::test]
async fn silent_and_slow_connections_are_closed() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let items = echo_server().await;
    let endpoint =
        "  - route: GET /page/{id}\n    calls:\n      item: { backend: items, path: \"/items/{id}\" }\n";
    let mut gateway = Gateway::start(&config(&[("items", &items)], endpoint));
    let h2_preface_then_silence = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00";
    for partial in [&b""[..], b"GET /page/1 HTTP/1.1\r\nHost: a\r\nX-Slow: ", h2_preface_then_silence] {
        let mut stream = tokio::net::TcpStream::connect(gateway.addr).await.unwrap();
        stream.write_all(partial).await.unwrap();
        let started = std::time::Instant::now();
        let mut buf = Vec::new();
        let closed = tokio::time::timeout(Duration::from_secs(8), stream.read_to_end(&mut buf)).await;
        assert!(closed.is_ok(), "connection sending {partial:?} was never closed");
        assert!(gateway.is_running());
        let waited = started.elapsed();
        assert!(waited >= Duration::from_millis(1500), "closed too early: {waited:?}");
    }
}

#[tokio::test]
async fn backends_are_called_directly_without_redirects_or_proxies() {
    let target = echo_server().await;
    let redirecting = MockServer::spawn(ServiceSpec::new(vec![
        RouteSpec::json("/r", json!({})).status(302).location(format!("{}/items/1", target.url())),
    ]))
    .await
    .unwrap();
    let endpoint = "  - route: GET /page\n    calls:\n      \
                    moved: { backend: redirecting, path: /r }\n      \
                    direct: { backend: target, path: /items/2 }\n";
    let yaml = config(&[("redirecting", &redirecting), ("target", &target)], endpoint);
    let proxy = [
        ("HTTP_PROXY", "http://127.0.0.1:1"),
        ("http_proxy", "http://127.0.0.1:1"),
        ("ALL_PROXY", "http://127.0.0.1:1"),
    ];
    let gateway = Gateway::start_with_env(&yaml, &proxy);

    let (status, _, body) = get_json(&format!("{}/page", gateway.url)).await;
    assert_eq!(status, 200);
    assert_eq!(body["direct"], json!({"ok": true}), "the proxy variables were not used");
    assert_eq!(body["_errors"]["moved"]["error"], "status");
    assert_eq!(body["_errors"]["moved"]["status"], 302);
    let paths: Vec<_> = target.requests().into_iter().map(|r| r.path_and_query).collect();
    assert_eq!(paths, ["/items/2"], "the redirect was followed");
}
