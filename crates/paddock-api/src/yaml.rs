//! YAML in and out, the way kubectl reads and writes it.
//!
//! Reading keeps where each node came from, so validation errors can name a line
//! (`spec.replicas: must be 0 or 1 (line 7)`). Scalars resolve as sigs.k8s.io/yaml does
//! (YAML 1.1 booleans such as `yes`/`off` included) so a manifest means here what it means to a
//! cluster. Writing produces the block style kubectl prints, with stable key order.

use std::collections::HashMap;
use std::fmt;

use serde_json::{Map, Number, Value};
use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser, Tag};
use yaml_rust2::scanner::{Marker, TScalarStyle};

/// One step of a path into a document: a mapping key or a sequence index.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PathSegment {
    /// A key of a mapping.
    Key(String),
    /// A position in a sequence.
    Index(usize),
}

/// A path from the document root to a node.
pub type Path = Vec<PathSegment>;

/// A position in the source text, both numbers starting at 1.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Position {
    /// Line number.
    pub line: usize,
    /// Column number.
    pub column: usize,
}

impl Position {
    fn from_marker(m: Marker) -> Self {
        Self {
            line: m.line(),
            column: m.col() + 1,
        }
    }
}

/// One parsed document: its value and where each node starts.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Document {
    /// The document as JSON.
    pub value: Value,
    /// Where each node (for mapping entries: its key) starts in the source.
    pub positions: HashMap<Path, Position>,
    /// Where the document starts.
    pub start: Option<Position>,
}

impl Document {
    /// The position of the node at `path`, or of its nearest ancestor that has one.
    pub fn position_of(&self, path: &[PathSegment]) -> Option<Position> {
        (0..=path.len())
            .rev()
            .find_map(|n| self.positions.get(&path[..n]).copied())
    }
}

/// A document that is not valid YAML (or uses YAML that has no JSON meaning).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message} (line {}, column {})", .position.line, .position.column)]
pub struct SyntaxError {
    /// What is wrong.
    pub message: String,
    /// Where.
    pub position: Position,
}

/// Parses a stream of one or more YAML documents (JSON is YAML too). Empty documents (only
/// comments, or `---` with nothing after it) are skipped, as kubectl does.
///
/// # Errors
/// The first syntax error, with its line and column; documents before it are lost too, so a
/// caller reporting problems should report this one alone.
pub fn parse_documents(text: &str) -> Result<Vec<Document>, SyntaxError> {
    let mut builder = Builder::default();
    let mut parser = Parser::new_from_str(text);
    parser.load(&mut builder, true).map_err(|e| SyntaxError {
        message: e.info().to_owned(),
        position: Position::from_marker(*e.marker()),
    })?;
    if let Some(err) = builder.error {
        return Err(err);
    }
    Ok(builder
        .documents
        .into_iter()
        .filter(|d| !d.value.is_null())
        .collect())
}

/// Parses exactly one document; an empty input is the `null` document.
///
/// # Errors
/// A syntax error, or more than one document.
pub fn parse_one(text: &str) -> Result<Document, SyntaxError> {
    let mut docs = parse_documents(text)?;
    match docs.len() {
        0 => Ok(Document::default()),
        1 => Ok(docs.remove(0)),
        _ => Err(SyntaxError {
            message: "expected one document, found several (separated by ---)".to_owned(),
            position: docs[1].start.unwrap_or(Position { line: 1, column: 1 }),
        }),
    }
}

enum Frame {
    Seq {
        items: Vec<Value>,
        anchor: usize,
    },
    Map {
        map: Map<String, Value>,
        pending_key: Option<(String, Position)>,
        anchor: usize,
        /// Keys that came from a `<<` merge; an explicit key may override them once.
        merged: Vec<String>,
    },
}

#[derive(Default)]
struct Builder {
    documents: Vec<Document>,
    current: Document,
    stack: Vec<Frame>,
    path: Path,
    anchors: HashMap<usize, Value>,
    error: Option<SyntaxError>,
}

impl Builder {
    fn fail(&mut self, message: impl Into<String>, mark: Marker) {
        if self.error.is_none() {
            self.error = Some(SyntaxError {
                message: message.into(),
                position: Position::from_marker(mark),
            });
        }
    }

    /// Pushes the path segment for the node about to start, recording its position.
    fn enter_node(&mut self, mark: Marker) -> bool {
        match self.stack.last_mut() {
            None => {
                self.current
                    .positions
                    .insert(Vec::new(), Position::from_marker(mark));
                true
            }
            Some(Frame::Seq { items, .. }) => {
                self.path.push(PathSegment::Index(items.len()));
                self.current
                    .positions
                    .insert(self.path.clone(), Position::from_marker(mark));
                true
            }
            Some(Frame::Map {
                pending_key: Some((key, key_pos)),
                ..
            }) => {
                let (key, key_pos) = (key.clone(), *key_pos);
                self.path.push(PathSegment::Key(key));
                self.current.positions.insert(self.path.clone(), key_pos);
                true
            }
            Some(Frame::Map {
                pending_key: None, ..
            }) => false,
        }
    }

    /// Attaches a finished value to its parent (or ends the document).
    fn finish_node(&mut self, value: Value, mark: Marker) {
        match self.stack.last_mut() {
            None => self.current.value = value,
            Some(Frame::Seq { items, .. }) => {
                items.push(value);
                self.path.pop();
            }
            Some(Frame::Map {
                map,
                pending_key,
                merged,
                ..
            }) => {
                let Some((key, _)) = pending_key.take() else {
                    self.fail("internal: value without a key", mark);
                    return;
                };
                self.path.pop();
                if key == "<<" {
                    merge_into(map, value, merged);
                } else if let Some(i) = merged.iter().position(|k| *k == key) {
                    merged.swap_remove(i);
                    map.insert(key, value);
                } else if map.contains_key(&key) {
                    self.fail(format!("duplicate key {key:?} in a mapping"), mark);
                } else {
                    map.insert(key, value);
                }
            }
        }
    }

    fn scalar(
        &mut self,
        text: String,
        style: TScalarStyle,
        anchor: usize,
        tag: Option<Tag>,
        mark: Marker,
    ) {
        // A scalar in key position of a mapping becomes the pending key.
        if let Some(Frame::Map {
            pending_key: pending @ None,
            ..
        }) = self.stack.last_mut()
        {
            *pending = Some((text, Position::from_marker(mark)));
            return;
        }
        let value = match resolve_scalar(&text, style, tag.as_ref()) {
            Ok(v) => v,
            Err(msg) => {
                self.fail(msg, mark);
                Value::Null
            }
        };
        if anchor != 0 {
            self.anchors.insert(anchor, value.clone());
        }
        self.enter_node(mark);
        self.finish_node(value, mark);
    }
}

fn merge_into(map: &mut Map<String, Value>, value: Value, merged: &mut Vec<String>) {
    let sources = match value {
        Value::Array(items) => items,
        other => vec![other],
    };
    for source in sources {
        if let Value::Object(src) = source {
            for (k, v) in src {
                if !map.contains_key(&k) {
                    merged.push(k.clone());
                    map.insert(k, v);
                }
            }
        }
    }
}

impl MarkedEventReceiver for Builder {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        if self.error.is_some() {
            return;
        }
        match ev {
            Event::Nothing | Event::StreamStart | Event::StreamEnd => {}
            Event::DocumentStart => {
                self.current = Document {
                    start: Some(Position::from_marker(mark)),
                    ..Document::default()
                };
                self.anchors.clear();
            }
            Event::DocumentEnd => {
                let doc = std::mem::take(&mut self.current);
                self.documents.push(doc);
            }
            Event::Scalar(text, style, anchor, tag) => self.scalar(text, style, anchor, tag, mark),
            Event::Alias(id) => {
                let Some(value) = self.anchors.get(&id).cloned() else {
                    self.fail("alias refers to an unknown anchor", mark);
                    return;
                };
                if let Some(Frame::Map {
                    pending_key: pending @ None,
                    ..
                }) = self.stack.last_mut()
                {
                    match value {
                        Value::String(s) => *pending = Some((s, Position::from_marker(mark))),
                        _ => self.fail("an alias used as a mapping key must be a string", mark),
                    }
                    return;
                }
                self.enter_node(mark);
                self.finish_node(value, mark);
            }
            Event::SequenceStart(anchor, _) => {
                if matches!(
                    self.stack.last(),
                    Some(Frame::Map {
                        pending_key: None,
                        ..
                    })
                ) {
                    self.fail("a sequence cannot be a mapping key", mark);
                    return;
                }
                self.enter_node(mark);
                self.stack.push(Frame::Seq {
                    items: Vec::new(),
                    anchor,
                });
            }
            Event::MappingStart(anchor, _) => {
                if matches!(
                    self.stack.last(),
                    Some(Frame::Map {
                        pending_key: None,
                        ..
                    })
                ) {
                    self.fail("a mapping cannot be a mapping key", mark);
                    return;
                }
                self.enter_node(mark);
                self.stack.push(Frame::Map {
                    map: Map::new(),
                    pending_key: None,
                    anchor,
                    merged: Vec::new(),
                });
            }
            Event::SequenceEnd | Event::MappingEnd => {
                let (value, anchor) = match self.stack.pop() {
                    Some(Frame::Seq { items, anchor }) => (Value::Array(items), anchor),
                    Some(Frame::Map { map, anchor, .. }) => (Value::Object(map), anchor),
                    None => {
                        self.fail("unbalanced end of collection", mark);
                        return;
                    }
                };
                if anchor != 0 {
                    self.anchors.insert(anchor, value.clone());
                }
                self.finish_node(value, mark);
            }
        }
    }
}

/// Resolves a scalar to JSON as sigs.k8s.io/yaml (go-yaml v2, YAML 1.1) does.
fn resolve_scalar(text: &str, style: TScalarStyle, tag: Option<&Tag>) -> Result<Value, String> {
    if let Some(tag) = tag {
        if tag.handle == "!!" || tag.handle == "tag:yaml.org,2002:" {
            return match tag.suffix.as_str() {
                "str" => Ok(Value::String(text.to_owned())),
                "int" => parse_int(text)
                    .map(Value::from)
                    .ok_or_else(|| format!("{text:?} is not an integer")),
                "float" => parse_float(text).ok_or_else(|| format!("{text:?} is not a number")),
                "bool" => parse_bool(text)
                    .map(Value::Bool)
                    .ok_or_else(|| format!("{text:?} is not a boolean")),
                "null" => Ok(Value::Null),
                "binary" | "timestamp" => Ok(Value::String(text.to_owned())),
                other => Err(format!("unsupported tag !!{other}")),
            };
        }
        return Ok(Value::String(text.to_owned()));
    }
    if style != TScalarStyle::Plain {
        return Ok(Value::String(text.to_owned()));
    }
    if matches!(text, "" | "~" | "null" | "Null" | "NULL") {
        return Ok(Value::Null);
    }
    if let Some(b) = parse_bool(text) {
        return Ok(Value::Bool(b));
    }
    if let Some(i) = parse_int(text) {
        return Ok(Value::from(i));
    }
    if let Some(f) = parse_float(text) {
        return Ok(f);
    }
    Ok(Value::String(text.to_owned()))
}

fn parse_bool(text: &str) -> Option<bool> {
    match text {
        "y" | "Y" | "yes" | "Yes" | "YES" | "true" | "True" | "TRUE" | "on" | "On" | "ON" => {
            Some(true)
        }
        "n" | "N" | "no" | "No" | "NO" | "false" | "False" | "FALSE" | "off" | "Off" | "OFF" => {
            Some(false)
        }
        _ => None,
    }
}

fn parse_int(text: &str) -> Option<i64> {
    let plain = text.replace('_', "");
    let (neg, digits) = match plain.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, plain.strip_prefix('+').unwrap_or(&plain)),
    };
    if digits.is_empty() {
        return None;
    }
    let magnitude = if let Some(hex) = digits.strip_prefix("0x") {
        i64::from_str_radix(hex, 16).ok()?
    } else if let Some(bin) = digits.strip_prefix("0b") {
        i64::from_str_radix(bin, 2).ok()?
    } else if digits.len() > 1
        && digits.starts_with('0')
        && digits.bytes().all(|b| b.is_ascii_digit())
    {
        i64::from_str_radix(digits, 8).ok()?
    } else if digits.bytes().all(|b| b.is_ascii_digit()) {
        digits.parse::<i64>().ok()?
    } else {
        return None;
    };
    Some(if neg { -magnitude } else { magnitude })
}

fn parse_float(text: &str) -> Option<Value> {
    match text {
        ".inf" | ".Inf" | ".INF" | "+.inf" | "-.inf" | ".nan" | ".NaN" | ".NAN" => return None,
        _ => {}
    }
    let plain = text.replace('_', "");
    let looks_numeric = plain
        .bytes()
        .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'E' | b'+' | b'-'))
        && plain.bytes().any(|b| b.is_ascii_digit());
    if !looks_numeric {
        return None;
    }
    let f: f64 = plain.parse().ok()?;
    Number::from_f64(f).map(Value::Number)
}

/// Renders a JSON value as block-style YAML, the way kubectl prints objects. Object keys keep
/// their order.
pub fn to_string(value: &Value) -> String {
    let mut out = String::new();
    match value {
        Value::Object(map) if !map.is_empty() => write_map(&mut out, map, 0),
        Value::Array(items) if !items.is_empty() => write_seq(&mut out, items, 0),
        scalar => {
            write_scalar(&mut out, scalar, 0);
            out.push('\n');
        }
    }
    out
}

/// Renders several documents separated by `---`.
pub fn to_string_multi<'a>(values: impl IntoIterator<Item = &'a Value>) -> String {
    let mut out = String::new();
    for (i, v) in values.into_iter().enumerate() {
        if i > 0 {
            out.push_str("---\n");
        }
        out.push_str(&to_string(v));
    }
    out
}

fn indent(out: &mut String, n: usize) {
    out.extend(std::iter::repeat_n(' ', n));
}

fn write_map(out: &mut String, map: &Map<String, Value>, level: usize) {
    for (i, (key, value)) in map.iter().enumerate() {
        if i > 0 {
            indent(out, level);
        }
        write_plain_or_quoted(out, key);
        out.push(':');
        write_child(out, value, level);
    }
}

fn write_seq(out: &mut String, items: &[Value], level: usize) {
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            indent(out, level);
        }
        out.push_str("- ");
        match item {
            Value::Object(m) if !m.is_empty() => write_map(out, m, level + 2),
            Value::Array(a) if !a.is_empty() => write_seq(out, a, level + 2),
            scalar => {
                write_scalar(out, scalar, level + 2);
                out.push('\n');
            }
        }
    }
}

/// Writes what follows `key:` — a nested block on the next lines, or ` scalar`.
fn write_child(out: &mut String, value: &Value, level: usize) {
    match value {
        Value::Object(m) if !m.is_empty() => {
            out.push('\n');
            indent(out, level + 2);
            write_map(out, m, level + 2);
        }
        Value::Array(a) if !a.is_empty() => {
            out.push('\n');
            indent(out, level);
            write_seq(out, a, level);
        }
        scalar => {
            out.push(' ');
            write_scalar(out, scalar, level + 2);
            out.push('\n');
        }
    }
}

fn write_scalar(out: &mut String, value: &Value, level: usize) {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => out.push_str(&n.to_string()),
        Value::String(s) => write_string(out, s, level),
        Value::Object(_) => out.push_str("{}"),
        Value::Array(_) => out.push_str("[]"),
    }
}

fn write_string(out: &mut String, s: &str, level: usize) {
    if s.contains('\n') && block_literal_ok(s) {
        let chomp = if s.ends_with("\n\n") {
            "+"
        } else if s.ends_with('\n') {
            ""
        } else {
            "-"
        };
        out.push('|');
        out.push_str(chomp);
        let body = s.strip_suffix('\n').unwrap_or(s);
        for line in body.split('\n') {
            out.push('\n');
            if !line.is_empty() {
                indent(out, level);
                out.push_str(line);
            }
        }
        if chomp == "+" {
            // Trailing empty lines are already represented by the split above.
        }
        return;
    }
    write_plain_or_quoted(out, s);
}

/// A literal block keeps the text verbatim; it cannot start with a space, hold control
/// characters, or have trailing spaces on a line (they would be invisible).
fn block_literal_ok(s: &str) -> bool {
    !s.starts_with([' ', '\t'])
        && !s.chars().any(|c| c.is_control() && c != '\n')
        && !s.split('\n').any(|l| l.ends_with(' '))
}

fn write_plain_or_quoted(out: &mut String, s: &str) {
    if needs_quotes(s) {
        if s.chars().any(char::is_control) {
            // JSON string syntax is valid YAML double-quoted syntax.
            out.push_str(&Value::String(s.to_owned()).to_string());
        } else {
            out.push('\'');
            out.push_str(&s.replace('\'', "''"));
            out.push('\'');
        }
    } else {
        out.push_str(s);
    }
}

fn needs_quotes(s: &str) -> bool {
    if s.is_empty() || s != s.trim() {
        return true;
    }
    let first = s.chars().next().unwrap_or(' ');
    let indicator = "-?:,[]{}#&*!|>'\"%@`".contains(first);
    let plain_dash = first == '-' && s.len() > 1 && !s.starts_with("- ") && !s.starts_with("---");
    if indicator && !plain_dash {
        return true;
    }
    if s.contains(": ") || s.contains(" #") || s.ends_with(':') || s.chars().any(char::is_control) {
        return true;
    }
    // Anything that would read back as something other than this string.
    !matches!(resolve_scalar(s, TScalarStyle::Plain, None), Ok(Value::String(ref back)) if back == s)
        || s.starts_with(".inf")
        || s.starts_with(".nan")
}

impl fmt::Display for PathSegment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Key(k) => write!(f, ".{k}"),
            Self::Index(i) => write!(f, "[{i}]"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_documents_with_positions() {
        let text = "apiVersion: v1\nkind: X\nspec:\n  replicas: 3\n  items:\n  - a\n  - b\n---\n# empty\n---\nkind: Z\n";
        let docs = parse_documents(text).unwrap();
        assert_eq!(docs.len(), 2);
        assert_eq!(
            docs[0].value,
            json!({"apiVersion": "v1", "kind": "X", "spec": {"replicas": 3, "items": ["a", "b"]}})
        );
        let replicas = vec![
            PathSegment::Key("spec".into()),
            PathSegment::Key("replicas".into()),
        ];
        assert_eq!(
            docs[0].positions[&replicas],
            Position { line: 4, column: 3 }
        );
        let item = vec![
            PathSegment::Key("spec".into()),
            PathSegment::Key("items".into()),
            PathSegment::Index(1),
        ];
        assert_eq!(docs[0].positions[&item].line, 7);
        assert_eq!(docs[1].value, json!({"kind": "Z"}));
        assert_eq!(
            docs[1].positions[&vec![PathSegment::Key("kind".into())]].line,
            11
        );
    }

    #[test]
    fn syntax_errors_carry_line_and_column() {
        let err = parse_documents("a: 1\nb: [1, 2\nc: 3\n").unwrap_err();
        assert!(err.position.line >= 2, "{err:?}");
        let err = parse_documents("a: 1\n  b: 2\n").unwrap_err();
        assert_eq!(err.position.line, 2, "{err:?}");
    }

    #[test]
    fn duplicate_keys_are_errors() {
        let err = parse_documents("a: 1\na: 2\n").unwrap_err();
        assert!(err.message.contains("duplicate key \"a\""), "{err}");
        assert_eq!(err.position.line, 2);
    }

    #[test]
    fn scalars_resolve_like_kubectl() {
        let doc = parse_one("a: yes\nb: 'yes'\nc: 0x1f\nd: 1.5\ne: ~\nf: 010\ng: 1e3\nh: \"007\"\ni: -3\nj: 1.2.3\n").unwrap();
        assert_eq!(
            doc.value,
            json!({"a": true, "b": "yes", "c": 31, "d": 1.5, "e": null, "f": 8, "g": 1000.0, "h": "007", "i": -3, "j": "1.2.3"})
        );
    }

    #[test]
    fn anchors_aliases_and_merge_keys() {
        let doc =
            parse_one("base: &b {x: 1, y: 2}\nother:\n  <<: *b\n  y: 3\nlist: [*b]\n").unwrap();
        assert_eq!(doc.value["other"], json!({"x": 1, "y": 3}));
        assert_eq!(doc.value["list"], json!([{"x": 1, "y": 2}]));
    }

    #[test]
    fn json_is_accepted() {
        let doc = parse_one(r#"{"kind": "Sandbox", "spec": {"replicas": 1}}"#).unwrap();
        assert_eq!(
            doc.value,
            json!({"kind": "Sandbox", "spec": {"replicas": 1}})
        );
    }

    #[test]
    fn writes_block_yaml_that_reads_back_identically() {
        let value = json!({
            "apiVersion": "v1",
            "metadata": {"name": "x", "labels": {"app.kubernetes.io/name": "y"}, "annotations": {}},
            "spec": {
                "list": [{"a": 1, "b": [true, null]}, "plain", "", "yes", "007", "a: b", "- x", "#c", "it's", "multi\nline\n", "tab\tin", "trailing "],
                "nested": [[1, 2], []],
                "desc": "line one\nline two",
                "n": 1.5
            }
        });
        let text = to_string(&value);
        let back = parse_one(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        assert_eq!(back.value, value, "{text}");
        assert!(
            text.starts_with("apiVersion: v1\nmetadata:\n  name: x\n"),
            "{text}"
        );
    }
}
