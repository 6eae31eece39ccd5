//! The store's resource types of the four kinds.

use paddock_api::kinds::Kind;
use paddock_store::ResourceType;

/// The store resource of a kind.
pub fn resource(kind: Kind) -> ResourceType {
    match kind {
        Kind::Sandbox => ResourceType::namespaced("agents.x-k8s.io", "sandboxes", "Sandbox"),
        Kind::SandboxTemplate => ResourceType::namespaced(
            "extensions.agents.x-k8s.io",
            "sandboxtemplates",
            "SandboxTemplate",
        ),
        Kind::SandboxClaim => ResourceType::namespaced(
            "extensions.agents.x-k8s.io",
            "sandboxclaims",
            "SandboxClaim",
        ),
        Kind::SandboxWarmPool => ResourceType::namespaced(
            "extensions.agents.x-k8s.io",
            "sandboxwarmpools",
            "SandboxWarmPool",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resources_match_the_api_model() {
        for kind in Kind::ALL {
            let r = resource(kind);
            assert_eq!(
                (r.group, r.plural, r.kind),
                (kind.group(), kind.plural(), kind.as_str())
            );
        }
    }
}
