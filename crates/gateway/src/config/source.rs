//! Reading configuration: the YAML file plus `FANOUT__SECTION__KEY` environment overrides (via
//! the `config` crate), then `${VAR}` substitution in every string value. The result is an
//! untyped JSON tree; typing and checking happen in `validate`. The values filled in are
//! remembered ([`Filled`]) so that no error shows them: they are often secrets.

use super::error::ConfigErrors;
use serde_json::Value;
use std::collections::HashMap;
use std::path::Path;

/// The `${VAR}` values a config was filled with, as (name, value).
#[derive(Debug, Clone, Default)]
pub struct Filled(Vec<(String, String)>);

impl Filled {
    /// Writes every filled-in value in `errors` as its `${VAR}` again (longest first, so a
    /// value that contains another is hidden whole).
    pub fn hide(&self, mut errors: ConfigErrors) -> ConfigErrors {
        let mut filled: Vec<&(String, String)> =
            self.0.iter().filter(|(_, value)| !value.is_empty()).collect();
        filled.sort_by_key(|(_, value)| std::cmp::Reverse(value.len()));
        for error in &mut errors.0 {
            for (name, value) in &filled {
                if error.message.contains(value.as_str()) {
                    error.message = error.message.replace(value.as_str(), &format!("${{{name}}}"));
                }
            }
        }
        errors
    }
}

/// Reads `path` and overlays the `FANOUT__…` variables of `env`; `${VAR}` is filled from `env`.
pub fn read(path: &Path, env: &HashMap<String, String>) -> Result<(Value, Filled), ConfigErrors> {
    if !path.is_file() {
        let mut errors = ConfigErrors::default();
        errors.push("", format!("cannot read config file {}: not a readable file", path.display()));
        return Err(errors);
    }
    let file = config::File::from(path).format(config::FileFormat::Yaml);
    build(file, &path.display().to_string(), env)
}

/// [`read`] for YAML text instead of a file (`origin` names it in errors).
pub fn read_str(
    yaml: &str,
    origin: &str,
    env: &HashMap<String, String>,
) -> Result<(Value, Filled), ConfigErrors> {
    build(config::File::from_str(yaml, config::FileFormat::Yaml), origin, env)
}

/// Loads `file` under the environment overrides, then fills in `${VAR}`.
fn build(
    file: impl config::Source + Send + Sync + 'static,
    origin: &str,
    env: &HashMap<String, String>,
) -> Result<(Value, Filled), ConfigErrors> {
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
    let mut tree = match built {
        Ok(tree) => tree,
        Err(e) => {
            errors.push("", format!("cannot load {origin}: {e}"));
            return Err(errors);
        }
    };
    let mut filled = Filled::default();
    substitute(&mut tree, String::new(), env, &mut filled, &mut errors);
    errors.into_result((tree, filled))
}

/// Replaces `${VAR}` in every string of `value`, noting each value used in `filled`; an unset
/// variable is an error at its key.
fn substitute(
    value: &mut Value,
    path: String,
    env: &HashMap<String, String>,
    filled: &mut Filled,
    errors: &mut ConfigErrors,
) {
    match value {
        Value::String(text) if text.contains("${") => match expand(text, env, filled) {
            Ok(expanded) => *text = expanded,
            Err(message) => errors.push(path, message),
        },
        Value::Array(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                substitute(item, format!("{path}[{i}]"), env, filled, errors);
            }
        }
        Value::Object(map) => {
            for (key, item) in map.iter_mut() {
                let child = if path.is_empty() { key.clone() } else { format!("{path}.{key}") };
                substitute(item, child, env, filled, errors);
            }
        }
        _ => {}
    }
}

/// Expands `${VAR}` occurrences in `text`, noting each value used in `filled`.
fn expand(text: &str, env: &HashMap<String, String>, filled: &mut Filled) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
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
                if !filled.0.iter().any(|(seen, _)| seen == name) {
                    filled.0.push((name.to_owned(), value.clone()));
                }
            }
            None => return Err(format!("environment variable {name} is not set (used as ${{{name}}})")),
        }
        rest = &rest[start + 3 + len..];
    }
    out.push_str(rest);
    Ok(out)
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
        let mut filled = Filled::default();
        assert_eq!(expand("${KEY}", &vars, &mut filled).unwrap(), "s3cret");
        assert_eq!(
            expand("http://${HOST}:80/${KEY}x", &vars, &mut filled).unwrap(),
            "http://users:80/s3cretx"
        );
        assert_eq!(expand("plain $ text", &vars, &mut filled).unwrap(), "plain $ text");
        assert!(expand("${MISSING}", &vars, &mut filled).unwrap_err().contains("MISSING is not set"));
        assert!(expand("${KEY", &vars, &mut filled).unwrap_err().contains("unterminated"));
        let mut errors = ConfigErrors::default();
        errors.push("a", "URL \"http://users:80/s3cretx\" is bad; s3cret again");
        assert_eq!(
            filled.hide(errors).0[0].message,
            "URL \"http://${HOST}:80/${KEY}x\" is bad; ${KEY} again"
        );
    }

    #[test]
    fn substitution_errors_name_the_key() {
        let mut tree =
            json!({"backends": {"users": {"headers": {"x-api-key": "${NOPE}"}}}, "l": ["${NOPE}"]});
        let mut errors = ConfigErrors::default();
        substitute(&mut tree, String::new(), &env(&[]), &mut Filled::default(), &mut errors);
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
        let (tree, filled) = read(&file, &vars).unwrap();
        assert_eq!(filled.0, [("U".to_owned(), "http://u".to_owned())]);
        assert_eq!(tree["server"]["listen"], "127.0.0.1:2");
        assert_eq!(tree["backends"]["Users"]["url"], "http://u", "file keys keep their case");
        assert!(tree.get("port").is_none(), "single-underscore variables are not overrides");
        std::fs::remove_dir_all(&dir).unwrap();
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
