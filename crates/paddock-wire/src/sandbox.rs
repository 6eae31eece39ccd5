//! Creating and describing sandboxes (`/v1/sandboxes`), and what `POST /v1/apply` did.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// `POST /v1/sandboxes`: from a warm pool, a template or an image (at most one of them; an
/// image sandbox of the `host` image when none is given). Build with
/// [`CreateSandbox::image`], [`CreateSandbox::template`] or [`CreateSandbox::warm_pool`], then
/// set what you need.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateSandbox {
    /// The sandbox's name (generated when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Its namespace (`default`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Claim a member of this SandboxWarmPool.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warm_pool: Option<String>,
    /// Claim a sandbox of this SandboxTemplate (from its fullest pool, or cold).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<String>,
    /// Run this image: `host`, `oci:/path[:tag]` or a registry reference.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// Isolation of an image sandbox: `gvisor` (`runsc`) or `bwrap`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime: Option<String>,
    /// The main process of an image sandbox (none: the sandbox idles, waiting for exec).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<Vec<String>>,
    /// Environment of an image sandbox, or added to a claim's pod.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// Working directory of an image sandbox.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<String>,
    /// Limits of an image sandbox.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<Resources>,
    /// Host directories mounted into an image sandbox.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volumes: Vec<HostVolume>,
    /// Delete the sandbox after this many seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_seconds: Option<u64>,
    /// Labels of the Sandbox (or claim).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// The SandboxPolicy that governs the sandbox (its egress); for a claim, it narrows the
    /// template's. Without one the sandbox has no network.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<String>,
    /// Answer once the sandbox is Ready (default `true`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wait: Option<bool>,
    /// How long to wait for Ready, in seconds (default 60).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wait_timeout_seconds: Option<f64>,
}

impl CreateSandbox {
    /// A sandbox running `image` (`host`, `oci:/path[:tag]` or a registry reference).
    pub fn image(image: impl Into<String>) -> Self {
        Self {
            image: Some(image.into()),
            ..Self::default()
        }
    }

    /// A sandbox from a SandboxTemplate (a pool of it when there is one).
    pub fn template(template: impl Into<String>) -> Self {
        Self {
            template: Some(template.into()),
            ..Self::default()
        }
    }

    /// A sandbox taken from a SandboxWarmPool.
    pub fn warm_pool(pool: impl Into<String>) -> Self {
        Self {
            warm_pool: Some(pool.into()),
            ..Self::default()
        }
    }
}

/// Limits of an image sandbox, in Kubernetes quantities.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct Resources {
    /// Memory limit (`512Mi`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<String>,
    /// CPU limit (`500m`, `2`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<String>,
}

/// A host directory mounted into an image sandbox.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HostVolume {
    /// Absolute path on the host.
    pub host_path: String,
    /// Absolute path inside the sandbox.
    pub mount_path: String,
    /// Mount it read-only.
    #[serde(default)]
    pub read_only: bool,
}

/// Where a sandbox is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub enum Phase {
    /// Starting (or waiting for something it needs).
    Pending,
    /// Ready: commands run.
    Running,
    /// Suspended: no workload, volumes kept.
    Suspended,
    /// Its shutdown time passed.
    Expired,
    /// Its main process ended with code 0.
    Succeeded,
    /// Its main process ended otherwise.
    Failed,
}

impl Phase {
    /// The wire spelling (`Running`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "Pending",
            Self::Running => "Running",
            Self::Suspended => "Suspended",
            Self::Expired => "Expired",
            Self::Succeeded => "Succeeded",
            Self::Failed => "Failed",
        }
    }
}

impl std::fmt::Display for Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A sandbox as the gateway describes it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct SandboxInfo {
    /// The Sandbox's name.
    pub name: String,
    /// Its namespace.
    pub namespace: String,
    /// The claim it belongs to, if any.
    #[serde(default)]
    pub claim: Option<String>,
    /// Whether commands can run now.
    pub ready: bool,
    /// The Ready condition's reason.
    #[serde(default)]
    pub reason: Option<String>,
    /// The Ready condition's message.
    #[serde(default)]
    pub message: Option<String>,
    /// Where it is in its life.
    pub phase: Phase,
    /// `warm` (from a pool), `cold` (made for its claim) or `direct`.
    #[serde(default)]
    pub launch_type: Option<String>,
    /// Its isolation (`gvisor`, `bwrap`, a RuntimeClass).
    #[serde(default)]
    pub runtime: Option<String>,
    /// Its first container's image.
    #[serde(default)]
    pub image: Option<String>,
    /// When it was created, RFC 3339.
    #[serde(default)]
    pub created_at: Option<String>,
    /// When it expires, RFC 3339.
    #[serde(default)]
    pub expires_at: Option<String>,
    /// Its labels.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

/// `GET /v1/sandboxes`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct SandboxList {
    /// The sandboxes.
    pub items: Vec<SandboxInfo>,
}

/// What `POST /v1/apply` did with one object.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct Applied {
    /// The object's kind.
    #[serde(default)]
    pub kind: Option<String>,
    /// Its apiVersion.
    #[serde(default)]
    pub api_version: Option<String>,
    /// Its namespace.
    #[serde(default)]
    pub namespace: Option<String>,
    /// Its name.
    #[serde(default)]
    pub name: Option<String>,
    /// `created`, `configured` or `unchanged`.
    pub action: String,
}

/// `POST /v1/apply`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct ApplyResult {
    /// One entry per document, in order.
    pub results: Vec<Applied>,
}

/// `POST /v1/sandboxes/{name}/tokens`: a v2 scoped token (upstream's router format) that lets
/// its holder send one kind of request to one port of this sandbox, and nothing else.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MintToken {
    /// The port inside the sandbox (as `X-Sandbox-Port`; 8888 when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// The HTTP method the token allows (`GET` when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    /// The exact path the token allows (`/` when absent); no prefixes or wildcards.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// How long the token is valid, in seconds (1 hour when absent; at most 7 days).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl_seconds: Option<u64>,
}

/// A minted token.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct MintedToken {
    /// `v2.<kid>.<payload>.<sig>`; send it as `Authorization: Bearer <token>` with the
    /// router headers `X-Sandbox-ID`, `X-Sandbox-Namespace` and `X-Sandbox-Port`.
    pub token: String,
    /// The Sandbox it is for (its name, as in `X-Sandbox-ID`).
    pub sandbox: String,
    /// Its namespace.
    pub namespace: String,
    /// The Sandbox's UID: the token fails once the Sandbox is recreated.
    pub uid: String,
    /// Expiry, RFC 3339.
    pub expires_at: String,
}
