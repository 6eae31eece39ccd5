//! Placeholders derived from a Sandbox's uid, so the controller (which puts them in the Pod's
//! environment) and the in-cluster egress proxy (which swaps them for secrets) agree without
//! talking. A placeholder is no secret: swapped only for the sandbox whose Pod sends it, to the
//! rule's own host.

use sha2::{Digest, Sha256};

/// The placeholder of one credential (`rule/header`) for the Sandbox with `uid`.
pub fn derived(uid: &str, rule: &str, header: &str) -> String {
    let digest = Sha256::digest(format!("{uid}/{rule}/{}", header.to_ascii_lowercase()).as_bytes());
    let hex: String = digest.iter().take(16).map(|b| format!("{b:02x}")).collect();
    format!("paddock-placeholder-{hex}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_depend_on_sandbox_rule_and_header_only() {
        let a = derived("uid-1", "api", "Authorization");
        assert!(a.starts_with("paddock-placeholder-") && a.len() == 20 + 32);
        assert_eq!(
            a,
            derived("uid-1", "api", "authorization"),
            "header names are case-insensitive"
        );
        assert_ne!(a, derived("uid-2", "api", "Authorization"));
        assert_ne!(a, derived("uid-1", "other", "Authorization"));
    }
}
