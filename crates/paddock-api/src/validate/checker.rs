//! The schema walker: checks a value against a structural schema node by node, reporting each
//! problem at its field path, with hints for typos and known mistakes.

use std::collections::HashSet;
use std::sync::OnceLock;

use regex::Regex;
use serde_json::Value;

use super::Problem;
use crate::kinds::{Kind, Version};
use crate::schema::object_schema;
use crate::yaml::{Document, PathSegment, Position};

/// The cached schema of a kind and version.
pub(super) fn schema(kind: Kind, version: Version) -> &'static Value {
    static SCHEMAS: OnceLock<Vec<((Kind, Version), Value)>> = OnceLock::new();
    let all = SCHEMAS.get_or_init(|| {
        Kind::ALL
            .into_iter()
            .flat_map(|k| {
                Version::ALL
                    .into_iter()
                    .map(move |v| ((k, v), object_schema(k, v)))
            })
            .collect()
    });
    all.iter()
        .find(|(key, _)| *key == (kind, version))
        .map(|(_, s)| s)
        .unwrap_or(&Value::Null)
}

/// The structural schema of `ObjectMeta`, for checking `metadata`.
pub(super) fn metadata_schema() -> &'static Value {
    static META: OnceLock<Value> = OnceLock::new();
    META.get_or_init(crate::schema::metadata_schema)
}

/// A step of the path as shown to users: `.field`, `[key]` or `[index]`.
#[derive(Clone, Debug)]
enum Shown {
    Field(String),
    Key(String),
    Index(usize),
}

fn render(shown: &[Shown]) -> String {
    let mut out = String::new();
    for s in shown {
        match s {
            Shown::Field(f) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(f);
            }
            Shown::Key(k) => {
                out.push('[');
                out.push_str(k);
                out.push(']');
            }
            Shown::Index(i) => {
                out.push('[');
                out.push_str(&i.to_string());
                out.push(']');
            }
        }
    }
    out
}

/// Walks an object, tracking the path it is at and collecting the problems found.
pub(super) struct Checker<'a> {
    doc: Option<&'a Document>,
    pub(super) kind: Option<Kind>,
    pub(super) version: Option<Version>,
    raw: Vec<PathSegment>,
    shown: Vec<Shown>,
    pub(super) problems: Vec<Problem>,
}

impl<'a> Checker<'a> {
    /// A checker at the root of an object, with no kind or version yet; `doc` gives lines.
    pub(super) fn new(doc: Option<&'a Document>) -> Self {
        Self {
            doc,
            kind: None,
            version: None,
            raw: Vec::new(),
            shown: Vec::new(),
            problems: Vec::new(),
        }
    }

    fn line(&self) -> Option<usize> {
        self.doc
            .and_then(|d| d.position_of(&self.raw))
            .map(|p: Position| p.line)
    }

    pub(super) fn report(&mut self, message: impl Into<String>) {
        let problem = Problem {
            path: render(&self.shown),
            message: message.into(),
            line: self.line(),
        };
        self.problems.push(problem);
    }

    pub(super) fn enter_field(&mut self, name: &str) {
        self.raw.push(PathSegment::Key(name.to_owned()));
        self.shown.push(Shown::Field(name.to_owned()));
    }

    pub(super) fn enter_key(&mut self, key: &str) {
        self.raw.push(PathSegment::Key(key.to_owned()));
        self.shown.push(Shown::Key(key.to_owned()));
    }

    pub(super) fn enter_index(&mut self, i: usize) {
        self.raw.push(PathSegment::Index(i));
        self.shown.push(Shown::Index(i));
    }

    pub(super) fn leave(&mut self) {
        self.raw.pop();
        self.shown.pop();
    }

    pub(super) fn at_field<R>(&mut self, name: &str, f: impl FnOnce(&mut Self) -> R) -> R {
        self.enter_field(name);
        let r = f(self);
        self.leave();
        r
    }

    /// Checks `value` against a structural schema node.
    pub(super) fn check(&mut self, schema: &Value, value: &Value) {
        if value.is_null() {
            // The API server prunes nulls of non-nullable fields; they mean "unset".
            return;
        }
        if schema
            .get("x-kubernetes-int-or-string")
            .and_then(Value::as_bool)
            == Some(true)
        {
            self.check_int_or_string(schema, value);
            return;
        }
        let Some(ty) = schema.get("type").and_then(Value::as_str) else {
            return;
        };
        match ty {
            "object" => self.check_object(schema, value),
            "array" => self.check_array(schema, value),
            "string" => self.check_string(schema, value),
            "integer" => self.check_integer(schema, value),
            "number" if !value.is_number() => {
                self.report(format!("must be a number, got {}", describe(value)));
            }
            "boolean" if !value.is_boolean() => {
                self.report(format!("must be true or false, got {}", describe(value)));
            }
            _ => {}
        }
    }

    fn check_int_or_string(&mut self, schema: &Value, value: &Value) {
        match value {
            Value::Number(n)
                if n.is_i64() || n.is_u64() || n.as_f64().is_some_and(|f| f.fract() == 0.0) => {}
            Value::Number(n) if schema.get("pattern").is_some() => {
                // Fractional quantities are fine written as numbers (`cpu: 0.5`).
                let _ = n;
            }
            Value::String(s) => {
                if let Some(pattern) = schema.get("pattern").and_then(Value::as_str)
                    && !pattern_matches(pattern, s)
                {
                    self.report(format!(
                            "{} is not a valid quantity: write a number with an optional suffix, such as 512Mi, 1Gi, 500m or 2",
                            Value::String(s.clone())
                        ));
                }
            }
            other => self.report(format!(
                "must be a number or a string, got {}",
                describe(other)
            )),
        }
    }

    fn check_string(&mut self, schema: &Value, value: &Value) {
        let Value::String(s) = value else {
            self.report(format!("must be a string, got {}", describe(value)));
            return;
        };
        if let Some(Value::Array(allowed)) = schema.get("enum")
            && !allowed.iter().any(|a| a.as_str() == Some(s))
        {
            let names: Vec<&str> = allowed.iter().filter_map(Value::as_str).collect();
            let hint = names
                .iter()
                .find(|n| n.eq_ignore_ascii_case(s))
                .map(|n| format!(" (did you mean {n:?}?)"))
                .unwrap_or_default();
            self.report(format!(
                "must be one of {}, got {s:?}{hint}",
                names.join(", ")
            ));
        }
        if schema.get("format").and_then(Value::as_str) == Some("date-time")
            && s.parse::<jiff::Timestamp>().is_err()
        {
            self.report(format!(
                "{s:?} is not a date-time: use RFC 3339, such as 2026-01-02T15:04:05Z"
            ));
        }
        if let Some(max) = schema.get("maxLength").and_then(Value::as_u64)
            && s.chars().count() as u64 > max
        {
            self.report(format!("must be at most {max} characters long"));
        }
        if let Some(min) = schema.get("minLength").and_then(Value::as_u64)
            && (s.chars().count() as u64) < min
        {
            self.report(format!("must be at least {min} characters long"));
        }
        if let Some(pattern) = schema.get("pattern").and_then(Value::as_str)
            && !pattern_matches(pattern, s)
        {
            self.report(format!("{s:?} must match the pattern {pattern}"));
        }
    }

    fn check_integer(&mut self, schema: &Value, value: &Value) {
        let n = match value {
            // A whole float (`1.0`) is an integer, as Kubernetes reads it; the range check keeps
            // the cast exact.
            #[allow(clippy::cast_possible_truncation)]
            Value::Number(n) => n.as_i64().or_else(|| {
                n.as_f64()
                    .filter(|f| f.fract() == 0.0 && f.abs() < 9.0e18)
                    .map(|f| f as i64)
            }),
            _ => None,
        };
        let Some(n) = n else {
            self.report(format!("must be an integer, got {}", describe(value)));
            return;
        };
        if schema.get("format").and_then(Value::as_str) == Some("int32")
            && i32::try_from(n).is_err()
        {
            self.report(format!("{n} does not fit in a 32-bit integer"));
            return;
        }
        let min = schema.get("minimum").and_then(Value::as_i64);
        let max = schema.get("maximum").and_then(Value::as_i64);
        match (min, max) {
            (Some(lo), Some(hi)) if n < lo || n > hi => {
                if hi - lo == 1 {
                    self.report(format!("must be {lo} or {hi}, got {n}"));
                } else {
                    self.report(format!("must be between {lo} and {hi}, got {n}"));
                }
            }
            (Some(lo), None) if n < lo => self.report(format!("must be {lo} or more, got {n}")),
            (None, Some(hi)) if n > hi => self.report(format!("must be {hi} or less, got {n}")),
            _ => {}
        }
    }

    fn check_array(&mut self, schema: &Value, value: &Value) {
        let Value::Array(items) = value else {
            self.report(format!("must be a list, got {}", describe(value)));
            return;
        };
        if let Some(max) = schema.get("maxItems").and_then(Value::as_u64)
            && items.len() as u64 > max
        {
            self.report(format!("must have at most {max} items"));
        }
        if let Some(min) = schema.get("minItems").and_then(Value::as_u64)
            && (items.len() as u64) < min
        {
            self.report(format!("must have at least {min} items"));
        }
        let item_schema = schema.get("items").cloned().unwrap_or(Value::Null);
        for (i, item) in items.iter().enumerate() {
            self.enter_index(i);
            self.check(&item_schema, item);
            self.leave();
        }
        match schema.get("x-kubernetes-list-type").and_then(Value::as_str) {
            Some("map") => {
                let keys: Vec<&str> = schema
                    .get("x-kubernetes-list-map-keys")
                    .and_then(Value::as_array)
                    .map(|k| k.iter().filter_map(Value::as_str).collect())
                    .unwrap_or_default();
                let mut seen = HashSet::new();
                for (i, item) in items.iter().enumerate() {
                    let key: Vec<String> = keys
                        .iter()
                        .map(|k| {
                            item.get(*k)
                                .map(default_key_value)
                                .unwrap_or_else(|| default_of(&item_schema, k))
                        })
                        .collect();
                    if !seen.insert(key.clone()) {
                        self.enter_index(i);
                        let described: Vec<String> = keys
                            .iter()
                            .zip(&key)
                            .map(|(k, v)| format!("{k}={v}"))
                            .collect();
                        self.report(format!("duplicate entry with {}", described.join(", ")));
                        self.leave();
                    }
                }
            }
            Some("set") => {
                let mut seen = HashSet::new();
                for (i, item) in items.iter().enumerate() {
                    if !seen.insert(item.to_string()) {
                        self.enter_index(i);
                        self.report(format!("duplicate value {item}"));
                        self.leave();
                    }
                }
            }
            _ => {}
        }
    }

    fn check_object(&mut self, schema: &Value, value: &Value) {
        let Value::Object(map) = value else {
            self.report(format!("must be a mapping, got {}", describe(value)));
            return;
        };
        let properties = schema.get("properties").and_then(Value::as_object);
        let additional = schema.get("additionalProperties").filter(|a| a.is_object());
        let preserve = schema
            .get("x-kubernetes-preserve-unknown-fields")
            .and_then(Value::as_bool)
            == Some(true);
        for (key, child) in map {
            if let Some(child_schema) = properties.and_then(|p| p.get(key)) {
                self.enter_field(key);
                self.check(child_schema, child);
                self.leave();
            } else if let Some(additional) = additional {
                self.enter_key(key);
                self.check(additional, child);
                self.leave();
            } else if !preserve && properties.is_some() {
                self.enter_field(key);
                let known: Vec<&str> = properties
                    .map(|p| p.keys().map(String::as_str).collect())
                    .unwrap_or_default();
                let message = self.unknown_field_message(key, &known);
                self.report(message);
                self.leave();
            }
        }
        if let Some(Value::Array(required)) = schema.get("required") {
            for name in required.iter().filter_map(Value::as_str) {
                if map.get(name).is_none_or(Value::is_null) {
                    self.enter_field(name);
                    let hint = self.required_hint();
                    // Point at the parent: the missing field has no line of its own.
                    self.raw.pop();
                    let line = self.line();
                    self.raw.push(PathSegment::Key(name.to_owned()));
                    let problem = Problem {
                        path: render(&self.shown),
                        message: format!("required field is missing{hint}"),
                        line,
                    };
                    self.problems.push(problem);
                    self.leave();
                }
            }
        }
    }

    /// The message for an unknown `field`; call it with the field entered on the path.
    fn unknown_field_message(&self, field: &str, known: &[&str]) -> String {
        let path = render(&self.shown[..self.shown.len().saturating_sub(1)]);
        if let Some(hint) = known_mistake(self.kind, self.version, &path, field) {
            return format!("unknown field; {hint}");
        }
        let near = known
            .iter()
            .filter(|k| k.eq_ignore_ascii_case(field) || edit_distance(k, field) <= 2)
            .min_by_key(|k| edit_distance(k, field));
        match near {
            Some(k) => format!("unknown field (did you mean {k:?}?)"),
            None if known.len() <= 8 => {
                format!("unknown field; known fields here: {}", known.join(", "))
            }
            None => "unknown field".to_owned(),
        }
    }

    fn required_hint(&self) -> &'static str {
        match (self.kind, self.version, render(&self.shown).as_str()) {
            (Some(Kind::SandboxClaim), Some(Version::V1beta1), "spec.warmPoolRef") => {
                ": name the SandboxWarmPool to take a sandbox from (a pool with replicas: 0 means no warm pool)"
            }
            (Some(Kind::SandboxClaim), Some(Version::V1alpha1), "spec.sandboxTemplateRef") => {
                ": name the SandboxTemplate to use"
            }
            (Some(Kind::SandboxWarmPool), _, "spec.sandboxTemplateRef") => {
                ": name the SandboxTemplate the pool's sandboxes are made from"
            }
            (Some(Kind::SandboxWarmPool), Some(Version::V1alpha1), "spec.replicas") => {
                ": the number of ready sandboxes to keep"
            }
            (_, _, "spec.podTemplate") => {
                ": the pod the sandbox runs (spec.podTemplate.spec with at least one container)"
            }
            (_, _, "spec") => ": every object of this kind needs a spec",
            _ => "",
        }
    }
}

/// Hints for mistakes seen in the wild: fields of the other version, and schemas that no
/// upstream release had (from blog posts and integrations).
fn known_mistake(
    kind: Option<Kind>,
    version: Option<Version>,
    parent: &str,
    field: &str,
) -> Option<String> {
    use Kind::*;
    use Version::*;
    let (kind, version) = (kind?, version?);
    let hint = match (kind, version, parent, field) {
        (SandboxWarmPool, _, "spec", "minSize" | "maxSize" | "size") => {
            "a SandboxWarmPool has no minimum or maximum size: set spec.replicas, the number of ready sandboxes to keep (an HPA can scale it)"
        }
        (SandboxWarmPool, _, "spec", "template" | "podTemplate" | "runtimeClassName") => {
            "a SandboxWarmPool does not describe its sandboxes: put the pod in a SandboxTemplate (spec.podTemplate) and reference it with spec.sandboxTemplateRef.name"
        }
        (SandboxWarmPool, _, "spec", "idleTimeout" | "ttl") => {
            "warm pool members do not expire; end claimed sandboxes with the SandboxClaim's spec.lifecycle (shutdownTime or ttlSecondsAfterFinished)"
        }
        (SandboxWarmPool, _, "spec", "templateRef") => "the field is spec.sandboxTemplateRef.name",
        (SandboxClaim, V1alpha1, "spec", "templateRef") => {
            "the field is spec.sandboxTemplateRef.name"
        }
        (SandboxClaim, V1beta1, "spec", "templateRef" | "sandboxTemplateRef") => {
            "a v1beta1 SandboxClaim names a warm pool, spec.warmPoolRef.name, whose spec.sandboxTemplateRef names the template; to name the template directly use apiVersion extensions.agents.x-k8s.io/v1alpha1 with spec.sandboxTemplateRef.name"
        }
        (SandboxClaim, V1alpha1, "spec", "warmPoolRef") => {
            "spec.warmPoolRef is v1beta1; a v1alpha1 claim uses spec.sandboxTemplateRef.name and spec.warmpool (a pool name, default or none)"
        }
        (SandboxClaim, V1beta1, "spec", "warmpool" | "warmPool") => {
            "a v1beta1 SandboxClaim names its pool with spec.warmPoolRef.name"
        }
        (SandboxClaim, _, "spec", "ttl" | "ttlSeconds" | "timeout" | "expiry") => {
            "a claim expires through spec.lifecycle: shutdownTime (an RFC 3339 time) or ttlSecondsAfterFinished, with shutdownPolicy Delete, DeleteForeground or Retain"
        }
        (
            SandboxClaim,
            _,
            "spec",
            "shutdownTime" | "shutdownPolicy" | "ttlSecondsAfterFinished",
        ) => "it belongs under spec.lifecycle",
        (SandboxClaim, V1alpha1, "spec", "volumeClaimTemplates") => {
            "claim volumeClaimTemplates exist only in v1beta1"
        }
        (Sandbox, V1beta1, "spec", "replicas") => {
            "a v1beta1 Sandbox uses spec.operatingMode: Running or Suspended (replicas is v1alpha1)"
        }
        (Sandbox, V1alpha1, "spec", "operatingMode") => {
            "a v1alpha1 Sandbox uses spec.replicas: 1 to run, 0 to suspend (operatingMode is v1beta1)"
        }
        (Sandbox, _, "spec", "lifecycle") => {
            "a Sandbox's shutdownTime and shutdownPolicy sit directly under spec"
        }
        (Sandbox | SandboxTemplate, _, "spec", "template" | "podSpec") => {
            "the pod goes in spec.podTemplate (with its own spec and metadata)"
        }
        (
            Sandbox | SandboxTemplate,
            _,
            "spec",
            "containers" | "image" | "runtimeClassName" | "volumes",
        ) => "pod fields go in spec.podTemplate.spec",
        (SandboxTemplate, V1alpha1, "spec", "volumeClaimTemplatesPolicy") => {
            "volumeClaimTemplatesPolicy exists only in v1beta1"
        }
        (SandboxTemplate, _, "spec", "replicas") => {
            "a template has no replicas; a SandboxWarmPool keeps spec.replicas sandboxes of a template"
        }
        _ => return None,
    };
    Some(hint.to_owned())
}

pub(super) fn describe(value: &Value) -> String {
    match value {
        Value::Null => "null".to_owned(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => format!("{s:?}"),
        Value::Array(_) => "a list".to_owned(),
        Value::Object(_) => "a mapping".to_owned(),
    }
}

fn default_key_value(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn default_of(item_schema: &Value, key: &str) -> String {
    item_schema
        .pointer(&format!("/properties/{key}/default"))
        .map(default_key_value)
        .unwrap_or_default()
}

fn pattern_matches(pattern: &str, s: &str) -> bool {
    thread_local! {
        static CACHE: std::cell::RefCell<Vec<(String, Option<Regex>)>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    CACHE.with(|cache| {
        let mut cache = cache.borrow_mut();
        if let Some((_, re)) = cache.iter().find(|(p, _)| p == pattern) {
            return re.as_ref().is_none_or(|re| re.is_match(s));
        }
        let re = Regex::new(pattern).ok();
        let ok = re.as_ref().is_none_or(|re| re.is_match(s));
        cache.push((pattern.to_owned(), re));
        ok
    })
}

pub(super) fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.to_ascii_lowercase().chars().collect();
    let b: Vec<char> = b.to_ascii_lowercase().chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            cur[j + 1] = (prev[j] + usize::from(ca != cb))
                .min(prev[j + 1] + 1)
                .min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}
