//! Which SandboxPolicies govern a Sandbox, the same on both tiers: the one its own
//! `paddock.dev/policy` annotation names, its template's (the SandboxTemplate named by
//! `agents.x-k8s.io/sandbox-template-ref`) and its controlling claim's. All apply at once.

use paddock_api::names::SANDBOX_TEMPLATE_REF;
use paddock_api::policy::{POLICY_ANNOTATION, SandboxPolicy};
use serde_json::Value;

use crate::egress::{CompileError, EgressRules};

/// A policy named by one of the objects around a Sandbox.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PolicyRef {
    /// The policy's name (in the Sandbox's namespace).
    pub name: String,
    /// `Sandbox`, `SandboxTemplate` or `SandboxClaim`: which object named it.
    pub named_by: &'static str,
}

/// The policy an object's annotation names.
pub fn named_policy(object: &Value) -> Option<String> {
    object
        .pointer("/metadata/annotations")
        .and_then(|a| a.get(POLICY_ANNOTATION))
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

/// The template a Sandbox was made from (`agents.x-k8s.io/sandbox-template-ref`).
pub fn template_of(sandbox: &Value) -> Option<&str> {
    sandbox
        .pointer("/metadata/annotations")
        .and_then(|a| a.get(SANDBOX_TEMPLATE_REF))
        .and_then(Value::as_str)
}

/// The claim that controls a Sandbox (its controller owner reference of kind SandboxClaim).
pub fn claim_of(sandbox: &Value) -> Option<&str> {
    sandbox
        .pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)?
        .iter()
        .find(|o| {
            o.get("kind").and_then(Value::as_str) == Some("SandboxClaim")
                && o.get("controller").and_then(Value::as_bool) == Some(true)
        })
        .and_then(|o| o.get("name"))
        .and_then(Value::as_str)
}

/// The policies that govern a Sandbox, given the Sandbox and (when found) its template and
/// claim.
pub fn governing_policies(
    sandbox: &Value,
    template: Option<&Value>,
    claim: Option<&Value>,
) -> Vec<PolicyRef> {
    [
        (Some(sandbox), "Sandbox"),
        (template, "SandboxTemplate"),
        (claim, "SandboxClaim"),
    ]
    .into_iter()
    .filter_map(|(object, named_by)| {
        Some(PolicyRef {
            name: named_policy(object?)?,
            named_by,
        })
    })
    .collect()
}

/// A governing policy could not be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum GoverningError {
    /// A named policy does not exist.
    #[error(
        "SandboxPolicy {name:?} (named by the {named_by}'s paddock.dev/policy annotation) does not exist in namespace {namespace}: create it with `paddock apply -f` (or kubectl apply)"
    )]
    Missing {
        /// Namespace.
        namespace: String,
        /// The policy's name.
        name: String,
        /// Which object named it.
        named_by: &'static str,
    },
    /// A stored policy does not decode or compile.
    #[error("SandboxPolicy {name:?}: {message}")]
    Invalid {
        /// The policy's name.
        name: String,
        /// What is wrong.
        message: String,
    },
}

/// The governing policies, decoded, each with its name.
fn decode<'a>(
    namespace: &str,
    found: &'a [(PolicyRef, Option<Value>)],
) -> Result<Vec<(&'a PolicyRef, SandboxPolicy)>, GoverningError> {
    found
        .iter()
        .map(|(policy_ref, value)| {
            let Some(value) = value else {
                return Err(GoverningError::Missing {
                    namespace: namespace.to_owned(),
                    name: policy_ref.name.clone(),
                    named_by: policy_ref.named_by,
                });
            };
            serde_json::from_value(value.clone())
                .map(|policy| (policy_ref, policy))
                .map_err(|e| GoverningError::Invalid {
                    name: policy_ref.name.clone(),
                    message: e.to_string(),
                })
        })
        .collect()
}

/// The rules of the governing policies (their meet), given each found policy (`None`: not
/// found). `None` when no governing policy has an egress part: the sandbox gets no network.
///
/// # Errors
/// A policy is missing or invalid.
pub fn governing_rules(
    namespace: &str,
    found: &[(PolicyRef, Option<Value>)],
) -> Result<Option<EgressRules>, GoverningError> {
    let mut rules: Option<EgressRules> = None;
    for (policy_ref, policy) in decode(namespace, found)? {
        let Some(egress) = policy.spec.egress else {
            continue;
        };
        let layer =
            EgressRules::compile(&egress).map_err(|e: CompileError| GoverningError::Invalid {
                name: policy_ref.name.clone(),
                message: e.to_string(),
            })?;
        rules = Some(match rules {
            Some(r) => r.meet(layer),
            None => layer,
        });
    }
    Ok(rules)
}

/// The permissions of the governing policies (their meet); unrestricted when none limits any.
///
/// # Errors
/// A policy is missing or does not decode.
pub fn governing_permissions(
    namespace: &str,
    found: &[(PolicyRef, Option<Value>)],
) -> Result<crate::permissions::PermissionRules, GoverningError> {
    let mut rules = crate::permissions::PermissionRules::unrestricted();
    for (_, policy) in decode(namespace, found)? {
        if let Some(p) = &policy.spec.permissions {
            rules = rules.meet(crate::permissions::PermissionRules::compile(p));
        }
    }
    Ok(rules)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::egress::Destination;

    fn policy(domain: &str) -> Value {
        json!({"apiVersion": "paddock.dev/v1alpha1", "kind": "SandboxPolicy", "metadata": {"name": "p"},
               "spec": {"egress": {"rules": [{"domains": [domain, "both.test"]}]}}})
    }

    #[test]
    fn a_sandbox_is_governed_by_its_own_its_templates_and_its_claims_policies() {
        let sandbox = json!({"metadata": {
            "annotations": {"paddock.dev/policy": "own", "agents.x-k8s.io/sandbox-template-ref": "t"},
            "ownerReferences": [
                {"kind": "SandboxWarmPool", "name": "pool", "controller": false},
                {"kind": "SandboxClaim", "name": "c", "controller": true}]}});
        assert_eq!(template_of(&sandbox), Some("t"));
        assert_eq!(claim_of(&sandbox), Some("c"));
        let template = json!({"metadata": {"annotations": {"paddock.dev/policy": "tpl"}}});
        let claim = json!({"metadata": {"annotations": {"paddock.dev/policy": "clm"}}});
        let refs = governing_policies(&sandbox, Some(&template), Some(&claim));
        let names: Vec<_> = refs.iter().map(|r| (r.name.as_str(), r.named_by)).collect();
        assert_eq!(
            names,
            [
                ("own", "Sandbox"),
                ("tpl", "SandboxTemplate"),
                ("clm", "SandboxClaim")
            ]
        );
    }

    #[test]
    fn the_rules_are_the_meet_and_a_missing_policy_is_an_error_naming_who_named_it() {
        let refs = [
            PolicyRef {
                name: "a".into(),
                named_by: "SandboxTemplate",
            },
            PolicyRef {
                name: "b".into(),
                named_by: "SandboxClaim",
            },
        ];
        let found = [
            (refs[0].clone(), Some(policy("a.test"))),
            (refs[1].clone(), Some(policy("b.test"))),
        ];
        let rules = governing_rules("ns", &found)
            .expect("valid")
            .expect("egress");
        assert!(
            rules
                .connect(Destination::Name("both.test"), 443, true)
                .allowed()
        );
        assert!(
            !rules
                .connect(Destination::Name("a.test"), 443, true)
                .allowed()
        );
        let missing = [(refs[1].clone(), None)];
        assert_eq!(
            governing_rules("ns", &missing)
                .expect_err("missing")
                .to_string(),
            "SandboxPolicy \"b\" (named by the SandboxClaim's paddock.dev/policy annotation) does not exist in namespace ns: create it with `paddock apply -f` (or kubectl apply)"
        );
        assert!(
            governing_rules("ns", &[]).expect("none").is_none(),
            "no policy: no network"
        );
    }
}
