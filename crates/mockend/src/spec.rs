//! Declarative description of simulated backends: the serde types read from
//! YAML and the builders used to construct the same values in code.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use serde::Deserialize;
use serde::de::value::MapAccessDeserializer;
use serde::de::{self, Deserializer, MapAccess, Visitor};

/// One route of a simulated service.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteSpec {
    /// matchit 0.9 pattern, e.g. `/products/{id}` (`{name}` matches one
    /// segment, `{*name}` the rest of the path).
    pub path: String,
    /// Delay applied before answering; zero by default.
    #[serde(default)]
    pub latency: Latency,
    /// A slow tail: some requests wait this instead of `latency`.
    #[serde(default)]
    pub tail: Option<Tail>,
    /// Status of a normal answer; 200 by default.
    #[serde(default = "default_status")]
    pub status: u16,
    /// JSON answered by a normal response; `{}` by default. String values
    /// containing `{name}` receive the percent-decoded route parameter `name`.
    #[serde(default = "default_body")]
    pub body: serde_json::Value,
    /// When set, replaces `body` by a valid JSON document of exactly this
    /// many bytes, e.g. `{"data":"xxxx…"}` (sizes below 2 answer `{}`).
    #[serde(default)]
    pub body_size: Option<usize>,
    /// Fraction (0.0..=1.0) of requests answered with `error_status` and
    /// `{"error":"simulated"}` instead of the configured behavior.
    #[serde(default)]
    pub error_rate: f64,
    /// Status of simulated errors; 500 by default.
    #[serde(default = "default_error_status")]
    pub error_status: u16,
    /// The first this many requests to the route are answered with `error_status` (after
    /// their latency), whatever `error_rate` says: a backend that is down, then comes back.
    #[serde(default)]
    pub fail_first: u64,
    /// A time the route is down: requests arriving in it are answered with `error_status`.
    #[serde(default)]
    pub outage: Option<Outage>,
    /// How the route answers; `normal` by default.
    #[serde(default)]
    pub behavior: Behavior,
    /// A `Location` header for normal answers (e.g. with status 302, to test redirects).
    #[serde(default)]
    pub location: Option<String>,
    /// More headers of normal answers (e.g. `cache-control: max-age=60`, `vary: accept-language`).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
}

/// How a route answers once its latency has elapsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Behavior {
    /// Answer `status` with the JSON body.
    #[default]
    Normal,
    /// Never answer; the request stays pending until the client goes away.
    Hang,
    /// Abort the TCP connection with an RST and no response (over HTTP/2
    /// this ends every stream of the connection).
    Reset,
    /// Answer 200 `application/json` with a body that is not JSON.
    Garbage,
}

/// Delay before a route answers.
///
/// In YAML either a humantime string (`"20ms"`, fixed) or a map
/// `{min: "5ms", max: "25ms"}` (uniformly distributed jitter).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Latency {
    /// Always the same delay.
    Fixed(Duration),
    /// A delay drawn uniformly from `min..=max` for every request.
    Jitter {
        /// Shortest delay.
        min: Duration,
        /// Longest delay.
        max: Duration,
    },
}

/// The slow tail of a route's latency: the first `first` requests, and a fraction `rate` of
/// the others, wait `latency` instead of the route's own.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tail {
    /// Fraction (0.0..=1.0) of requests that are slow.
    #[serde(default)]
    pub rate: f64,
    /// How many requests, from the first, are slow whatever `rate` says.
    #[serde(default)]
    pub first: u64,
    /// Their delay.
    pub latency: Latency,
}

/// A stretch of time, counted from the service's start, in which a route answers
/// `error_status` to every request (or, with `hang`, none): a backend that goes down, then
/// comes back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Outage {
    /// When it starts, after the service started.
    #[serde(deserialize_with = "human_duration")]
    pub after: Duration,
    /// How long it lasts.
    #[serde(deserialize_with = "human_duration", rename = "for")]
    pub lasts: Duration,
    /// Requests in it are never answered, instead of answered `error_status`.
    #[serde(default)]
    pub hang: bool,
}

/// One simulated service: where it listens and what it answers.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceSpec {
    /// Address to bind, e.g. `127.0.0.1:7101`; `127.0.0.1:0` when absent.
    #[serde(default)]
    pub listen: Option<String>,
    /// Routes, matched by path regardless of the request method.
    pub routes: Vec<RouteSpec>,
}

/// The YAML file read by the `mockend` binary: services by name.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DemoFile {
    /// Every service to start, keyed by its display name.
    pub services: BTreeMap<String, ServiceSpec>,
}

fn default_status() -> u16 {
    200
}

fn default_error_status() -> u16 {
    500
}

fn default_body() -> serde_json::Value {
    serde_json::Value::Object(serde_json::Map::new())
}

impl RouteSpec {
    /// A normal route answering `200` with an empty JSON object.
    pub fn new(path: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            latency: Latency::default(),
            tail: None,
            status: default_status(),
            body: default_body(),
            body_size: None,
            error_rate: 0.0,
            error_status: default_error_status(),
            fail_first: 0,
            outage: None,
            behavior: Behavior::Normal,
            location: None,
            headers: BTreeMap::new(),
        }
    }

    /// A normal route answering `200` with `body`.
    pub fn json(path: impl Into<String>, body: serde_json::Value) -> Self {
        Self::new(path).body(body)
    }

    /// Replaces the JSON body.
    #[must_use]
    pub fn body(mut self, body: serde_json::Value) -> Self {
        self.body = body;
        self
    }

    /// Sets a fixed latency.
    #[must_use]
    pub fn latency(mut self, latency: Duration) -> Self {
        self.latency = Latency::Fixed(latency);
        self
    }

    /// Sets a latency drawn uniformly from `min..=max`.
    #[must_use]
    pub fn jitter(mut self, min: Duration, max: Duration) -> Self {
        self.latency = Latency::Jitter { min, max };
        self
    }

    /// Makes the first `first` requests and a fraction `rate` of the others wait `latency`.
    #[must_use]
    pub fn tail(mut self, rate: f64, first: u64, latency: Duration) -> Self {
        self.tail = Some(Tail { rate, first, latency: Latency::Fixed(latency) });
        self
    }

    /// Sets the status of normal answers.
    #[must_use]
    pub fn status(mut self, status: u16) -> Self {
        self.status = status;
        self
    }

    /// Sets the behavior.
    #[must_use]
    pub fn behavior(mut self, behavior: Behavior) -> Self {
        self.behavior = behavior;
        self
    }

    /// Adds a header to normal answers.
    #[must_use]
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.insert(name.into(), value.into());
        self
    }

    /// Sets a `Location` header on normal answers.
    #[must_use]
    pub fn location(mut self, location: impl Into<String>) -> Self {
        self.location = Some(location.into());
        self
    }

    /// Answers a generated JSON document of exactly `bytes` bytes.
    #[must_use]
    pub fn body_size(mut self, bytes: usize) -> Self {
        self.body_size = Some(bytes);
        self
    }

    /// Answers a fraction `rate` of requests with `status` instead.
    #[must_use]
    pub fn error_rate(mut self, rate: f64, status: u16) -> Self {
        self.error_rate = rate;
        self.error_status = status;
        self
    }

    /// Answers every request arriving between `after` and `after + lasts` from the service's
    /// start with `status`.
    #[must_use]
    pub fn outage(mut self, after: Duration, lasts: Duration, status: u16) -> Self {
        self.outage = Some(Outage { after, lasts, hang: false });
        self.error_status = status;
        self
    }

    /// Never answers requests arriving from `after` the service's start for `lasts` (a backend
    /// that hangs, then comes back).
    #[must_use]
    pub fn hang_during(mut self, after: Duration, lasts: Duration) -> Self {
        self.outage = Some(Outage { after, lasts, hang: true });
        self
    }

    /// Answers the first `count` requests with `status` instead.
    #[must_use]
    pub fn fail_first(mut self, count: u64, status: u16) -> Self {
        self.fail_first = count;
        self.error_status = status;
        self
    }
}

impl ServiceSpec {
    /// A service on `127.0.0.1:0` with these routes.
    pub fn new(routes: Vec<RouteSpec>) -> Self {
        Self { listen: None, routes }
    }

    /// Binds `addr` instead of an ephemeral local port.
    #[must_use]
    pub fn listen(mut self, addr: impl Into<String>) -> Self {
        self.listen = Some(addr.into());
        self
    }
}

impl Default for Latency {
    fn default() -> Self {
        Self::Fixed(Duration::ZERO)
    }
}

impl<'de> Deserialize<'de> for Latency {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(LatencyVisitor)
    }
}

/// Accepts the two YAML forms of [`Latency`].
struct LatencyVisitor;

/// The map form of [`Latency`].
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JitterRepr {
    #[serde(deserialize_with = "human_duration")]
    min: Duration,
    #[serde(deserialize_with = "human_duration")]
    max: Duration,
}

impl<'de> Visitor<'de> for LatencyVisitor {
    type Value = Latency;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(r#"a duration such as "20ms" or a map {min: "5ms", max: "25ms"}"#)
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<Latency, E> {
        parse_duration(text).map(Latency::Fixed)
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Latency, A::Error> {
        let JitterRepr { min, max } = JitterRepr::deserialize(MapAccessDeserializer::new(map))?;
        Ok(Latency::Jitter { min, max })
    }
}

fn human_duration<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
    let text = String::deserialize(deserializer)?;
    parse_duration(&text)
}

fn parse_duration<E: de::Error>(text: &str) -> Result<Duration, E> {
    humantime::parse_duration(text).map_err(|err| E::custom(format_args!("invalid duration {text:?}: {err}")))
}
