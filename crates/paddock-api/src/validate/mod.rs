//! Validation of objects of the four kinds: the one function every entry point (REST API,
//! controllers, CLI) calls before trusting an object.
//!
//! An object is checked against the same structural schema the CRDs carry (types, enums,
//! required fields, ranges, patterns, formats, unknown fields), its metadata against Kubernetes'
//! naming rules, and then against the rules a schema cannot state (a pod needs a container,
//! volume claim templates need unique names, ...). Every problem is reported, each with its
//! field path and, for YAML input, its line; known mistakes (fields of other versions, seed
//! manifests that follow no upstream schema) get a hint naming the right field.

mod checker;
mod policy;
mod semantics;

use std::fmt;

use serde_json::{Map, Value};

use crate::any::AnyObject;
use crate::kinds::{Kind, Version, split_api_version};
use crate::names::{CORE_GROUP, EXTENSIONS_GROUP};
use crate::schema::VOLUME_CLAIM_TEMPLATES_IMMUTABLE_MESSAGE;
use crate::yaml::{self, Document, SyntaxError};

use checker::{Checker, describe, edit_distance, schema};
use semantics::{check_metadata, check_semantics};

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

/// A valid object of any kind `paddock validate` knows: one of the four, or a SandboxPolicy.
#[derive(Clone, Debug, PartialEq)]
pub enum Validated {
    /// Sandbox, SandboxTemplate, SandboxClaim or SandboxWarmPool.
    Object(Box<Valid>),
    /// paddock's own SandboxPolicy.
    Policy(Box<crate::policy::SandboxPolicy>),
}

/// The outcome for one document of a YAML stream.
#[derive(Clone, Debug, PartialEq)]
pub struct DocumentReport<T = Valid> {
    /// Position of the document in the stream, from 1.
    pub number: usize,
    /// Line the document starts on.
    pub line: Option<usize>,
    /// `kind` as written, if any.
    pub kind: Option<String>,
    /// `metadata.name` (or `generateName`) as written, if any.
    pub name: Option<String>,
    /// The validated object, or every problem found.
    pub result: Result<T, Vec<Problem>>,
}

/// Validates every document of a YAML (or JSON) stream.
///
/// # Errors
/// The text is not YAML; the error carries line and column.
pub fn validate_text(text: &str) -> Result<Vec<DocumentReport>, SyntaxError> {
    reports(text, validate_document)
}

/// Validates every document of a YAML (or JSON) stream that may also hold SandboxPolicies.
///
/// # Errors
/// The text is not YAML; the error carries line and column.
pub fn validate_any_text(text: &str) -> Result<Vec<DocumentReport<Validated>>, SyntaxError> {
    reports(text, |doc| {
        if doc.value.get("kind").and_then(Value::as_str) == Some(crate::policy::POLICY_KIND) {
            policy::validate_policy(&doc.value, Some(doc)).map(|p| Validated::Policy(Box::new(p)))
        } else {
            validate_document(doc).map(|v| Validated::Object(Box::new(v)))
        }
    })
}

/// Validates a SandboxPolicy given as JSON (as the REST API receives it).
///
/// # Errors
/// Every problem found.
pub fn validate_policy(value: &Value) -> Result<crate::policy::SandboxPolicy, Vec<Problem>> {
    policy::validate_policy(value, None)
}

fn reports<T>(
    text: &str,
    check: impl Fn(&Document) -> Result<T, Vec<Problem>>,
) -> Result<Vec<DocumentReport<T>>, SyntaxError> {
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
            result: check(doc),
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
    let mut c = Checker::new(doc);
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
    fn a_sandbox_has_at_most_sixteen_volume_claim_templates() {
        let mut text = "apiVersion: agents.x-k8s.io/v1beta1\nkind: Sandbox\nmetadata: {name: s}\nspec:\n  podTemplate: {spec: {containers: [{name: c, image: i}]}}\n  volumeClaimTemplates:\n".to_owned();
        for i in 0..17 {
            text.push_str(&format!("  - metadata: {{name: v{i}}}\n    spec: {{}}\n"));
        }
        let found = problems(&text);
        assert!(
            found
                .iter()
                .any(|p| p.contains("spec.volumeClaimTemplates") && p.contains("16")),
            "{found:?}"
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
