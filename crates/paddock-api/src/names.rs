//! The label and annotation registry of the Agent Sandbox API, and the name hash.
//!
//! Every key the controllers, the router and the SDKs agree on is here, once. The values and
//! their meaning follow upstream's contract (§1.7); changing a string here breaks compatibility
//! with upstream objects, so these are not to be edited casually.

/// The API group of `Sandbox`.
pub const CORE_GROUP: &str = "agents.x-k8s.io";
/// The API group of `SandboxTemplate`, `SandboxClaim` and `SandboxWarmPool`.
pub const EXTENSIONS_GROUP: &str = "extensions.agents.x-k8s.io";

/// Label on Pods, Services and PVCs: `name_hash` of the owning Sandbox's name. The Service
/// selects on it and `status.selector` is `<this key>=<hash>`.
pub const SANDBOX_NAME_HASH: &str = "agents.x-k8s.io/sandbox-name-hash";
/// Annotation on a Sandbox naming its backing pod (set for cold and adopted sandboxes alike).
pub const POD_NAME: &str = "agents.x-k8s.io/pod-name";
/// Annotation on a Sandbox naming the template it was built from (used by metrics).
pub const SANDBOX_TEMPLATE_REF: &str = "agents.x-k8s.io/sandbox-template-ref";
/// Label on a Sandbox: `cold` or `warm`, how it was launched.
pub const LAUNCH_TYPE: &str = "agents.x-k8s.io/launch-type";
/// Label on claims, Sandboxes and Pods naming the creating component (see [`normalize_created_by`]).
pub const CREATED_BY: &str = "agents.x-k8s.io/created-by";
/// Label on a Sandbox and its pod template: `name_hash` of the JSON of the template's
/// blueprint, used to tell stale warm-pool members.
pub const SANDBOX_TEMPLATE_HASH: &str = "agents.x-k8s.io/sandbox-template-hash";
/// Deprecated label: `name_hash` of the JSON of the template's pod template only.
pub const SANDBOX_POD_TEMPLATE_HASH: &str = "agents.x-k8s.io/sandbox-pod-template-hash";
/// Pod annotation: comma-joined sorted label keys copied from the pod template, so they can be
/// removed later when the template drops them.
pub const PROPAGATED_LABELS: &str = "agents.x-k8s.io/propagated-labels";
/// Pod annotation: comma-joined sorted annotation keys copied from the pod template.
pub const PROPAGATED_ANNOTATIONS: &str = "agents.x-k8s.io/propagated-annotations";
/// Label `"true"` on an unowned Pod, Service or PVC that authorises a Sandbox to adopt it.
pub const ADOPTABLE: &str = "agents.x-k8s.io/adoptable";
/// Label on warm-pool members (Sandbox, pod template, Pod): `name_hash` of the pool's name.
/// Removed when a claim adopts the member.
pub const WARM_POOL_SANDBOX: &str = "agents.x-k8s.io/warm-pool-sandbox";
/// Label on Sandboxes, pod templates, Pods and the SandboxTemplate itself: `name_hash` of the
/// template's name. The template's NetworkPolicy selects on it.
pub const SANDBOX_TEMPLATE_REF_HASH: &str = "agents.x-k8s.io/sandbox-template-ref-hash";
/// Label on a Sandbox and its pod template: the UID of the owning claim (not copied to the Pod).
pub const CLAIM_UID: &str = "agents.x-k8s.io/claim-uid";
/// Annotation on a claim naming the Sandbox it adopted (older controllers used a label).
pub const SANDBOX_NAME: &str = "agents.x-k8s.io/sandbox-name";
/// Claim annotation: when the controller first saw the claim (RFC 3339 with nanoseconds).
pub const CONTROLLER_FIRST_OBSERVED_AT: &str = "agents.x-k8s.io/controller-first-observed-at";
/// Claim annotation: when the claim first became Ready (RFC 3339 nanos, or `unknown`).
pub const CLAIM_FIRST_READY_AT: &str = "agents.x-k8s.io/claim-first-ready-at";
/// Claim annotation set by clients: when the client asked for the sandbox (RFC 3339).
pub const CLIENT_FIRST_REQUESTED_AT: &str = "agents.x-k8s.io/client-first-requested-at";
/// Claim annotation set by an optional timestamp-injection webhook.
pub const WEBHOOK_FIRST_OBSERVED_AT: &str = "agents.x-k8s.io/webhook-first-observed-at";
/// Pod-template annotation `"true"` on warm members so the cluster autoscaler may evict them.
pub const SAFE_TO_EVICT: &str = "cluster-autoscaler.kubernetes.io/safe-to-evict";
/// Annotation carrying W3C trace-context headers as a JSON map.
pub const TRACE_CONTEXT: &str = "opentelemetry.io/trace-context";
/// Set by upstream's migration tool on pre-created `shadow-pool-<template>` pools.
pub const MIGRATION_SHADOW: &str = "agents.x-k8s.io/migration-shadow";
/// Set by upstream's migration tool: the template a shadow pool was created for.
pub const MIGRATION_SOURCE_TEMPLATE: &str = "agents.x-k8s.io/migration-source-template";
/// Set by upstream's migration tool to force a storage-version rewrite.
pub const STORAGE_MIGRATED_AT: &str = "agents.x-k8s.io/storage-migrated-at";
/// Annotation on v1alpha1 SandboxTemplates holding the v1beta1-only `volumeClaimTemplatesPolicy`.
pub const V1BETA1_VOLUME_CLAIM_TEMPLATES_POLICY: &str =
    "api.agents.x-k8s.io/v1beta1-volume-claim-templates-policy";

/// Label key prefixes reserved for the controllers: stripped from user pod-template metadata
/// before it is copied onto a Pod.
pub const RESERVED_PREFIXES: [&str; 2] = ["agents.x-k8s.io/", "extensions.agents.x-k8s.io/"];

/// Name prefix of the pools upstream's migration creates for v1alpha1 claims without a pool.
pub const SHADOW_POOL_PREFIX: &str = "shadow-pool-";

/// The pool a v1alpha1 claim without a `warmpool` (or with `none`/`default`) refers to once
/// stored: `shadow-pool-<template>`, as upstream's migration names it.
pub fn shadow_pool_name(template: &str) -> String {
    format!("{SHADOW_POOL_PREFIX}{template}")
}

/// The NetworkPolicy a template manages (`<template>-network-policy`); older controllers made
/// one per claim with the same pattern (`<claim>-network-policy`).
pub fn network_policy_name(owner: &str) -> String {
    format!("{owner}-network-policy")
}

/// The `generateName` of a warm pool's members: `<pool>-` (the store or API server adds 5
/// random characters).
pub fn pool_member_prefix(pool: &str) -> String {
    format!("{pool}-")
}

/// Length of the random suffix the API server appends to `generateName`.
pub const GENERATED_SUFFIX_LEN: usize = 5;
/// `generateName` prefixes are cut to this length, as Kubernetes does (63 − 5).
pub const MAX_GENERATE_NAME_PREFIX: usize = 58;
const GENERATED_NAME_ALPHABET: &[u8; 27] = b"bcdfghjklmnpqrstvwxz2456789";

/// The name the API server makes from `generateName`: `prefix` cut to
/// [`MAX_GENERATE_NAME_PREFIX`] characters, then five characters of Kubernetes' alphabet drawn
/// from `random` (rejection sampling keeps them uniform). `None` when `random` ran out first:
/// draw again with fresh bytes (32 are practically always enough).
pub fn generated_name(prefix: &str, random: impl IntoIterator<Item = u8>) -> Option<String> {
    let mut name: String = prefix.chars().take(MAX_GENERATE_NAME_PREFIX).collect();
    // 243 = 9 × 27: bytes above it would favour the first letters.
    let suffix = random
        .into_iter()
        .filter(|b| *b < 243)
        .take(GENERATED_SUFFIX_LEN)
        .map(|b| char::from(GENERATED_NAME_ALPHABET[usize::from(b % 27)]));
    let before = name.len();
    name.extend(suffix);
    (name.len() - before == GENERATED_SUFFIX_LEN).then_some(name)
}

/// Label on the SandboxTemplate and SandboxWarmPool of a default pool (`true`), which `paddock
/// serve` keeps so that sandboxes created from a bare image start at once; on the pod template
/// of its members, it holds the pool's name.
pub const DEFAULT_POOL: &str = "paddock.dev/default-pool";

/// The template and pool of `paddock serve`'s default pool for a runtime and image:
/// `paddock-<runtime>-host` for the host image, `paddock-<runtime>-<name hash>` otherwise.
pub fn default_pool_name(runtime: &str, image: &str) -> String {
    let image = if image == "host" {
        "host".to_owned()
    } else {
        name_hash(image)
    };
    format!("paddock-{runtime}-{image}")
}

/// The PVC a Sandbox's volume claim template makes: `<template name>-<sandbox>`.
pub fn pvc_name(volume_claim_template: &str, sandbox: &str) -> String {
    format!("{volume_claim_template}-{sandbox}")
}

/// Value of [`LAUNCH_TYPE`] for a Sandbox created for its claim.
pub const LAUNCH_TYPE_COLD: &str = "cold";
/// Value of [`LAUNCH_TYPE`] for a Sandbox adopted from a warm pool.
pub const LAUNCH_TYPE_WARM: &str = "warm";

/// The annotation holding a JSON snapshot of the fields a version cannot express, so a round
/// trip through the other version gives back the original: `api.agents.x-k8s.io/<version>-<kind>-state`
/// (for example `api.agents.x-k8s.io/v1alpha1-sandboxclaim-state`).
pub fn version_state_annotation(version: &str, kind_lowercase: &str) -> String {
    format!("api.agents.x-k8s.io/{version}-{kind_lowercase}-state")
}

/// Whether a label or annotation key is reserved for the controllers (see [`RESERVED_PREFIXES`]).
pub fn is_reserved_key(key: &str) -> bool {
    RESERVED_PREFIXES.iter().any(|p| key.starts_with(p))
}

/// Normalises a `created-by` value the way upstream does: known creators keep their name,
/// anything else becomes `unknown`.
pub fn normalize_created_by(value: &str) -> &'static str {
    match value {
        "go-client" => "go-client",
        "python-client" => "python-client",
        "controller" => "controller",
        _ => "unknown",
    }
}

/// The name hash used in labels and selectors: FNV-1a 32-bit over the UTF-8 bytes of `name`,
/// as 8 lowercase hex digits. Short and label-safe, unlike the names themselves.
pub fn name_hash(name: &str) -> String {
    const OFFSET_BASIS: u32 = 0x811c_9dc5;
    const PRIME: u32 = 0x0100_0193;
    let hash = name
        .bytes()
        .fold(OFFSET_BASIS, |h, b| (h ^ u32::from(b)).wrapping_mul(PRIME));
    format!("{hash:08x}")
}

/// `status.selector` of a Sandbox with this name: `agents.x-k8s.io/sandbox-name-hash=<hash>`.
pub fn sandbox_selector(sandbox_name: &str) -> String {
    format!("{SANDBOX_NAME_HASH}={}", name_hash(sandbox_name))
}

/// `status.selector` of a warm pool with this name: `agents.x-k8s.io/warm-pool-sandbox=<hash>`.
pub fn warm_pool_selector(pool_name: &str) -> String {
    format!("{WARM_POOL_SANDBOX}={}", name_hash(pool_name))
}

#[cfg(test)]
mod tests {
    #[test]
    fn generated_names_cut_the_prefix_and_draw_from_the_alphabet() {
        use super::{GENERATED_SUFFIX_LEN, MAX_GENERATE_NAME_PREFIX, generated_name};
        let name = generated_name("pool-", [0, 250, 26, 27, 100, 7, 9]).expect("enough bytes");
        assert_eq!(
            name, "pool-b9bzk",
            "250 is skipped; 27 wraps to the first letter"
        );
        let long = generated_name(&"x".repeat(100), [1u8; 5]).expect("enough bytes");
        assert_eq!(long.len(), MAX_GENERATE_NAME_PREFIX + GENERATED_SUFFIX_LEN);
        assert_eq!(
            generated_name("p-", [255u8, 1, 2]),
            None,
            "ran out of bytes"
        );
    }

    use super::*;

    #[test]
    fn name_hash_matches_fnv1a_32_test_vectors() {
        // Reference vectors of FNV-1a 32-bit (Fowler/Noll/Vo test suite).
        assert_eq!(name_hash(""), "811c9dc5");
        assert_eq!(name_hash("a"), "e40c292c");
        assert_eq!(name_hash("foobar"), "bf9cf968");
    }

    #[test]
    fn name_hash_is_eight_lowercase_hex_digits() {
        for name in [
            "my-sandbox",
            "python-runtime",
            "x",
            "a-very-long-sandbox-name-0123456789",
        ] {
            let h = name_hash(name);
            assert_eq!(h.len(), 8, "{name}");
            assert!(
                h.chars()
                    .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c)),
                "{h}"
            );
        }
        assert_ne!(name_hash("pool-a"), name_hash("pool-b"));
    }

    #[test]
    fn built_names_follow_upstream() {
        assert_eq!(shadow_pool_name("python"), "shadow-pool-python");
        assert_eq!(network_policy_name("python"), "python-network-policy");
        assert_eq!(pvc_name("data", "sb"), "data-sb");
        assert_eq!(pool_member_prefix("pool"), "pool-");
    }

    #[test]
    fn selectors_join_key_and_hash() {
        assert_eq!(
            sandbox_selector("a"),
            "agents.x-k8s.io/sandbox-name-hash=e40c292c"
        );
        assert_eq!(
            warm_pool_selector("a"),
            "agents.x-k8s.io/warm-pool-sandbox=e40c292c"
        );
    }

    #[test]
    fn created_by_is_normalised() {
        assert_eq!(normalize_created_by("python-client"), "python-client");
        assert_eq!(normalize_created_by("my-tool"), "unknown");
    }

    #[test]
    fn reserved_keys_are_recognised() {
        assert!(is_reserved_key("agents.x-k8s.io/claim-uid"));
        assert!(is_reserved_key("extensions.agents.x-k8s.io/x"));
        assert!(!is_reserved_key("app"));
        assert!(!is_reserved_key("sandbox.users.io/team"));
    }

    #[test]
    fn state_annotation_is_named_by_version_and_kind() {
        assert_eq!(
            version_state_annotation("v1alpha1", "sandboxclaim"),
            "api.agents.x-k8s.io/v1alpha1-sandboxclaim-state"
        );
    }
}
