//! The `config` target: arbitrary YAML through what `fanout check` does — read (with
//! `${VAR}` substitution), validate, compile the plan, print it — and what `fanout openapi`
//! prints. Invariants: no panic; an invalid config gives errors that each name their key path
//! (only a file that cannot be read as a mapping at all gets one error for the whole file), and
//! no error shows the value of an environment variable the file refers to; the OpenAPI YAML
//! reads back as the same document.

use gateway::config;
use gateway::openapi;
use gateway::reload::Candidate;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::LazyLock;
use yaml_rust2::{Yaml, YamlLoader};

/// A value only reachable through `${SECRET}`: it must never appear in an error.
const SECRET: &str = "s3cr3t-Xq9vLw";

/// The environment the config is loaded with.
static ENV: LazyLock<HashMap<String, String>> = LazyLock::new(|| {
    [("SECRET", SECRET), ("HOST", "127.0.0.1:7101"), ("FANOUT__TELEMETRY__LOG_LEVEL", "warn")]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
});

/// Loads `data` as a config file and checks the invariants.
pub fn config(data: &[u8]) {
    // A config file that is not UTF-8 cannot be read at all.
    let Ok(yaml) = std::str::from_utf8(data) else { return };
    match config::load_str(yaml, "fuzz.yaml", &ENV).and_then(Candidate::new) {
        Ok(candidate) => {
            assert!(candidate.plan.describe().starts_with("server: listen "));
            let document = openapi::document(&candidate.plan);
            let text = openapi::to_yaml(&document);
            let read = YamlLoader::load_from_str(&text);
            let read = read
                .unwrap_or_else(|e| panic!("`fanout openapi` wrote YAML that does not parse ({e}):\n{text}"));
            assert!(
                matches!(read.as_slice(), [one] if same(one, &document)),
                "`fanout openapi` YAML reads back differently:\n{text}"
            );
        }
        Err(errors) => {
            assert!(!errors.is_empty(), "rejected without an error");
            let whole_file = errors.0.len() == 1;
            for error in &errors.0 {
                assert!(!error.message.is_empty(), "an error without a message: {error:?}");
                assert!(whole_file || !error.path.is_empty(), "an error without a key path: {errors}");
            }
            if !yaml.contains(SECRET) {
                assert!(!errors.to_string().contains(SECRET), "an error shows ${{SECRET}}'s value: {errors}");
            }
        }
    }
}

/// True when the YAML read back is the JSON document it was written from.
fn same(yaml: &Yaml, json: &Value) -> bool {
    match (yaml, json) {
        (Yaml::Null, Value::Null) => true,
        (Yaml::Boolean(a), Value::Bool(b)) => a == b,
        (Yaml::Integer(a), Value::Number(b)) => b.as_i64() == Some(*a),
        (Yaml::Real(a), Value::Number(b)) => a.parse::<f64>().ok() == b.as_f64(),
        (Yaml::String(a), Value::String(b)) => a == b,
        (Yaml::Array(a), Value::Array(b)) => a.len() == b.len() && a.iter().zip(b).all(|(a, b)| same(a, b)),
        (Yaml::Hash(a), Value::Object(b)) => {
            a.len() == b.len()
                && a.iter().zip(b).all(|((ka, a), (kb, b))| ka.as_str() == Some(kb.as_str()) && same(a, b))
        }
        _ => false,
    }
}
