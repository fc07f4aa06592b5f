//! The OpenAPI 3.1 document of a plan: one `GET` operation per endpoint (its route parameters,
//! forwarded query parameters and headers; the `200` answer with one property per call, each
//! with the call's declared `schema` or an open one, and `_errors`; the `X-Fanout-Complete`,
//! `Server-Timing` and `X-Request-Id` headers; the problem+json error answers), plus the admin
//! endpoints, tagged `admin`, on the admin listener. Pure: a plan in, a JSON tree out;
//! [`to_yaml`] renders it. `fanout openapi` prints it and the admin port serves it live.
//!
//! Decisions: a call without a declared `schema` is any JSON value (`{}`), because its body is
//! spliced as the backend sent it; a call over a list is an array whose elements may be `null`
//! (a failed element). A route parameter that fills a backend path segment carries the `400`
//! rule as a `pattern`, so clients and contract tests know which values are refused.

use crate::config::Merge;
use crate::plan::{CallPlan, EndpointPlan, Plan};
use crate::problem::ErrorAnswer;
use compose::names::{ERRORS_KEY, STALE_KEY};
use downstream::ERROR_KINDS;
use http::HeaderName;
use serde_json::{Map, Value, json};
use std::net::SocketAddr;
use yaml_rust2::{Yaml, YamlEmitter};

/// A decoded path-segment value the gateway accepts: not empty, not `.` or `..`, no `/`, `\`
/// or control character (C0, DEL, C1).
const PATH_SEGMENT_PATTERN: &str = r"^(?!\.{1,2}$)[^/\\\u0000-\u001F\u007F-\u009F]+$";

/// Headers OpenAPI does not let a document declare as parameters.
const UNDECLARABLE_HEADERS: [&str; 3] = ["accept", "content-type", "authorization"];

/// The OpenAPI document of `plan`.
pub fn document(plan: &Plan) -> Value {
    let mut paths = Map::new();
    let mut operation_ids: Vec<String> = Vec::new();
    for endpoint in &plan.endpoints {
        let path = endpoint.route.split_once(' ').map_or(&*endpoint.route, |(_, path)| path);
        let mut id = operation_id(path);
        if operation_ids.contains(&id) {
            id = format!("{id}_{}", endpoint.index);
        }
        operation_ids.push(id.clone());
        paths.insert(path.to_owned(), json!({ "get": operation(endpoint, &id) }));
    }
    paths.extend(admin_paths(plan.server.admin_listen));
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "fanout gateway",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Aggregated endpoints served by fanout. Each endpoint calls its backends \
                concurrently and answers with one JSON object: each call's result under its name. \
                A failed optional call is left out and listed under `_errors` (the answer is still \
                200, with `X-Fanout-Complete: false`); a failed required call makes the answer a \
                502 or 504 problem. `Server-Timing` gives each call's duration, `gateway` (the \
                time fanout added) and `total`.",
        },
        "servers": [server(plan.server.listen, "the public listener (server.listen)")],
        "tags": [
            { "name": "endpoints", "description": "Aggregated endpoints (from the config's `endpoints`)." },
            { "name": "admin", "description": "Health, readiness, metrics and this document, on the admin listener (server.admin_listen)." },
        ],
        "paths": paths,
        "components": components(),
    })
}

/// `GET /api/products/{id}` → `get_api_products_id`.
fn operation_id(path: &str) -> String {
    let words: Vec<String> = path
        .split('/')
        .filter(|s| !s.is_empty())
        .map(|s| s.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }).collect())
        .collect();
    let joined = words.join("_").split('_').filter(|w| !w.is_empty()).collect::<Vec<_>>().join("_");
    format!("get_{joined}")
}

fn operation(endpoint: &EndpointPlan, id: &str) -> Value {
    let mut responses = Map::new();
    responses.insert("200".to_owned(), ok_response(endpoint));
    // Only a limited endpoint answers 429.
    let limited = endpoint.rate_limit.is_some();
    for answer in ErrorAnswer::ALL.into_iter().filter(|a| limited || *a != ErrorAnswer::TooManyRequests) {
        let reference = format!("#/components/responses/{answer:?}");
        responses.insert(answer.status().as_str().to_owned(), json!({ "$ref": reference }));
    }
    let names: Vec<&str> = endpoint.calls.iter().map(|c| &*c.name).collect();
    json!({
        "operationId": id,
        "tags": ["endpoints"],
        "summary": format!("Aggregates {}", names.join(", ")),
        "description": describe_calls(endpoint),
        "parameters": parameters(endpoint),
        "responses": responses,
    })
}

/// A Markdown list of the calls: backend, path, timeout, required, dependencies.
fn describe_calls(endpoint: &EndpointPlan) -> String {
    let mut text = format!(
        "Deadline {} ms. Calls (each starts when its inputs are ready):\n",
        endpoint.timeout.as_millis()
    );
    for (index, call) in endpoint.calls.iter().enumerate() {
        let deps: Vec<&str> = endpoint.graph.deps(index).iter().map(|&d| &*endpoint.calls[d].name).collect();
        text.push_str(&format!(
            "\n- `{}`: {} `GET {}`, timeout {} ms{}{}{}",
            call.name,
            call.backend.name(),
            call.path,
            call.timeout.as_millis(),
            if call.required { ", **required**" } else { ", optional" },
            if deps.is_empty() { String::new() } else { format!(", after {}", deps.join(", ")) },
            if call.template.fan_out().is_some() { ", one request per list element" } else { "" },
        ));
    }
    for (header, receivers) in forwarded_headers(endpoint) {
        if UNDECLARABLE_HEADERS.contains(&header.as_str()) {
            text.push_str(&format!("\n\nAlso forwarded {receivers}: {}.", header.as_str()));
        }
    }
    text
}

/// Every forwarded header, once, with the calls it reaches (`to every call`, `only to a, b`).
fn forwarded_headers(endpoint: &EndpointPlan) -> Vec<(&HeaderName, String)> {
    let mut out: Vec<(&HeaderName, String)> = Vec::new();
    for header in endpoint.header_sets.iter().flatten() {
        if out.iter().any(|(seen, _)| *seen == header) {
            continue;
        }
        let calls: Vec<&str> = endpoint
            .calls
            .iter()
            .filter(|c| endpoint.header_sets.get(c.header_set).is_some_and(|set| set.contains(header)))
            .map(|c| &*c.name)
            .collect();
        let receivers = match calls.len() {
            n if n == endpoint.calls.len() => "to every call".to_owned(),
            _ => format!("only to {}", calls.join(", ")),
        };
        out.push((header, receivers));
    }
    out
}

fn parameters(endpoint: &EndpointPlan) -> Vec<Value> {
    let mut out = Vec::new();
    for (index, name) in endpoint.params.iter().enumerate() {
        let in_path = endpoint.calls.iter().any(|c| c.template.route_params_in_path().any(|p| p == index));
        let (schema, description) = if in_path {
            (
                json!({ "type": "string", "minLength": 1, "pattern": PATH_SEGMENT_PATTERN }),
                "Placed in a backend path segment: it must not be empty, `.` or `..`, or contain `/`, \
                 `\\` or a control character (else 400).",
            )
        } else {
            (json!({ "type": "string" }), "Placed in a backend query value: any text.")
        };
        out.push(json!({ "name": name, "in": "path", "required": true, "description": description, "schema": schema }));
    }
    for name in &endpoint.forward_query {
        out.push(json!({
            "name": name, "in": "query", "required": false,
            "description": "Forwarded to every call.", "schema": { "type": "string" },
        }));
    }
    for (header, receivers) in forwarded_headers(endpoint) {
        if !UNDECLARABLE_HEADERS.contains(&header.as_str()) {
            out.push(json!({
                "name": header.as_str(), "in": "header", "required": false,
                "description": format!("Forwarded {receivers}."), "schema": { "type": "string" },
            }));
        }
    }
    out
}

fn ok_response(endpoint: &EndpointPlan) -> Value {
    let mut reserved = Map::new();
    reserved.insert(ERRORS_KEY.to_owned(), json!({ "$ref": "#/components/schemas/Errors" }));
    // Only an endpoint with a call to a cached backend can answer stale.
    if endpoint.calls.iter().any(|call| call.backend.cache().is_some()) {
        reserved.insert(STALE_KEY.to_owned(), json!({ "$ref": "#/components/schemas/Stale" }));
    }
    let schema = match endpoint.merge {
        Merge::Group => {
            let mut properties: Map<String, Value> =
                endpoint.calls.iter().map(|c| (c.name.to_string(), call_schema(c))).collect();
            properties.extend(reserved);
            let required: Vec<&str> =
                endpoint.calls.iter().filter(|c| c.required).map(|c| &*c.name).collect();
            json!({ "type": "object", "properties": properties, "required": required, "additionalProperties": false })
        }
        Merge::Flat => json!({
            "type": "object",
            "description": "The calls' objects merged into one, in declared order (later calls win).",
            "properties": reserved,
        }),
    };
    let mut headers = json!({
        "X-Fanout-Complete": { "$ref": "#/components/headers/X-Fanout-Complete" },
        "Server-Timing": { "$ref": "#/components/headers/Server-Timing" },
        "X-Request-Id": { "$ref": "#/components/headers/X-Request-Id" },
    });
    if endpoint.rate_limit.is_some() {
        headers["RateLimit-Policy"] = json!({ "$ref": "#/components/headers/RateLimit-Policy" });
        headers["RateLimit"] = json!({ "$ref": "#/components/headers/RateLimit" });
    }
    json!({
        "description": "The composed answer: each call's result under its name; failed optional calls under `_errors`.",
        "headers": headers,
        "content": { "application/json": { "schema": schema } },
    })
}

fn call_schema(call: &CallPlan) -> Value {
    if let Some(schema) = &call.schema {
        return schema.clone();
    }
    let description = format!("The answer of {} `GET {}`, as sent.", call.backend.name(), call.path);
    match call.template.fan_out() {
        Some(_) => json!({
            "type": "array",
            "description": format!("{description} One element per list element, in order; `null` for a failed element."),
            "items": {},
        }),
        None => json!({ "description": description }),
    }
}

/// A `servers` entry for a listener: its port, with the host as a variable.
fn server(addr: SocketAddr, description: &str) -> Value {
    let host = if addr.ip().is_unspecified() { "localhost".to_owned() } else { addr.ip().to_string() };
    json!({
        "url": format!("http://{{host}}:{}", addr.port()),
        "description": description,
        "variables": { "host": { "default": host } },
    })
}

fn admin_paths(admin: SocketAddr) -> Map<String, Value> {
    let servers = json!([server(admin, "the admin listener (server.admin_listen)")]);
    let json_body = |schema: Value| json!({ "application/json": { "schema": schema } });
    let readiness = json!({
        "type": "object",
        "required": ["status", "config_version", "last_reload"],
        "properties": {
            "status": { "enum": ["ready", "draining"] },
            "config_version": { "type": "string", "pattern": "^[0-9a-f]{12}$", "description": "The serving config's version (also the metric fanout_config_hash)." },
            "last_reload": { "enum": ["none", "applied", "unchanged", "rejected"] },
        },
    });
    let entries = [
        (
            "/healthz",
            "get_healthz",
            "The process is alive.",
            json!({
                "200": { "description": "Alive.", "content": json_body(json!({ "type": "object", "properties": { "status": { "const": "ok" } } })) },
            }),
        ),
        (
            "/readyz",
            "get_readyz",
            "Ready to serve: a config is loaded and the gateway is not draining.",
            json!({
                "200": { "description": "Ready.", "content": json_body(readiness.clone()) },
                "503": { "description": "Draining after SIGTERM.", "content": json_body(readiness) },
            }),
        ),
        (
            "/metrics",
            "get_metrics",
            "Prometheus metrics (unless telemetry.metrics is false).",
            json!({
                "200": { "description": "Prometheus text format.", "content": { "text/plain": { "schema": { "type": "string" } } } },
                "404": { "$ref": "#/components/responses/NotFound" },
            }),
        ),
        (
            "/openapi.json",
            "get_openapi_json",
            "This document, for the config serving now, as JSON.",
            json!({
                "200": { "description": "OpenAPI document.", "content": json_body(json!({ "type": "object" })) },
            }),
        ),
        (
            "/openapi.yaml",
            "get_openapi_yaml",
            "This document, for the config serving now, as YAML.",
            json!({
                "200": { "description": "OpenAPI document.", "content": { "application/yaml": { "schema": { "type": "object" } } } },
            }),
        ),
    ];
    entries
        .into_iter()
        .map(|(path, id, summary, responses)| {
            let operation =
                json!({ "operationId": id, "tags": ["admin"], "summary": summary, "responses": responses });
            (path.to_owned(), json!({ "servers": servers, "get": operation }))
        })
        .collect()
}

fn components() -> Value {
    let problem = |status: &str, description: &str| {
        json!({
            "description": format!("{status}: {description}"),
            "content": { "application/problem+json": { "schema": { "$ref": "#/components/schemas/Problem" } } },
        })
    };
    let mut responses = Map::new();
    for answer in ErrorAnswer::ALL {
        let mut response = problem(answer.status().as_str(), &answer.when());
        match answer {
            ErrorAnswer::MethodNotAllowed => {
                response["headers"] =
                    json!({ "Allow": { "schema": { "type": "string" }, "description": "GET, HEAD" } })
            }
            ErrorAnswer::Overloaded => {
                response["headers"] =
                    json!({ "Retry-After": { "schema": { "type": "string" }, "description": "Seconds." } })
            }
            ErrorAnswer::TooManyRequests => {
                response["headers"] = json!({
                    "Retry-After": { "schema": { "type": "string" }, "description": "Seconds until a request is allowed." },
                    "RateLimit-Policy": { "$ref": "#/components/headers/RateLimit-Policy" },
                    "RateLimit": { "$ref": "#/components/headers/RateLimit" },
                })
            }
            // hyper answers it, with no body.
            ErrorAnswer::HeadersTooLarge => response = json!({ "description": response["description"] }),
            _ => {}
        }
        responses.insert(format!("{answer:?}"), response);
    }
    json!({
        "schemas": {
            "Problem": {
                "type": "object",
                "description": "RFC 9457 problem details.",
                "required": ["type", "title", "status", "detail"],
                "properties": {
                    "type": { "type": "string" },
                    "title": { "type": "string" },
                    "status": { "type": "integer" },
                    "detail": { "type": "string" },
                    "call": { "type": "string", "description": "The required call that failed." },
                    "error": { "enum": ERROR_KINDS, "description": "Its error kind." },
                },
            },
            "CallError": {
                "type": "object",
                "required": ["error", "elapsed_ms"],
                "properties": {
                    "error": { "enum": ERROR_KINDS },
                    "elapsed_ms": { "type": "integer", "minimum": 0 },
                    "status": { "type": "integer", "description": "The backend's status, for `status` errors." },
                    "detail": { "type": "string" },
                    "attempts": {
                        "type": "integer",
                        "minimum": 1,
                        "description": "Attempts made, for a call to a backend with `retry`.",
                    },
                },
                "additionalProperties": false,
            },
            "Errors": {
                "type": "object",
                "description": "Failed calls by name (`name[i]` for a failed element of a call over a list).",
                "additionalProperties": { "$ref": "#/components/schemas/CallError" },
            },
            "Stale": {
                "type": "object",
                "description": "Calls answered from the backend's cache with a stale answer, by name.",
                "additionalProperties": {
                    "type": "object",
                    "required": ["reason", "age_s"],
                    "properties": {
                        "reason": { "type": "string", "description": "`revalidating` (stale-while-revalidate), or the error kind of the failed call (stale-if-error)." },
                        "age_s": { "type": "integer", "description": "Seconds since the answer was stored." },
                    },
                },
            },
        },
        "responses": responses,
        "headers": {
            "X-Fanout-Complete": { "description": "`false` when any call failed.", "schema": { "enum": ["true", "false"] } },
            "Server-Timing": { "description": "Each call's duration, `gateway` and `total`, in ms.", "schema": { "type": "string" } },
            "X-Request-Id": { "description": "The request's id (taken from the request or generated).", "schema": { "type": "string" } },
            "RateLimit-Policy": { "description": "The endpoint's limit (draft-ietf-httpapi-ratelimit-headers-10): `\"KEY\";q=BURST;w=SECONDS`.", "schema": { "type": "string" } },
            "RateLimit": { "description": "This client's bucket: `\"KEY\";r=REMAINING;t=SECONDS_UNTIL_FULL`.", "schema": { "type": "string" } },
        },
    })
}

/// Renders a JSON tree as YAML (block style, keys in order).
pub fn to_yaml(value: &Value) -> String {
    let mut out = String::new();
    // Writing into a String cannot fail.
    let _ = YamlEmitter::new(&mut out).dump(&yaml(value));
    out.push('\n');
    out
}

fn yaml(value: &Value) -> Yaml {
    match value {
        Value::Null => Yaml::Null,
        Value::Bool(b) => Yaml::Boolean(*b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => Yaml::Integer(i),
            None => Yaml::Real(n.to_string()),
        },
        Value::String(s) => Yaml::String(s.clone()),
        Value::Array(items) => Yaml::Array(items.iter().map(yaml).collect()),
        Value::Object(map) => {
            Yaml::Hash(map.iter().map(|(k, v)| (Yaml::String(k.clone()), yaml(v))).collect())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use yaml_rust2::YamlLoader;

    #[test]
    fn operation_ids_are_words_of_the_path() {
        assert_eq!(operation_id("/api/products/{id}"), "get_api_products_id");
        assert_eq!(operation_id("/a-b//{x_y}/c.json"), "get_a_b_x_y_c_json");
    }

    #[test]
    fn yaml_reads_back_as_the_same_tree() {
        let tree = json!({
            "200": {"pattern": PATH_SEGMENT_PATTERN, "n": 1, "f": 0.5, "b": true, "none": null},
            "list": ["true", "-x", "a: b", "", "#c"],
        });
        let text = to_yaml(&tree);
        assert!(text.contains("\"200\":"), "a numeric key stays a string: {text}");
        let parsed = YamlLoader::load_from_str(&text).unwrap();
        assert_eq!(parsed, [yaml(&tree)]);
    }
}
