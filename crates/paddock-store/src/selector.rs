//! Label and field selectors with Kubernetes semantics: the selector string syntax
//! (`a=b,c!=d,e in (x,y),f notin (z),g,!h`), `metav1.LabelSelector` (matchLabels and
//! matchExpressions), and field selectors on `metadata.name` / `metadata.namespace`.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use k8s_openapi::apimachinery::pkg::apis::meta::v1 as metav1;
use serde_json::Value;

use crate::error::{Result, StoreError};
use crate::meta;
use crate::validation::{validate_label_value, validate_qualified_name};

/// How a requirement compares a label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operator {
    /// `key=value` / `key==value`: the label is set to the value.
    Equals,
    /// `key!=value`: the label is unset or set to something else.
    NotEquals,
    /// `key in (a,b)`: the label is set to one of the values.
    In,
    /// `key notin (a,b)`: the label is unset or set to none of the values.
    NotIn,
    /// `key`: the label is set.
    Exists,
    /// `!key`: the label is unset.
    DoesNotExist,
}

/// One clause of a label selector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requirement {
    key: String,
    operator: Operator,
    /// Sorted and de-duplicated; one value for Equals/NotEquals, none for Exists/DoesNotExist.
    values: Vec<String>,
}

impl Requirement {
    /// A requirement, validated: the key must be a qualified name, values valid label values,
    /// and the number of values must fit the operator.
    pub fn new(key: &str, operator: Operator, values: Vec<String>) -> Result<Self> {
        let field = "labelSelector";
        validate_qualified_name(field, key)?;
        for value in &values {
            validate_label_value(field, value)?;
        }
        let count_ok = match operator {
            Operator::Equals | Operator::NotEquals => values.len() == 1,
            Operator::In | Operator::NotIn => !values.is_empty(),
            Operator::Exists | Operator::DoesNotExist => values.is_empty(),
        };
        if !count_ok {
            return Err(StoreError::invalid(
                field,
                format!(
                    "{key:?}: {operator:?} takes {}",
                    match operator {
                        Operator::Equals | Operator::NotEquals => "exactly one value",
                        Operator::In | Operator::NotIn => "at least one value",
                        Operator::Exists | Operator::DoesNotExist => "no values",
                    }
                ),
            ));
        }
        let mut values = values;
        values.sort();
        values.dedup();
        Ok(Self {
            key: key.to_owned(),
            operator,
            values,
        })
    }

    pub fn key(&self) -> &str {
        &self.key
    }

    pub fn operator(&self) -> Operator {
        self.operator
    }

    pub fn values(&self) -> &[String] {
        &self.values
    }

    fn matches(&self, value: Option<&str>) -> bool {
        let listed = |v: &str| self.values.iter().any(|x| x == v);
        match self.operator {
            Operator::Equals | Operator::In => value.is_some_and(listed),
            Operator::NotEquals | Operator::NotIn => !value.is_some_and(listed),
            Operator::Exists => value.is_some(),
            Operator::DoesNotExist => value.is_none(),
        }
    }
}

/// A label selector: all requirements must match. The empty selector matches everything.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LabelSelector {
    /// Sorted by key (stable), as Kubernetes does, so `Display` is canonical.
    requirements: Vec<Requirement>,
}

impl LabelSelector {
    /// Matches every object.
    pub fn everything() -> Self {
        Self::default()
    }

    /// A selector from requirements.
    pub fn from_requirements(mut requirements: Vec<Requirement>) -> Self {
        requirements.sort_by(|a, b| a.key.cmp(&b.key));
        Self { requirements }
    }

    /// Parses the Kubernetes selector syntax. Errors name the token that is wrong and where.
    pub fn parse(selector: &str) -> Result<Self> {
        Parser::new(selector).parse()
    }

    /// Converts a `metav1.LabelSelector`. An empty one matches everything (a *missing* selector
    /// matching nothing is the caller's decision).
    pub fn from_k8s(selector: &metav1::LabelSelector) -> Result<Self> {
        let mut requirements = Vec::new();
        for (key, value) in selector.match_labels.iter().flatten() {
            requirements.push(
                Requirement::new(key, Operator::Equals, vec![value.clone()])
                    .map_err(|e| rename_field(e, format!("matchLabels[{key:?}]")))?,
            );
        }
        for (i, expr) in selector.match_expressions.iter().flatten().enumerate() {
            let field = format!("matchExpressions[{i}]");
            let operator = match expr.operator.as_str() {
                "In" => Operator::In,
                "NotIn" => Operator::NotIn,
                "Exists" => Operator::Exists,
                "DoesNotExist" => Operator::DoesNotExist,
                other => {
                    return Err(StoreError::invalid(
                        format!("{field}.operator"),
                        format!("{other:?} is not one of In, NotIn, Exists, DoesNotExist"),
                    ));
                }
            };
            let values = expr.values.clone().unwrap_or_default();
            requirements.push(
                Requirement::new(&expr.key, operator, values)
                    .map_err(|e| rename_field(e, field))?,
            );
        }
        Ok(Self::from_requirements(requirements))
    }

    /// Whether the selector matches everything.
    pub fn is_everything(&self) -> bool {
        self.requirements.is_empty()
    }

    pub fn requirements(&self) -> &[Requirement] {
        &self.requirements
    }

    /// Whether a set of labels satisfies every requirement.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.requirements
            .iter()
            .all(|r| r.matches(labels.get(&r.key).map(String::as_str)))
    }

    /// Whether an object's `metadata.labels` satisfy every requirement.
    pub fn matches_object(&self, object: &Value) -> bool {
        self.requirements
            .iter()
            .all(|r| r.matches(meta::label(object, &r.key)))
    }
}

fn rename_field(err: StoreError, field: String) -> StoreError {
    match err {
        StoreError::Invalid { reason, .. } => StoreError::Invalid { field, reason },
        other => other,
    }
}

impl FromStr for LabelSelector {
    type Err = StoreError;

    fn from_str(s: &str) -> Result<Self> {
        Self::parse(s)
    }
}

impl fmt::Display for LabelSelector {
    /// The canonical selector string (`a=b,c in (x,y),!d`), parseable by [`LabelSelector::parse`].
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, r) in self.requirements.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            match r.operator {
                Operator::Equals => write!(f, "{}={}", r.key, r.values[0])?,
                Operator::NotEquals => write!(f, "{}!={}", r.key, r.values[0])?,
                Operator::In => write!(f, "{} in ({})", r.key, r.values.join(","))?,
                Operator::NotIn => write!(f, "{} notin ({})", r.key, r.values.join(","))?,
                Operator::Exists => write!(f, "{}", r.key)?,
                Operator::DoesNotExist => write!(f, "!{}", r.key)?,
            }
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Ident(String),
    Not,
    Equals,
    DoubleEquals,
    NotEquals,
    Comma,
    Open,
    Close,
    End,
}

impl fmt::Display for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Token::Ident(s) => write!(f, "{s:?}"),
            Token::Not => f.write_str("'!'"),
            Token::Equals => f.write_str("'='"),
            Token::DoubleEquals => f.write_str("'=='"),
            Token::NotEquals => f.write_str("'!='"),
            Token::Comma => f.write_str("','"),
            Token::Open => f.write_str("'('"),
            Token::Close => f.write_str("')'"),
            Token::End => f.write_str("end of selector"),
        }
    }
}

struct Parser<'a> {
    input: &'a str,
    pos: usize,
    /// Byte offset of the token last returned by `next`, for error messages.
    token_start: usize,
}

impl<'a> Parser<'a> {
    fn new(input: &'a str) -> Self {
        Self {
            input,
            pos: 0,
            token_start: 0,
        }
    }

    fn error(&self, message: String) -> StoreError {
        StoreError::invalid(
            "labelSelector",
            format!(
                "{:?}: {message} at position {}",
                self.input, self.token_start
            ),
        )
    }

    fn next(&mut self) -> Token {
        let rest = &self.input[self.pos..];
        let trimmed = rest.trim_start();
        self.pos += rest.len() - trimmed.len();
        self.token_start = self.pos;
        let mut chars = trimmed.chars();
        let Some(c) = chars.next() else {
            return Token::End;
        };
        let two = |p: &mut Self, t: Token| {
            p.pos += 2;
            t
        };
        let one = |p: &mut Self, t: Token| {
            p.pos += 1;
            t
        };
        match (c, chars.next()) {
            ('!', Some('=')) => two(self, Token::NotEquals),
            ('=', Some('=')) => two(self, Token::DoubleEquals),
            ('!', _) => one(self, Token::Not),
            ('=', _) => one(self, Token::Equals),
            (',', _) => one(self, Token::Comma),
            ('(', _) => one(self, Token::Open),
            (')', _) => one(self, Token::Close),
            _ => {
                let len = trimmed
                    .find(|c: char| c.is_whitespace() || matches!(c, '!' | '=' | ',' | '(' | ')'))
                    .unwrap_or(trimmed.len());
                self.pos += len;
                Token::Ident(trimmed[..len].to_owned())
            }
        }
    }

    fn peek(&mut self) -> Token {
        let (pos, start) = (self.pos, self.token_start);
        let token = self.next();
        self.pos = pos;
        self.token_start = start;
        token
    }

    fn parse(mut self) -> Result<LabelSelector> {
        let mut requirements = Vec::new();
        if self.peek() == Token::End {
            return Ok(LabelSelector::everything());
        }
        loop {
            requirements.push(self.requirement()?);
            match self.next() {
                Token::End => return Ok(LabelSelector::from_requirements(requirements)),
                Token::Comma => {}
                other => {
                    return Err(
                        self.error(format!("expected ',' or end of selector, found {other}"))
                    );
                }
            }
        }
    }

    fn key(&mut self) -> Result<String> {
        match self.next() {
            Token::Ident(key) => {
                validate_qualified_name("labelSelector", &key)
                    .map_err(|e| self.error(format!("bad key {key:?}: {}", reason_of(e))))?;
                Ok(key)
            }
            other => Err(self.error(format!("expected a label key, found {other}"))),
        }
    }

    fn requirement(&mut self) -> Result<Requirement> {
        if self.peek() == Token::Not {
            self.next();
            let key = self.key()?;
            return Requirement::new(&key, Operator::DoesNotExist, Vec::new());
        }
        let key = self.key()?;
        let operator = match self.peek() {
            Token::End | Token::Comma => {
                return Requirement::new(&key, Operator::Exists, Vec::new());
            }
            Token::Equals | Token::DoubleEquals => Operator::Equals,
            Token::NotEquals => Operator::NotEquals,
            Token::Ident(word) if word == "in" => Operator::In,
            Token::Ident(word) if word == "notin" => Operator::NotIn,
            other => {
                self.next();
                return Err(self.error(format!(
                    "expected one of '=', '==', '!=', 'in', 'notin' after key {key:?}, found {other}"
                )));
            }
        };
        self.next();
        let values = match operator {
            Operator::In | Operator::NotIn => self.value_set()?,
            _ => vec![self.exact_value()?],
        };
        for value in &values {
            validate_label_value("labelSelector", value)
                .map_err(|e| self.error(format!("bad value for key {key:?}: {}", reason_of(e))))?;
        }
        Requirement::new(&key, operator, values)
    }

    fn exact_value(&mut self) -> Result<String> {
        match self.peek() {
            Token::End | Token::Comma => Ok(String::new()),
            Token::Ident(value) => {
                self.next();
                Ok(value)
            }
            other => {
                self.next();
                Err(self.error(format!("expected a value, found {other}")))
            }
        }
    }

    /// `( v1, v2 )`; as in Kubernetes, an empty slot (`()`, `(a,,b)`) is the empty value.
    fn value_set(&mut self) -> Result<Vec<String>> {
        match self.next() {
            Token::Open => {}
            other => {
                return Err(self.error(format!("expected '(' to open a value set, found {other}")));
            }
        }
        let mut values = Vec::new();
        loop {
            match self.next() {
                Token::Ident(value) => {
                    values.push(value);
                    match self.next() {
                        Token::Comma => {}
                        Token::Close => return Ok(values),
                        other => {
                            return Err(self.error(format!(
                                "expected ',' or ')' in value set, found {other}"
                            )));
                        }
                    }
                }
                Token::Comma => values.push(String::new()),
                Token::Close => {
                    values.push(String::new());
                    return Ok(values);
                }
                other => {
                    return Err(self.error(format!(
                        "expected a value or ')' in value set, found {other}"
                    )));
                }
            }
        }
    }
}

fn reason_of(err: StoreError) -> String {
    match err {
        StoreError::Invalid { reason, .. } => reason,
        other => other.to_string(),
    }
}

/// The fields a field selector can test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SelectableField {
    Name,
    Namespace,
}

impl SelectableField {
    fn path(self) -> &'static str {
        match self {
            Self::Name => "metadata.name",
            Self::Namespace => "metadata.namespace",
        }
    }
}

/// One clause of a field selector: `field=value` or `field!=value`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldRequirement {
    pub field: SelectableField,
    pub equals: bool,
    pub value: String,
}

/// A field selector: all requirements must match. The empty selector matches everything.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FieldSelector {
    requirements: Vec<FieldRequirement>,
}

impl FieldSelector {
    /// Matches every object.
    pub fn everything() -> Self {
        Self::default()
    }

    /// Parses `metadata.name=a,metadata.namespace!=b` (`=`, `==` and `!=`). Other fields are
    /// rejected with the list of supported ones.
    pub fn parse(selector: &str) -> Result<Self> {
        let mut requirements = Vec::new();
        for term in selector.split(',') {
            let term = term.trim();
            if term.is_empty() {
                if selector.trim().is_empty() {
                    continue;
                }
                return Err(StoreError::invalid(
                    "fieldSelector",
                    format!("{selector:?}: empty term"),
                ));
            }
            let (field, equals, value) = if let Some((f, v)) = term.split_once("!=") {
                (f, false, v)
            } else if let Some((f, v)) = term.split_once("==") {
                (f, true, v)
            } else if let Some((f, v)) = term.split_once('=') {
                (f, true, v)
            } else {
                return Err(StoreError::invalid(
                    "fieldSelector",
                    format!("{term:?}: expected field=value, field==value or field!=value"),
                ));
            };
            let field = match field.trim() {
                "metadata.name" => SelectableField::Name,
                "metadata.namespace" => SelectableField::Namespace,
                other => {
                    return Err(StoreError::invalid(
                        "fieldSelector",
                        format!(
                            "field label {other:?} is not supported; supported: metadata.name, metadata.namespace"
                        ),
                    ));
                }
            };
            requirements.push(FieldRequirement {
                field,
                equals,
                value: value.trim().to_owned(),
            });
        }
        Ok(Self { requirements })
    }

    /// Whether the selector matches everything.
    pub fn is_everything(&self) -> bool {
        self.requirements.is_empty()
    }

    /// Whether an object satisfies every requirement.
    pub fn matches_object(&self, object: &Value) -> bool {
        self.requirements.iter().all(|r| {
            let actual = match r.field {
                SelectableField::Name => meta::name(object),
                SelectableField::Namespace => meta::namespace(object),
            };
            (actual == r.value) == r.equals
        })
    }
}

impl FromStr for FieldSelector {
    type Err = StoreError;

    fn from_str(s: &str) -> Result<Self> {
        Self::parse(s)
    }
}

impl fmt::Display for FieldSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, r) in self.requirements.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(
                f,
                "{}{}{}",
                r.field.path(),
                if r.equals { "=" } else { "!=" },
                r.value
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn reason(err: StoreError) -> String {
        match err {
            StoreError::Invalid { field, reason } => {
                assert_eq!(field, "labelSelector");
                reason
            }
            other => panic!("expected Invalid, got {other:?}"),
        }
    }

    #[test]
    fn every_operator_of_the_selector_syntax_parses_and_matches() {
        let sel = LabelSelector::parse("a=1, b==2,c!=3,d in (x, y),e notin (z),f,!g").unwrap();
        let good = labels(&[("a", "1"), ("b", "2"), ("d", "y"), ("f", "")]);
        assert!(sel.matches(&good));
        for (key, value) in [("a", "9"), ("c", "3"), ("d", "q"), ("e", "z"), ("g", "1")] {
            let mut l = good.clone();
            l.insert(key.into(), value.into());
            assert!(!sel.matches(&l), "{key}={value} should not match");
        }
        let mut without_f = good.clone();
        without_f.remove("f");
        assert!(!sel.matches(&without_f));
    }

    #[test]
    fn not_equals_and_notin_match_objects_without_the_label() {
        let sel = LabelSelector::parse("a!=1,b notin (x)").unwrap();
        assert!(sel.matches(&labels(&[])));
        assert!(sel.matches_object(&json!({"metadata": {}})));
    }

    #[test]
    fn empty_selector_matches_everything_and_display_is_canonical() {
        assert!(LabelSelector::parse("  ").unwrap().is_everything());
        let sel = LabelSelector::parse("z in (b,a,a), !y,x=1,w").unwrap();
        assert_eq!(sel.to_string(), "w,x=1,!y,z in (a,b)");
        assert_eq!(LabelSelector::parse(&sel.to_string()).unwrap(), sel);
    }

    #[test]
    fn empty_values_follow_kubernetes() {
        let sel = LabelSelector::parse("a=,b in (x,,y)").unwrap();
        assert!(sel.matches(&labels(&[("a", ""), ("b", "")])));
        assert!(!sel.matches(&labels(&[("a", "v"), ("b", "")])));
    }

    #[test]
    fn errors_name_the_bad_token() {
        assert!(
            reason(LabelSelector::parse("a in x").unwrap_err())
                .contains("expected '(' to open a value set, found \"x\"")
        );
        assert!(
            reason(LabelSelector::parse("a=b c").unwrap_err())
                .contains("expected ',' or end of selector, found \"c\"")
        );
        assert!(
            reason(LabelSelector::parse("a=b,").unwrap_err())
                .contains("expected a label key, found end of selector")
        );
        assert!(
            reason(LabelSelector::parse("a in (x").unwrap_err()).contains("found end of selector")
        );
        assert!(
            reason(LabelSelector::parse("a == (x)").unwrap_err())
                .contains("expected a value, found '('")
        );
        assert!(reason(LabelSelector::parse("bad key=1").unwrap_err()).contains("found \"key\""));
        assert!(reason(LabelSelector::parse("-a=1").unwrap_err()).contains("bad key \"-a\""));
        assert!(
            reason(LabelSelector::parse("a=b@d").unwrap_err()).contains("bad value for key \"a\"")
        );
        let msg = reason(LabelSelector::parse("a=1,,b").unwrap_err());
        assert!(msg.contains("position 4"), "{msg}");
    }

    #[test]
    fn metav1_label_selector_converts_with_field_names_in_errors() {
        let sel: metav1::LabelSelector = serde_json::from_value(json!({
            "matchLabels": {"app": "web"},
            "matchExpressions": [{"key": "tier", "operator": "In", "values": ["a", "b"]},
                                 {"key": "gone", "operator": "DoesNotExist"}]
        }))
        .unwrap();
        let sel = LabelSelector::from_k8s(&sel).unwrap();
        assert!(sel.matches(&labels(&[("app", "web"), ("tier", "b")])));
        assert!(!sel.matches(&labels(&[("app", "web"), ("tier", "b"), ("gone", "x")])));
        assert_eq!(sel.to_string(), "app=web,!gone,tier in (a,b)");

        let bad: metav1::LabelSelector =
            serde_json::from_value(json!({"matchExpressions": [{"key": "a", "operator": "In"}]}))
                .unwrap();
        match LabelSelector::from_k8s(&bad).unwrap_err() {
            StoreError::Invalid { field, .. } => assert_eq!(field, "matchExpressions[0]"),
            other => panic!("{other:?}"),
        }
        let bad: metav1::LabelSelector = serde_json::from_value(
            json!({"matchExpressions": [{"key": "a", "operator": "Gt", "values": ["1"]}]}),
        )
        .unwrap();
        match LabelSelector::from_k8s(&bad).unwrap_err() {
            StoreError::Invalid { field, .. } => assert_eq!(field, "matchExpressions[0].operator"),
            other => panic!("{other:?}"),
        }
        assert!(
            LabelSelector::from_k8s(&metav1::LabelSelector::default())
                .unwrap()
                .is_everything()
        );
    }

    #[test]
    fn field_selectors_test_name_and_namespace_and_reject_other_fields() {
        let obj = json!({"metadata": {"name": "a", "namespace": "ns"}});
        assert!(
            FieldSelector::parse("metadata.name=a")
                .unwrap()
                .matches_object(&obj)
        );
        assert!(
            FieldSelector::parse("metadata.name==a,metadata.namespace!=other")
                .unwrap()
                .matches_object(&obj)
        );
        assert!(
            !FieldSelector::parse("metadata.namespace!=ns")
                .unwrap()
                .matches_object(&obj)
        );
        assert!(FieldSelector::parse("").unwrap().is_everything());
        match FieldSelector::parse("spec.replicas=1").unwrap_err() {
            StoreError::Invalid { reason, .. } => assert!(
                reason.contains("\"spec.replicas\" is not supported"),
                "{reason}"
            ),
            other => panic!("{other:?}"),
        }
        assert!(FieldSelector::parse("metadata.name").is_err());
    }
}
