//! `SandboxPolicy` (`paddock.dev/v1alpha1`): paddock's own kind, beside upstream's four, never
//! instead of them. A Sandbox, SandboxTemplate or SandboxClaim names one with the
//! `paddock.dev/policy` annotation; its `egress` part says which hosts the sandbox may reach.
//!
//! This module holds the object as written, its schema and CRD; what a policy *decides* lives in
//! the `paddock-policy` crate, and its validation in [`crate::validate::validate_policy`].

use std::net::IpAddr;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// The API group of paddock's own kinds.
pub const POLICY_GROUP: &str = "paddock.dev";
/// The only served version.
pub const POLICY_VERSION: &str = "v1alpha1";
/// `paddock.dev/v1alpha1`.
pub const POLICY_API_VERSION: &str = "paddock.dev/v1alpha1";
/// The kind's name.
pub const POLICY_KIND: &str = "SandboxPolicy";
/// The resource's plural.
pub const POLICY_PLURAL: &str = "sandboxpolicies";
/// The annotation on a Sandbox, SandboxTemplate or SandboxClaim naming the policy (in the same
/// namespace) that governs it.
pub const POLICY_ANNOTATION: &str = "paddock.dev/policy";

/// A policy for sandboxes: today its egress part.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SandboxPolicy {
    /// `paddock.dev/v1alpha1`.
    pub api_version: String,
    /// `SandboxPolicy`.
    pub kind: String,
    /// Name and namespace; sandboxes refer to the policy by name.
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// What the policy allows.
    #[serde(default)]
    pub spec: SandboxPolicySpec,
}

/// What a policy allows.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SandboxPolicySpec {
    /// Network access from inside the sandbox. Without it the sandbox has no network at all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub egress: Option<EgressPolicy>,
    /// What may be done in and to the sandbox, per capability. Without it nothing is limited
    /// beyond the sandbox's isolation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub permissions: Option<Permissions>,
}

/// How far a capability is granted: `never` < `ask` (held for a person's approval) <
/// `always`. Policies that apply together grant the smaller (their meet).
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    /// Refused.
    Never,
    /// Held until approved.
    Ask,
    /// Allowed.
    #[default]
    Always,
}

/// Permissions per capability; an absent one is `always` with no further limit.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Permissions {
    /// Running programs (exec through the API, and the programs those start).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exec: Option<ExecPermission>,
    /// Reading and writing files inside the sandbox (the files API and programs alike).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub files: Option<FilePermissions>,
    /// Operations on the sandbox through the API.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api: Option<ApiPermissions>,
}

/// Which programs may run.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExecPermission {
    /// The level for programs the lists allow (default `always`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub level: Option<Level>,
    /// Only these programs, by name (`python3`) or absolute path (`/usr/bin/git`); empty: any.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("maxItems" = 256))]
    pub allow: Vec<String>,
    /// Never these programs, by name or absolute path.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("maxItems" = 256))]
    pub deny: Vec<String>,
}

/// Which paths may be read and written.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FilePermissions {
    /// Reading (listing, downloading).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read: Option<PathPermission>,
    /// Writing (creating, changing, removing, uploading).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub write: Option<PathPermission>,
}

/// A level for the paths that match some glob.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PathPermission {
    /// The level for matching paths (default `always`); other paths are `never`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub level: Option<Level>,
    /// Absolute path globs: `*` within one segment, `**` across segments (`/workspace/**`);
    /// empty: every path.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("maxItems" = 256))]
    pub paths: Vec<String>,
}

/// Levels of the API operations on a sandbox; absent ones are `always`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ApiPermissions {
    /// Creating sandboxes under this policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub create: Option<Level>,
    /// Running commands through the API.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exec: Option<Level>,
    /// The files API.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub files: Option<Level>,
    /// Deleting the sandbox.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delete: Option<Level>,
    /// Snapshots of the sandbox.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<Level>,
}

/// Default-deny egress: a connection leaves the sandbox only if a rule allows it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EgressPolicy {
    /// `enforce` (default) denies what no rule allows; `audit` allows it but records each
    /// would-be denial, to learn a policy from (`paddock policy suggest`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = "enforce"))]
    pub mode: Option<EgressMode>,
    /// The allow rules; a connection is allowed when any rule matches it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("maxItems" = 256))]
    pub rules: Vec<EgressRule>,
    /// What the sandbox may send and fetch in all; spent limits refuse new connections.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<EgressLimits>,
}

impl EgressPolicy {
    /// The mode with its default applied.
    pub fn effective_mode(&self) -> EgressMode {
        self.mode.unwrap_or(EgressMode::Enforce)
    }
}

/// Whether denials are enforced or only recorded.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum EgressMode {
    /// Deny what no rule allows.
    #[default]
    Enforce,
    /// Allow everything, and record what enforce would have denied.
    Audit,
}

/// One allow rule. A rule names destinations by domain or by CIDR (or both); `ports` and
/// `http` narrow it further. Empty `ports` means any port.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EgressRule {
    /// A name for the rule, shown in connection records (default: `rules[i]`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("maxLength" = 63))]
    pub name: Option<String>,
    /// Host names: exact (`pypi.org`) or one leading wildcard label (`*.pythonhosted.org`,
    /// which matches any name below it but not the name itself).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("maxItems" = 256))]
    pub domains: Vec<String>,
    /// Address ranges (`203.0.113.0/24`, `2001:db8::/32`, or one address), for IP literals and
    /// for names that resolve to private addresses.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("maxItems" = 256))]
    pub cidrs: Vec<String>,
    /// Destination ports; empty means any.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("maxItems" = 64))]
    pub ports: Vec<u16>,
    /// For plain HTTP (and intercepted HTTPS): which requests the rule allows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<HttpMatch>,
    /// Credentials the egress proxy adds to requests to this rule's destinations, so the secret
    /// itself never enters the sandbox.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("maxItems" = 16))]
    pub inject: Vec<CredentialInjection>,
}

/// HTTP request match: both lists empty means any request.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HttpMatch {
    /// Methods, upper case (`GET`, `POST`); empty means any.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("maxItems" = 16))]
    pub methods: Vec<String>,
    /// Path prefixes, each starting with `/`; empty means any path.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("maxItems" = 64))]
    pub paths: Vec<String>,
}

/// A secret added as a header by the proxy. The sandbox sees only `placeholder` (in the env var
/// `env`, when set); the proxy replaces it with the real value in requests to the rule's
/// destinations and nowhere else.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CredentialInjection {
    /// The header to set (`Authorization`, `x-api-key`).
    pub header: String,
    /// The value, with `{secret}` where the secret goes (default `{secret}`), e.g. `Bearer {secret}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<String>,
    /// The environment variable inside the sandbox that holds the placeholder.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<String>,
    /// Where the real value comes from.
    pub value_from: SecretSource,
}

/// Where a secret is read from: exactly one of the fields.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretSource {
    /// A file on the host running the proxy (local tier).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    /// A key of a Kubernetes Secret in the policy's namespace (Kubernetes tier).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_key_ref: Option<SecretKeyRef>,
}

/// A key of a Secret.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeyRef {
    /// The Secret's name.
    pub name: String,
    /// The key in its data.
    pub key: String,
}

/// Totals a sandbox may use; once one is spent, new connections are refused with the reason.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EgressLimits {
    /// Bytes in both directions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes: Option<u64>,
    /// Connections (each CONNECT tunnel or plain HTTP request counts one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requests: Option<u64>,
}

/// The structural schema of the whole object, as the CRD carries it.
pub fn policy_schema() -> Value {
    let spec = crate::schema::spec_schema::<SandboxPolicySpec>();
    json!({
        "description": "SandboxPolicy says what sandboxes that name it (annotation paddock.dev/policy) may do: today, which network destinations they may reach.",
        "type": "object",
        "properties": {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            "metadata": {"type": "object"},
            "spec": spec,
        },
        "required": ["spec"],
    })
}

/// The SandboxPolicy CRD.
pub fn policy_crd() -> Value {
    json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": format!("{POLICY_PLURAL}.{POLICY_GROUP}"),
            "annotations": {"paddock.dev/generated-by": "paddock crds"},
            "labels": {"app.kubernetes.io/part-of": "paddock"},
        },
        "spec": {
            "group": POLICY_GROUP,
            "names": {
                "kind": POLICY_KIND,
                "listKind": format!("{POLICY_KIND}List"),
                "plural": POLICY_PLURAL,
                "singular": "sandboxpolicy",
                "shortNames": ["sbpol"],
            },
            "scope": "Namespaced",
            "versions": [{
                "name": POLICY_VERSION,
                "served": true,
                "storage": true,
                "schema": {"openAPIV3Schema": policy_schema()},
                "additionalPrinterColumns": [
                    {"name": "Mode", "type": "string", "jsonPath": ".spec.egress.mode"},
                    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
                ],
            }],
        },
    })
}

/// Parses `addr` or `addr/prefix`, with a precise complaint on failure.
///
/// # Errors
/// What is wrong, and for host bits set, the range that was probably meant.
pub fn parse_cidr(s: &str) -> Result<(IpAddr, u8), String> {
    let (addr, prefix) = match s.split_once('/') {
        Some((a, p)) => (a, Some(p)),
        None => (s, None),
    };
    let addr: IpAddr = addr
        .parse()
        .map_err(|_| format!("{s:?} is not an address range like 10.0.0.0/8 or 2001:db8::/32"))?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    let prefix = match prefix {
        None => max,
        Some(p) => match p.parse::<u8>() {
            Ok(p) if p <= max => p,
            _ => return Err(format!("{s:?}: the prefix length must be 0 to {max}")),
        },
    };
    let masked = mask(addr, prefix);
    if masked != addr {
        return Err(format!(
            "{s:?} has host bits set: did you mean {masked}/{prefix}?"
        ));
    }
    Ok((addr, prefix))
}

/// `addr` with all but the first `prefix` bits cleared.
pub fn mask(addr: IpAddr, prefix: u8) -> IpAddr {
    match addr {
        IpAddr::V4(a) => {
            let bits = u32::from(a);
            let m = if prefix == 0 {
                0
            } else {
                u32::MAX << (32 - u32::from(prefix))
            };
            IpAddr::V4((bits & m).into())
        }
        IpAddr::V6(a) => {
            let bits = u128::from(a);
            let m = if prefix == 0 {
                0
            } else {
                u128::MAX << (128 - u32::from(prefix))
            };
            IpAddr::V6((bits & m).into())
        }
    }
}

/// The CRD's file name under `deploy/crds/`.
pub const POLICY_CRD_FILE: &str = "paddock.dev_sandboxpolicies.yaml";

/// The CRD as YAML, with the `---` header kubectl-friendly manifests carry.
pub fn policy_crd_yaml() -> String {
    let mut crd = policy_crd();
    crate::crd::sort_keys(&mut crd);
    format!("---\n{}", crate::yaml::to_string(&crd))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_round_trips_through_json_with_camel_case_fields() {
        let value = json!({
            "apiVersion": POLICY_API_VERSION, "kind": POLICY_KIND,
            "metadata": {"name": "pypi", "namespace": "default"},
            "spec": {"egress": {"mode": "audit", "rules": [{
                "name": "gh", "domains": ["api.github.com"], "ports": [443],
                "http": {"methods": ["GET"], "paths": ["/repos/"]},
                "inject": [{"header": "Authorization", "format": "Bearer {secret}", "env": "GITHUB_TOKEN",
                            "valueFrom": {"secretKeyRef": {"name": "gh", "key": "token"}}}],
            }], "limits": {"bytes": 1000, "requests": 5}}},
        });
        let policy: SandboxPolicy = serde_json::from_value(value.clone()).expect("parses");
        let egress = policy.spec.egress.as_ref().expect("egress");
        assert_eq!(egress.effective_mode(), EgressMode::Audit);
        assert_eq!(
            egress.rules[0].inject[0]
                .value_from
                .secret_key_ref
                .as_ref()
                .map(|r| r.key.as_str()),
            Some("token")
        );
        assert_eq!(serde_json::to_value(&policy).expect("encodes"), value);
    }

    #[test]
    fn crd_schema_is_structural_with_enum_modes_and_bounded_lists() {
        let crd = policy_crd();
        let spec = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"];
        let egress = &spec["properties"]["egress"];
        assert_eq!(
            egress["properties"]["mode"]["enum"],
            json!(["enforce", "audit"])
        );
        assert_eq!(egress["properties"]["rules"]["maxItems"], json!(256));
        assert!(
            !serde_json::to_string(&crd)
                .expect("encodes")
                .contains("$ref"),
            "references are inlined"
        );
    }
}
