//! `-o` as kubectl users know it: `wide`, `json`, `yaml`, `name`, `jsonpath=TEMPLATE`, and
//! the JSONPath templates kubectl accepts (`{.items[*].metadata.name}`, `{range}…{end}`,
//! `[?(@.type=="Ready")]`).

use std::fmt;
use std::str::FromStr;

use serde_json::Value;

/// How a list or get command prints objects.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Output {
    /// Aligned columns (the default).
    #[default]
    Table,
    /// The table with more columns.
    Wide,
    /// JSON: the object, or a `List` of them.
    Json,
    /// YAML: the object, or a `List` of them.
    Yaml,
    /// `kind/name`, one per line.
    Name,
    /// A JSONPath template over the object, or over the `List`.
    JsonPath(Template),
}

impl FromStr for Output {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "" | "table" => Output::Table,
            "wide" => Output::Wide,
            "json" => Output::Json,
            "yaml" => Output::Yaml,
            "name" => Output::Name,
            _ => match s.split_once('=') {
                Some(("jsonpath", t)) => Output::JsonPath(t.parse()?),
                _ => {
                    return Err(format!(
                        "unknown output format {s:?}: use wide, json, yaml, name or jsonpath=TEMPLATE (e.g. jsonpath='{{.items[*].metadata.name}}')"
                    ));
                }
            },
        })
    }
}

/// Prints `value` as `-o json` does.
pub fn print_json(value: &Value) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// A list of objects as kubectl prints it for `-o json|yaml|jsonpath`.
pub fn list_of(items: Vec<Value>) -> Value {
    serde_json::json!({"apiVersion": "v1", "kind": "List", "metadata": {}, "items": items})
}

/// A parsed JSONPath template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    nodes: Vec<Node>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Node {
    Text(String),
    Path(Vec<Step>),
    Range(Vec<Step>, Vec<Node>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Step {
    Field(String),
    Index(i64),
    All,
    Filter {
        field: Vec<String>,
        equal: bool,
        literal: Value,
    },
}

impl fmt::Display for Template {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.nodes)
    }
}

impl FromStr for Template {
    type Err = String;

    /// Parses a template; one without `{` is taken as a single expression, as kubectl does.
    fn from_str(text: &str) -> Result<Self, String> {
        let text = if text.contains('{') {
            text.to_owned()
        } else {
            format!("{{{text}}}")
        };
        let mut pieces = Vec::new();
        let mut rest = text.as_str();
        while let Some(open) = rest.find('{') {
            if open > 0 {
                pieces.push(Piece::Text(rest[..open].to_owned()));
            }
            let close = rest[open..]
                .find('}')
                .ok_or_else(|| format!("jsonpath: unclosed {{ in {text:?}"))?;
            pieces.push(Piece::Expr(rest[open + 1..open + close].trim().to_owned()));
            rest = &rest[open + close + 1..];
        }
        if !rest.is_empty() {
            pieces.push(Piece::Text(rest.to_owned()));
        }
        let mut pieces = pieces.into_iter();
        let nodes = nest(&mut pieces, false)?;
        Ok(Template { nodes })
    }
}

enum Piece {
    Text(String),
    Expr(String),
}

fn nest(pieces: &mut impl Iterator<Item = Piece>, in_range: bool) -> Result<Vec<Node>, String> {
    let mut nodes = Vec::new();
    while let Some(piece) = pieces.next() {
        match piece {
            Piece::Text(t) => nodes.push(Node::Text(t)),
            Piece::Expr(e) if e == "end" => {
                return if in_range {
                    Ok(nodes)
                } else {
                    Err("jsonpath: {end} without {range}".to_owned())
                };
            }
            Piece::Expr(e) => {
                if let Some(path) = e.strip_prefix("range ") {
                    let steps = parse_path(path.trim())?;
                    nodes.push(Node::Range(steps, nest(pieces, true)?));
                } else if let Some(lit) = quoted(&e) {
                    nodes.push(Node::Text(lit));
                } else {
                    nodes.push(Node::Path(parse_path(&e)?));
                }
            }
        }
    }
    if in_range {
        return Err("jsonpath: {range} without {end}".to_owned());
    }
    Ok(nodes)
}

/// A string literal (`"\n"`, `'x'`), with `\n` and `\t` escapes.
fn quoted(e: &str) -> Option<String> {
    let inner = e
        .strip_prefix('"')
        .and_then(|e| e.strip_suffix('"'))
        .or_else(|| e.strip_prefix('\'').and_then(|e| e.strip_suffix('\'')))?;
    Some(inner.replace("\\n", "\n").replace("\\t", "\t"))
}

fn parse_path(path: &str) -> Result<Vec<Step>, String> {
    let bad = |why: &str| format!("jsonpath: {why} in {path:?}");
    let mut rest = path.strip_prefix('$').unwrap_or(path);
    let mut steps = Vec::new();
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix('.') {
            let end = r.find(['.', '[']).unwrap_or(r.len());
            let name = &r[..end];
            match name {
                "" if end == r.len() => {}
                "" => {}
                "*" => steps.push(Step::All),
                name => steps.push(Step::Field(name.to_owned())),
            }
            rest = &r[end..];
        } else if let Some(r) = rest.strip_prefix('[') {
            let close = matching_bracket(r).ok_or_else(|| bad("unclosed ["))?;
            let inside = r[..close].trim();
            rest = &r[close + 1..];
            if inside == "*" {
                steps.push(Step::All);
            } else if let Some(name) = quoted(inside) {
                steps.push(Step::Field(name));
            } else if let Some(filter) = inside.strip_prefix("?(").and_then(|f| f.strip_suffix(')'))
            {
                steps.push(parse_filter(filter.trim()).ok_or_else(|| bad("unsupported filter"))?);
            } else {
                let i: i64 = inside.parse().map_err(|_| bad("a bad index"))?;
                steps.push(Step::Index(i));
            }
        } else {
            return Err(bad("expected . or ["));
        }
    }
    Ok(steps)
}

fn matching_bracket(s: &str) -> Option<usize> {
    let mut depth = 0;
    let mut quote: Option<char> = None;
    for (i, c) in s.char_indices() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '"' | '\'') => quote = Some(c),
            (None, '[' | '(') => depth += 1,
            (None, ')') => depth -= 1,
            (None, ']') if depth == 0 => return Some(i),
            (None, ']') => depth -= 1,
            _ => {}
        }
    }
    None
}

/// `@.a.b == "x"` or `@.a != 3`.
fn parse_filter(f: &str) -> Option<Step> {
    let (lhs, rhs, equal) = if let Some((l, r)) = f.split_once("==") {
        (l, r, true)
    } else {
        let (l, r) = f.split_once("!=")?;
        (l, r, false)
    };
    let field: Vec<String> = lhs
        .trim()
        .strip_prefix("@.")?
        .split('.')
        .map(str::to_owned)
        .collect();
    let rhs = rhs.trim();
    let literal = match quoted(rhs) {
        Some(s) => Value::String(s),
        None => serde_json::from_str(rhs).ok()?,
    };
    Some(Step::Filter {
        field,
        equal,
        literal,
    })
}

fn select<'a>(value: &'a Value, steps: &[Step]) -> Vec<&'a Value> {
    let mut current = vec![value];
    for step in steps {
        let mut next = Vec::new();
        for v in current {
            match step {
                Step::Field(name) => next.extend(v.get(name)),
                Step::Index(i) => {
                    if let Value::Array(a) = v {
                        let len = i64::try_from(a.len()).unwrap_or(i64::MAX);
                        let at = if *i < 0 { len + i } else { *i };
                        next.extend(usize::try_from(at).ok().and_then(|at| a.get(at)));
                    }
                }
                Step::All => match v {
                    Value::Array(a) => next.extend(a),
                    Value::Object(o) => next.extend(o.values()),
                    _ => {}
                },
                Step::Filter {
                    field,
                    equal,
                    literal,
                } => {
                    if let Value::Array(a) = v {
                        next.extend(a.iter().filter(|item| {
                            let got = field.iter().try_fold(*item, |at, f| at.get(f));
                            (got == Some(literal)) == *equal
                        }));
                    }
                }
            }
        }
        current = next;
    }
    current
}

fn text_of(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        v => v.to_string(),
    }
}

fn render(nodes: &[Node], value: &Value, out: &mut String) {
    for node in nodes {
        match node {
            Node::Text(t) => out.push_str(t),
            Node::Path(steps) => {
                let found: Vec<String> = select(value, steps).into_iter().map(text_of).collect();
                out.push_str(&found.join(" "));
            }
            Node::Range(steps, body) => {
                for item in select(value, steps) {
                    render(body, item, out);
                }
            }
        }
    }
}

impl Template {
    /// Renders the template over `value`.
    pub fn render(&self, value: &Value) -> String {
        let mut out = String::new();
        render(&self.nodes, value, &mut out);
        out
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use serde_json::json;

    use super::*;

    fn list() -> Value {
        list_of(vec![
            json!({"metadata": {"name": "a"}, "status": {"conditions": [
                {"type": "Other", "status": "False"}, {"type": "Ready", "status": "True"}]}}),
            json!({"metadata": {"name": "b", "labels": {"app.kubernetes.io/name": "x"}},
                   "status": {"conditions": [{"type": "Ready", "status": "False"}]}}),
        ])
    }

    fn render(t: &str, v: &Value) -> String {
        t.parse::<Template>().unwrap().render(v)
    }

    #[test]
    fn jsonpath_renders_what_kubectl_users_write() {
        let l = list();
        assert_eq!(render("{.items[*].metadata.name}", &l), "a b");
        assert_eq!(render(".items[0].metadata.name", &l), "a");
        assert_eq!(render("{.items[-1].metadata.name}", &l), "b");
        assert_eq!(
            render(
                r#"{range .items[*]}{.metadata.name}{"\t"}{.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}"#,
                &l
            ),
            "a\tTrue\nb\tFalse\n"
        );
        assert_eq!(
            render("{.items[1].metadata.labels['app.kubernetes.io/name']}", &l),
            "x"
        );
        assert_eq!(render("name={.items[0].metadata.name}!", &l), "name=a!");
        assert_eq!(render("{.items[0].metadata}", &l), r#"{"name":"a"}"#);
        assert_eq!(render("{.nothing.here}", &l), "");
    }

    #[test]
    fn output_formats_parse_and_bad_ones_say_what_is_accepted() {
        assert_eq!("wide".parse::<Output>().unwrap(), Output::Wide);
        assert_eq!("name".parse::<Output>().unwrap(), Output::Name);
        assert!(matches!(
            "jsonpath={.metadata.name}".parse::<Output>().unwrap(),
            Output::JsonPath(_)
        ));
        let e = "xml".parse::<Output>().unwrap_err();
        assert!(e.contains("wide, json, yaml, name or jsonpath"), "{e}");
        let e = "jsonpath={range .items[*]}{.a}"
            .parse::<Output>()
            .unwrap_err();
        assert!(e.contains("{range} without {end}"), "{e}");
        let e = "jsonpath={.items[x]}".parse::<Output>().unwrap_err();
        assert!(e.contains("bad index"), "{e}");
    }
}
