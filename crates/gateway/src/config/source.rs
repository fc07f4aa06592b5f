//! Reading configuration: the YAML file plus `FANOUT__SECTION__KEY` environment overrides (via
//! the `config` crate), then `${VAR}` substitution in every string value. The result is an
//! untyped JSON tree as written and as filled in; typing and checking happen in `validate`.
//! Values filled from the environment are usually secrets, so [`Redactions`] puts the text as
//! written (`${USERS_API_KEY}`) back into any message that would show them.

use super::error::ConfigErrors;
use serde_json::Value;
use std::collections::HashMap;
use std::path::Path;

/// A config file as read.
#[derive(Debug)]
pub struct Read {
    /// The tree as written (with `FANOUT__…` overrides), `${VAR}` left as it is: what the
    /// version is computed from and reloads are compared on, so neither depends on a secret.
    pub written: Value,
    /// The tree with every `${VAR}` filled in: what is validated and served.
    pub filled: Value,
    /// How to hide the filled-in values in messages.
    pub redactions: Redactions,
}

/// Pairs of (text filled in from the environment, the text as written), longest first.
#[derive(Debug, Default)]
pub struct Redactions(Vec<(String, String)>);

/// Variable values shorter than this are not hidden on their own (a value such as `1` would
/// hide every `1` in a message); the whole value they were part of still is.
const SHORTEST_HIDDEN_VALUE: usize = 4;

impl Redactions {
    fn add(&mut self, filled: &str, written: &str) {
        if !filled.is_empty() && filled != written && !self.0.iter().any(|(f, _)| f == filled) {
            self.0.push((filled.to_owned(), written.to_owned()));
        }
    }

    /// `errors` with every filled-in value replaced by the text as written.
    pub fn apply(&self, mut errors: ConfigErrors) -> ConfigErrors {
        let mut pairs: Vec<&(String, String)> = self.0.iter().collect();
        pairs.sort_by_key(|(filled, _)| std::cmp::Reverse(filled.len()));
        for error in &mut errors.0 {
            for (filled, written) in &pairs {
                if error.message.contains(filled.as_str()) {
                    error.message = error.message.replace(filled.as_str(), written);
                }
            }
        }
        errors
    }
}

/// Reads `path` and overlays the `FANOUT__…` variables of `env`; `${VAR}` is filled from `env`.
pub fn read(path: &Path, env: &HashMap<String, String>) -> Result<Read, ConfigErrors> {
    if !path.is_file() {
        let mut errors = ConfigErrors::default();
        errors.push("", format!("cannot read config file {}: not a readable file", path.display()));
        return Err(errors);
    }
    let file = config::File::from(path).format(config::FileFormat::Yaml);
    build(file, &path.display().to_string(), env)
}

/// [`read`] for YAML text instead of a file (`origin` names it in errors).
pub fn read_str(yaml: &str, origin: &str, env: &HashMap<String, String>) -> Result<Read, ConfigErrors> {
    build(config::File::from_str(yaml, config::FileFormat::Yaml), origin, env)
}

/// Loads `file` under the environment overrides, then fills in `${VAR}`.
fn build(
    file: impl config::Source + Send + Sync + 'static,
    origin: &str,
    env: &HashMap<String, String>,
) -> Result<Read, ConfigErrors> {
    let mut errors = ConfigErrors::default();
    let built = config::Config::builder()
        .add_source(file)
        .add_source(
            config::Environment::with_prefix("FANOUT")
                .prefix_separator("__")
                .separator("__")
                .source(Some(env.clone().into_iter().collect())),
        )
        .build()
        .and_then(|c| c.try_deserialize::<Value>());
    let written = match built {
        Ok(tree) => tree,
        Err(e) => {
            errors.push("", format!("cannot load {origin}: {e}"));
            return Err(errors);
        }
    };
    let mut filled = written.clone();
    let mut redactions = Redactions::default();
    let mut fill = Fill { env, errors: &mut errors, redactions: &mut redactions };
    fill.substitute(&mut filled, String::new());
    errors.into_result(Read { written, filled, redactions })
}

/// `${VAR}` substitution over a tree, recording errors and what to redact.
struct Fill<'a> {
    env: &'a HashMap<String, String>,
    errors: &'a mut ConfigErrors,
    redactions: &'a mut Redactions,
}

impl Fill<'_> {
    /// Replaces `${VAR}` in every string of `value`; an unset variable is an error at its key.
    fn substitute(&mut self, value: &mut Value, path: String) {
        match value {
            Value::String(text) if text.contains("${") => match expand(text, self.env) {
                Ok((expanded, used)) => {
                    self.redactions.add(&expanded, text);
                    for name in used {
                        if let Some(secret) = self.env.get(name).filter(|v| v.len() >= SHORTEST_HIDDEN_VALUE)
                        {
                            self.redactions.add(secret, &format!("${{{name}}}"));
                        }
                    }
                    *text = expanded;
                }
                Err(message) => self.errors.push(path, message),
            },
            Value::Array(items) => {
                for (i, item) in items.iter_mut().enumerate() {
                    self.substitute(item, format!("{path}[{i}]"));
                }
            }
            Value::Object(map) => {
                for (key, item) in map.iter_mut() {
                    let child = if path.is_empty() { key.clone() } else { format!("{path}.{key}") };
                    self.substitute(item, child);
                }
            }
            _ => {}
        }
    }
}

/// Expands `${VAR}` occurrences in `text`; returns the result and the variables used.
fn expand<'t>(text: &'t str, env: &HashMap<String, String>) -> Result<(String, Vec<&'t str>), String> {
    let mut out = String::with_capacity(text.len());
    let mut used = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let Some(len) = rest[start + 2..].find('}') else {
            return Err(format!("unterminated \"${{\" in {text:?}"));
        };
        let name = &rest[start + 2..start + 2 + len];
        match env.get(name) {
            Some(value) => {
                out.push_str(value);
                used.push(name);
            }
            None => return Err(format!("environment variable {name} is not set (used as ${{{name}}})")),
        }
        rest = &rest[start + 3 + len..];
    }
    out.push_str(rest);
    Ok((out, used))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    #[test]
    fn expands_variables() {
        let vars = env(&[("KEY", "s3cret"), ("HOST", "users")]);
        assert_eq!(expand("${KEY}", &vars).unwrap(), ("s3cret".to_owned(), vec!["KEY"]));
        let (url, used) = expand("http://${HOST}:80/${KEY}x", &vars).unwrap();
        assert_eq!((url.as_str(), used), ("http://users:80/s3cretx", vec!["HOST", "KEY"]));
        assert_eq!(expand("plain $ text", &vars).unwrap().0, "plain $ text");
        assert!(expand("${MISSING}", &vars).unwrap_err().contains("MISSING is not set"));
        assert!(expand("${KEY", &vars).unwrap_err().contains("unterminated"));
    }

    #[test]
    fn substitution_errors_name_the_key() {
        let mut tree =
            json!({"backends": {"users": {"headers": {"x-api-key": "${NOPE}"}}}, "l": ["${NOPE}"]});
        let mut errors = ConfigErrors::default();
        let mut redactions = Redactions::default();
        Fill { env: &env(&[]), errors: &mut errors, redactions: &mut redactions }
            .substitute(&mut tree, String::new());
        let paths: Vec<_> = errors.0.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(paths, ["backends.users.headers.x-api-key", "l[0]"]);
    }

    #[test]
    fn reads_file_with_env_overrides() {
        let dir = std::env::temp_dir().join(format!("fanout-source-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("c.yaml");
        std::fs::write(&file, "server:\n  listen: 127.0.0.1:1\nbackends:\n  Users:\n    url: ${U}\n")
            .unwrap();
        let vars = env(&[("U", "http://u"), ("FANOUT__SERVER__LISTEN", "127.0.0.1:2"), ("FANOUT_PORT", "x")]);
        let Read { written, filled: tree, .. } = read(&file, &vars).unwrap();
        assert_eq!(written["backends"]["Users"]["url"], "${U}", "the tree as written keeps ${{VAR}}");
        assert_eq!(tree["server"]["listen"], "127.0.0.1:2");
        assert_eq!(tree["backends"]["Users"]["url"], "http://u", "file keys keep their case");
        assert!(tree.get("port").is_none(), "single-underscore variables are not overrides");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn redactions_put_the_written_text_back_in_messages() {
        let vars = env(&[("KEY", "s3cr3t-KEY-123"), ("PW", "hunter22"), ("ONE", "1")]);
        let mut tree = json!({"a": "${KEY}", "b": "http://u:${PW}@h:${ONE}/", "c": "plain"});
        let mut errors = ConfigErrors::default();
        let mut redactions = Redactions::default();
        Fill { env: &vars, errors: &mut errors, redactions: &mut redactions }
            .substitute(&mut tree, String::new());
        assert_eq!(tree["a"], "s3cr3t-KEY-123");
        let mut shown = ConfigErrors::default();
        shown.push("a", "invalid duration \"s3cr3t-KEY-123\"");
        shown.push("b", "URL \"http://u:hunter22@h:1/\" needs a host and no user info");
        shown.push("b", "port part hunter22@h is odd; 1 error");
        let shown = redactions.apply(shown).to_string();
        assert_eq!(
            shown,
            "a: invalid duration \"${KEY}\"\n\
             b: URL \"http://u:${PW}@h:${ONE}/\" needs a host and no user info\n\
             b: port part ${PW}@h is odd; 1 error"
        );
    }

    #[test]
    fn unreadable_and_malformed_files_are_errors() {
        let missing = read(Path::new("/nonexistent/fanout.yaml"), &env(&[])).unwrap_err();
        assert!(missing.to_string().contains("cannot read config file"));
        let dir = std::env::temp_dir().join(format!("fanout-bad-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("bad.yaml");
        std::fs::write(&file, "server: [unclosed\n").unwrap();
        assert!(read(&file, &env(&[])).unwrap_err().to_string().contains("cannot load"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
