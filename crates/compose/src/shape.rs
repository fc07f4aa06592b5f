//! Per-call response shaping configured by the user: `pick` a sub-value, `select` or `omit`
//! fields, `rename` top-level keys. Options are checked once at config load ([`Shape::new`]) and
//! applied in that order to each parsed response ([`Shape::apply`]).

use crate::path::{JsonPath, PathError, Segment};
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// The shaping of one call's response; the default shape changes nothing.
#[derive(Debug, Clone, Default)]
pub struct Shape {
    pick: Option<JsonPath>,
    select: Option<FieldTree>,
    omit: Option<FieldTree>,
    rename: Vec<(String, String)>,
}

/// A shaping option that cannot work; the message starts with the option at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ShapeError {
    /// A path does not parse (option, error).
    #[error("{0}: {1}")]
    BadPath(String, PathError),
    /// A path is empty (option).
    #[error("{0}: the path is empty")]
    EmptyPath(String),
    /// A `select` or `omit` path uses list indexes or `[*]` (option, path).
    #[error("{0}: {1:?} may only use field names (a.b.c)")]
    FieldsOnly(String, String),
    /// The `pick` path uses `[*]`.
    #[error("pick: {0:?} may not use [*] (only field names and list indexes)")]
    PickEach(String),
    /// A `rename` name is empty or holds `.`, `[` or `]`.
    #[error("rename: {0:?} must be a top-level field name")]
    NotTopLevel(String),
    /// A field appears twice as the source of a rename.
    #[error("rename: {0:?} is renamed twice")]
    RenamedTwice(String),
    /// Two renames give the same new name.
    #[error("rename: two fields are renamed to {0:?}")]
    SameTarget(String),
}

/// Field paths as a tree; a node without children stands for the whole field.
#[derive(Debug, Clone, Default)]
struct FieldTree {
    children: BTreeMap<Box<str>, FieldTree>,
}

impl Shape {
    /// Config-time construction; every error names which option is wrong. An empty `select` list
    /// means "not set" (keep every field), not "keep nothing".
    pub fn new(
        select: &[String],
        omit: &[String],
        rename: &[(String, String)],
        pick: Option<&str>,
    ) -> Result<Shape, ShapeError> {
        Ok(Shape {
            pick: pick.map(pick_path).transpose()?,
            select: field_tree("select", select)?,
            omit: field_tree("omit", omit)?,
            rename: rename_pairs(rename)?,
        })
    }

    /// True when no option is set (the gateway then splices the raw body without parsing).
    pub fn is_identity(&self) -> bool {
        self.pick.is_none() && self.select.is_none() && self.omit.is_none() && self.rename.is_empty()
    }

    /// Applies `pick`, then `select`, then `omit`, then `rename` to a parsed response. `Err` gives
    /// the reason when the shaping does not fit the value.
    pub fn apply(&self, value: Value) -> Result<Value, String> {
        let mut value = match &self.pick {
            Some(path) => pick(path, value)?,
            None => value,
        };
        if let Some(tree) = &self.select {
            value = Value::Object(select(tree, object("select", value)?));
        }
        if let Some(tree) = &self.omit {
            let mut map = object("omit", value)?;
            omit(tree, &mut map);
            value = Value::Object(map);
        }
        if !self.rename.is_empty() {
            value = Value::Object(rename(&self.rename, object("rename", value)?));
        }
        Ok(value)
    }
}

impl FieldTree {
    /// Adds a path; a path that covers a whole field absorbs any deeper path under it.
    fn insert(&mut self, fields: &[&str]) {
        let Some((first, rest)) = fields.split_first() else { return };
        let existed = self.children.contains_key(*first);
        let child = self.children.entry((*first).into()).or_default();
        if rest.is_empty() {
            child.children.clear();
        } else if !existed || !child.children.is_empty() {
            child.insert(rest);
        }
    }
}

/// Parses a non-empty path for `option` (e.g. `select[2]`).
fn parse(option: &str, text: &str) -> Result<JsonPath, ShapeError> {
    let path = JsonPath::parse(text).map_err(|error| ShapeError::BadPath(option.to_owned(), error))?;
    if path.is_empty() {
        return Err(ShapeError::EmptyPath(option.to_owned()));
    }
    Ok(path)
}

/// The `pick` path: fields and list indexes, no `[*]`.
fn pick_path(text: &str) -> Result<JsonPath, ShapeError> {
    let path = parse("pick", text)?;
    if path.each_count() > 0 {
        return Err(ShapeError::PickEach(text.to_owned()));
    }
    Ok(path)
}

/// The `select` or `omit` paths as a tree; `None` when the list is empty.
fn field_tree(option: &str, texts: &[String]) -> Result<Option<FieldTree>, ShapeError> {
    if texts.is_empty() {
        return Ok(None);
    }
    let mut tree = FieldTree::default();
    for (i, text) in texts.iter().enumerate() {
        let at = format!("{option}[{i}]");
        let path = parse(&at, text)?;
        let fields: Option<Vec<&str>> = path
            .segments()
            .iter()
            .map(|segment| match segment {
                Segment::Field(name) => Some(&**name),
                Segment::Index(_) | Segment::Each => None,
            })
            .collect();
        tree.insert(&fields.ok_or_else(|| ShapeError::FieldsOnly(at, text.clone()))?);
    }
    Ok(Some(tree))
}

/// Checks the renames: plain top-level names, each source and each target used once.
fn rename_pairs(pairs: &[(String, String)]) -> Result<Vec<(String, String)>, ShapeError> {
    for (i, (from, to)) in pairs.iter().enumerate() {
        if let Some(name) = [from, to].into_iter().find(|n| n.is_empty() || n.contains(['.', '[', ']'])) {
            return Err(ShapeError::NotTopLevel(name.clone()));
        }
        if pairs[..i].iter().any(|(earlier, _)| earlier == from) {
            return Err(ShapeError::RenamedTwice(from.clone()));
        }
        if pairs[..i].iter().any(|(_, earlier)| earlier == to) {
            return Err(ShapeError::SameTarget(to.clone()));
        }
    }
    Ok(pairs.to_vec())
}

/// Takes the value at `path` out of `value` (no copy).
fn pick(path: &JsonPath, mut value: Value) -> Result<Value, String> {
    path.lookup(&value).map_err(|error| format!("pick: {error}"))?;
    let found = path.segments().iter().try_fold(&mut value, |current, segment| match segment {
        Segment::Field(name) => current.get_mut(&**name),
        Segment::Index(index) => current.get_mut(*index),
        Segment::Each => None,
    });
    // The lookup above succeeded, so the same walk finds the value.
    Ok(found.map(Value::take).unwrap_or_default())
}

/// The object inside `value`, or why `option` cannot apply to it.
fn object(option: &str, value: Value) -> Result<Map<String, Value>, String> {
    match value {
        Value::Object(map) => Ok(map),
        other => Err(format!("{option} needs an object, got {}", kind(&other))),
    }
}

/// The kind of a value, for messages.
fn kind(value: &Value) -> &'static str {
    match value {
        Value::Object(_) => "an object",
        Value::Array(_) => "a list",
        Value::String(_) => "a string",
        Value::Number(_) => "a number",
        Value::Bool(_) => "a boolean",
        Value::Null => "null",
    }
}

/// Keeps the fields in `tree`, in the order of `map`; paths through non-objects are dropped.
fn select(tree: &FieldTree, map: Map<String, Value>) -> Map<String, Value> {
    map.into_iter()
        .filter_map(|(key, value)| {
            let sub = tree.children.get(key.as_str())?;
            match value {
                _ if sub.children.is_empty() => Some((key, value)),
                Value::Object(inner) => Some((key, Value::Object(select(sub, inner)))),
                _ => None,
            }
        })
        .collect()
}

/// Removes the fields in `tree`; absent fields and paths through non-objects are left alone.
fn omit(tree: &FieldTree, map: &mut Map<String, Value>) {
    for (name, sub) in &tree.children {
        if sub.children.is_empty() {
            map.shift_remove(&**name);
        } else if let Some(Value::Object(inner)) = map.get_mut(&**name) {
            omit(sub, inner);
        }
    }
}

/// Renames top-level keys all at once (so swaps work); a renamed key keeps its position and
/// replaces any other key that already had the new name.
fn rename(pairs: &[(String, String)], map: Map<String, Value>) -> Map<String, Value> {
    let replaced: Vec<&str> =
        pairs.iter().filter(|(from, _)| map.contains_key(from)).map(|(_, to)| to.as_str()).collect();
    map.into_iter()
        .filter_map(|(key, value)| match pairs.iter().find(|(from, _)| *from == key) {
            Some((_, to)) => Some((to.clone(), value)),
            None if replaced.contains(&key.as_str()) => None,
            None => Some((key, value)),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    type Built = Result<Shape, ShapeError>;

    fn build(select: &[&str], omit: &[&str], rename: &[(&str, &str)], pick: Option<&str>) -> Built {
        let strings = |list: &[&str]| list.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let pairs: Vec<_> = rename.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect();
        Shape::new(&strings(select), &strings(omit), &pairs, pick)
    }

    fn with_select(paths: &[&str]) -> Built {
        build(paths, &[], &[], None)
    }

    fn with_omit(paths: &[&str]) -> Built {
        build(&[], paths, &[], None)
    }

    fn with_rename(pairs: &[(&str, &str)]) -> Built {
        build(&[], &[], pairs, None)
    }

    fn with_pick(path: &str) -> Built {
        build(&[], &[], &[], Some(path))
    }

    #[test]
    fn identity_only_without_options() {
        assert!(build(&[], &[], &[], None).unwrap().is_identity());
        for set in [with_select(&["a"]), with_omit(&["a"]), with_rename(&[("a", "b")]), with_pick("a")] {
            assert!(!set.unwrap().is_identity());
        }
        let doc = json!([1, {"b": 2}]);
        assert_eq!(Shape::default().apply(doc.clone()), Ok(doc));
    }

    #[test]
    fn applies_options_and_combinations() {
        let doc = json!({"z": 1, "meta": {"rating": 4, "internal": 5, "x": 6}, "a": 2, "n": 3, "dbg": 0});
        let data = json!({"data": {"items": [{"id": 1}, {"id": 2}], "dbg": 1}});
        let ab = json!({"a": 1, "b": 2});
        for (shape, input, expected) in [
            (with_pick("data.items"), &data, json!([{"id": 1}, {"id": 2}])),
            (with_pick("data.items[1].id"), &data, json!(2)),
            (with_select(&["a", "meta.rating"]), &doc, json!({"meta": {"rating": 4}, "a": 2})),
            (with_select(&["meta.rating", "meta"]), &doc, json!({"meta": doc["meta"]})),
            (with_select(&["meta", "meta.rating"]), &doc, json!({"meta": doc["meta"]})),
            (with_select(&["nope", "meta.nope", "a"]), &doc, json!({"meta": {}, "a": 2})),
            (with_select(&["n.x", "a.b.c"]), &doc, json!({})),
            (with_omit(&["dbg", "meta.internal", "nope", "n.x"]), &doc, {
                json!({"z": 1, "meta": {"rating": 4, "x": 6}, "a": 2, "n": 3})
            }),
            (with_rename(&[("a", "b"), ("nope", "c")]), &json!({"x": 0, "a": 1}), json!({"x": 0, "b": 1})),
            (with_rename(&[("c", "a")]), &json!({"a": 1, "b": 2, "c": 3}), json!({"b": 2, "a": 3})),
            (with_rename(&[("a", "b"), ("b", "a")]), &ab, json!({"b": 1, "a": 2})),
            (with_rename(&[("a", "b"), ("b", "c")]), &ab, json!({"b": 1, "c": 2})),
            (build(&["a"], &["a"], &[], None), &ab, json!({})),
            (build(&[], &["b"], &[("a", "b")], None), &ab, json!({"b": 1})),
            (build(&["items"], &["dbg"], &[("items", "list")], Some("data")), &data, {
                json!({"list": [{"id": 1}, {"id": 2}]})
            }),
        ] {
            let shape = shape.unwrap();
            let got = shape.apply(input.clone()).unwrap();
            // `Value` equality ignores key order; the text shows it.
            assert_eq!(got.to_string(), expected.to_string(), "{shape:?}");
        }
    }

    #[test]
    fn rejects_bad_options_naming_them() {
        for (built, message) in [
            (with_select(&["a", "a..b"]), r#"select[1]: invalid path "a..b": empty field name"#),
            (with_select(&["items[*]"]), r#"select[0]: "items[*]" may only use field names (a.b.c)"#),
            (with_select(&["a[0].b"]), r#"select[0]: "a[0].b" may only use field names (a.b.c)"#),
            (with_select(&[""]), "select[0]: the path is empty"),
            (with_omit(&["a", "b", "c."]), r#"omit[2]: invalid path "c.": ends with ."#),
            (with_omit(&["[*].a"]), r#"omit[0]: "[*].a" may only use field names (a.b.c)"#),
            (with_omit(&[""]), "omit[0]: the path is empty"),
            (with_pick("a["), r#"pick: invalid path "a[": unclosed ["#),
            (with_pick(""), "pick: the path is empty"),
            (with_pick("a[*]"), r#"pick: "a[*]" may not use [*] (only field names and list indexes)"#),
            (with_rename(&[("a.b", "c")]), r#"rename: "a.b" must be a top-level field name"#),
            (with_rename(&[("a", "c[0]")]), r#"rename: "c[0]" must be a top-level field name"#),
            (with_rename(&[("a]", "c")]), r#"rename: "a]" must be a top-level field name"#),
            (with_rename(&[("", "c")]), r#"rename: "" must be a top-level field name"#),
            (with_rename(&[("x", "a"), ("x", "b")]), r#"rename: "x" is renamed twice"#),
            (with_rename(&[("a", "y"), ("b", "y")]), r#"rename: two fields are renamed to "y""#),
        ] {
            assert_eq!(built.unwrap_err().to_string(), message);
        }
        assert!(with_rename(&[("a", "a")]).is_ok());
    }

    #[test]
    fn reports_why_a_shape_does_not_fit() {
        for (shape, input, reason) in [
            (with_pick("data.items"), json!({"data": {}}), "pick: data.items is missing"),
            (with_pick("data.items"), json!({"data": 3}), "pick: data is not an object"),
            (with_pick("data[0]"), json!({"data": {}}), "pick: data is not a list"),
            (with_select(&["a"]), json!([1]), "select needs an object, got a list"),
            (with_select(&["a"]), json!("s"), "select needs an object, got a string"),
            (with_select(&["a"]), json!(1.5), "select needs an object, got a number"),
            (with_select(&["a"]), json!(true), "select needs an object, got a boolean"),
            (with_select(&["a"]), json!(null), "select needs an object, got null"),
            (with_omit(&["a"]), json!([]), "omit needs an object, got a list"),
            (with_rename(&[("a", "b")]), json!("x"), "rename needs an object, got a string"),
            (build(&["id"], &[], &[], Some("l")), json!({"l": []}), "select needs an object, got a list"),
        ] {
            assert_eq!(shape.unwrap().apply(input), Err(reason.to_owned()));
        }
    }
}
