//! Table tests for config validation: a valid file compiles with its defaults, and every kind
//! of mistake is reported with its key path, all at once.

use super::*;
use crate::config::{LogFormat, Merge, RuntimeMode};
use serde_json::json;

fn errors_of(tree: Value) -> Vec<String> {
    validate(tree).unwrap_err().0.iter().map(ToString::to_string).collect()
}

fn valid_tree() -> Value {
    json!({
        "server": {"listen": "127.0.0.1:8080", "admin_listen": "127.0.0.1:9901", "request_timeout": "2s"},
        "backends": {
            "users": {"url": "http://users:8080/", "timeout": "250ms", "headers": {"x-api-key": "k"}},
            "orders": {"url": "http://orders:8080/v1"}
        },
        "endpoints": [{
            "route": "GET /api/page/{id}",
            "timeout": "800ms",
            "forward_headers": ["authorization", "Accept-Language"],
            "forward_query": ["locale"],
            "calls": {
                "user": {"backend": "users", "path": "/users/{id}", "required": true},
                "orders": {"backend": "orders", "path": "/orders?user={id}", "timeout": "300ms"}
            }
        }]
    })
}

#[test]
fn a_valid_config_compiles_with_defaults() {
    let settings = validate(valid_tree()).unwrap();
    assert_eq!(settings.server.shutdown_grace, Duration::from_secs(20));
    assert_eq!(settings.server.max_request_body, 1 << 20);
    assert_eq!(settings.server.max_in_flight, 10_000);
    assert_eq!(settings.telemetry.log_format, LogFormat::Json);
    assert_eq!(settings.backends[0].settings.base_url, "http://users:8080");
    assert_eq!(settings.backends[1].settings.base_url, "http://orders:8080/v1");
    assert_eq!(settings.backends[1].timeout, Duration::from_secs(1));
    let endpoint = &settings.endpoints[0];
    assert_eq!(endpoint.params, ["id"]);
    assert_eq!(endpoint.forward_headers, ["authorization", "accept-language"]);
    let names: Vec<_> = endpoint.calls.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["user", "orders"], "declared order is kept");
    assert_eq!(endpoint.calls[0].timeout, Duration::from_millis(250), "backend default applies");
    assert_eq!(endpoint.calls[1].timeout, Duration::from_millis(300));
    assert!(endpoint.calls[0].required && !endpoint.calls[1].required);
    assert_eq!(settings.router.at("/api/page/7").unwrap().value, &0);
}

#[test]
fn every_mistake_is_reported_with_its_key_path() {
    let tree = json!({
        "server": {"listen": "nowhere", "request_timeout": "fast", "max_in_flight": 0},
        "telemetry": {"log_format": "xml"},
        "extra": 1,
        "backends": {
            "users": {"url": "http://users", "timeout": "250", "ca_file": "ca.pem"},
            "orders": {"url": "http://orders", "tmeout": "1s"},
            "bad name": {"url": "http://x"}
        },
        "endpoints": [
            {
                "route": "GET /api/page/{id}",
                "timeout": "5s",
                "forward_headers": ["connection", "x_custom", "host"],
                "calls": {
                    "user": {"backend": "user", "path": "/users/{id}"},
                    "orders": {"backend": "orders", "path": "/orders/{uid}"},
                    "id": {"backend": "users", "path": "/x"},
                    "_errors": {"backend": "users", "path": "/x"}
                }
            },
            {"route": "POST /submit", "calls": {"a": {"backend": "users", "path": "/a"}}},
            {"route": "GET /b", "calls": {"a": {"backend": "users", "path": "/a", "timeout": "soon"}}},
            {"route": "GET /c", "calls": {}}
        ]
    });
    let expected = [
        "extra: unknown key (expected one of: server, telemetry, state, backends, endpoints)",
        "server.listen: invalid address \"nowhere\" (write IP:PORT, e.g. 0.0.0.0:8080)",
        "server.request_timeout: invalid duration \"fast\": expected number at 0 (write e.g. 250ms, 2s, 1m)",
        "server.max_in_flight: \"0\" must be a whole number from 1 to 10000000",
        "telemetry.log_format: unknown variant `xml`, expected `json` or `pretty`",
        "backends.users.timeout: invalid duration \"250\": time unit needed, for example 250sec or 250ms (write e.g. 250ms, 2s, 1m)",
        "backends.users.ca_file: only https:// backends use a ca_file",
        "backends.orders.tmeout: unknown field `tmeout`, expected one of `url`, `timeout`, `connect_timeout`, `max_response_body`, `headers`, `http2`, `max_idle_connections`, `ca_file`, `max_in_flight`, `retry`, `circuit_breaker`, `hedge`, `deadline_header`, `coalesce`, `cache`",
        "backends.bad name: invalid backend name \"bad name\": use letters, digits, - and _ (not leading _)",
        "endpoints[0].forward_headers[0]: \"connection\" is a hop-by-hop header and is never forwarded",
        "endpoints[0].forward_headers[1]: \"x_custom\": header names with \"_\" are never forwarded (proxies treat them inconsistently)",
        "endpoints[0].forward_headers[2]: \"host\" cannot be forwarded: it is set by the gateway itself (the backend's own host)",
        "endpoints[0].calls.user.backend: unknown backend \"user\" (known: users, orders, bad name)",
        "endpoints[0].calls.orders.path: \"/orders/{uid}\": unknown route parameter or call {uid} (route parameters: id; calls: user, orders, id, _errors)",
        "endpoints[0].calls.id: call name \"id\" clashes with the route parameter {id}",
        "endpoints[0].calls._errors: invalid call name \"_errors\": use letters, digits, - and _ (not leading _)",
        "endpoints[1].route: method \"POST\" is not supported: endpoints aggregate reads, so routes are GET (HEAD is answered too)",
        "endpoints[2].calls.a.timeout: invalid duration \"soon\": expected number at 0 (write e.g. 250ms, 2s, 1m)",
        "endpoints[3].calls: at least one call is required",
    ];
    assert_eq!(errors_of(tree), expected);
}

#[test]
fn a_bad_value_is_reported_once_not_again_by_the_rules_that_compare_it() {
    let with = |request_timeout: &str, endpoint_timeout: &str| {
        let mut tree = valid_tree();
        tree["server"]["request_timeout"] = json!(request_timeout);
        tree["endpoints"][0]["timeout"] = json!(endpoint_timeout);
        errors_of(tree)
    };
    // Both valid: the rule that compares them speaks.
    assert_eq!(with("1s", "5s"), ["endpoints[0].timeout: 5s exceeds server.request_timeout (1s)"]);
    // Either one invalid: only its own error, nothing made up from the placeholder it left.
    assert_eq!(
        with("fast", "5s"),
        [
            "server.request_timeout: invalid duration \"fast\": expected number at 0 (write e.g. 250ms, 2s, 1m)"
        ]
    );
    assert_eq!(
        with("500ms", "soon"),
        ["endpoints[0].timeout: invalid duration \"soon\": expected number at 0 (write e.g. 250ms, 2s, 1m)"]
    );
}

#[test]
fn structural_mistakes_are_reported() {
    assert_eq!(
        errors_of(json!([1])),
        ["the config must be a mapping with keys server, telemetry, state, backends, endpoints"]
    );
    assert_eq!(
        errors_of(json!({})),
        ["backends: is required", "endpoints: at least one endpoint is required"]
    );
    assert_eq!(
        errors_of(
            json!({"": 1, "backends": {"a": {"url": "http://a"}}, "endpoints": [{"route": "GET /", "calls": {"x": {"backend": "a", "path": "/"}}}]})
        ),
        [r#""": unknown key (expected one of: server, telemetry, state, backends, endpoints)"#]
    );
    assert_eq!(
        errors_of(json!({"backends": {"a": {"url": "http://a"}}, "endpoints": {"x": 1}})),
        ["endpoints: must be a list of endpoints"]
    );
    assert_eq!(
        errors_of(
            json!({"backends": {"a": {}}, "endpoints": [{"route": "GET /", "calls": {"x": {"backend": "a"}}}]})
        ),
        ["backends.a: missing field `url`", "endpoints[0].calls.x: missing field `path`"]
    );
    assert_eq!(
        errors_of(
            json!({"backends": {"a": {"url": "http://a"}}, "endpoints": [{"route": "GET /", "calls": {"x": {"backend": "a", "path": "/", "required": "yes"}}}]})
        ),
        ["endpoints[0].calls.x.required: invalid value: string \"yes\", expected true or false"]
    );
}

#[test]
fn routes_are_checked() {
    let cases = [
        ("/no-method", "\"/no-method\" must be \"GET /path/{param}\""),
        ("GET api", "path \"api\" must start with \"/\""),
        ("GET /a/{id}/{id}", "route parameter {id} appears twice"),
        ("GET /a/x{id}", "path segment \"x{id}\" must be literal text or a whole {param}"),
        ("GET /a/{*rest}", "invalid route parameter {*rest} (use letters, digits and _)"),
        ("GET /a/b%20c", "path segment \"b%20c\" contains characters that need encoding"),
    ];
    for (route, message) in cases {
        assert_eq!(parse_route(route), Err(message.to_owned()), "route {route:?}");
    }
    assert_eq!(parse_route("GET /a/{x}/b/{y}").unwrap(), ["x", "y"]);
}

#[test]
fn conflicting_routes_are_reported() {
    let mut tree = valid_tree();
    let copy = tree["endpoints"][0].clone();
    tree["endpoints"].as_array_mut().unwrap().push(copy);
    let errors = errors_of(tree);
    assert_eq!(errors.len(), 1);
    assert!(
        errors[0].starts_with("endpoints[1].route: \"/api/page/{id}\" conflicts with another route"),
        "{errors:?}"
    );
}

#[test]
fn backend_urls_are_checked() {
    let cases = [
        ("ftp://x", "backends.a.url: URL \"ftp://x\" must start with http:// or https://"),
        ("http://u:p@x", "backends.a.url: URL \"http://u:***@x\" needs a host and no user info"),
        ("http://x/?q=1", "backends.a.url: URL \"http://x/?q=1\" must not have a query or fragment"),
        ("not a url", "backends.a.url: invalid URL \"not a url\": invalid uri character"),
    ];
    for (url, message) in cases {
        let tree = json!({"backends": {"a": {"url": url}}, "endpoints": [{"route": "GET /", "calls": {"x": {"backend": "a", "path": "/"}}}]});
        assert_eq!(errors_of(tree), [message], "url {url:?}");
    }
}

#[test]
fn empty_entries_and_out_of_range_numbers_are_reported() {
    let tree = json!({
        "server": {"max_in_flight": "4611686018427387904", "max_connections": "many", "request_timeout": "500000000000y"},
        "backends": {"users": null, "orders": {"url": "http://orders:99999", "http2": "yes"}},
        "endpoints": [
            null,
            {"route": "GET /a/{id}", "forward_query": ["user"], "calls": {
                "x": null,
                "y": {"backend": "orders", "path": "/o?user={id}"}
            }}
        ]
    });
    let expected = [
        "server.request_timeout: duration \"500000000000y\" is longer than the 1 day maximum",
        "server.max_in_flight: \"4611686018427387904\" must be a whole number from 1 to 10000000",
        "server.max_connections: \"many\" must be a whole number from 1 to 10000000",
        "backends.users: is empty: settings are required here",
        "backends.orders.http2: invalid value: string \"yes\", expected true or false",
        "endpoints[0]: is empty: settings are required here",
        "endpoints[1].forward_query[0]: \"user\" is also set by calls.y.path; a client could override it",
        "endpoints[1].calls.x: is empty: settings are required here",
    ];
    assert_eq!(errors_of(tree), expected);
    let tree = json!({"backends": {"a": {"url": "http://a:99999"}}, "endpoints": [{"route": "GET /", "calls": {"x": {"backend": "a", "path": "/"}}}]});
    assert_eq!(errors_of(tree), ["backends.a.url: URL \"http://a:99999\" has an invalid port"]);
}

#[test]
fn environment_style_text_values_are_accepted() {
    let mut tree = valid_tree();
    tree["server"]["max_in_flight"] = json!("500");
    tree["backends"]["users"]["http2"] = json!("true");
    tree["backends"]["users"]["headers"]["x-api-key"] = json!("0123");
    tree["endpoints"][0]["calls"]["orders"]["required"] = json!("false");
    let settings = validate(tree).unwrap();
    assert_eq!(settings.server.max_in_flight, 500);
    assert!(settings.backends[0].settings.http2);
    assert_eq!(settings.backends[0].settings.headers["x-api-key"], "0123");
}

#[test]
fn composition_mistakes_are_reported_with_their_key_paths() {
    let tree = json!({
        "backends": {"b": {"url": "http://b"}},
        "endpoints": [{
            "route": "GET /x/{id}",
            "merge": "deep",
            "max_fanout": 0,
            "calls": {
                "a": {"backend": "b", "path": "/a/{id}", "concurrency": 4, "on_element_error": "fail"},
                "l": {"backend": "b", "path": "/l/{a.items[*].id}/{a.other[*]}"},
                "s": {"backend": "b", "path": "/s", "select": ["x[0]"], "rename": {"a.b": "c"}},
                "r": {"backend": "b", "path": "/r/{nope.id}"},
                "total": {"backend": "b", "path": "/t"}
            }
        }, {
            "route": "GET /y",
            "calls": {"a": {"backend": "b", "path": "/a/{a.id}"}}
        }]
    });
    let expected = [
        "endpoints[0].merge: unknown variant `deep`, expected `group` or `flat`",
        "endpoints[1].calls: dependency cycle: a → a (each reads the next one's response)",
    ];
    assert_eq!(errors_of(tree.clone()), expected, "a section with a type error is reported once");
    let mut tree = tree;
    tree["endpoints"][0].as_object_mut().unwrap().remove("merge");
    let errors = errors_of(tree);
    let expected = [
        "endpoints[0].max_fanout: \"0\" must be a whole number from 1 to 10000000",
        "endpoints[0].calls.a.concurrency: only applies to a call over a list (a path with [*])",
        "endpoints[0].calls.a.on_element_error: only applies to a call over a list (a path with [*])",
        "endpoints[0].calls.l.path: \"/l/{a.items[*].id}/{a.other[*]}\": a call can fan out over one list only (one [*], one list per template)",
        "endpoints[0].calls.s: select[0]: \"x[0]\" may only use field names (a.b.c)",
        "endpoints[0].calls.r.path: \"/r/{nope.id}\": unknown route parameter or call {nope} (route parameters: id; calls: a, l, s, r, total)",
        "endpoints[0].calls.total: call name \"total\" is reserved (a Server-Timing entry of the gateway)",
        "endpoints[1].calls: dependency cycle: a → a (each reads the next one's response)",
    ];
    assert_eq!(errors, expected);
}

#[test]
fn composition_settings_compile() {
    let tree = json!({
        "backends": {"b": {"url": "http://b", "timeout": "100ms"}},
        "endpoints": [{
            "route": "GET /x",
            "merge": "group",
            "concurrency": 8,
            "calls": {
                "list": {"backend": "b", "path": "/l"},
                "each": {"backend": "b", "path": "/e/{list.ids[*]}", "on_element_error": "fail"},
                "one": {"backend": "b", "path": "/o/{list.ids[0]}", "select": ["a"], "rename": {"a": "b"}}
            }
        }]
    });
    let settings = validate(tree).unwrap();
    let endpoint = &settings.endpoints[0];
    assert_eq!(endpoint.merge, Merge::Group);
    assert_eq!(endpoint.max_fanout, 1000);
    assert_eq!(endpoint.graph.deps(1), [0]);
    assert_eq!(endpoint.graph.deps(2), [0]);
    assert_eq!(endpoint.calls[1].concurrency, 8, "the endpoint's concurrency is the default");
    assert!(endpoint.calls[1].fail_on_element_error);
    assert!(!endpoint.calls[2].shape.is_identity());
}

#[test]
fn an_invalid_call_does_not_produce_phantom_graph_errors() {
    let tree = json!({
        "backends": {"b": {"url": "http://b"}},
        "endpoints": [{
            "route": "GET /x",
            "merge": "flat",
            "calls": {
                "x": {"backend": "nope", "path": "/x"},
                "a": {"backend": "b", "path": "/a"},
                "c": {"backend": "b", "path": "/c/{a.id}"},
                "l": {"backend": "b", "path": "/l/{a.ids[*]}"},
                "p": {"backend": "b", "path": "/p/{", "concurrency": 2}
            }
        }]
    });
    assert_eq!(
        errors_of(tree),
        [
            "endpoints[0].calls.x.backend: unknown backend \"nope\" (known: b)",
            "endpoints[0].calls.l.path: a call over a list returns a list, which merge: flat cannot merge into the root",
            "endpoints[0].calls.p.path: \"/p/{\": unbalanced braces at byte 3",
        ]
    );
}

#[test]
fn reload_and_openapi_settings_are_checked() {
    let settings = validate(valid_tree()).unwrap();
    assert_eq!(settings.server.config_poll, Some(Duration::from_secs(1)), "polled every second by default");
    assert!(settings.endpoints[0].calls[0].schema.is_none());

    let mut tree = valid_tree();
    tree["server"]["config_poll"] = json!("off");
    tree["endpoints"][0]["calls"]["user"]["schema"] = json!({"type": "object"});
    let settings = validate(tree).unwrap();
    assert_eq!(settings.server.config_poll, None);
    assert_eq!(settings.endpoints[0].calls[0].schema, Some(json!({"type": "object"})));

    let mut tree = valid_tree();
    tree["server"]["config_poll"] = json!("sometimes");
    tree["endpoints"][0]["calls"]["user"]["schema"] = json!("object");
    let errors = errors_of(tree);
    assert!(errors[0].starts_with("server.config_poll: invalid duration \"sometimes\""), "{errors:?}");
    assert!(errors[1].starts_with("endpoints[0].calls.user.schema: must be a JSON Schema"), "{errors:?}");
    assert_eq!(errors.len(), 2);
}

#[test]
fn cors_settings_are_checked() {
    let mut tree = valid_tree();
    tree["server"]["cors"] = json!({"allow_origins": ["https://shop.example.com", "http://localhost:3000"]});
    let cors = validate(tree).unwrap().server.cors.unwrap();
    assert_eq!(cors.allow_origins.unwrap(), ["https://shop.example.com", "http://localhost:3000"]);
    assert_eq!(cors.max_age, Duration::from_secs(600));

    let mut tree = valid_tree();
    tree["server"]["cors"] = json!({"allow_origins": ["*"]});
    assert!(validate(tree).unwrap().server.cors.unwrap().allow_origins.is_none(), "* is any origin");

    let mut tree = valid_tree();
    tree["server"]["cors"] = json!({
        "allow_origins": ["*", "https://shop.example.com/path", "shop.example.com", "ftp://x"],
        "allow_headers": ["bad header"],
        "max_age": "forever",
        "allow_methods": ["POST"],
    });
    let errors = errors_of(tree);
    assert_eq!(errors.len(), 1, "unknown keys stop the section: {errors:?}");
    assert!(errors[0].starts_with("server.cors.allow_methods: unknown field"), "{errors:?}");

    let mut tree = valid_tree();
    tree["server"]["cors"] = json!({
        "allow_origins": ["*", "https://shop.example.com/path", "shop.example.com", "ftp://x"],
        "allow_headers": ["bad header"],
        "max_age": "forever",
    });
    let errors = errors_of(tree);
    let paths: Vec<&str> = errors.iter().map(|e| e.split(':').next().unwrap()).collect();
    assert_eq!(
        paths,
        [
            "server.cors.allow_origins",
            "server.cors.allow_origins[1]",
            "server.cors.allow_origins[2]",
            "server.cors.allow_origins[3]",
            "server.cors.allow_headers[0]",
            "server.cors.max_age"
        ],
        "{errors:?}"
    );
}

#[test]
fn max_response_body_defaults_to_the_server_setting_and_is_checked() {
    let settings = validate(valid_tree()).unwrap();
    assert_eq!(settings.server.max_response_body, 8 << 20);
    assert_eq!(settings.endpoints[0].max_response_body, 8 << 20);
    let mut tree = valid_tree();
    tree["server"]["max_response_body"] = json!("2MiB");
    let mut second = tree["endpoints"][0].clone();
    second["route"] = json!("GET /other/{id}");
    second["max_response_body"] = json!("64KiB");
    tree["endpoints"].as_array_mut().unwrap().push(second);
    let settings = validate(tree).unwrap();
    assert_eq!(settings.endpoints[0].max_response_body, 2 << 20, "the server's value is the default");
    assert_eq!(settings.endpoints[1].max_response_body, 64 << 10);
    let mut tree = valid_tree();
    tree["server"]["max_response_body"] = json!("lots");
    tree["endpoints"][0]["max_response_body"] = json!("-1");
    let errors = errors_of(tree);
    assert!(errors.iter().any(|e| e.starts_with("server.max_response_body: ")), "{errors:?}");
    assert!(errors.iter().any(|e| e.starts_with("endpoints[0].max_response_body: ")), "{errors:?}");
}

#[test]
fn headers_that_would_let_a_client_break_calls_cannot_be_forwarded() {
    let mut tree = valid_tree();
    tree["endpoints"][0]["forward_headers"] = json!(["accept-encoding", "range", "content-length", "te"]);
    tree["endpoints"][0]["calls"]["user"]["forward_headers"] =
        json!(["authorization", "http2-settings", "host"]);
    let errors = errors_of(tree);
    for (path, why) in [
        (
            "endpoints[0].forward_headers[0]",
            "\"accept-encoding\" cannot be forwarded: it would let a client ask backends for compressed bodies",
        ),
        (
            "endpoints[0].forward_headers[1]",
            "\"range\" cannot be forwarded: it would let a client ask backends for part of a body",
        ),
        (
            "endpoints[0].forward_headers[2]",
            "\"content-length\" cannot be forwarded: it is set by the gateway",
        ),
        ("endpoints[0].forward_headers[3]", "\"te\" is a hop-by-hop header"),
        ("endpoints[0].calls.user.forward_headers[1]", "\"http2-settings\" cannot be forwarded"),
        ("endpoints[0].calls.user.forward_headers[2]", "\"host\" cannot be forwarded"),
    ] {
        let expected = format!("{path}: {why}");
        assert!(errors.iter().any(|e| e.starts_with(&expected)), "missing {expected:?} in {errors:?}");
    }
    assert_eq!(errors.len(), 6, "{errors:?}");
}

#[test]
fn a_call_s_forward_headers_replace_the_endpoint_s() {
    let mut tree = valid_tree();
    tree["endpoints"][0]["calls"]["user"]["forward_headers"] = json!(["authorization"]);
    tree["endpoints"][0]["calls"]["orders"]["forward_headers"] = json!([]);
    let settings = validate(tree).unwrap();
    let endpoint = &settings.endpoints[0];
    assert_eq!(endpoint.forward_headers, ["authorization", "accept-language"]);
    assert_eq!(
        endpoint.calls[0].forward_headers.as_deref(),
        Some(&[HeaderName::from_static("authorization")][..])
    );
    assert_eq!(endpoint.calls[1].forward_headers.as_deref(), Some(&[][..]));
    let settings = validate(valid_tree()).unwrap();
    assert_eq!(settings.endpoints[0].calls[0].forward_headers, None, "none given: the endpoint's list");
}

#[test]
fn urls_in_messages_hide_their_password() {
    assert_eq!(shown_url("http://ann:pa:ss@users:80/x?y"), "http://ann:***@users:80/x?y");
    assert_eq!(shown_url("http://ann@users"), "http://ann@users");
    assert_eq!(shown_url("http://users:80"), "http://users:80");
    assert_eq!(shown_url("no scheme"), "no scheme");
    let mut tree = valid_tree();
    tree["backends"]["users"]["url"] = json!("http://ann:hunter22@users:8080");
    tree["telemetry"] = json!({"otlp_endpoint": "ftp://ann:hunter22@collector"});
    let errors = errors_of(tree).join("\n");
    assert!(!errors.contains("hunter22"), "{errors}");
    assert!(
        errors
            .contains("backends.users.url: URL \"http://ann:***@users:8080\" needs a host and no user info"),
        "{errors}"
    );
    assert!(errors.contains("telemetry.otlp_endpoint: invalid URL \"ftp://ann:***@collector\""), "{errors}");
}

#[test]
fn connection_lifetimes_have_defaults_and_are_checked() {
    let settings = validate(valid_tree()).unwrap();
    assert_eq!(settings.server.keep_alive_timeout, Duration::from_secs(75));
    assert_eq!(settings.server.max_connection_age, None, "off by default");
    assert_eq!(settings.server.admin_max_connections, 256);

    let mut tree = valid_tree();
    tree["server"]["max_connection_age"] = json!("10m");
    tree["server"]["keep_alive_timeout"] = json!("90s");
    let settings = validate(tree).unwrap();
    assert_eq!(settings.server.max_connection_age, Some(Duration::from_secs(600)));
    assert_eq!(settings.server.keep_alive_timeout, Duration::from_secs(90));

    let mut tree = valid_tree();
    tree["server"]["max_connection_age"] = json!("off");
    assert_eq!(validate(tree).unwrap().server.max_connection_age, None);

    let mut tree = valid_tree();
    tree["server"]["keep_alive_timeout"] = json!("500us");
    tree["server"]["max_connection_age"] = json!("0s");
    tree["server"]["admin_max_connections"] = json!(0);
    assert_eq!(
        errors_of(tree),
        [
            "server.keep_alive_timeout: duration \"500us\" must be at least 1ms",
            "server.max_connection_age: duration \"0s\" must be at least 1ms",
            "server.admin_max_connections: \"0\" must be a whole number from 1 to 10000000",
        ]
    );
}

#[test]
fn the_runtime_mode_is_work_stealing_unless_per_core_is_asked_for() {
    assert_eq!(validate(valid_tree()).unwrap().server.runtime, RuntimeMode::WorkStealing);
    let mut tree = valid_tree();
    tree["server"]["runtime"] = json!("per_core");
    assert_eq!(validate(tree).unwrap().server.runtime, RuntimeMode::PerCore);
    let mut tree = valid_tree();
    tree["server"]["runtime"] = json!("percore");
    assert_eq!(
        errors_of(tree),
        ["server.runtime: unknown variant `percore`, expected `work_stealing` or `per_core`"]
    );
}

#[test]
fn resilience_policies_are_off_unless_configured_and_take_defaults_key_by_key() {
    use downstream::policy::Failures;
    let settings = validate(valid_tree()).unwrap();
    assert!(
        settings.backends.iter().all(|b| b.settings.retry.is_none() && b.settings.circuit_breaker.is_none())
    );

    let mut tree = valid_tree();
    tree["backends"]["users"]["retry"] =
        json!({"attempts": 4, "on": ["5xx", "connect"], "budget": {"ratio": "0.1"}});
    tree["backends"]["users"]["circuit_breaker"] = json!({"failure_rate": "25%", "open_for": "2s"});
    tree["backends"]["orders"]["circuit_breaker"] = json!({});
    tree["backends"]["orders"]["hedge"] = json!({});
    let settings = validate(tree).unwrap();
    let retry = settings.backends[0].settings.retry.as_ref().unwrap();
    assert_eq!(
        (retry.attempts, retry.backoff, retry.max_backoff),
        (4, Duration::from_millis(10), Duration::from_millis(100))
    );
    assert_eq!(retry.on.items(), ["connect", "5xx"]);
    assert_eq!(
        (retry.budget.ratio, retry.budget.min_per_second, retry.budget.window),
        (0.1, 10, Duration::from_secs(10))
    );
    assert_eq!(retry.min_time_left, None);
    let breaker = settings.backends[0].settings.circuit_breaker.as_ref().unwrap();
    assert_eq!(
        (breaker.failure_rate, breaker.open_for, breaker.min_calls),
        (0.25, Duration::from_secs(2), 20)
    );
    assert_eq!(breaker.on, retry.on, "a breaker counts the failures its backend retries");
    let hedge = settings.backends[1].settings.hedge.as_ref().unwrap();
    assert_eq!(hedge.after, downstream::policy::HedgeAfter::Quantile(0.95));
    assert_eq!(
        (hedge.min_delay, hedge.max_delay, hedge.max_extra),
        (Duration::from_millis(2), Duration::from_millis(200), 0.05)
    );
    let breaker = settings.backends[1].settings.circuit_breaker.as_ref().unwrap();
    assert_eq!((breaker.window, breaker.half_open_calls), (Duration::from_secs(10), 3));
    assert_eq!(breaker.on, Failures::transient(), "without retry: the transient failures");
}

#[test]
fn bad_policy_values_are_reported_with_their_key_paths() {
    let mut tree = valid_tree();
    tree["backends"]["users"]["retry"] = json!({
        "attempts": 1, "backoff": "50ms", "max_backoff": "10ms", "on": ["connect", "reset", 200],
        "budget": {"ratio": 2, "min_per_second": -1, "window": "0s"}
    });
    tree["backends"]["orders"]["retry"] = json!({"on": []});
    tree["backends"]["orders"]["circuit_breaker"] =
        json!({"failure_rate": "150%", "min_calls": 0, "half_open_calls": "x"});
    tree["backends"]["orders"]["hedge"] =
        json!({"after": "p100", "min_delay": "50ms", "max_delay": "10ms", "max_extra": "0"});
    assert_eq!(
        errors_of(tree),
        [
            "backends.users.retry.attempts: 1 must be from 2 (one retry) to 10",
            "backends.users.retry.max_backoff: 10ms is shorter than retry.backoff (50ms)",
            "backends.users.retry.budget.ratio: \"2\" must be a number from 0 to 1",
            "backends.users.retry.budget.min_per_second: \"-1\" must be a whole number from 0 to 1000000",
            "backends.users.retry.budget.window: duration \"0s\" must be at least 1ms",
            "backends.users.retry.on[1]: \"reset\" is not a failure (write connect, timeout, invalid_body, a status from 300 to 599, or 3xx, 4xx, 5xx)",
            "backends.users.retry.on[2]: \"200\" is not a failure (write connect, timeout, invalid_body, a status from 300 to 599, or 3xx, 4xx, 5xx)",
            "backends.orders.retry.on: list at least one failure (e.g. [connect, timeout, 503])",
            "backends.orders.circuit_breaker.min_calls: \"0\" must be a whole number from 1 to 10000000",
            "backends.orders.circuit_breaker.failure_rate: \"150%\" must be a share above 0 and at most 100% (write e.g. 50% or 0.5)",
            "backends.orders.circuit_breaker.half_open_calls: \"x\" must be a whole number from 1 to 10000000",
            "backends.orders.hedge.after: \"p100\" is neither a quantile from p50 to p99.9 (e.g. p95) nor a duration (e.g. 20ms)",
            "backends.orders.hedge.max_delay: 10ms is shorter than hedge.min_delay (50ms)",
            "backends.orders.hedge.max_extra: \"0\" must be a share above 0 and at most 100% (write e.g. 50% or 0.5)",
        ]
    );
}

#[test]
fn deadline_headers_are_header_names() {
    let mut tree = valid_tree();
    tree["server"]["deadline_header"] = json!("x-request-timeout-ms");
    tree["backends"]["users"]["deadline_header"] = json!("X-Deadline-Ms");
    let settings = validate(tree.clone()).unwrap();
    assert_eq!(settings.server.deadline_header.unwrap(), "x-request-timeout-ms");
    assert_eq!(settings.backends[0].settings.deadline_header.as_ref().unwrap(), "x-deadline-ms");
    assert_eq!(settings.backends[1].settings.deadline_header, None);

    tree["server"]["deadline_header"] = json!("bad name");
    tree["backends"]["users"]["deadline_header"] = json!("connection");
    assert_eq!(
        errors_of(tree),
        [
            "server.deadline_header: invalid header name \"bad name\"",
            "backends.users.deadline_header: \"connection\" is a hop-by-hop header and is never forwarded",
        ]
    );
}

#[test]
fn rate_limits_default_from_the_server_and_an_endpoint_can_opt_out_or_set_its_own() {
    use crate::rate_limit::client_key::KeySource;
    let settings = validate(valid_tree()).unwrap();
    assert!(settings.server.rate_limit.is_none() && settings.endpoints[0].rate_limit.is_none());

    let mut tree = valid_tree();
    tree["server"]["rate_limit"] = json!({"rate": "100/s"});
    tree["server"]["trusted_proxies"] = json!(["10.0.0.0/8", "192.0.2.7"]);
    let mut second = tree["endpoints"][0].clone();
    second["route"] = json!("GET /api/other/{id}");
    second["rate_limit"] = json!({"key": "header:X-Api-Key", "rate": "5/10s", "burst": 20, "max_keys": 500});
    let mut third = tree["endpoints"][0].clone();
    third["route"] = json!("GET /api/free/{id}");
    third["rate_limit"] = json!("off");
    tree["endpoints"] = json!([tree["endpoints"][0].clone(), second, third]);
    let settings = validate(tree).unwrap();
    let inherited = settings.endpoints[0].rate_limit.as_ref().unwrap();
    assert_eq!(
        (&inherited.key, inherited.count, inherited.per, inherited.burst, inherited.max_keys),
        (&KeySource::ClientIp, 100, Duration::from_secs(1), 100, 100_000),
        "key, burst and max_keys default"
    );
    let own = settings.endpoints[1].rate_limit.as_ref().unwrap();
    assert_eq!(
        (&own.key, own.count, own.per, own.burst, own.max_keys),
        (&KeySource::Header(HeaderName::from_static("x-api-key")), 5, Duration::from_secs(10), 20, 500)
    );
    assert!(settings.endpoints[2].rate_limit.is_none());
    let proxies: Vec<String> = settings.server.trusted_proxies.iter().map(ToString::to_string).collect();
    assert_eq!(proxies, ["10.0.0.0/8", "192.0.2.7/32"]);
}

#[test]
fn bad_rate_limits_are_reported_with_their_key_paths() {
    let mut tree = valid_tree();
    tree["server"]["rate_limit"] = json!({"rate": "100", "burst": 0, "key": "ip"});
    tree["server"]["trusted_proxies"] = json!(["10.0.0.0/8", "proxy.internal"]);
    tree["endpoints"][0]["rate_limit"] = json!({"rate": "10/s", "max_keys": "lots", "window": "1s"});
    let mut second = tree["endpoints"][0].clone();
    second["route"] = json!("GET /api/other/{id}");
    second["rate_limit"] = json!("sometimes");
    tree["endpoints"] = json!([tree["endpoints"][0].clone(), second]);
    assert_eq!(
        errors_of(tree),
        [
            "server.rate_limit.key: \"ip\" is not a key: write client_ip, header:NAME or global",
            "server.rate_limit.rate: invalid rate \"100\" (write e.g. 100/s, 600/m or 5/10s)",
            "server.rate_limit.burst: \"0\" must be a whole number from 1 to 10000000",
            "server.trusted_proxies[1]: \"proxy.internal\" is not an address or network (write e.g. 10.0.0.0/8 or 10.0.0.7)",
            "endpoints[0].rate_limit.window: unknown field `window`, expected one of `key`, `rate`, `burst`, `max_keys`",
            "endpoints[1].rate_limit: \"sometimes\": write off, or a mapping with a rate",
        ]
    );
}

#[test]
fn state_is_in_memory_unless_redis_is_configured_and_a_bad_redis_url_says_why() {
    assert!(validate(valid_tree()).unwrap().state.redis.is_none());
    let mut tree = valid_tree();
    tree["state"] = json!({"redis": {"url": "redis://redis.default.svc:6379/0"}});
    let redis = validate(tree).unwrap().state.redis.unwrap();
    assert_eq!(
        (redis.url.as_str(), redis.timeout, redis.key_prefix.as_str()),
        ("redis://redis.default.svc:6379/0", Duration::from_millis(20), "fanout:")
    );

    let mut tree = valid_tree();
    tree["state"] = json!({"redis": {"url": "rediss://:secret@redis:6380", "timeout": "0s", "pool": 4}});
    assert_eq!(
        errors_of(tree),
        ["state.redis.pool: unknown field `pool`, expected one of `url`, `timeout`, `key_prefix`"]
    );
    let mut tree = valid_tree();
    tree["state"] = json!({"redis": {"url": "rediss://:secret@redis:6380", "timeout": "0s"}});
    assert_eq!(
        errors_of(tree),
        [
            "state.redis.url: invalid Redis URL \"rediss://:***@redis:6380\": must start with redis:// (TLS to Redis, rediss://, is not built in)",
            "state.redis.timeout: duration \"0s\" must be at least 1ms",
        ]
    );
}

#[test]
fn a_backend_cache_takes_defaults_key_by_key_and_bad_values_are_reported() {
    assert!(validate(valid_tree()).unwrap().backends.iter().all(|b| b.settings.cache.is_none()));
    let mut tree = valid_tree();
    tree["backends"]["users"]["cache"] = json!({});
    tree["backends"]["orders"]["cache"] =
        json!({"max_bytes": "1MiB", "default_ttl": "30s", "stale_if_error": "off"});
    let settings = validate(tree).unwrap();
    let defaults = settings.backends[0].settings.cache.as_ref().unwrap();
    assert_eq!(
        (defaults.max_bytes, defaults.default_ttl, defaults.stale_while_revalidate, defaults.stale_if_error),
        (64 << 20, None, Duration::from_secs(10), Duration::from_secs(300))
    );
    let own = settings.backends[1].settings.cache.as_ref().unwrap();
    assert_eq!(
        (own.max_bytes, own.default_ttl, own.stale_if_error),
        (1 << 20, Some(Duration::from_secs(30)), Duration::ZERO)
    );

    let mut tree = valid_tree();
    tree["backends"]["users"]["cache"] = json!({"shared": true});
    assert_eq!(
        errors_of(tree.clone()),
        [
            "backends.users.cache.shared: needs state.redis: the shared tier lives there (or set shared: false)"
        ]
    );
    tree["state"] = json!({"redis": {"url": "redis://redis:6379"}});
    assert!(validate(tree).unwrap().backends[0].settings.cache.as_ref().unwrap().shared);

    let mut tree = valid_tree();
    tree["backends"]["users"]["cache"] = json!({"max_bytes": "lots", "stale_while_revalidate": "soon"});
    assert_eq!(
        errors_of(tree),
        [
            "backends.users.cache.stale_while_revalidate: invalid duration \"soon\": expected number at 0 (write e.g. 250ms, 2s, 1m)",
            "backends.users.cache.max_bytes: invalid size \"lots\": unknown unit \"lots\" (use B, KB, KiB, MB, MiB, GB, GiB)",
        ]
    );
}
