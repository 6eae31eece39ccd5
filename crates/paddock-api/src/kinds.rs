//! The four kinds and two versions as values: names, groups, scopes and the per-version facts
//! the CRDs, the CLI and the REST API need (contract §1.1).

use std::fmt;

use crate::names::{CORE_GROUP, EXTENSIONS_GROUP};

/// One of the four Agent Sandbox kinds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// `agents.x-k8s.io` Sandbox.
    Sandbox,
    /// `extensions.agents.x-k8s.io` SandboxTemplate.
    SandboxTemplate,
    /// `extensions.agents.x-k8s.io` SandboxClaim.
    SandboxClaim,
    /// `extensions.agents.x-k8s.io` SandboxWarmPool.
    SandboxWarmPool,
}

/// A served API version.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Version {
    /// Deprecated; what older integrations write.
    V1alpha1,
    /// The storage version.
    V1beta1,
}

impl Version {
    /// Both versions, oldest first.
    pub const ALL: [Version; 2] = [Version::V1alpha1, Version::V1beta1];
    /// The version objects are stored in.
    pub const STORAGE: Version = Version::V1beta1;

    /// `v1alpha1` or `v1beta1`.
    pub fn as_str(self) -> &'static str {
        match self {
            Version::V1alpha1 => "v1alpha1",
            Version::V1beta1 => "v1beta1",
        }
    }

    /// Parses `v1alpha1` / `v1beta1`.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "v1alpha1" => Some(Version::V1alpha1),
            "v1beta1" => Some(Version::V1beta1),
            _ => None,
        }
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Kind {
    /// All kinds, in the order the CRDs are printed.
    pub const ALL: [Kind; 4] = [
        Kind::Sandbox,
        Kind::SandboxTemplate,
        Kind::SandboxClaim,
        Kind::SandboxWarmPool,
    ];

    /// The `kind` string.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Sandbox => "Sandbox",
            Kind::SandboxTemplate => "SandboxTemplate",
            Kind::SandboxClaim => "SandboxClaim",
            Kind::SandboxWarmPool => "SandboxWarmPool",
        }
    }

    /// The API group.
    pub fn group(self) -> &'static str {
        match self {
            Kind::Sandbox => CORE_GROUP,
            _ => EXTENSIONS_GROUP,
        }
    }

    /// The plural resource name.
    pub fn plural(self) -> &'static str {
        match self {
            Kind::Sandbox => "sandboxes",
            Kind::SandboxTemplate => "sandboxtemplates",
            Kind::SandboxClaim => "sandboxclaims",
            Kind::SandboxWarmPool => "sandboxwarmpools",
        }
    }

    /// The singular resource name (the kind in lower case).
    pub fn singular(self) -> &'static str {
        match self {
            Kind::Sandbox => "sandbox",
            Kind::SandboxTemplate => "sandboxtemplate",
            Kind::SandboxClaim => "sandboxclaim",
            Kind::SandboxWarmPool => "sandboxwarmpool",
        }
    }

    /// Short names kubectl accepts.
    pub fn short_names(self) -> &'static [&'static str] {
        match self {
            Kind::Sandbox => &["sandbox"],
            Kind::SandboxTemplate => &["sandboxtemplate"],
            Kind::SandboxClaim => &["sandboxclaim"],
            Kind::SandboxWarmPool => &["swp"],
        }
    }

    /// `<plural>.<group>`, the CRD's name.
    pub fn crd_name(self) -> String {
        format!("{}.{}", self.plural(), self.group())
    }

    /// `<group>/<version>`.
    pub fn api_version(self, version: Version) -> String {
        format!("{}/{}", self.group(), version.as_str())
    }

    /// Whether the kind has a status subresource (all but SandboxTemplate).
    pub fn has_status(self) -> bool {
        self != Kind::SandboxTemplate
    }

    /// Whether the kind serves a `/scale` subresource in this version: SandboxWarmPool in both,
    /// Sandbox in v1alpha1 only.
    pub fn has_scale(self, version: Version) -> bool {
        match self {
            Kind::SandboxWarmPool => true,
            Kind::Sandbox => version == Version::V1alpha1,
            _ => false,
        }
    }

    /// Parses a `kind` string.
    pub fn from_kind(kind: &str) -> Option<Self> {
        Kind::ALL.into_iter().find(|k| k.as_str() == kind)
    }

    /// Resolves what a user may type for a resource: the kind, plural, singular or a short name,
    /// in any case, optionally qualified with the group (`sandboxclaims.extensions.agents.x-k8s.io`).
    pub fn from_resource_name(name: &str) -> Option<Self> {
        let lower = name.to_ascii_lowercase();
        let (base, group) = match lower.split_once('.') {
            Some((b, g)) => (b.to_owned(), Some(g.to_owned())),
            None => (lower, None),
        };
        Kind::ALL.into_iter().find(|k| {
            let name_matches = base == k.plural()
                || base == k.singular()
                || k.short_names().contains(&base.as_str());
            name_matches && group.as_deref().is_none_or(|g| g == k.group())
        })
    }

    /// The upstream deprecation warning for this kind's v1alpha1 version.
    pub fn deprecation_warning(self) -> String {
        let group = self.group();
        let kind = self.as_str();
        format!("{group}/v1alpha1 {kind} is deprecated; use {group}/v1beta1 {kind} instead")
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Splits an `apiVersion` into group and version (`v1` → `("", "v1")`).
pub fn split_api_version(api_version: &str) -> (&str, &str) {
    api_version.rsplit_once('/').unwrap_or(("", api_version))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resource_names_resolve_like_kubectl() {
        assert_eq!(Kind::from_resource_name("swp"), Some(Kind::SandboxWarmPool));
        assert_eq!(
            Kind::from_resource_name("SandboxClaims"),
            Some(Kind::SandboxClaim)
        );
        assert_eq!(Kind::from_resource_name("sandbox"), Some(Kind::Sandbox));
        assert_eq!(
            Kind::from_resource_name("sandboxes.agents.x-k8s.io"),
            Some(Kind::Sandbox)
        );
        assert_eq!(
            Kind::from_resource_name("sandboxes.extensions.agents.x-k8s.io"),
            None
        );
        assert_eq!(Kind::from_resource_name("pods"), None);
    }

    #[test]
    fn deprecation_warning_matches_upstream_text() {
        assert_eq!(
            Kind::SandboxClaim.deprecation_warning(),
            "extensions.agents.x-k8s.io/v1alpha1 SandboxClaim is deprecated; use extensions.agents.x-k8s.io/v1beta1 SandboxClaim instead"
        );
    }

    #[test]
    fn scale_subresources_follow_the_contract() {
        assert!(Kind::Sandbox.has_scale(Version::V1alpha1));
        assert!(!Kind::Sandbox.has_scale(Version::V1beta1));
        assert!(Kind::SandboxWarmPool.has_scale(Version::V1beta1));
        assert!(!Kind::SandboxTemplate.has_status());
    }
}
