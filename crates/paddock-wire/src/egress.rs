//! A sandbox's egress record (`GET /v1/sandboxes/{name}/egress`): one entry per connection,
//! request or DNS question the egress proxy answered.

use serde::{Deserialize, Serialize};

/// What the proxy was asked.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "lowercase")]
pub enum EgressKind {
    /// A CONNECT tunnel (HTTPS and anything else over TCP).
    Connect,
    /// A plain-HTTP request through the proxy.
    Http,
    /// A DNS question.
    Dns,
}

/// One connection, request or DNS question, and what the policy said.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct EgressRecord {
    /// When it started (RFC 3339, UTC).
    pub time: String,
    /// What was asked.
    pub kind: EgressKind,
    /// The host (name or address) the sandbox asked for.
    pub host: String,
    /// The destination port (53 for DNS).
    pub port: u16,
    /// The address the proxy connected to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// HTTP method (plain HTTP).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    /// HTTP path (plain HTTP).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Whether it went ahead.
    pub allowed: bool,
    /// The rule that allowed it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    /// Why it was denied, or in audit mode why enforce would have denied it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Allowed only because the policy is in audit mode.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub audited: bool,
    /// Credentials the proxy put into the request (`rule/header`); never their values.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub credentials: Vec<String>,
    /// Bytes from the sandbox to the destination.
    pub bytes_sent: u64,
    /// Bytes from the destination to the sandbox.
    pub bytes_received: u64,
    /// How long the connection lasted, in milliseconds.
    pub duration_ms: u64,
}

/// `GET /v1/sandboxes/{name}/egress`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct EgressLog {
    /// Records, oldest first (the newest 10,000 are kept).
    pub items: Vec<EgressRecord>,
}
