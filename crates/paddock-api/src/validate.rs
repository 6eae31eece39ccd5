//! Validation of objects of the four kinds: the one function every entry point (REST API,
//! controllers, CLI) calls before trusting an object.
//!
//! An object is checked against the same structural schema the CRDs carry (types, enums,
//! required fields, ranges, patterns, formats, unknown fields), its metadata against Kubernetes'
//! naming rules, and then against the rules a schema cannot state (a pod needs a container,
//! volume claim templates need unique names, ...). Every problem is reported, each with its
//! field path and, for YAML input, its line; known mistakes (fields of other versions, seed
//! manifests that follow no upstream schema) get a hint naming the right field.

use std::collections::HashSet;
use std::fmt;
use std::sync::OnceLock;

use regex::Regex;
use serde_json::{Map, Value};

use crate::any::AnyObject;
use crate::kinds::{Kind, Version, split_api_version};
use crate::names::{CORE_GROUP, EXTENSIONS_GROUP};
use crate::schema::{VOLUME_CLAIM_TEMPLATES_IMMUTABLE_MESSAGE, object_schema};
use crate::syntax;
use crate::yaml::{self, Document, PathSegment, Position, SyntaxError};

/// One thing wrong with an object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// Where, as a field path (`spec.podTemplate.spec.containers[0].image`); empty for the
    /// whole document.
    pub path: String,
    /// What is wrong and, where possible, what to write instead.
    pub message: String,
    /// The line in the YAML source, when the object came from text.
    pub line: Option<usize>,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.message)?;
        } else {
            write!(f, "{}: {}", self.path, self.message)?;
        }
        if let Some(line) = self.line {
            write!(f, " (line {line})")?;
        }
        Ok(())
    }
}

/// An object that passed validation.
#[derive(Clone, Debug, PartialEq)]
pub struct Valid {
    /// The typed object, with the schema's defaults applied (as the API server stores it).
    pub object: AnyObject,
    /// The object as it was given (JSON form).
    pub value: Value,
}

/// The outcome for one document of a YAML stream.
#[derive(Clone, Debug, PartialEq)]
pub struct DocumentReport {
    /// Position of the document in the stream, from 1.
    pub number: usize,
    /// Line the document starts on.
    pub line: Option<usize>,
    /// `kind` as written, if any.
    pub kind: Option<String>,
    /// `metadata.name` (or `generateName`) as written, if any.
    pub name: Option<String>,
    /// The validated object, or every problem found.
    pub result: Result<Valid, Vec<Problem>>,
}

/// Validates every document of a YAML (or JSON) stream.
///
/// # Errors
/// The text is not YAML; the error carries line and column.
pub fn validate_text(text: &str) -> Result<Vec<DocumentReport>, SyntaxError> {
    let docs = yaml::parse_documents(text)?;
    Ok(docs
        .iter()
        .enumerate()
        .map(|(i, doc)| DocumentReport {
            number: i + 1,
            line: doc
                .start
                .map(|p| p.line)
                .or_else(|| doc.positions.get(&Vec::new()).map(|p| p.line)),
            kind: doc
                .value
                .get("kind")
                .and_then(Value::as_str)
                .map(str::to_owned),
            name: doc
                .value
                .pointer("/metadata/name")
                .or_else(|| doc.value.pointer("/metadata/generateName"))
                .and_then(Value::as_str)
                .map(str::to_owned),
            result: validate_document(doc),
        })
        .collect())
}

/// Validates one parsed document (problems carry lines).
///
/// # Errors
/// Every problem found.
pub fn validate_document(doc: &Document) -> Result<Valid, Vec<Problem>> {
    validate(&doc.value, Some(doc))
}

/// Validates an object given as JSON (as the REST API receives it).
///
/// # Errors
/// Every problem found.
pub fn validate_value(value: &Value) -> Result<Valid, Vec<Problem>> {
    validate(value, None)
}

/// Checks the rules that compare an update with the object it replaces: name and namespace
/// are immutable, and so are a v1beta1 Sandbox's `volumeClaimTemplates` (the CRD's CEL rule).
/// Both objects must be valid and of the same kind; `old` and `new` are in their own versions.
///
/// # Errors
/// Every violated rule.
pub fn validate_update(old: &AnyObject, new: &AnyObject) -> Result<(), Vec<Problem>> {
    let mut problems = Vec::new();
    let problem = |path: &str, message: String| Problem {
        path: path.to_owned(),
        message,
        line: None,
    };
    if old.kind() != new.kind() {
        problems.push(problem(
            "kind",
            format!("cannot change from {} to {}", old.kind(), new.kind()),
        ));
        return Err(problems);
    }
    if old.metadata().name != new.metadata().name {
        problems.push(problem("metadata.name", "is immutable".to_owned()));
    }
    if old.metadata().namespace.is_some()
        && new.metadata().namespace.is_some()
        && old.metadata().namespace != new.metadata().namespace
    {
        problems.push(problem("metadata.namespace", "is immutable".to_owned()));
    }
    if old.kind() == Kind::Sandbox {
        let vcts = |o: &AnyObject| {
            o.clone()
                .convert(Version::V1beta1)
                .to_value()
                .pointer("/spec/volumeClaimTemplates")
                .cloned()
        };
        if vcts(old) != vcts(new) {
            problems.push(problem(
                "spec",
                VOLUME_CLAIM_TEMPLATES_IMMUTABLE_MESSAGE.to_owned(),
            ));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems)
    }
}

/// The cached schema of a kind and version.
fn schema(kind: Kind, version: Version) -> &'static Value {
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
fn metadata_schema() -> &'static Value {
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

struct Checker<'a> {
    doc: Option<&'a Document>,
    kind: Option<Kind>,
    version: Option<Version>,
    raw: Vec<PathSegment>,
    shown: Vec<Shown>,
    problems: Vec<Problem>,
}

impl Checker<'_> {
    fn line(&self) -> Option<usize> {
        self.doc
            .and_then(|d| d.position_of(&self.raw))
            .map(|p: Position| p.line)
    }

    fn report(&mut self, message: impl Into<String>) {
        let problem = Problem {
            path: render(&self.shown),
            message: message.into(),
            line: self.line(),
        };
        self.problems.push(problem);
    }

    fn enter_field(&mut self, name: &str) {
        self.raw.push(PathSegment::Key(name.to_owned()));
        self.shown.push(Shown::Field(name.to_owned()));
    }

    fn enter_key(&mut self, key: &str) {
        self.raw.push(PathSegment::Key(key.to_owned()));
        self.shown.push(Shown::Key(key.to_owned()));
    }

    fn enter_index(&mut self, i: usize) {
        self.raw.push(PathSegment::Index(i));
        self.shown.push(Shown::Index(i));
    }

    fn leave(&mut self) {
        self.raw.pop();
        self.shown.pop();
    }

    fn at_field<R>(&mut self, name: &str, f: impl FnOnce(&mut Self) -> R) -> R {
        self.enter_field(name);
        let r = f(self);
        self.leave();
        r
    }

    /// Checks `value` against a structural schema node.
    fn check(&mut self, schema: &Value, value: &Value) {
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

fn describe(value: &Value) -> String {
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

fn edit_distance(a: &str, b: &str) -> usize {
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

/// Resolves `apiVersion` and `kind`, reporting what is wrong with them. Returns the kind and
/// version to check the rest of the object against, when they can be told.
fn resolve_type(c: &mut Checker<'_>, obj: &Map<String, Value>) -> Option<(Kind, Version)> {
    let kind_str = obj.get("kind").and_then(Value::as_str);
    let api_version = obj.get("apiVersion").and_then(Value::as_str);
    let kind = match kind_str {
        None => {
            c.at_field("kind", |c| match obj.get("kind") {
                None => c.report("required field is missing: one of Sandbox, SandboxTemplate, SandboxClaim, SandboxWarmPool"),
                Some(other) => c.report(format!("must be a string, got {}", describe(other))),
            });
            None
        }
        Some(k) => match Kind::from_kind(k) {
            Some(kind) => Some(kind),
            None => {
                let near = Kind::ALL.into_iter().find(|known| {
                    known.as_str().eq_ignore_ascii_case(k) || edit_distance(known.as_str(), k) <= 2
                });
                c.at_field("kind", |c| {
                    c.report(match near {
                        Some(n) => format!("unknown kind {k:?} (did you mean \"{n}\"?)"),
                        None => format!("unknown kind {k:?}: paddock serves Sandbox, SandboxTemplate, SandboxClaim and SandboxWarmPool"),
                    })
                });
                None
            }
        },
    };
    let Some(api_version) = api_version else {
        c.at_field("apiVersion", |c| {
            let example = kind
                .map(|k| format!(": use {}", k.api_version(Version::STORAGE)))
                .unwrap_or_default();
            c.report(format!("required field is missing{example}"));
        });
        return None;
    };
    let (group, version_str) = split_api_version(api_version);
    let version = Version::parse(version_str);
    if let Some(kind) = kind
        && group != kind.group()
    {
        c.at_field("apiVersion", |c| {
            let v = version.unwrap_or(Version::STORAGE);
            if group == CORE_GROUP || group == EXTENSIONS_GROUP {
                c.report(format!(
                    "{kind} is in the {} group, not {group}: use apiVersion: {}",
                    kind.group(),
                    kind.api_version(v)
                ));
            } else {
                c.report(format!(
                    "{kind} is served as {} (or {})",
                    kind.api_version(Version::V1beta1),
                    kind.api_version(Version::V1alpha1)
                ));
            }
        });
    }
    let Some(version) = version else {
        c.at_field("apiVersion", |c| {
            c.report(format!(
                "version {version_str:?} is not served: use v1beta1 (or the deprecated v1alpha1)"
            ))
        });
        return None;
    };
    kind.map(|k| (k, version))
}

fn validate(value: &Value, doc: Option<&Document>) -> Result<Valid, Vec<Problem>> {
    let mut c = Checker {
        doc,
        kind: None,
        version: None,
        raw: Vec::new(),
        shown: Vec::new(),
        problems: Vec::new(),
    };
    let Value::Object(obj) = value else {
        c.report(format!(
            "an object must be a mapping with apiVersion, kind, metadata and spec, got {}",
            describe(value)
        ));
        return Err(c.problems);
    };
    let resolved = resolve_type(&mut c, obj);
    if let Some((kind, version)) = resolved {
        c.kind = Some(kind);
        c.version = Some(version);
    }
    check_metadata(&mut c, obj.get("metadata"));
    if let Some((kind, version)) = resolved {
        let schema = schema(kind, version);
        let mut body = obj.clone();
        body.remove("metadata");
        c.check(schema, &Value::Object(body));
        check_semantics(&mut c, kind, value);
    }
    if !c.problems.is_empty() {
        return Err(c.problems);
    }
    let Some((kind, version)) = resolved else {
        return Err(c.problems);
    };
    let mut defaulted = value.clone();
    crate::schema::apply_defaults(schema(kind, version), &mut defaulted);
    match AnyObject::from_value(kind, version, defaulted) {
        Ok(object) => Ok(Valid {
            object,
            value: value.clone(),
        }),
        Err(e) => {
            c.report(format!("does not fit the {kind} {version} type: {e}"));
            Err(c.problems)
        }
    }
}

fn check_metadata(c: &mut Checker<'_>, metadata: Option<&Value>) {
    c.enter_field("metadata");
    match metadata {
        None | Some(Value::Null) => {
            c.report("required field is missing: every object needs metadata.name");
            c.leave();
            return;
        }
        Some(m) => c.check(metadata_schema(), m),
    }
    let Some(Value::Object(meta)) = metadata else {
        c.leave();
        return;
    };
    let name = meta.get("name").and_then(Value::as_str);
    let generate_name = meta.get("generateName").and_then(Value::as_str);
    match (name, generate_name) {
        (None, None) => c.at_field("name", |c| {
            c.report("required field is missing (or set metadata.generateName)")
        }),
        (Some(name), _) => c.at_field("name", |c| check_object_name(c, name)),
        (None, Some(prefix)) => c.at_field("generateName", |c| {
            // The generated name is the prefix plus 5 characters.
            check_object_name(c, &format!("{prefix}abcde"));
        }),
    }
    if let Some(ns) = meta.get("namespace").and_then(Value::as_str) {
        c.at_field("namespace", |c| {
            for e in syntax::dns1123_label(ns) {
                c.report(format!("{ns:?} {e}"));
            }
        });
    }
    for (field, is_label) in [("labels", true), ("annotations", false)] {
        let Some(Value::Object(entries)) = meta.get(field) else {
            continue;
        };
        c.enter_field(field);
        let mut total = 0usize;
        for (key, value) in entries {
            c.enter_key(key);
            for e in syntax::qualified_name(key) {
                c.report(format!("key {key:?} {e}"));
            }
            if let (true, Some(v)) = (is_label, value.as_str()) {
                for e in syntax::label_value(v) {
                    c.report(format!("value {v:?} {e}"));
                }
            }
            total += key.len() + value.as_str().map_or(0, str::len);
            c.leave();
        }
        if !is_label && total > 256 * 1024 {
            c.report("annotations must total at most 256 KiB");
        }
        c.leave();
    }
    c.leave();
}

/// Object names: a DNS subdomain for every kind, and tighter where the name becomes other
/// names (a Sandbox's pod and Service, a claim's cold Sandbox, a pool's `<pool>-xxxxx` members).
fn check_object_name(c: &mut Checker<'_>, name: &str) {
    let label_limit = match c.kind {
        Some(Kind::Sandbox) => Some((
            63,
            "a Sandbox's pod and Service take its name, which must be a DNS label",
        )),
        Some(Kind::SandboxClaim) => Some((
            63,
            "a claim's cold-start Sandbox (and its pod and Service) takes the claim's name",
        )),
        Some(Kind::SandboxWarmPool) => Some((
            57,
            "members are named <pool>-<5 characters> and must fit in a 63-character DNS label",
        )),
        _ => None,
    };
    match label_limit {
        Some((limit, why)) => {
            if name.len() > limit {
                c.report(format!(
                    "{name:?} is {} characters; it must be at most {limit}: {why}",
                    name.len()
                ));
            }
            let shape: Vec<String> = syntax::dns1123_label(&name[..name.len().min(63)])
                .into_iter()
                .filter(|e| !e.starts_with("must be no more"))
                .collect();
            for e in shape {
                c.report(format!("{name:?} {e}"));
            }
        }
        None => {
            for e in syntax::dns1123_subdomain(name) {
                c.report(format!("{name:?} {e}"));
            }
        }
    }
}

/// Rules a schema cannot express.
fn check_semantics(c: &mut Checker<'_>, kind: Kind, value: &Value) {
    let Some(spec) = value.get("spec").filter(|s| s.is_object()) else {
        return;
    };
    c.enter_field("spec");
    if matches!(kind, Kind::Sandbox | Kind::SandboxTemplate)
        && let Some(pod_spec) = spec.pointer("/podTemplate/spec").filter(|p| p.is_object())
    {
        c.enter_field("podTemplate");
        c.enter_field("spec");
        check_pod_spec(c, pod_spec);
        c.leave();
        c.leave();
    }
    if let Some(Value::Array(vcts)) = spec.get("volumeClaimTemplates") {
        c.enter_field("volumeClaimTemplates");
        check_volume_claim_templates(c, vcts);
        c.leave();
    }
    if kind == Kind::SandboxClaim
        && let Some(Value::Array(env)) = spec.get("env")
    {
        c.enter_field("env");
        let mut seen = HashSet::new();
        for (i, var) in env.iter().enumerate() {
            let Some(name) = var.get("name").and_then(Value::as_str) else {
                continue;
            };
            c.enter_index(i);
            c.enter_field("name");
            for e in syntax::env_var_name(name) {
                c.report(format!("{name:?} {e}"));
            }
            let container = var
                .get("containerName")
                .and_then(Value::as_str)
                .unwrap_or("");
            if !seen.insert((container.to_owned(), name.to_owned())) {
                c.report(format!("{name:?} is set twice for the same container"));
            }
            c.leave();
            c.leave();
        }
        c.leave();
    }
    c.leave();
}

fn check_pod_spec(c: &mut Checker<'_>, pod_spec: &Value) {
    match pod_spec.get("containers") {
        Some(Value::Array(containers)) if !containers.is_empty() => {
            c.enter_field("containers");
            for (i, container) in containers.iter().enumerate() {
                c.enter_index(i);
                if let Some(name) = container.get("name").and_then(Value::as_str) {
                    c.at_field("name", |c| {
                        for e in syntax::dns1123_label(name) {
                            c.report(format!("{name:?} {e}"));
                        }
                    });
                }
                if container
                    .get("image")
                    .and_then(Value::as_str)
                    .is_none_or(str::is_empty)
                {
                    c.at_field("image", |c| {
                        c.report("required field is missing: the container image to run (e.g. python:3.12-slim)");
                    });
                }
                c.leave();
            }
            c.leave();
        }
        Some(Value::Array(_)) => c.at_field("containers", |c| {
            c.report("must have at least one container")
        }),
        _ => {}
    }
}

fn check_volume_claim_templates(c: &mut Checker<'_>, vcts: &[Value]) {
    let mut seen = HashSet::new();
    for (i, vct) in vcts.iter().enumerate() {
        c.enter_index(i);
        match vct.pointer("/metadata/name").and_then(Value::as_str) {
            None | Some("") => c.report(
                "metadata.name is required: it names the volume and the PVC (<name>-<sandbox>)",
            ),
            Some(name) => {
                c.enter_field("metadata");
                c.enter_field("name");
                for e in syntax::dns1123_label(name) {
                    c.report(format!("{name:?} {e}"));
                }
                if !seen.insert(name.to_owned()) {
                    c.report(format!("duplicate volume claim template name {name:?}"));
                }
                c.leave();
                c.leave();
            }
        }
        c.leave();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems(text: &str) -> Vec<String> {
        let reports = validate_text(text).expect("valid YAML");
        assert_eq!(reports.len(), 1, "one document expected");
        match &reports[0].result {
            Ok(_) => Vec::new(),
            Err(p) => p.iter().map(ToString::to_string).collect(),
        }
    }

    fn assert_problem(text: &str, expected: &str) {
        let found = problems(text);
        assert!(
            found.iter().any(|p| p == expected),
            "expected {expected:?} in {found:#?}"
        );
    }

    const SANDBOX_ALPHA: &str = "apiVersion: agents.x-k8s.io/v1alpha1
kind: Sandbox
metadata:
  name: demo
spec:
  podTemplate:
    spec:
      containers:
      - name: main
        image: busybox
";

    #[test]
    fn a_minimal_sandbox_is_valid_and_gets_defaults() {
        let reports = validate_text(SANDBOX_ALPHA).unwrap();
        let valid = reports[0].result.as_ref().expect("valid");
        let AnyObject::SandboxV1alpha1(s) = &valid.object else {
            panic!("wrong type")
        };
        assert_eq!(s.spec.replicas, Some(1), "schema default applied");
        assert_eq!(reports[0].kind.as_deref(), Some("Sandbox"));
        assert_eq!(reports[0].name.as_deref(), Some("demo"));
    }

    #[test]
    fn replicas_out_of_range_names_the_allowed_values_and_line() {
        let text = SANDBOX_ALPHA.replace(
            "spec:\n  podTemplate",
            "spec:\n  replicas: 3\n  podTemplate",
        );
        assert_problem(&text, "spec.replicas: must be 0 or 1, got 3 (line 6)");
    }

    #[test]
    fn wrong_types_are_reported_with_what_was_found() {
        let text = SANDBOX_ALPHA.replace(
            "spec:\n  podTemplate",
            "spec:\n  replicas: one\n  service: maybe\n  podTemplate",
        );
        assert_problem(
            &text,
            "spec.replicas: must be an integer, got \"one\" (line 6)",
        );
        assert_problem(
            &text,
            "spec.service: must be true or false, got \"maybe\" (line 7)",
        );
    }

    #[test]
    fn enums_suggest_the_right_spelling() {
        let text = SANDBOX_ALPHA.replace(
            "spec:\n  podTemplate",
            "spec:\n  shutdownPolicy: delete\n  podTemplate",
        );
        assert_problem(
            &text,
            "spec.shutdownPolicy: must be one of Delete, Retain, got \"delete\" (did you mean \"Delete\"?) (line 6)",
        );
    }

    #[test]
    fn date_times_must_be_rfc3339() {
        let text = SANDBOX_ALPHA.replace(
            "spec:\n  podTemplate",
            "spec:\n  shutdownTime: tomorrow\n  podTemplate",
        );
        assert_problem(
            &text,
            "spec.shutdownTime: \"tomorrow\" is not a date-time: use RFC 3339, such as 2026-01-02T15:04:05Z (line 6)",
        );
    }

    #[test]
    fn required_fields_point_at_their_parent() {
        let text = "apiVersion: extensions.agents.x-k8s.io/v1beta1\nkind: SandboxClaim\nmetadata:\n  name: c\nspec:\n  lifecycle:\n    shutdownPolicy: Delete\n";
        assert_problem(
            text,
            "spec.warmPoolRef: required field is missing: name the SandboxWarmPool to take a sandbox from (a pool with replicas: 0 means no warm pool) (line 5)",
        );
    }

    #[test]
    fn typos_get_a_did_you_mean() {
        let text =
            SANDBOX_ALPHA.replace("spec:\n  podTemplate", "spec:\n  replica: 1\n  podTemplate");
        assert_problem(
            &text,
            "spec.replica: unknown field (did you mean \"replicas\"?) (line 6)",
        );
    }

    #[test]
    fn fields_of_the_other_version_are_explained() {
        let text = SANDBOX_ALPHA.replace(
            "spec:\n  podTemplate",
            "spec:\n  operatingMode: Suspended\n  podTemplate",
        );
        assert_problem(
            &text,
            "spec.operatingMode: unknown field; a v1alpha1 Sandbox uses spec.replicas: 1 to run, 0 to suspend (operatingMode is v1beta1) (line 6)",
        );
    }

    #[test]
    fn seed_warm_pool_with_min_and_max_size_is_explained() {
        let text = "apiVersion: agents.x-k8s.io/v1alpha1
kind: SandboxWarmPool
metadata:
  name: kubectl-ai-pool
  namespace: computer
spec:
  template:
    spec:
      podTemplate:
        spec:
          containers:
          - name: main
            image: bitnami/kubectl:latest
  minSize: 3
  maxSize: 10
";
        let found = problems(text);
        assert!(found.contains(&"apiVersion: SandboxWarmPool is in the extensions.agents.x-k8s.io group, not agents.x-k8s.io: use apiVersion: extensions.agents.x-k8s.io/v1alpha1 (line 1)".to_owned()), "{found:#?}");
        assert!(found.contains(&"spec.minSize: unknown field; a SandboxWarmPool has no minimum or maximum size: set spec.replicas, the number of ready sandboxes to keep (an HPA can scale it) (line 14)".to_owned()), "{found:#?}");
        assert!(
            found
                .iter()
                .any(|p| p
                    .starts_with("spec.maxSize: unknown field; a SandboxWarmPool has no minimum")),
            "{found:#?}"
        );
        assert!(
            found.iter().any(|p| p.starts_with(
                "spec.template: unknown field; a SandboxWarmPool does not describe its sandboxes"
            )),
            "{found:#?}"
        );
        assert!(found.contains(&"spec.replicas: required field is missing: the number of ready sandboxes to keep (line 6)".to_owned()), "{found:#?}");
        assert!(
            found
                .iter()
                .any(|p| p.starts_with("spec.sandboxTemplateRef: required field is missing")),
            "{found:#?}"
        );
    }

    #[test]
    fn seed_claim_with_template_ref_and_ttl_is_explained() {
        let text = "apiVersion: agents.x-k8s.io/v1alpha1
kind: SandboxClaim
metadata:
  name: my-session
spec:
  templateRef:
    name: python-agent
  ttl: 1h
";
        let found = problems(text);
        assert!(found.contains(&"apiVersion: SandboxClaim is in the extensions.agents.x-k8s.io group, not agents.x-k8s.io: use apiVersion: extensions.agents.x-k8s.io/v1alpha1 (line 1)".to_owned()), "{found:#?}");
        assert!(found.contains(&"spec.templateRef: unknown field; the field is spec.sandboxTemplateRef.name (line 6)".to_owned()), "{found:#?}");
        assert!(
            found.iter().any(|p| p
                .starts_with("spec.ttl: unknown field; a claim expires through spec.lifecycle")
                && p.ends_with("(line 8)")),
            "{found:#?}"
        );
    }

    #[test]
    fn unknown_kinds_and_versions_are_named() {
        assert_problem(
            "apiVersion: agents.x-k8s.io/v1alpha1\nkind: Sandboxx\nmetadata: {name: a}\nspec: {}\n",
            "kind: unknown kind \"Sandboxx\" (did you mean \"Sandbox\"?) (line 2)",
        );
        assert_problem(
            "apiVersion: agents.x-k8s.io/v1\nkind: Sandbox\nmetadata: {name: a}\nspec: {}\n",
            "apiVersion: version \"v1\" is not served: use v1beta1 (or the deprecated v1alpha1) (line 1)",
        );
        assert_problem(
            "kind: Sandbox\nmetadata: {name: a}\nspec: {}\n",
            "apiVersion: required field is missing: use agents.x-k8s.io/v1beta1 (line 1)",
        );
        assert_problem(
            "apiVersion: agents.x-k8s.io/v1beta1\nkind: Pod\nmetadata: {name: a}\n",
            "kind: unknown kind \"Pod\": paddock serves Sandbox, SandboxTemplate, SandboxClaim and SandboxWarmPool (line 2)",
        );
    }

    #[test]
    fn names_must_fit_what_they_become() {
        let long = "a".repeat(64);
        let text = SANDBOX_ALPHA.replace("name: demo", &format!("name: {long}"));
        let found = problems(&text);
        assert!(found.iter().any(|p| p.starts_with(&format!("metadata.name: \"{long}\" is 64 characters; it must be at most 63: a Sandbox's pod and Service"))), "{found:#?}");
        assert_problem(
            &SANDBOX_ALPHA.replace("name: demo", "name: Demo_1"),
            "metadata.name: \"Demo_1\" must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name' or '123-abc') (line 4)",
        );
        assert_problem(
            &SANDBOX_ALPHA.replace("  name: demo\n", "  labels: {team: x}\n"),
            "metadata.name: required field is missing (or set metadata.generateName) (line 3)",
        );
    }

    #[test]
    fn labels_and_annotations_follow_kubernetes_syntax() {
        let text = SANDBOX_ALPHA.replace(
            "  name: demo\n",
            "  name: demo\n  labels:\n    bad key: x\n    ok: \"-bad\"\n",
        );
        let found = problems(&text);
        assert!(
            found
                .iter()
                .any(|p| p
                    .starts_with("metadata.labels[bad key]: key \"bad key\" name part must be")),
            "{found:#?}"
        );
        assert!(
            found.iter().any(|p| p
                .starts_with("metadata.labels[ok]: value \"-bad\" must be 63 characters or less")),
            "{found:#?}"
        );
    }

    #[test]
    fn quantities_are_checked() {
        let text = SANDBOX_ALPHA.replace("        image: busybox\n", "        image: busybox\n        resources:\n          limits:\n            memory: 2 gigs\n            cpu: 0.5\n");
        assert_problem(
            &text,
            "spec.podTemplate.spec.containers[0].resources.limits[memory]: \"2 gigs\" is not a valid quantity: write a number with an optional suffix, such as 512Mi, 1Gi, 500m or 2 (line 13)",
        );
        assert_eq!(problems(&text).len(), 1, "cpu: 0.5 is fine");
    }

    #[test]
    fn pods_need_a_container_with_an_image() {
        let text = SANDBOX_ALPHA.replace("        image: busybox\n", "");
        assert_problem(
            &text,
            "spec.podTemplate.spec.containers[0].image: required field is missing: the container image to run (e.g. python:3.12-slim) (line 9)",
        );
        let text = SANDBOX_ALPHA.replace(
            "      containers:\n      - name: main\n        image: busybox\n",
            "      containers: []\n",
        );
        assert_problem(
            &text,
            "spec.podTemplate.spec.containers: must have at least one container (line 8)",
        );
    }

    #[test]
    fn duplicate_list_map_keys_are_rejected() {
        let text = SANDBOX_ALPHA.replace(
            "        image: busybox\n",
            "        image: busybox\n      - name: main\n        image: python\n",
        );
        assert_problem(
            &text,
            "spec.podTemplate.spec.containers[1]: duplicate entry with name=main (line 11)",
        );
    }

    #[test]
    fn volume_claim_templates_need_unique_names() {
        let text = format!(
            "{SANDBOX_ALPHA}  volumeClaimTemplates:\n  - metadata: {{name: data}}\n    spec: {{}}\n  - metadata: {{name: data}}\n    spec: {{}}\n  - spec: {{}}\n"
        );
        assert_problem(
            &text,
            "spec.volumeClaimTemplates[1].metadata.name: duplicate volume claim template name \"data\" (line 14)",
        );
        assert_problem(
            &text,
            "spec.volumeClaimTemplates[2]: metadata.name is required: it names the volume and the PVC (<name>-<sandbox>) (line 16)",
        );
    }

    #[test]
    fn claim_env_names_are_checked() {
        let text = "apiVersion: extensions.agents.x-k8s.io/v1beta1\nkind: SandboxClaim\nmetadata: {name: c}\nspec:\n  warmPoolRef: {name: p}\n  env:\n  - {name: 1BAD, value: x}\n";
        assert_problem(
            text,
            "spec.env[0].name: \"1BAD\" must consist of letters, digits, '_', '-' or '.', and must not start with a digit (e.g. 'MY_VAR') (line 7)",
        );
    }

    #[test]
    fn non_mappings_and_json_input() {
        assert_eq!(
            problems("- a\n- b\n"),
            [
                "an object must be a mapping with apiVersion, kind, metadata and spec, got a list (line 1)"
            ]
        );
        let value = serde_json::json!({"apiVersion": "extensions.agents.x-k8s.io/v1beta1", "kind": "SandboxWarmPool", "metadata": {"name": "p"}, "spec": {"sandboxTemplateRef": {"name": "t"}, "replicas": -1}});
        let err = validate_value(&value).unwrap_err();
        assert_eq!(
            err[0].to_string(),
            "spec.replicas: must be 0 or more, got -1"
        );
    }

    #[test]
    fn metadata_unknown_fields_are_reported() {
        let text = SANDBOX_ALPHA.replace("  name: demo\n", "  name: demo\n  label: {a: b}\n");
        assert_problem(
            &text,
            "metadata.label: unknown field (did you mean \"labels\"?) (line 5)",
        );
    }

    #[test]
    fn immutable_fields_on_update() {
        let old = validate_text(&format!(
            "{SANDBOX_ALPHA}  volumeClaimTemplates:\n  - metadata: {{name: data}}\n    spec: {{}}\n"
        ))
        .unwrap()
        .remove(0)
        .result
        .unwrap()
        .object;
        let new = validate_text(SANDBOX_ALPHA)
            .unwrap()
            .remove(0)
            .result
            .unwrap()
            .object;
        let err = validate_update(&old, &new).unwrap_err();
        assert_eq!(
            err[0].to_string(),
            "spec: volumeClaimTemplates is immutable"
        );
        assert!(validate_update(&new, &new).is_ok());
        let mut renamed = new.clone();
        renamed.metadata_mut().name = Some("other".into());
        assert_eq!(
            validate_update(&new, &renamed).unwrap_err()[0].to_string(),
            "metadata.name: is immutable"
        );
    }
}
