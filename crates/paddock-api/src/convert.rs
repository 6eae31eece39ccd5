//! Lossless conversion between `v1alpha1` and `v1beta1` (contract §1.8; hub = v1beta1).
//!
//! Each kind has a pair of *derivations* — the mapping upstream's webhook performs
//! (`replicas` ⇄ `operatingMode`, `sandboxTemplateRef`/`warmpool` ⇄ `warmPoolRef` with
//! `shadow-pool-<template>`, ...) — and a list of the fields only one version can express. What a
//! derivation cannot carry across is kept in an annotation on the converted object
//! (`api.agents.x-k8s.io/<version>-<kind>-state`, a JSON map of field paths to values) and put
//! back on the way home, but only when that changes nothing the other version can see: an edit
//! made in the other version always wins over the snapshot. So for any object `x`,
//! `down(up(x)) == x` and `up(down(x)) == x`.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use crate::names::{
    SHADOW_POOL_PREFIX, V1BETA1_VOLUME_CLAIM_TEMPLATES_POLICY, version_state_annotation,
};
use crate::{v1alpha1 as a, v1beta1 as b};

/// What the generic round-trip machinery needs of an object type.
trait Object: Clone + PartialEq + Serialize + DeserializeOwned {
    fn meta_mut(&mut self) -> &mut ObjectMeta;
}

macro_rules! impl_object {
    ($($t:ty),*) => {$(
        impl Object for $t {
            fn meta_mut(&mut self) -> &mut ObjectMeta {
                &mut self.metadata
            }
        }
    )*};
}
impl_object!(
    a::Sandbox,
    b::Sandbox,
    a::SandboxTemplate,
    b::SandboxTemplate,
    a::SandboxClaim,
    b::SandboxClaim,
    a::SandboxWarmPool,
    b::SandboxWarmPool
);

/// How the fields only v1beta1 has are kept on a v1alpha1 object.
enum BetaSnapshotStyle {
    /// A JSON map in `api.agents.x-k8s.io/v1beta1-<kind>-state`.
    Json,
    /// One field's string value in a dedicated annotation (upstream's name for it).
    SingleField {
        annotation: &'static str,
        path: &'static str,
    },
}

/// The conversion of one kind. Paths are JSON pointers into the object.
struct Rules<A, B> {
    kind: &'static str,
    /// v1alpha1 fields not copied verbatim (kept in the v1alpha1 snapshot).
    alpha_recorded: &'static [&'static str],
    /// v1beta1 fields not copied verbatim (kept in the v1beta1 snapshot).
    beta_recorded: &'static [&'static str],
    /// v1alpha1 fields computed from v1beta1 fields: a v1beta1 snapshot is put back only if
    /// they stay as they are.
    alpha_derived: &'static [&'static str],
    /// v1beta1 fields computed from v1alpha1 fields: a v1alpha1 snapshot is put back only if
    /// they stay as they are.
    beta_derived: &'static [&'static str],
    beta_style: BetaSnapshotStyle,
    up: fn(&A) -> B,
    down: fn(&B) -> A,
}

fn to_json<T: Serialize>(t: &T) -> Value {
    serde_json::to_value(t).unwrap_or(Value::Null)
}

/// Reads a `/a/b` path; absent is `Null`.
fn get_path(v: &Value, path: &str) -> Value {
    v.pointer(path).cloned().unwrap_or(Value::Null)
}

/// Sets a `/a/b` path, creating objects on the way; `Null` removes the field.
fn set_path(v: &mut Value, path: &str, new: Value) {
    let mut parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let Some(last) = parts.pop() else { return };
    let mut cur = v;
    for p in parts {
        if !cur.get(p).is_some_and(Value::is_object) {
            if new.is_null() {
                return;
            }
            if let Value::Object(o) = cur {
                o.insert(p.to_owned(), Value::Object(Map::new()));
            } else {
                return;
            }
        }
        let Some(next) = cur.get_mut(p) else { return };
        cur = next;
    }
    if let Value::Object(o) = cur {
        if new.is_null() {
            o.shift_remove(last);
        } else {
            o.insert(last.to_owned(), new);
        }
    }
}

fn take_annotation(meta: &mut ObjectMeta, key: &str) -> Option<String> {
    let annotations = meta.annotations.as_mut()?;
    let value = annotations.remove(key);
    if annotations.is_empty() {
        meta.annotations = None;
    }
    value
}

fn put_annotation(meta: &mut ObjectMeta, key: &str, value: String) {
    meta.annotations
        .get_or_insert_with(BTreeMap::new)
        .insert(key.to_owned(), value);
}

/// Applies a snapshot (path → value) to an object; `None` when the result no longer parses.
fn with_snapshot<T: Object>(obj: &T, snapshot: &Map<String, Value>) -> Option<T> {
    let mut v = to_json(obj);
    for (path, value) in snapshot {
        set_path(&mut v, path, value.clone());
    }
    serde_json::from_value(v).ok()
}

/// Whether two objects agree on every path.
fn agree(paths: &[&str], x: &Value, y: &Value) -> bool {
    paths.iter().all(|p| get_path(x, p) == get_path(y, p))
}

/// The snapshot to keep: when `got` fails to reproduce `want` on any path, the values of all
/// paths in `want` (together, so a restore is checked against the whole original mapping);
/// otherwise nothing.
fn snapshot_if_lost(paths: &[&str], got: &Value, want: &Value) -> Map<String, Value> {
    if agree(paths, got, want) {
        return Map::new();
    }
    paths
        .iter()
        .map(|p| ((*p).to_owned(), get_path(want, p)))
        .collect()
}

impl<A: Object, B: Object> Rules<A, B> {
    fn alpha_annotation(&self) -> String {
        version_state_annotation("v1alpha1", self.kind)
    }

    fn beta_annotation(&self) -> String {
        version_state_annotation("v1beta1", self.kind)
    }

    fn take_beta_snapshot(&self, meta: &mut ObjectMeta) -> Option<Map<String, Value>> {
        let json = take_annotation(meta, &self.beta_annotation());
        match self.beta_style {
            BetaSnapshotStyle::Json => json.and_then(|j| serde_json::from_str(&j).ok()),
            BetaSnapshotStyle::SingleField { annotation, path } => {
                take_annotation(meta, annotation)
                    .map(|v| Map::from_iter([(path.to_owned(), Value::String(v))]))
            }
        }
    }

    fn put_beta_snapshot(&self, meta: &mut ObjectMeta, snapshot: Map<String, Value>) {
        if snapshot.is_empty() {
            return;
        }
        match self.beta_style {
            BetaSnapshotStyle::Json => put_annotation(
                meta,
                &self.beta_annotation(),
                Value::Object(snapshot).to_string(),
            ),
            BetaSnapshotStyle::SingleField { annotation, path } => {
                if let Some(Value::String(v)) = snapshot.get(path) {
                    put_annotation(meta, annotation, v.clone());
                }
            }
        }
    }

    fn to_beta(&self, mut alpha: A) -> B {
        let _stale_alpha_snapshot = take_annotation(alpha.meta_mut(), &self.alpha_annotation());
        let beta_snapshot = self.take_beta_snapshot(alpha.meta_mut());
        let derived = (self.up)(&alpha);
        let mut beta = derived.clone();
        let alpha_json = to_json(&alpha);
        if let Some(snapshot) = beta_snapshot
            && let Some(restored) = with_snapshot(&derived, &snapshot)
            && agree(
                self.alpha_derived,
                &to_json(&(self.down)(&restored)),
                &alpha_json,
            )
        {
            beta = restored;
        }
        let lost = snapshot_if_lost(
            self.alpha_recorded,
            &to_json(&(self.down)(&beta)),
            &alpha_json,
        );
        if !lost.is_empty() {
            put_annotation(
                beta.meta_mut(),
                &self.alpha_annotation(),
                Value::Object(lost).to_string(),
            );
        }
        beta
    }

    fn to_alpha(&self, mut beta: B) -> A {
        let alpha_snapshot: Option<Map<String, Value>> =
            take_annotation(beta.meta_mut(), &self.alpha_annotation())
                .and_then(|j| serde_json::from_str(&j).ok());
        let _stale_beta_snapshot = self.take_beta_snapshot(beta.meta_mut());
        let derived = (self.down)(&beta);
        let mut alpha = derived.clone();
        let beta_json = to_json(&beta);
        if let Some(snapshot) = alpha_snapshot
            && let Some(restored) = with_snapshot(&derived, &snapshot)
            && agree(
                self.beta_derived,
                &to_json(&(self.up)(&restored)),
                &beta_json,
            )
        {
            alpha = restored;
        }
        let lost = snapshot_if_lost(self.beta_recorded, &to_json(&(self.up)(&alpha)), &beta_json);
        self.put_beta_snapshot(alpha.meta_mut(), lost);
        alpha
    }
}

const SANDBOX: Rules<a::Sandbox, b::Sandbox> = Rules {
    kind: "sandbox",
    alpha_recorded: &["/spec/replicas", "/status/replicas"],
    beta_recorded: &["/spec/operatingMode", "/status/nodeName"],
    alpha_derived: &["/spec/replicas", "/status/replicas"],
    beta_derived: &["/spec/operatingMode"],
    beta_style: BetaSnapshotStyle::Json,
    up: sandbox_up,
    down: sandbox_down,
};

fn sandbox_up(s: &a::Sandbox) -> b::Sandbox {
    let mode = if s.spec.replicas == Some(0) {
        b::OperatingMode::Suspended
    } else {
        b::OperatingMode::Running
    };
    b::Sandbox {
        metadata: s.metadata.clone(),
        spec: b::SandboxSpec {
            blueprint: s.spec.blueprint.clone(),
            lifecycle: s.spec.lifecycle.clone(),
            operating_mode: Some(mode),
        },
        status: s.status.as_ref().map(|st| b::SandboxStatus {
            service_fqdn: st.service_fqdn.clone(),
            service: st.service.clone(),
            conditions: st.conditions.clone(),
            selector: st.selector.clone(),
            pod_ips: st.pod_ips.clone(),
            node_name: None,
        }),
    }
}

fn sandbox_down(s: &b::Sandbox) -> a::Sandbox {
    let replicas = match s.spec.effective_operating_mode() {
        b::OperatingMode::Suspended => 0,
        b::OperatingMode::Running => 1,
    };
    a::Sandbox {
        metadata: s.metadata.clone(),
        spec: a::SandboxSpec {
            blueprint: s.spec.blueprint.clone(),
            lifecycle: s.spec.lifecycle.clone(),
            replicas: Some(replicas),
        },
        status: s.status.as_ref().map(|st| a::SandboxStatus {
            service_fqdn: st.service_fqdn.clone(),
            service: st.service.clone(),
            replicas: Some(replicas),
            conditions: st.conditions.clone(),
            selector: st.selector.clone(),
            pod_ips: st.pod_ips.clone(),
        }),
    }
}

const TEMPLATE: Rules<a::SandboxTemplate, b::SandboxTemplate> = Rules {
    kind: "sandboxtemplate",
    alpha_recorded: &[],
    beta_recorded: &["/spec/volumeClaimTemplatesPolicy"],
    alpha_derived: &[],
    beta_derived: &[],
    beta_style: BetaSnapshotStyle::SingleField {
        annotation: V1BETA1_VOLUME_CLAIM_TEMPLATES_POLICY,
        path: "/spec/volumeClaimTemplatesPolicy",
    },
    up: template_up,
    down: template_down,
};

fn template_up(t: &a::SandboxTemplate) -> b::SandboxTemplate {
    b::SandboxTemplate {
        metadata: t.metadata.clone(),
        spec: b::SandboxTemplateSpec {
            blueprint: t.spec.blueprint.clone(),
            network_policy: t.spec.network_policy.clone(),
            network_policy_management: t.spec.network_policy_management,
            env_vars_injection_policy: t.spec.env_vars_injection_policy,
            volume_claim_templates_policy: None,
        },
        status: t.status.clone(),
    }
}

fn template_down(t: &b::SandboxTemplate) -> a::SandboxTemplate {
    a::SandboxTemplate {
        metadata: t.metadata.clone(),
        spec: a::SandboxTemplateSpec {
            blueprint: t.spec.blueprint.clone(),
            network_policy: t.spec.network_policy.clone(),
            network_policy_management: t.spec.network_policy_management,
            env_vars_injection_policy: t.spec.env_vars_injection_policy,
        },
        status: t.status.clone(),
    }
}

const CLAIM: Rules<a::SandboxClaim, b::SandboxClaim> = Rules {
    kind: "sandboxclaim",
    alpha_recorded: &["/spec/sandboxTemplateRef", "/spec/warmpool"],
    beta_recorded: &["/spec/warmPoolRef", "/spec/volumeClaimTemplates"],
    alpha_derived: &["/spec/sandboxTemplateRef", "/spec/warmpool"],
    beta_derived: &["/spec/warmPoolRef"],
    beta_style: BetaSnapshotStyle::Json,
    up: claim_up,
    down: claim_down,
};

/// The pool a v1alpha1 claim maps to (contract §1.8).
fn alpha_claim_pool(c: &a::SandboxClaim) -> String {
    match c.spec.warmpool.as_deref() {
        Some(pool)
            if !pool.is_empty() && pool != a::WARMPOOL_NONE && pool != a::WARMPOOL_DEFAULT =>
        {
            pool.to_owned()
        }
        _ => {
            let claim_name = c.metadata.name.as_deref().unwrap_or("");
            let bound = c
                .status
                .as_ref()
                .and_then(|s| s.sandbox.as_ref())
                .and_then(|s| s.name.as_deref());
            match bound {
                Some(sandbox) if !sandbox.is_empty() && sandbox != claim_name => sandbox
                    .rsplit_once('-')
                    .map_or(sandbox, |(pool, _suffix)| pool)
                    .to_owned(),
                _ => crate::names::shadow_pool_name(&c.spec.sandbox_template_ref.name),
            }
        }
    }
}

fn claim_up(c: &a::SandboxClaim) -> b::SandboxClaim {
    b::SandboxClaim {
        metadata: c.metadata.clone(),
        spec: b::SandboxClaimSpec {
            warm_pool_ref: b::NameRef {
                name: alpha_claim_pool(c),
            },
            lifecycle: c.spec.lifecycle.clone(),
            additional_pod_metadata: c.spec.additional_pod_metadata.clone(),
            env: c.spec.env.clone(),
            volume_claim_templates: None,
        },
        status: c.status.clone(),
    }
}

fn claim_down(c: &b::SandboxClaim) -> a::SandboxClaim {
    let pool = &c.spec.warm_pool_ref.name;
    let (template, warmpool) = match pool.strip_prefix(SHADOW_POOL_PREFIX) {
        Some(template) => (template.to_owned(), a::WARMPOOL_DEFAULT.to_owned()),
        None => (pool.clone(), pool.clone()),
    };
    a::SandboxClaim {
        metadata: c.metadata.clone(),
        spec: a::SandboxClaimSpec {
            sandbox_template_ref: a::NameRef { name: template },
            warmpool: Some(warmpool),
            lifecycle: c.spec.lifecycle.clone(),
            additional_pod_metadata: c.spec.additional_pod_metadata.clone(),
            env: c.spec.env.clone(),
        },
        status: c.status.clone(),
    }
}

const WARM_POOL: Rules<a::SandboxWarmPool, b::SandboxWarmPool> = Rules {
    kind: "sandboxwarmpool",
    alpha_recorded: &[],
    beta_recorded: &["/spec/replicas", "/status/observedGeneration"],
    alpha_derived: &["/spec/replicas"],
    beta_derived: &["/spec/replicas"],
    beta_style: BetaSnapshotStyle::Json,
    up: warm_pool_up,
    down: warm_pool_down,
};

fn warm_pool_up(p: &a::SandboxWarmPool) -> b::SandboxWarmPool {
    b::SandboxWarmPool {
        metadata: p.metadata.clone(),
        spec: b::SandboxWarmPoolSpec {
            replicas: Some(p.spec.replicas),
            sandbox_template_ref: p.spec.sandbox_template_ref.clone(),
            update_strategy: p.spec.update_strategy.clone(),
        },
        status: p.status.as_ref().map(|s| b::SandboxWarmPoolStatus {
            replicas: s.replicas,
            ready_replicas: s.ready_replicas,
            selector: s.selector.clone(),
            observed_generation: None,
        }),
    }
}

fn warm_pool_down(p: &b::SandboxWarmPool) -> a::SandboxWarmPool {
    a::SandboxWarmPool {
        metadata: p.metadata.clone(),
        spec: a::SandboxWarmPoolSpec {
            replicas: p.spec.effective_replicas(),
            sandbox_template_ref: p.spec.sandbox_template_ref.clone(),
            update_strategy: p.spec.update_strategy.clone(),
        },
        status: p.status.as_ref().map(|s| a::SandboxWarmPoolStatus {
            replicas: s.replicas,
            ready_replicas: s.ready_replicas,
            selector: s.selector.clone(),
        }),
    }
}

/// v1alpha1 → v1beta1 Sandbox.
pub fn sandbox_to_v1beta1(s: a::Sandbox) -> b::Sandbox {
    SANDBOX.to_beta(s)
}
/// v1beta1 → v1alpha1 Sandbox.
pub fn sandbox_to_v1alpha1(s: b::Sandbox) -> a::Sandbox {
    SANDBOX.to_alpha(s)
}
/// v1alpha1 → v1beta1 SandboxTemplate.
pub fn template_to_v1beta1(t: a::SandboxTemplate) -> b::SandboxTemplate {
    TEMPLATE.to_beta(t)
}
/// v1beta1 → v1alpha1 SandboxTemplate.
pub fn template_to_v1alpha1(t: b::SandboxTemplate) -> a::SandboxTemplate {
    TEMPLATE.to_alpha(t)
}
/// v1alpha1 → v1beta1 SandboxClaim.
pub fn claim_to_v1beta1(c: a::SandboxClaim) -> b::SandboxClaim {
    CLAIM.to_beta(c)
}
/// v1beta1 → v1alpha1 SandboxClaim.
pub fn claim_to_v1alpha1(c: b::SandboxClaim) -> a::SandboxClaim {
    CLAIM.to_alpha(c)
}
/// v1alpha1 → v1beta1 SandboxWarmPool.
pub fn warm_pool_to_v1beta1(p: a::SandboxWarmPool) -> b::SandboxWarmPool {
    WARM_POOL.to_beta(p)
}
/// v1beta1 → v1alpha1 SandboxWarmPool.
pub fn warm_pool_to_v1alpha1(p: b::SandboxWarmPool) -> a::SandboxWarmPool {
    WARM_POOL.to_alpha(p)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::common::*;
    use crate::testing::*;

    fn annotations(meta: &ObjectMeta) -> BTreeMap<String, String> {
        meta.annotations.clone().unwrap_or_default()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]

        #[test]
        fn sandbox_alpha_beta_alpha_is_identity(s in arb_sandbox_v1alpha1()) {
            prop_assert_eq!(sandbox_to_v1alpha1(sandbox_to_v1beta1(s.clone())), s);
        }

        #[test]
        fn sandbox_beta_alpha_beta_is_identity(s in arb_sandbox_v1beta1()) {
            prop_assert_eq!(sandbox_to_v1beta1(sandbox_to_v1alpha1(s.clone())), s);
        }

        #[test]
        fn template_alpha_beta_alpha_is_identity(t in arb_template_v1alpha1()) {
            prop_assert_eq!(template_to_v1alpha1(template_to_v1beta1(t.clone())), t);
        }

        #[test]
        fn template_beta_alpha_beta_is_identity(t in arb_template_v1beta1()) {
            prop_assert_eq!(template_to_v1beta1(template_to_v1alpha1(t.clone())), t);
        }

        #[test]
        fn claim_alpha_beta_alpha_is_identity(c in arb_claim_v1alpha1()) {
            prop_assert_eq!(claim_to_v1alpha1(claim_to_v1beta1(c.clone())), c);
        }

        #[test]
        fn claim_beta_alpha_beta_is_identity(c in arb_claim_v1beta1()) {
            prop_assert_eq!(claim_to_v1beta1(claim_to_v1alpha1(c.clone())), c);
        }

        #[test]
        fn warm_pool_alpha_beta_alpha_is_identity(p in arb_warm_pool_v1alpha1()) {
            prop_assert_eq!(warm_pool_to_v1alpha1(warm_pool_to_v1beta1(p.clone())), p);
        }

        #[test]
        fn warm_pool_beta_alpha_beta_is_identity(p in arb_warm_pool_v1beta1()) {
            prop_assert_eq!(warm_pool_to_v1beta1(warm_pool_to_v1alpha1(p.clone())), p);
        }

        #[test]
        fn json_round_trip_through_serde_is_identity(s in arb_sandbox_v1beta1()) {
            let back: b::Sandbox = serde_json::from_value(serde_json::to_value(&s).unwrap()).unwrap();
            prop_assert_eq!(back, s);
        }
    }

    fn alpha_sandbox(replicas: Option<i32>) -> a::Sandbox {
        let mut s = a::Sandbox::new("s", a::SandboxSpec::default());
        s.spec.replicas = replicas;
        s
    }

    #[test]
    fn sandbox_replicas_map_to_operating_mode() {
        assert_eq!(
            sandbox_to_v1beta1(alpha_sandbox(Some(0)))
                .spec
                .operating_mode,
            Some(b::OperatingMode::Suspended)
        );
        assert_eq!(
            sandbox_to_v1beta1(alpha_sandbox(Some(1)))
                .spec
                .operating_mode,
            Some(b::OperatingMode::Running)
        );
        let unset = sandbox_to_v1beta1(alpha_sandbox(None));
        assert_eq!(unset.spec.operating_mode, Some(b::OperatingMode::Running));
        assert_eq!(
            annotations(&unset.metadata)
                .get("api.agents.x-k8s.io/v1alpha1-sandbox-state")
                .map(String::as_str),
            Some(r#"{"/spec/replicas":null,"/status/replicas":null}"#)
        );
    }

    #[test]
    fn sandbox_status_replicas_follow_the_mode_going_down() {
        let mut s = b::Sandbox::new("s", b::SandboxSpec::default());
        s.spec.operating_mode = Some(b::OperatingMode::Suspended);
        s.status = Some(b::SandboxStatus {
            node_name: Some("node-1".into()),
            ..Default::default()
        });
        let down = sandbox_to_v1alpha1(s);
        assert_eq!(down.spec.replicas, Some(0));
        assert_eq!(down.status.as_ref().and_then(|st| st.replicas), Some(0));
    }

    #[test]
    fn an_edit_in_the_other_version_wins_over_the_snapshot() {
        let beta = sandbox_to_v1beta1(alpha_sandbox(None));
        let mut edited = beta.clone();
        edited.spec.operating_mode = Some(b::OperatingMode::Suspended);
        assert_eq!(sandbox_to_v1alpha1(edited).spec.replicas, Some(0));
        assert_eq!(sandbox_to_v1alpha1(beta).spec.replicas, None);
    }

    fn alpha_claim(warmpool: Option<&str>, bound: Option<&str>) -> a::SandboxClaim {
        let mut c = a::SandboxClaim::new(
            "my-claim",
            a::SandboxClaimSpec {
                sandbox_template_ref: NameRef {
                    name: "python".into(),
                },
                warmpool: warmpool.map(str::to_owned),
                ..Default::default()
            },
        );
        if let Some(name) = bound {
            c.status = Some(SandboxClaimStatus {
                conditions: None,
                sandbox: Some(ClaimSandboxStatus {
                    name: Some(name.into()),
                    pod_ips: None,
                }),
            });
        }
        c
    }

    #[test]
    fn claim_pool_follows_the_contract() {
        let pool = |c: a::SandboxClaim| claim_to_v1beta1(c).spec.warm_pool_ref.name;
        assert_eq!(pool(alpha_claim(Some("fast-pool"), None)), "fast-pool");
        assert_eq!(pool(alpha_claim(None, None)), "shadow-pool-python");
        assert_eq!(pool(alpha_claim(Some("none"), None)), "shadow-pool-python");
        assert_eq!(
            pool(alpha_claim(Some("default"), Some("my-claim"))),
            "shadow-pool-python"
        );
        assert_eq!(
            pool(alpha_claim(Some("default"), Some("python-pool-x7k2p"))),
            "python-pool"
        );
    }

    #[test]
    fn claim_down_conversion_unpacks_shadow_pools() {
        let mut c = b::SandboxClaim::new(
            "c",
            b::SandboxClaimSpec {
                warm_pool_ref: NameRef {
                    name: "shadow-pool-python".into(),
                },
                ..Default::default()
            },
        );
        let down = claim_to_v1alpha1(c.clone());
        assert_eq!(down.spec.sandbox_template_ref.name, "python");
        assert_eq!(down.spec.warmpool.as_deref(), Some("default"));
        c.spec.warm_pool_ref.name = "fast".into();
        let down = claim_to_v1alpha1(c);
        assert_eq!(down.spec.sandbox_template_ref.name, "fast");
        assert_eq!(down.spec.warmpool.as_deref(), Some("fast"));
    }

    #[test]
    fn claim_snapshot_is_dropped_when_the_pool_changed() {
        let mut beta = claim_to_v1beta1(alpha_claim(Some("fast-pool"), None));
        beta.spec.warm_pool_ref.name = "other-pool".into();
        let down = claim_to_v1alpha1(beta);
        assert_eq!(down.spec.sandbox_template_ref.name, "other-pool");
        assert!(down.metadata.annotations.is_none());
    }

    #[test]
    fn template_policy_travels_in_upstreams_annotation() {
        let mut t = b::SandboxTemplate::new("t", b::SandboxTemplateSpec::default());
        t.spec.volume_claim_templates_policy = Some(VolumeClaimTemplatesPolicy::Allowed);
        let down = template_to_v1alpha1(t);
        assert_eq!(
            annotations(&down.metadata)
                .get("api.agents.x-k8s.io/v1beta1-volume-claim-templates-policy")
                .map(String::as_str),
            Some("Allowed")
        );
    }

    #[test]
    fn warm_pool_nil_replicas_become_one_going_down() {
        let p = b::SandboxWarmPool::new(
            "p",
            b::SandboxWarmPoolSpec {
                replicas: None,
                sandbox_template_ref: NameRef { name: "t".into() },
                update_strategy: None,
            },
        );
        assert_eq!(warm_pool_to_v1alpha1(p).spec.replicas, 1);
    }
}
