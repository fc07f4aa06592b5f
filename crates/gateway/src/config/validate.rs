//! Typing and checking the configuration tree: from the file's types ([`super::raw`]) to the
//! validated ones ([`super::settings`]). Each section, backend, endpoint and call is
//! deserialised on its own, and every value is checked, so one run reports *every* mistake with
//! its key path. No I/O happens here.

use super::defaults;
use super::error::ConfigErrors;
use super::raw::{
    Merge, OnElementError, RawBackend, RawCall, RawCors, RawEndpoint, RawServer, RawState, RawTelemetry, Text,
};
use super::settings::{
    BackendConfig, CallConfig, CorsSettings, EndpointConfig, ServerSettings, Settings, TelemetrySettings,
};
use super::units::{parse_duration, parse_size};
use compose::{Cycle, Graph, Names, Shape, Template, names};
use downstream::BackendSettings;
use http::{HeaderMap, HeaderName, HeaderValue, Uri};
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};
use std::net::SocketAddr;
use std::time::Duration;

/// The largest value accepted for counts such as `max_in_flight`.
const MAX_COUNT: usize = 10_000_000;

const TOP_LEVEL_KEYS: [&str; 5] = ["server", "telemetry", "state", "backends", "endpoints"];

/// Hop-by-hop headers (RFC 9110 §7.6.1 and common non-standard ones): never forwarded.
pub const HOP_BY_HOP: [&str; 9] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// Headers that may not be listed in `forward_headers`, and why.
const NOT_FORWARDABLE: [(&str, &str); 8] = [
    ("traceparent", "is passed on by the gateway itself (checked, and replaced when the request is traced)"),
    ("tracestate", "is passed on by the gateway itself (checked, and replaced when the request is traced)"),
    ("host", "is set by the gateway itself (the backend's own host)"),
    ("content-length", "is set by the gateway itself (backend calls have no body)"),
    ("x-request-id", "is set by the gateway itself (the client's id, if valid, is already passed on)"),
    (
        "accept-encoding",
        "would let a client ask backends for compressed bodies, which the gateway never decompresses: every call would fail with invalid_body (a required one: 502)",
    ),
    (
        "range",
        "would let a client ask backends for part of a body, which is not valid JSON: calls would fail with invalid_body",
    ),
    ("http2-settings", "belongs to one connection's HTTP/2 upgrade and is never forwarded"),
];

/// Types and checks the whole tree; returns every problem found.
pub fn validate(tree: Value) -> Result<Settings, ConfigErrors> {
    let mut errors = ConfigErrors::default();
    let Value::Object(mut top) = tree else {
        errors
            .push("", "the config must be a mapping with keys server, telemetry, state, backends, endpoints");
        return Err(errors);
    };
    for key in top.keys().filter(|k| !TOP_LEVEL_KEYS.contains(&k.as_str())) {
        // An empty key (`: x`, or a YAML null key) still gets a visible key path.
        let path = if key.is_empty() { "\"\"".to_owned() } else { key.clone() };
        errors.push(path, format!("unknown key (expected one of: {})", TOP_LEVEL_KEYS.join(", ")));
    }
    let server = optional::<RawServer>(top.remove("server"), "server", &mut errors);
    let server = server_settings(server, &mut errors);
    let telemetry = optional::<RawTelemetry>(top.remove("telemetry"), "telemetry", &mut errors);
    let telemetry = telemetry_settings(telemetry, &mut errors);
    let state = optional::<RawState>(top.remove("state"), "state", &mut errors);
    let state = state::state_settings(state, &mut errors);
    let (backend_names, backends) = backends(top.remove("backends"), &mut errors);
    for (name, backend) in backend_names.iter().zip(&backends) {
        let shared =
            backend.as_ref().and_then(|b| b.settings.cache.as_ref()).is_some_and(|cache| cache.shared);
        if shared && state.redis.is_none() {
            errors.push(
                format!("backends.{name}.cache.shared"),
                "needs state.redis: the shared tier lives there (or set shared: false)",
            );
        }
    }
    let endpoints = endpoints(top.remove("endpoints"), &server, &backend_names, &backends, &mut errors);
    let router = route_table(&endpoints, &mut errors);
    let endpoints = endpoints.into_iter().map(|(_, e)| e).collect();
    // Calls hold indexes into `backends`: only a complete list keeps them aligned (a missing
    // backend always comes with an error already recorded).
    match backends.into_iter().collect::<Option<Vec<_>>>() {
        Some(backends) => {
            errors.into_result(Settings { server, telemetry, state, backends, endpoints, router })
        }
        None => Err(errors),
    }
}

/// Deserialises one unit at `path`; an empty (null) unit is an error.
fn typed<T: DeserializeOwned>(value: Value, path: &str, errors: &mut ConfigErrors) -> Option<T> {
    if value.is_null() {
        errors.push(path, "is empty: settings are required here");
        return None;
    }
    match serde_path_to_error::deserialize(value) {
        Ok(typed) => Some(typed),
        Err(e) => {
            let inner = e.path().to_string();
            let full = match inner.as_str() {
                "." => path.to_owned(),
                _ if inner.starts_with('[') => format!("{path}{inner}"),
                _ => format!("{path}.{inner}"),
            };
            errors.push(full, e.into_inner().to_string());
            None
        }
    }
}

/// An optional section: absent or empty means all defaults.
fn optional<T: DeserializeOwned + Default>(value: Option<Value>, path: &str, errors: &mut ConfigErrors) -> T {
    value.filter(|v| !v.is_null()).and_then(|v| typed(v, path, errors)).unwrap_or_default()
}

fn server_settings(raw: RawServer, errors: &mut ConfigErrors) -> ServerSettings {
    let mut c = Checker { errors, prefix: "server" };
    let listen = c.addr("listen", raw.listen, defaults::LISTEN);
    let admin_listen = c.addr("admin_listen", raw.admin_listen, defaults::ADMIN_LISTEN);
    if listen == admin_listen && listen.port() != 0 {
        c.error(
            "admin_listen",
            "must differ from server.listen (admin endpoints are never on the public port)",
        );
    }
    ServerSettings {
        listen,
        admin_listen,
        request_timeout: c.duration("request_timeout", raw.request_timeout, defaults::REQUEST_TIMEOUT),
        shutdown_grace: c.duration("shutdown_grace", raw.shutdown_grace, defaults::SHUTDOWN_GRACE),
        header_read_timeout: c.duration(
            "header_read_timeout",
            raw.header_read_timeout,
            defaults::HEADER_READ_TIMEOUT,
        ),
        keep_alive_timeout: c.duration(
            "keep_alive_timeout",
            raw.keep_alive_timeout,
            defaults::KEEP_ALIVE_TIMEOUT,
        ),
        max_connection_age: c.duration_or_off("max_connection_age", raw.max_connection_age, None),
        max_request_body: c.size("max_request_body", raw.max_request_body, defaults::MAX_REQUEST_BODY),
        max_in_flight: c.count("max_in_flight", raw.max_in_flight, defaults::MAX_IN_FLIGHT),
        max_connections: c.count("max_connections", raw.max_connections, defaults::MAX_CONNECTIONS),
        max_response_body: c.size("max_response_body", raw.max_response_body, defaults::MAX_RESPONSE_BODY),
        admin_max_connections: c.count(
            "admin_max_connections",
            raw.admin_max_connections,
            defaults::ADMIN_MAX_CONNECTIONS,
        ),
        cors: raw.cors.map(|cors| cors_settings(cors, &mut c)),
        config_poll: c.duration_or_off("config_poll", raw.config_poll, Some(defaults::CONFIG_POLL)),
        runtime: raw.runtime.unwrap_or_default(),
        deadline_header: raw.deadline_header.and_then(|Text(name)| c.header_name("deadline_header", &name)),
        rate_limit: raw.rate_limit.map(|limit| rate_limit::rate_limit(&mut c, limit)),
        trusted_proxies: rate_limit::trusted_proxies(&mut c, raw.trusted_proxies.unwrap_or_default()),
    }
}

fn cors_settings(raw: RawCors, c: &mut Checker<'_>) -> CorsSettings {
    if raw.allow_origins.is_empty() {
        c.error(
            "cors.allow_origins",
            "list the origins allowed (\"https://shop.example.com\"), or \"*\" for any",
        );
    }
    let any = raw.allow_origins.iter().any(|o| o == "*");
    if any && raw.allow_origins.len() > 1 {
        c.error("cors.allow_origins", "\"*\" allows every origin: list it alone");
    }
    let mut origins = Vec::new();
    for (i, origin) in raw.allow_origins.iter().enumerate().filter(|(_, o)| *o != "*") {
        match origin_value(origin) {
            Ok(value) => origins.push(value),
            Err(why) => c.error(&format!("cors.allow_origins[{i}]"), format!("{origin:?} {why}")),
        }
    }
    let allow_headers = raw
        .allow_headers
        .iter()
        .enumerate()
        .filter_map(|(i, name)| match HeaderName::from_bytes(name.as_bytes()) {
            Ok(header) => Some(header),
            Err(_) => {
                c.error(&format!("cors.allow_headers[{i}]"), format!("invalid header name {name:?}"));
                None
            }
        })
        .collect();
    CorsSettings {
        allow_origins: (!any).then_some(origins),
        allow_headers,
        max_age: c.duration("cors.max_age", raw.max_age, defaults::CORS_MAX_AGE),
    }
}

/// An origin as browsers send it: `scheme://host[:port]`, nothing more.
fn origin_value(origin: &str) -> Result<HeaderValue, &'static str> {
    let uri: Uri = origin.parse().map_err(|_| "is not an origin (write e.g. https://shop.example.com)")?;
    let bare = uri.path_and_query().is_none_or(|pq| pq.as_str() == "/") && !origin.ends_with('/');
    if !matches!(uri.scheme_str(), Some("http" | "https")) || uri.host().is_none() || !bare {
        return Err(
            "is not an origin: write scheme://host[:port] with no path (e.g. https://shop.example.com)",
        );
    }
    HeaderValue::from_str(origin).map_err(|_| "is not a valid header value")
}

fn telemetry_settings(raw: RawTelemetry, errors: &mut ConfigErrors) -> TelemetrySettings {
    let stall_warning = Checker { errors, prefix: "telemetry" }.duration(
        "stall_warning",
        raw.stall_warning,
        defaults::STALL_WARNING,
    );
    let otlp_endpoint = raw.otlp_endpoint.map(|Text(url)| {
        let valid = url
            .parse::<Uri>()
            .is_ok_and(|uri| matches!(uri.scheme_str(), Some("http" | "https")) && uri.host().is_some());
        if !valid {
            errors.push(
                "telemetry.otlp_endpoint",
                format!("invalid URL {:?} (write e.g. http://otel-collector:4318)", shown_url(&url)),
            );
        }
        url
    });
    let sampling_ratio = match raw.sampling_ratio {
        None => 1.0,
        Some(Text(text)) => match text.trim().parse::<f64>() {
            Ok(ratio) if (0.0..=1.0).contains(&ratio) => ratio,
            _ => {
                errors.push("telemetry.sampling_ratio", format!("{text:?} must be a number from 0 to 1"));
                1.0
            }
        },
    };
    let log_level = raw.log_level.map_or_else(|| defaults::LOG_LEVEL.to_owned(), |t| t.0);
    if let Err(e) = tracing_subscriber::EnvFilter::builder().parse(&log_level) {
        errors.push("telemetry.log_level", format!("invalid filter {log_level:?}: {e}"));
    }
    TelemetrySettings {
        log_format: raw.log_format.unwrap_or_default(),
        log_level,
        metrics: raw.metrics.is_none_or(|flag| flag.0),
        stall_warning,
        debug_endpoints: raw.debug_endpoints.is_some_and(|flag| flag.0),
        otlp_endpoint,
        sampling_ratio,
        trust_client_sampling: raw.trust_client_sampling.is_some_and(|flag| flag.0),
    }
}

/// Returns every backend name (so calls to a backend with a bad field do not also report
/// "unknown backend") and the backends that validated.
fn backends(value: Option<Value>, errors: &mut ConfigErrors) -> (Vec<String>, Vec<Option<BackendConfig>>) {
    let Some(map) = mapping(value, "backends", errors) else {
        return (Vec::new(), Vec::new());
    };
    if map.is_empty() {
        errors.push("backends", "at least one backend is required");
    }
    let mut names = Vec::new();
    let mut configs = Vec::new();
    for (name, value) in map {
        let path = format!("backends.{name}");
        check_name(&path, &name, "backend", errors);
        let config = typed::<RawBackend>(value, &path, errors).map(|raw| backend(&path, &name, raw, errors));
        names.push(name);
        configs.push(config);
    }
    (names, configs)
}

fn backend(path: &str, name: &str, raw: RawBackend, errors: &mut ConfigErrors) -> BackendConfig {
    let mut c = Checker { errors, prefix: path };
    let base_url = c.base_url(raw.url);
    let timeout = c.duration("timeout", raw.timeout, defaults::BACKEND_TIMEOUT);
    let connect_timeout = raw.connect_timeout.map_or(timeout, |t| c.duration("connect_timeout", Some(t), ""));
    let mut headers = HeaderMap::new();
    for (key, value) in raw.headers {
        let header_path = format!("headers.{key}");
        if let Some(header) = c.header_name(&header_path, &key) {
            match HeaderValue::from_str(&value.0) {
                Ok(v) => {
                    headers.insert(header, v);
                }
                Err(_) => c.error(&header_path, "invalid header value (control characters are not allowed)"),
            }
        }
    }
    let retry = raw.retry.map(|retry| policies::retry(&mut c, retry));
    let circuit_breaker = raw
        .circuit_breaker
        .map(|breaker| policies::circuit_breaker(&mut c, breaker, retry.as_ref().map(|r| &r.on)));
    let settings = BackendSettings {
        name: name.to_owned(),
        base_url,
        headers,
        max_response_body: c.size(
            "max_response_body",
            raw.max_response_body,
            defaults::BACKEND_MAX_RESPONSE_BODY,
        ),
        http2: raw.http2.0,
        connect_timeout,
        max_idle_connections: c.count(
            "max_idle_connections",
            raw.max_idle_connections,
            defaults::MAX_IDLE_CONNECTIONS,
        ),
        ca_file: raw.ca_file.map(|Text(file)| file.into()),
        max_in_flight: c.count("max_in_flight", raw.max_in_flight, defaults::BACKEND_MAX_IN_FLIGHT),
        retry,
        circuit_breaker,
        hedge: raw.hedge.map(|hedge| policies::hedge(&mut c, hedge)),
        deadline_header: raw.deadline_header.and_then(|Text(name)| c.header_name("deadline_header", &name)),
        coalesce: raw.coalesce.0,
        cache: raw.cache.map(|cache| policies::cache(&mut c, cache)),
    };
    if settings.ca_file.is_some() && !settings.base_url.starts_with("https://") {
        c.error("ca_file", "only https:// backends use a ca_file");
    }
    BackendConfig { settings, timeout }
}

type Endpoints = Vec<(usize, EndpointConfig)>;

fn endpoints(
    value: Option<Value>,
    server: &ServerSettings,
    backend_names: &[String],
    backends: &[Option<BackendConfig>],
    errors: &mut ConfigErrors,
) -> Endpoints {
    let items = match value.filter(|v| !v.is_null()) {
        Some(Value::Array(items)) if !items.is_empty() => items,
        Some(Value::Array(_)) | None => {
            errors.push("endpoints", "at least one endpoint is required");
            return Vec::new();
        }
        Some(_) => {
            errors.push("endpoints", "must be a list of endpoints");
            return Vec::new();
        }
    };
    let mut out = Vec::new();
    for (i, item) in items.into_iter().enumerate() {
        let path = format!("endpoints[{i}]");
        if let Some(raw) = typed::<RawEndpoint>(item, &path, errors) {
            let ctx = EndpointContext { path: &path, merge: raw.merge, server, backend_names, backends };
            if let Some(endpoint) = endpoint(&ctx, raw, errors) {
                out.push((i, endpoint));
            }
        }
    }
    out
}

struct EndpointContext<'a> {
    path: &'a str,
    merge: Merge,
    server: &'a ServerSettings,
    backend_names: &'a [String],
    backends: &'a [Option<BackendConfig>],
}

fn endpoint(
    ctx: &EndpointContext<'_>,
    raw: RawEndpoint,
    errors: &mut ConfigErrors,
) -> Option<EndpointConfig> {
    let before = errors.0.len();
    let route_path = format!("{}.route", ctx.path);
    let params = match parse_route(&raw.route.0) {
        Ok(params) => params,
        Err(message) => {
            errors.push(&route_path, message);
            Vec::new()
        }
    };
    let mut c = Checker { errors, prefix: ctx.path };
    let default_timeout = humantime::format_duration(ctx.server.request_timeout).to_string();
    let timeout = c.duration("timeout", raw.timeout, &default_timeout);
    if timeout > ctx.server.request_timeout
        && !c.reported("timeout")
        && !c.errors.reported("server.request_timeout")
    {
        c.error("timeout", format!("{timeout:?} exceeds server.request_timeout ({default_timeout})"));
    }
    let forward_headers = c.forwardable_headers(&raw.forward_headers);
    for (i, name) in raw.forward_query.iter().enumerate() {
        if name.is_empty() {
            c.error(&format!("forward_query[{i}]"), "must not be empty");
        }
    }
    if raw.calls.is_empty() {
        c.error("calls", "at least one call is required");
    }
    let concurrency = c.count("concurrency", raw.concurrency, defaults::CONCURRENCY);
    let max_fanout = c.count("max_fanout", raw.max_fanout, defaults::MAX_FANOUT);
    let max_response_body = match raw.max_response_body {
        Some(size) => c.size("max_response_body", Some(size), ""),
        None => ctx.server.max_response_body,
    };
    let rate_limit = rate_limit::endpoint_rate_limit(&mut c, raw.rate_limit, ctx.server.rate_limit.as_ref());
    check_query_clashes(ctx.path, &raw.forward_query, &raw.calls, errors);
    let param_names: Vec<&str> = params.iter().map(String::as_str).collect();
    let call_names: Vec<String> = raw.calls.keys().cloned().collect();
    let call_names: Vec<&str> = call_names.iter().map(String::as_str).collect();
    let names = Names { params: &param_names, calls: &call_names };
    let mut calls = Vec::new();
    for (name, value) in raw.calls {
        let path = format!("{}.calls.{name}", ctx.path);
        check_name(&path, &name, "call", errors);
        if params.contains(&name) {
            errors.push(&path, format!("call name {name:?} clashes with the route parameter {{{name}}}"));
        }
        if let Some(raw_call) = typed::<RawCall>(value, &path, errors) {
            calls.extend(call(ctx, &path, name, raw_call, names, concurrency, errors));
        }
    }
    // Templates index calls by declared position: the graph is only meaningful (and only
    // checked) when every call is valid.
    let all_valid = calls.len() == call_names.len();
    let graph = match Graph::new(calls.iter().map(|c| c.template.dependencies()).collect()) {
        _ if !all_valid => Graph::default(),
        Ok(graph) => graph,
        Err(Cycle(cycle)) => {
            let named: Vec<&str> = cycle.iter().filter_map(|&i| call_names.get(i).copied()).collect();
            errors.push(
                format!("{}.calls", ctx.path),
                format!("dependency cycle: {} (each reads the next one's response)", named.join(" → ")),
            );
            Graph::default()
        }
    };
    (errors.0.len() == before).then(|| EndpointConfig {
        route: raw.route.0,
        params,
        timeout,
        forward_headers,
        forward_query: raw.forward_query,
        calls,
        graph,
        merge: raw.merge,
        max_fanout,
        max_response_body,
        rate_limit,
    })
}

fn call(
    ctx: &EndpointContext<'_>,
    path: &str,
    name: String,
    raw: RawCall,
    names: Names<'_>,
    default_concurrency: usize,
    errors: &mut ConfigErrors,
) -> Option<CallConfig> {
    let Some(backend) = ctx.backend_names.iter().position(|b| *b == raw.backend.0) else {
        let known = ctx.backend_names.join(", ");
        errors
            .push(format!("{path}.backend"), format!("unknown backend {:?} (known: {known})", raw.backend.0));
        return None;
    };
    let template = Template::parse(&raw.path.0, names)
        .map_err(|e| errors.push(format!("{path}.path"), format!("{:?}: {e}", raw.path.0)))
        .ok();
    let rename: Vec<(String, String)> = raw.rename.into_iter().collect();
    let shape = Shape::new(&raw.select, &raw.omit, &rename, raw.pick.as_deref())
        .map_err(|e| errors.push(path, e.to_string()))
        .ok();
    let backend_timeout = ctx.backends[backend].as_ref().map_or(Duration::from_secs(1), |b| b.timeout);
    let mut c = Checker { errors, prefix: path };
    let timeout = match raw.timeout {
        Some(t) => c.duration("timeout", Some(t), ""),
        None => backend_timeout,
    };
    let fans_out = template.as_ref().is_some_and(|t| t.fan_out().is_some());
    if fans_out && ctx.merge == Merge::Flat {
        c.error("path", "a call over a list returns a list, which merge: flat cannot merge into the root");
    }
    for (key, set) in
        [("concurrency", raw.concurrency.is_some()), ("on_element_error", raw.on_element_error.is_some())]
    {
        if set && template.is_some() && !fans_out {
            c.error(key, "only applies to a call over a list (a path with [*])");
        }
    }
    let concurrency = c.count("concurrency", raw.concurrency, default_concurrency);
    let forward_headers = raw.forward_headers.as_deref().map(|names| c.forwardable_headers(names));
    if raw.schema.as_ref().is_some_and(|schema| !schema.is_object() && !schema.is_boolean()) {
        c.error("schema", "must be a JSON Schema: a mapping such as {type: object, properties: {…}}");
    }
    Some(CallConfig {
        name,
        backend,
        path: raw.path.0,
        template: template?,
        timeout,
        required: raw.required.0,
        shape: shape?,
        concurrency,
        fail_on_element_error: raw.on_element_error == Some(OnElementError::Fail),
        schema: raw.schema,
        forward_headers,
    })
}

/// A forwarded query parameter must not also be set by a call's template: the client could
/// then override (or duplicate) a value the gateway chose.
fn check_query_clashes(
    path: &str,
    forward_query: &[String],
    calls: &indexmap::IndexMap<String, Value>,
    errors: &mut ConfigErrors,
) {
    for (i, name) in forward_query.iter().enumerate() {
        for (call, value) in calls {
            let template = value.get("path").and_then(Value::as_str).unwrap_or_default();
            let query = template.split_once('?').map_or("", |(_, q)| q);
            if query.split('&').any(|pair| pair.split('=').next() == Some(name.as_str())) {
                errors.push(
                    format!("{path}.forward_query[{i}]"),
                    format!("{name:?} is also set by calls.{call}.path; a client could override it"),
                );
            }
        }
    }
}

/// Parses `GET /api/page/{id}` and returns the parameter names in path order.
fn parse_route(route: &str) -> Result<Vec<String>, String> {
    let Some((method, path)) = route.split_once(' ') else {
        return Err(format!("{route:?} must be \"GET /path/{{param}}\""));
    };
    if method != "GET" {
        return Err(format!(
            "method {method:?} is not supported: endpoints aggregate reads, so routes are GET (HEAD is answered too)"
        ));
    }
    if !path.starts_with('/') {
        return Err(format!("path {path:?} must start with \"/\""));
    }
    let mut params: Vec<String> = Vec::new();
    for segment in path.split('/').skip(1) {
        if let Some(name) = segment.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
            if !names::is_param_name(name) {
                return Err(format!("invalid route parameter {{{name}}} (use letters, digits and _)"));
            }
            if params.iter().any(|p| p == name) {
                return Err(format!("route parameter {{{name}}} appears twice"));
            }
            params.push(name.to_owned());
        } else if segment.contains(['{', '}']) || segment == "." || segment == ".." {
            return Err(format!("path segment {segment:?} must be literal text or a whole {{param}}"));
        } else if !segment.bytes().all(|b| b.is_ascii_graphic() && !b"?#%\\".contains(&b)) {
            return Err(format!("path segment {segment:?} contains characters that need encoding"));
        }
    }
    Ok(params)
}

fn route_table(endpoints: &Endpoints, errors: &mut ConfigErrors) -> matchit::Router<usize> {
    let mut router = matchit::Router::new();
    for (position, (file_index, endpoint)) in endpoints.iter().enumerate() {
        let path = endpoint.route.split_once(' ').map_or("", |(_, p)| p);
        if let Err(e) = router.insert(path, position) {
            errors.push(
                format!("endpoints[{file_index}].route"),
                format!("{path:?} conflicts with another route: {e}"),
            );
        }
    }
    router
}

/// Names become JSON keys, span fields and `Server-Timing` tokens: keep them simple.
fn check_name(path: &str, name: &str, what: &str, errors: &mut ConfigErrors) {
    if what == "call" && names::RESERVED_CALL_NAMES.contains(&name) {
        errors.push(path, format!("call name {name:?} is reserved (a Server-Timing entry of the gateway)"));
        return;
    }
    if !names::is_call_name(name) {
        errors.push(
            path,
            format!("invalid {what} name {name:?}: use letters, digits, - and _ (not leading _)"),
        );
    }
}

fn mapping(value: Option<Value>, path: &str, errors: &mut ConfigErrors) -> Option<Map<String, Value>> {
    match value.filter(|v| !v.is_null()) {
        Some(Value::Object(map)) => Some(map),
        None => {
            errors.push(path, "is required");
            None
        }
        Some(_) => {
            errors.push(path, "must be a mapping of name to settings");
            None
        }
    }
}

/// `url` with the password of its user info (`user:password@`) shown as `***`.
pub fn shown_url(url: &str) -> std::borrow::Cow<'_, str> {
    let Some((scheme, rest)) = url.split_once("://") else { return url.into() };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    match authority.rsplit_once('@').and_then(|(info, host)| Some((info.split_once(':')?.0, host))) {
        Some((user, host)) => format!("{scheme}://{user}:***@{host}{}", &rest[authority.len()..]).into(),
        None => url.into(),
    }
}

/// Checks values of one section and records errors under its prefix.
struct Checker<'a> {
    errors: &'a mut ConfigErrors,
    prefix: &'a str,
}

impl Checker<'_> {
    fn error(&mut self, key: &str, message: impl Into<String>) {
        self.errors.push(self.path(key), message);
    }

    /// Whether a problem was recorded at `key` of this section.
    fn reported(&self, key: &str) -> bool {
        self.errors.reported(&self.path(key))
    }

    fn path(&self, key: &str) -> String {
        format!("{}.{key}", self.prefix)
    }

    fn duration(&mut self, key: &str, value: Option<Text>, default: &str) -> Duration {
        let text = value.map_or_else(|| default.to_owned(), |t| t.0);
        parse_duration(&text).unwrap_or_else(|e| {
            self.error(key, e);
            Duration::from_secs(1)
        })
    }

    /// A duration, or none when written `off` (or absent without a `default`).
    fn duration_or_off(&mut self, key: &str, value: Option<Text>, default: Option<&str>) -> Option<Duration> {
        let text = value.map(|t| t.0).or_else(|| default.map(str::to_owned))?;
        (text.trim() != "off").then(|| self.duration(key, Some(Text(text)), ""))
    }

    fn size(&mut self, key: &str, value: Option<Text>, default: &str) -> usize {
        let text = value.map_or_else(|| default.to_owned(), |t| t.0);
        parse_size(&text).unwrap_or_else(|e| {
            self.error(key, e);
            1
        })
    }

    /// A count from 1 to [`MAX_COUNT`].
    fn count(&mut self, key: &str, value: Option<Text>, default: usize) -> usize {
        let Some(Text(text)) = value else { return default };
        match text.trim().parse::<usize>() {
            Ok(n) if (1..=MAX_COUNT).contains(&n) => n,
            _ => {
                self.error(key, format!("{text:?} must be a whole number from 1 to {MAX_COUNT}"));
                default
            }
        }
    }

    fn addr(&mut self, key: &str, value: Option<Text>, default: &str) -> SocketAddr {
        let text = value.map_or_else(|| default.to_owned(), |t| t.0);
        text.parse().unwrap_or_else(|_| {
            self.error(key, format!("invalid address {text:?} (write IP:PORT, e.g. 0.0.0.0:8080)"));
            SocketAddr::from(([0, 0, 0, 0], 0))
        })
    }

    /// `http://host[:port][/prefix]`, returned without a trailing slash. Messages show the URL
    /// with any password hidden.
    fn base_url(&mut self, url: Text) -> String {
        let text = url.0;
        let shown = shown_url(&text);
        let uri = match text.parse::<Uri>() {
            Ok(uri) => uri,
            Err(e) => {
                self.error("url", format!("invalid URL {shown:?}: {e}"));
                return text;
            }
        };
        if !matches!(uri.scheme_str(), Some("http" | "https")) {
            self.error("url", format!("URL {shown:?} must start with http:// or https://"));
        }
        if uri.authority().is_none_or(|a| a.host().is_empty() || a.as_str().contains('@')) {
            self.error("url", format!("URL {shown:?} needs a host and no user info"));
        } else if let Some(authority) = uri.authority() {
            let after_host = authority.as_str().rsplit_once(']').map_or(authority.as_str(), |(_, rest)| rest);
            let port = after_host.split_once(':').map(|(_, port)| port.parse::<u16>());
            if matches!(port, Some(Err(_) | Ok(0))) {
                self.error("url", format!("URL {shown:?} has an invalid port"));
            }
        }
        if uri.query().is_some() || text.contains('#') {
            self.error("url", format!("URL {shown:?} must not have a query or fragment"));
        }
        text.trim_end_matches('/').to_owned()
    }

    fn header_name(&mut self, key: &str, name: &str) -> Option<HeaderName> {
        match HeaderName::from_bytes(name.as_bytes()) {
            Ok(header) if HOP_BY_HOP.contains(&header.as_str()) => {
                self.error(key, format!("{name:?} is a hop-by-hop header and is never forwarded"));
                None
            }
            Ok(header) => Some(header),
            Err(_) => {
                self.error(key, format!("invalid header name {name:?}"));
                None
            }
        }
    }

    /// A `forward_headers` list; each name that cannot be forwarded is an error saying why.
    fn forwardable_headers(&mut self, names: &[String]) -> Vec<HeaderName> {
        names
            .iter()
            .enumerate()
            .filter_map(|(i, name)| self.forwardable_header(&format!("forward_headers[{i}]"), name))
            .collect()
    }

    fn forwardable_header(&mut self, key: &str, name: &str) -> Option<HeaderName> {
        let header = self.header_name(key, name)?;
        if name.contains('_') {
            self.error(key, format!("{name:?}: header names with \"_\" are never forwarded (proxies treat them inconsistently)"));
            return None;
        }
        if let Some((_, why)) = NOT_FORWARDABLE.iter().find(|(owned, _)| *owned == header.as_str()) {
            self.error(key, format!("{name:?} cannot be forwarded: it {why}"));
            return None;
        }
        Some(header)
    }
}

mod policies;
mod rate_limit;
mod state;
#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
