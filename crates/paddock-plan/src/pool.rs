//! The SandboxWarmPool planner (contract §2.4): which members to adopt, delete or create, the
//! pool status, and the expectations that keep a pool from creating again before its previous
//! creates and deletes are visible.
//!
//! Expectations are ReplicaSet-style but keyed by name, so the planner can check them against
//! what it observes: the driver stores [`PoolPlan::expectations`] per pool, adds the name the
//! apiserver (or store) gave each created member with [`PoolExpectations::record_created`], and
//! drops a delete it could not apply with [`PoolExpectations::forget_delete`]. Until every
//! expected create is seen and every expected delete has taken effect, the pool creates and
//! scales down nothing (5 minute timeout, 30 s fallback requeue).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use k8s_openapi::api::core::v1::PodSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference, Time};
use paddock_api::conditions::{self, status as cstatus, types};
use paddock_api::names::{
    CREATED_BY, LAUNCH_TYPE, LAUNCH_TYPE_WARM, SAFE_TO_EVICT, SANDBOX_POD_TEMPLATE_HASH,
    SANDBOX_TEMPLATE_HASH, SANDBOX_TEMPLATE_REF, SANDBOX_TEMPLATE_REF_HASH, WARM_POOL_SANDBOX,
    name_hash, warm_pool_selector,
};
use paddock_api::v1beta1::{
    PersistentVolumeClaimTemplate, PodMetadata, Sandbox, SandboxSpec, SandboxStatus,
    SandboxTemplate, SandboxWarmPool, SandboxWarmPoolStatus, WarmPoolUpdateStrategyType,
};
use serde::{Deserialize, Serialize};

use crate::hash::{blueprint_hash, pod_template_hash, semantically_equal};
use crate::outcome::{Event, ObjectRef, PlanError};
use crate::ownership::{Ownership, controller_ref, ownership, with_controller};
use crate::patch::MetadataPatch;
use crate::template::apply_secure_defaults;
use crate::time::{add, min_requeue, since, until};

/// Reason of the event emitted while a pool holds unschedulable members.
pub const WARM_POOL_NOT_PROGRESSING: &str = "WarmPoolNotProgressing";
/// Reason of the event emitted when a pool stops holding unschedulable members.
pub const WARM_POOL_PROGRESSING: &str = "WarmPoolProgressing";
/// Pod-scheduling reason that makes a pool hold a member past the grace period.
pub const UNSCHEDULABLE: &str = "Unschedulable";
/// `created-by` value of warm members.
pub const CREATED_BY_CONTROLLER: &str = "controller";

/// Tunables, with upstream's flag defaults.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PoolConfig {
    /// Creates or deletes per reconcile (`--sandbox-warm-pool-max-batch-size`, 300).
    pub max_batch_size: u32,
    /// A member not Ready this long after creation is replaced (5 min).
    pub readiness_grace_period: Duration,
    /// Requeue while holding unschedulable members (1 min).
    pub unschedulable_recheck_interval: Duration,
    /// Expectations older than this are dropped, in case a watch event was lost (5 min).
    pub expectations_timeout: Duration,
    /// Fallback requeue while waiting for expectations (30 s).
    pub expectations_recheck_interval: Duration,
    /// Slack added to the grace-deadline requeue so it lands after the deadline (2 s).
    pub grace_requeue_slack: Duration,
    /// Stamp `cluster-autoscaler.kubernetes.io/safe-to-evict: "true"` on members (true).
    pub enable_eviction_annotation: bool,
}

impl Default for PoolConfig {
    fn default() -> Self {
        Self {
            max_batch_size: 300,
            readiness_grace_period: Duration::from_secs(300),
            unschedulable_recheck_interval: Duration::from_secs(60),
            expectations_timeout: Duration::from_secs(300),
            expectations_recheck_interval: Duration::from_secs(30),
            grace_requeue_slack: Duration::from_secs(2),
            enable_eviction_annotation: true,
        }
    }
}

/// Creates and deletes a pool issued that its observation may not show yet.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PoolExpectations {
    /// Names of created members not yet seen.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub creates: BTreeSet<String>,
    /// Names of deleted members still seen without a deletion timestamp.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub deletes: BTreeSet<String>,
    /// When these expectations were set (for the timeout).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<Time>,
}

impl PoolExpectations {
    /// Whether nothing is outstanding.
    pub fn is_empty(&self) -> bool {
        self.creates.is_empty() && self.deletes.is_empty()
    }

    /// Records the name of a member the driver just created (from the create response).
    pub fn record_created(&mut self, name: &str) {
        self.creates.insert(name.to_owned());
    }

    /// Drops a delete that failed with a conflict (the member changed, e.g. a claim adopted it):
    /// it will not happen, so there is nothing to wait for.
    pub fn forget_delete(&mut self, name: &str) {
        self.deletes.remove(name);
    }
}

/// What the driver observed for one pool.
#[derive(Clone, Debug)]
pub struct PoolInput<'a> {
    /// The pool.
    pub pool: &'a SandboxWarmPool,
    /// Its template (`spec.sandboxTemplateRef.name` in the pool's namespace), if found.
    pub template: Option<&'a SandboxTemplate>,
    /// Sandboxes in the pool's namespace labelled `warm-pool-sandbox=<NameHash(pool)>`.
    pub members: Vec<&'a Sandbox>,
    /// The expectations stored from the previous plan (empty at start-up).
    pub expectations: &'a PoolExpectations,
    /// Of `expectations.creates`, the names the driver's cache holds now, whatever their labels
    /// or owner (a member a claim adopted before the pool saw it still counts as seen).
    pub seen_created: BTreeSet<String>,
    /// At most this many creates now (the driver's refill rate limit or replenish hold);
    /// `None` = no limit beyond the batch size.
    pub create_allowance: Option<u32>,
    /// Whether the previous plan reported the pool not progressing (for transition events).
    pub was_not_progressing: bool,
    /// The current time.
    pub now: &'a Time,
    /// Tunables.
    pub config: &'a PoolConfig,
}

/// Why a member is deleted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum DeleteReason {
    /// It no longer matches the template and the pool's strategy is `Recreate`.
    Stale,
    /// An unowned member that no longer matches the template.
    StaleOrphan,
    /// Not Ready after the readiness grace period (and not unschedulable).
    NotReadyAfterGrace,
    /// More members than `spec.replicas`.
    ScaleDown,
}

/// One step of a pool reconcile.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "camelCase")]
pub enum PoolAction {
    /// Create a member (it has `generateName`); then record its name in the expectations.
    CreateMember {
        /// The complete object.
        sandbox: Box<Sandbox>,
    },
    /// Merge-patch a member: adopt an orphan (owner references, lock) or add `launch-type`.
    PatchMember {
        /// Member name.
        name: String,
        /// The edits.
        patch: MetadataPatch,
    },
    /// Delete a member, conditional on UID and resourceVersion so a member a claim adopted in
    /// the meantime is never deleted (on conflict, `forget_delete` it).
    DeleteMember {
        /// The member with preconditions.
        target: ObjectRef,
        /// Why.
        reason: DeleteReason,
    },
    /// Record an Event on the pool.
    Event {
        /// The event.
        event: Event,
    },
}

/// The plan for one pool reconcile.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PoolPlan {
    /// Actions in order; a failed create or delete does not stop the others.
    pub actions: Vec<PoolAction>,
    /// The new status.
    pub status: SandboxWarmPoolStatus,
    /// Whether `status` differs from the stored one (merge patch on the status subresource).
    pub write_status: bool,
    /// The expectations to store (the driver adds created names to them).
    pub expectations: PoolExpectations,
    /// Whether the pool holds unschedulable members (store and pass back as
    /// `was_not_progressing`).
    pub not_progressing: bool,
    /// Creates the pool needs before `create_allowance` (for drivers that pace refills).
    pub wanted_creates: u32,
    /// Reconcile again after this long even without a watch event.
    pub requeue_after: Option<Duration>,
    /// An error to log and retry with backoff.
    pub error: Option<PlanError>,
}

/// The template facts members are compared with.
#[derive(Clone, Debug)]
pub struct TemplateFingerprint {
    /// Template name.
    pub name: String,
    /// `NameHash(template name)`.
    pub ref_hash: String,
    /// `NameHash(json(blueprint))`.
    pub blueprint_hash: String,
    /// `NameHash(json(podTemplate))`.
    pub pod_template_hash: String,
    defaulted_pod_spec: PodSpec,
    vcts: Vec<PersistentVolumeClaimTemplate>,
    service: Option<bool>,
}

impl TemplateFingerprint {
    /// Fingerprints a template.
    pub fn new(template: &SandboxTemplate) -> Self {
        let name = template.metadata.name.clone().unwrap_or_default();
        let blueprint = &template.spec.blueprint;
        let mut defaulted_pod_spec = blueprint.pod_template.spec.clone();
        apply_secure_defaults(&mut defaulted_pod_spec, template);
        Self {
            ref_hash: name_hash(&name),
            blueprint_hash: blueprint_hash(blueprint),
            pod_template_hash: pod_template_hash(&blueprint.pod_template),
            name,
            defaulted_pod_spec,
            vcts: blueprint.volume_claim_templates.clone().unwrap_or_default(),
            service: blueprint.service,
        }
    }

    /// Whether `member` no longer matches the template: made from another template, or (unless
    /// its blueprint hash matches) different in pod spec (after secure defaults), volume claim
    /// templates (names and specs, in order) or `service`. Metadata-only edits never count.
    pub fn is_stale(&self, member: &Sandbox) -> bool {
        if label(&member.metadata, SANDBOX_TEMPLATE_REF_HASH) != Some(self.ref_hash.as_str()) {
            return true;
        }
        if label(&member.metadata, SANDBOX_TEMPLATE_HASH) == Some(self.blueprint_hash.as_str()) {
            return false;
        }
        let bp = &member.spec.blueprint;
        let member_vcts = bp.volume_claim_templates.as_deref().unwrap_or_default();
        let vcts_equal = member_vcts.len() == self.vcts.len()
            && member_vcts
                .iter()
                .zip(&self.vcts)
                .all(|(a, b)| a.name() == b.name() && semantically_equal(&a.spec, &b.spec));
        !(vcts_equal
            && bp.service == self.service
            && semantically_equal(&bp.pod_template.spec, &self.defaulted_pod_spec))
    }
}

fn label<'a>(meta: &'a ObjectMeta, key: &str) -> Option<&'a str> {
    meta.labels
        .as_ref()
        .and_then(|l| l.get(key))
        .map(String::as_str)
}

/// Whether a Sandbox's `Ready` condition is `True`.
pub fn is_ready(sandbox: &Sandbox) -> bool {
    sandbox.status.as_ref().is_some_and(SandboxStatus::is_ready)
}

/// Whether a Sandbox's mirrored `PodScheduled` condition says `False`/`Unschedulable`.
pub fn is_unschedulable(sandbox: &Sandbox) -> bool {
    sandbox
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_deref())
        .and_then(|c| conditions::find(c, types::POD_SCHEDULED))
        .is_some_and(|c| c.status == cstatus::FALSE && c.reason == UNSCHEDULABLE)
}

/// The member Sandbox a pool creates from its template (contract §2.4 step 10):
/// `generateName: <pool>-`; pool, template, hash, `launch-type: warm` and `created-by:
/// controller` labels; the `sandbox-template-ref` annotation; the template blueprint with the
/// pool/template/hash labels and (unless disabled or set by the template) `safe-to-evict` on
/// the pod template; secure defaults; controller reference to the pool.
pub fn build_member(
    pool: &SandboxWarmPool,
    template: &SandboxTemplate,
    fingerprint: &TemplateFingerprint,
    config: &PoolConfig,
) -> Sandbox {
    let pool_name = pool.metadata.name.as_deref().unwrap_or_default();
    let pool_hash = name_hash(pool_name);
    let identity = [
        (WARM_POOL_SANDBOX, pool_hash.as_str()),
        (SANDBOX_TEMPLATE_REF_HASH, fingerprint.ref_hash.as_str()),
        (
            SANDBOX_POD_TEMPLATE_HASH,
            fingerprint.pod_template_hash.as_str(),
        ),
        (SANDBOX_TEMPLATE_HASH, fingerprint.blueprint_hash.as_str()),
    ];
    let mut labels: BTreeMap<String, String> = identity
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    labels.insert(LAUNCH_TYPE.to_owned(), LAUNCH_TYPE_WARM.to_owned());
    labels.insert(CREATED_BY.to_owned(), CREATED_BY_CONTROLLER.to_owned());

    let mut blueprint = template.spec.blueprint.clone();
    let pod_meta = blueprint
        .pod_template
        .metadata
        .get_or_insert_with(PodMetadata::default);
    let pod_labels = pod_meta.labels.get_or_insert_with(BTreeMap::new);
    for (k, v) in identity {
        pod_labels.insert(k.to_owned(), v.to_owned());
    }
    if config.enable_eviction_annotation {
        let annotations = pod_meta.annotations.get_or_insert_with(BTreeMap::new);
        annotations
            .entry(SAFE_TO_EVICT.to_owned())
            .or_insert_with(|| "true".to_owned());
    }
    apply_secure_defaults(&mut blueprint.pod_template.spec, template);

    Sandbox {
        metadata: ObjectMeta {
            generate_name: Some(paddock_api::names::pool_member_prefix(pool_name)),
            namespace: pool.metadata.namespace.clone(),
            labels: Some(labels),
            annotations: Some(BTreeMap::from([(
                SANDBOX_TEMPLATE_REF.to_owned(),
                fingerprint.name.clone(),
            )])),
            owner_references: Some(vec![pool_owner_ref(pool)]),
            ..ObjectMeta::default()
        },
        spec: SandboxSpec {
            blueprint,
            ..SandboxSpec::default()
        },
        status: None,
    }
}

fn pool_owner_ref(pool: &SandboxWarmPool) -> OwnerReference {
    controller_ref(
        SandboxWarmPool::API_VERSION,
        SandboxWarmPool::KIND,
        pool.metadata.name.as_deref().unwrap_or_default(),
        pool.metadata.uid.as_deref().unwrap_or_default(),
    )
}

fn delete_target(member: &Sandbox) -> ObjectRef {
    ObjectRef {
        name: member.metadata.name.clone().unwrap_or_default(),
        uid: member.metadata.uid.clone(),
        resource_version: member.metadata.resource_version.clone(),
    }
}

/// Plans one pool reconcile (contract §2.4).
pub fn plan_pool(input: &PoolInput<'_>) -> PoolPlan {
    let pool = input.pool;
    let config = input.config;
    let now = input.now;
    let old_status = pool.status.clone().unwrap_or_default();
    let mut plan = PoolPlan {
        actions: Vec::new(),
        status: old_status.clone(),
        write_status: false,
        expectations: input.expectations.clone(),
        not_progressing: input.was_not_progressing,
        wanted_creates: 0,
        requeue_after: None,
        error: None,
    };
    if pool.metadata.deletion_timestamp.is_some() {
        plan.expectations = PoolExpectations::default();
        return plan;
    }
    let pool_name = pool.metadata.name.as_deref().unwrap_or_default();
    let pool_uid = pool.metadata.uid.as_deref().unwrap_or_default();
    if pool_uid.is_empty() {
        plan.error = Some(PlanError::transient(format!(
            "SandboxWarmPool {pool_name:?} has no metadata.uid yet; cannot own members"
        )));
        return plan;
    }
    let namespace = pool.metadata.namespace.as_deref();
    let members: Vec<&Sandbox> = input
        .members
        .iter()
        .copied()
        .filter(|m| m.metadata.namespace.as_deref() == namespace)
        .collect();
    let member_names: BTreeMap<&str, &Sandbox> = members
        .iter()
        .map(|m| (m.metadata.name.as_deref().unwrap_or_default(), *m))
        .collect();

    // Expectations: drop what has been observed, or everything after the timeout.
    let mut exp = input.expectations.clone();
    if exp
        .since
        .as_ref()
        .is_some_and(|t| since(now, t) > config.expectations_timeout)
    {
        exp = PoolExpectations::default();
    }
    exp.creates
        .retain(|n| !input.seen_created.contains(n) && !member_names.contains_key(n.as_str()));
    exp.deletes.retain(|n| {
        member_names
            .get(n.as_str())
            .is_some_and(|m| m.metadata.deletion_timestamp.is_none())
    });
    let satisfied = exp.is_empty();
    if satisfied {
        exp.since = None;
    }

    let template = input.template;
    let fingerprint = template.map(TemplateFingerprint::new);
    let recreate = pool.spec.update_strategy.as_ref().and_then(|s| s.type_)
        == Some(WarmPoolUpdateStrategyType::Recreate);

    let mut deletes: Vec<(&Sandbox, DeleteReason)> = Vec::new();
    let mut terminating = 0u32;
    let mut active: Vec<&Sandbox> = Vec::new();
    for m in &members {
        let name = m.metadata.name.as_deref().unwrap_or_default();
        let refs = m.metadata.owner_references.as_deref().unwrap_or_default();
        let own = ownership(refs, pool_uid);
        if m.metadata.deletion_timestamp.is_some() || exp.deletes.contains(name) {
            if !matches!(own, Ownership::OwnedByOther(_)) {
                terminating += 1;
            }
            continue;
        }
        match own {
            Ownership::OwnedByOther(_) => {}
            Ownership::Unowned => {
                let Some(fp) = &fingerprint else { continue };
                if fp.is_stale(m) {
                    deletes.push((m, DeleteReason::StaleOrphan));
                    terminating += 1;
                } else {
                    let mut patch = MetadataPatch::locked(m.metadata.resource_version.as_deref());
                    patch.owner_references = Some(with_controller(refs, pool_owner_ref(pool)));
                    patch.set_label(LAUNCH_TYPE, LAUNCH_TYPE_WARM);
                    plan.actions.push(PoolAction::PatchMember {
                        name: name.to_owned(),
                        patch,
                    });
                    active.push(m);
                }
            }
            Ownership::Owned => {
                if label(&m.metadata, LAUNCH_TYPE).is_none() {
                    let mut patch = MetadataPatch::default();
                    patch.set_label(LAUNCH_TYPE, LAUNCH_TYPE_WARM);
                    plan.actions.push(PoolAction::PatchMember {
                        name: name.to_owned(),
                        patch,
                    });
                }
                if recreate && fingerprint.as_ref().is_some_and(|fp| fp.is_stale(m)) {
                    deletes.push((m, DeleteReason::Stale));
                    terminating += 1;
                } else {
                    active.push(m);
                }
            }
        }
    }

    // Readiness grace: replace members stuck not-Ready, hold unschedulable ones.
    let mut requeue: Option<Duration> = None;
    let mut unschedulable = 0u32;
    let mut healthy: Vec<&Sandbox> = Vec::with_capacity(active.len());
    for m in active {
        let created = m.metadata.creation_timestamp.as_ref();
        match created {
            Some(created) if !is_ready(m) => {
                let age = since(now, created);
                if age <= config.readiness_grace_period {
                    let deadline = add(created, config.readiness_grace_period);
                    let wait = until(now, &deadline) + config.grace_requeue_slack;
                    requeue = min_requeue(requeue, Some(wait));
                    healthy.push(m);
                } else if is_unschedulable(m) {
                    unschedulable += 1;
                    healthy.push(m);
                } else {
                    deletes.push((m, DeleteReason::NotReadyAfterGrace));
                    terminating += 1;
                }
            }
            _ => healthy.push(m),
        }
    }
    if unschedulable > 0 {
        requeue = min_requeue(requeue, Some(config.unschedulable_recheck_interval));
    }

    let desired = u32::try_from(pool.spec.effective_replicas()).unwrap_or(0);
    let current = u32::try_from(healthy.len()).unwrap_or(u32::MAX);
    let total = current.saturating_add(terminating);
    let ready = u32::try_from(healthy.iter().filter(|m| is_ready(m)).count()).unwrap_or(u32::MAX);

    plan.status = SandboxWarmPoolStatus {
        replicas: Some(i32::try_from(current).unwrap_or(i32::MAX)),
        ready_replicas: Some(i32::try_from(ready).unwrap_or(i32::MAX)),
        selector: Some(warm_pool_selector(pool_name)),
        observed_generation: pool.metadata.generation,
    };
    plan.write_status = plan.status != old_status;

    // Scale up.
    let mut blocked = false;
    if total < desired {
        match (template, &fingerprint) {
            (Some(t), Some(fp)) => {
                let wanted = (desired - total).min(config.max_batch_size);
                plan.wanted_creates = wanted;
                let n = input.create_allowance.map_or(wanted, |a| wanted.min(a));
                if n > 0 {
                    if satisfied {
                        let member = build_member(pool, t, fp, config);
                        for _ in 0..n {
                            plan.actions.push(PoolAction::CreateMember {
                                sandbox: Box::new(member.clone()),
                            });
                        }
                        exp.since = Some(now.clone());
                    } else {
                        blocked = true;
                    }
                }
            }
            _ => {
                plan.error = Some(PlanError::transient(format!(
                    "SandboxTemplate {:?} of SandboxWarmPool {pool_name:?} not found",
                    pool.spec.sandbox_template_ref.name
                )));
            }
        }
    }

    // Scale down: not-Ready first, then newest first.
    if current > desired {
        if satisfied {
            let mut order = healthy.clone();
            order.sort_by(|a, b| {
                is_ready(a)
                    .cmp(&is_ready(b))
                    .then_with(|| {
                        b.metadata
                            .creation_timestamp
                            .cmp(&a.metadata.creation_timestamp)
                    })
                    .then_with(|| b.metadata.name.cmp(&a.metadata.name))
            });
            let n = usize::try_from((current - desired).min(config.max_batch_size)).unwrap_or(0);
            for m in order.into_iter().take(n) {
                deletes.push((m, DeleteReason::ScaleDown));
            }
        } else {
            blocked = true;
        }
    }
    if blocked {
        requeue = min_requeue(requeue, Some(config.expectations_recheck_interval));
    }

    for (m, why) in deletes {
        let target = delete_target(m);
        exp.deletes.insert(target.name.clone());
        if exp.since.is_none() {
            exp.since = Some(now.clone());
        }
        plan.actions.push(PoolAction::DeleteMember {
            target,
            reason: why,
        });
    }

    plan.not_progressing = unschedulable > 0;
    if plan.not_progressing && !input.was_not_progressing {
        plan.actions.push(PoolAction::Event {
            event: Event::warning(
                WARM_POOL_NOT_PROGRESSING,
                "Reconciling",
                format!(
                    "{unschedulable} warm sandbox(es) unschedulable past the readiness grace period; holding them instead of replacing"
                ),
            ),
        });
    } else if !plan.not_progressing && input.was_not_progressing {
        plan.actions.push(PoolAction::Event {
            event: Event::normal(
                WARM_POOL_PROGRESSING,
                "Reconciling",
                "Warm pool is progressing again",
            ),
        });
    }
    plan.expectations = exp;
    plan.requeue_after = requeue;
    plan
}
