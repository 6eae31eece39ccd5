//! Property tests: the pool, claim and Sandbox planners driven together over many steps against
//! an in-memory world that applies their actions the way a driver must (optimistic locks,
//! expectations bookkeeping, stop at the first failure), with reads from stale but monotonic
//! snapshots and arbitrary interleavings of reconciles.
//!
//! Properties: a pool never keeps more than `replicas` live members; no warm member is ever
//! adopted by two claims; once the world settles every claim has exactly one Sandbox and is
//! Ready.

// Test code: a panic is a failed test.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use common::{NS, claim, pool, t};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{OwnerReference, Time};
use paddock_api::conditions;
use paddock_api::names::{SANDBOX_NAME, WARM_POOL_SANDBOX, name_hash};
use paddock_api::testing::arb_template_v1beta1;
use paddock_api::v1beta1::*;
use paddock_plan::claim::{
    ClaimAction, ClaimConfig, ClaimInput, claim_status_after_failure, plan_claim,
};
use paddock_plan::outcome::{ApplyFailure, FailureKind};
use paddock_plan::ownership::controller_of_meta;
use paddock_plan::pool::{PoolAction, PoolConfig, PoolExpectations, PoolInput, plan_pool};
use paddock_plan::sandbox::{
    PodConditionObservation, PodObservation, PvcObservation, SandboxAction, SandboxInput,
    ServiceObservation, plan_sandbox, status_after_failure,
};
use proptest::prelude::*;

#[derive(Clone, Debug, PartialEq)]
struct Objects {
    pool: SandboxWarmPool,
    claims: BTreeMap<String, SandboxClaim>,
    sandboxes: BTreeMap<String, Sandbox>,
    pods: BTreeMap<String, PodObservation>,
    services: BTreeMap<String, ServiceObservation>,
    pvcs: BTreeMap<String, PvcObservation>,
}

#[derive(Clone, Debug)]
enum Op {
    Pool {
        lag: usize,
    },
    Claim {
        index: usize,
        lag: usize,
    },
    Sandbox {
        index: usize,
        lag: usize,
    },
    Kubelet {
        index: usize,
    },
    Tick,
    SetReplicas(i32),
    AddClaim,
    /// A user edits the claim (bumps its resourceVersion, so in-flight conditional writes lose).
    TouchClaim {
        index: usize,
    },
}

/// Reads are at most this many snapshots old.
const MAX_LAG: usize = 3;

struct Sim {
    objs: Objects,
    /// The last few snapshots; `history[0]` is snapshot number `history_base`.
    history: VecDeque<Objects>,
    history_base: usize,
    last_read: BTreeMap<String, usize>,
    template: SandboxTemplate,
    counter: u64,
    now_ms: i64,
    pool_exp: PoolExpectations,
    pool_not_progressing: bool,
    adopted_by: BTreeMap<String, BTreeSet<String>>,
    max_replicas: i32,
    claim_config: ClaimConfig,
    pool_config: PoolConfig,
}

fn uid_of(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> &str {
    meta.uid.as_deref().unwrap_or_default()
}

fn controller_uid(refs: &[OwnerReference]) -> Option<&str> {
    refs.iter()
        .find(|r| r.controller == Some(true))
        .map(|r| r.uid.as_str())
}

impl Sim {
    fn new(mut template: SandboxTemplate, replicas: i32) -> Self {
        template.metadata.name = Some("tpl".into());
        template.metadata.namespace = Some(NS.into());
        template.metadata.uid = Some("uid-tpl".into());
        let mut p = pool("pool", "tpl", Some(replicas));
        p.metadata.resource_version = Some("1".into());
        let objs = Objects {
            pool: p,
            claims: BTreeMap::new(),
            sandboxes: BTreeMap::new(),
            pods: BTreeMap::new(),
            services: BTreeMap::new(),
            pvcs: BTreeMap::new(),
        };
        Self {
            history: VecDeque::from([objs.clone()]),
            history_base: 0,
            objs,
            last_read: BTreeMap::new(),
            template,
            counter: 10,
            now_ms: 0,
            pool_exp: PoolExpectations::default(),
            pool_not_progressing: false,
            adopted_by: BTreeMap::new(),
            max_replicas: replicas,
            claim_config: ClaimConfig::default(),
            pool_config: PoolConfig::default(),
        }
    }

    fn add_claim(&mut self, name: &str) {
        let mut c = claim(name, "pool");
        c.metadata.uid = Some(format!("uid-{name}-{}", self.next()));
        c.metadata.resource_version = Some(self.next());
        c.metadata.creation_timestamp = Some(self.now());
        self.objs.claims.insert(name.to_owned(), c);
    }

    /// Fills the pool with Ready members before any claim exists.
    fn warm_up(&mut self) {
        for _ in 0..6 {
            self.step(&Op::Pool { lag: 0 });
            let sandboxes: Vec<String> = self.objs.sandboxes.keys().cloned().collect();
            for s in &sandboxes {
                self.reconcile_sandbox(s, 0);
            }
            for i in 0..self.objs.pods.len() {
                self.kubelet(i);
            }
            for s in &sandboxes {
                self.reconcile_sandbox(s, 0);
            }
            self.gc();
            self.snapshot();
        }
    }

    fn now(&self) -> Time {
        paddock_plan::time::add(
            &t(0),
            std::time::Duration::from_millis(u64::try_from(self.now_ms).unwrap()),
        )
    }

    fn next(&mut self) -> String {
        self.counter += 1;
        self.counter.to_string()
    }

    /// A snapshot `lag` steps old, but never older than what this reader saw before (a
    /// controller's cache only moves forward).
    fn read(&mut self, key: &str, lag: usize) -> Objects {
        let newest = self.history_base + self.history.len() - 1;
        let floor = self.last_read.get(key).copied().unwrap_or(0);
        let idx = newest
            .saturating_sub(lag)
            .max(floor)
            .max(self.history_base)
            .min(newest);
        self.last_read.insert(key.to_owned(), idx);
        self.history[idx - self.history_base].clone()
    }

    fn snapshot(&mut self) {
        self.history.push_back(self.objs.clone());
        while self.history.len() > MAX_LAG + 1 {
            self.history.pop_front();
            self.history_base += 1;
        }
    }

    fn step(&mut self, op: &Op) {
        match op {
            Op::Pool { lag } => self.reconcile_pool(*lag),
            Op::Claim { index, lag } => {
                let names: Vec<String> = self.objs.claims.keys().cloned().collect();
                if !names.is_empty() {
                    self.reconcile_claim(&names[index % names.len()].clone(), *lag);
                }
            }
            Op::Sandbox { index, lag } => {
                let names: Vec<String> = self.objs.sandboxes.keys().cloned().collect();
                if !names.is_empty() {
                    self.reconcile_sandbox(&names[index % names.len()].clone(), *lag);
                }
            }
            Op::Kubelet { index } => self.kubelet(*index),
            Op::Tick => self.now_ms += 700,
            Op::TouchClaim { index } => {
                let names: Vec<String> = self.objs.claims.keys().cloned().collect();
                if !names.is_empty() {
                    let rv = self.next();
                    let c = self
                        .objs
                        .claims
                        .get_mut(&names[index % names.len()])
                        .unwrap();
                    c.metadata
                        .labels
                        .get_or_insert_with(Default::default)
                        .insert("touched".into(), rv.clone());
                    c.metadata.resource_version = Some(rv);
                }
            }
            Op::AddClaim => {
                let name = format!("claim-{}", self.objs.claims.len());
                self.add_claim(&name);
            }
            Op::SetReplicas(n) => {
                self.objs.pool.spec.replicas = Some(*n);
                self.objs.pool.metadata.generation =
                    Some(self.objs.pool.metadata.generation.unwrap_or(0) + 1);
                self.max_replicas = self.max_replicas.max(*n);
            }
        }
        self.now_ms += 100;
        self.gc();
        self.snapshot();
        self.check_invariants();
    }

    fn gc(&mut self) {
        loop {
            let claim_uids: BTreeSet<String> = self
                .objs
                .claims
                .values()
                .map(|c| uid_of(&c.metadata).to_owned())
                .collect();
            let pool_uid = uid_of(&self.objs.pool.metadata).to_owned();
            let before = self.objs.sandboxes.len()
                + self.objs.pods.len()
                + self.objs.services.len()
                + self.objs.pvcs.len();
            self.objs
                .sandboxes
                .retain(|_, sb| match controller_of_meta(&sb.metadata) {
                    Some(r) => r.uid == pool_uid || claim_uids.contains(&r.uid),
                    None => true,
                });
            let sandbox_uids: BTreeSet<String> = self
                .objs
                .sandboxes
                .values()
                .map(|s| uid_of(&s.metadata).to_owned())
                .collect();
            let alive = |refs: &[OwnerReference]| {
                controller_uid(refs).is_none_or(|u| sandbox_uids.contains(u))
            };
            self.objs.pods.retain(|_, p| alive(&p.owner_references));
            self.objs.services.retain(|_, s| alive(&s.owner_references));
            self.objs.pvcs.retain(|_, p| alive(&p.owner_references));
            let after = self.objs.sandboxes.len()
                + self.objs.pods.len()
                + self.objs.services.len()
                + self.objs.pvcs.len();
            if after == before {
                break;
            }
        }
    }

    fn live_members(&self) -> usize {
        let pool_uid = uid_of(&self.objs.pool.metadata);
        self.objs
            .sandboxes
            .values()
            .filter(|sb| controller_of_meta(&sb.metadata).is_some_and(|r| r.uid == pool_uid))
            .count()
    }

    fn check_invariants(&self) {
        let live = self.live_members();
        assert!(
            i32::try_from(live).unwrap() <= self.max_replicas,
            "pool keeps {live} live members, replicas at most {}",
            self.max_replicas
        );
        for (sb, claims) in &self.adopted_by {
            assert!(claims.len() <= 1, "member {sb} adopted by {claims:?}");
        }
        for sb in self.objs.sandboxes.values() {
            let controllers = sb
                .metadata
                .owner_references
                .iter()
                .flatten()
                .filter(|r| r.controller == Some(true))
                .count();
            assert!(controllers <= 1);
        }
    }

    fn reconcile_pool(&mut self, lag: usize) {
        let snap = self.read("pool", lag);
        let hash = name_hash("pool");
        let members: Vec<&Sandbox> = snap
            .sandboxes
            .values()
            .filter(|sb| {
                sb.metadata
                    .labels
                    .as_ref()
                    .and_then(|l| l.get(WARM_POOL_SANDBOX))
                    == Some(&hash)
            })
            .collect();
        let seen_created: BTreeSet<String> = self
            .pool_exp
            .creates
            .iter()
            .filter(|n| snap.sandboxes.contains_key(*n))
            .cloned()
            .collect();
        let now = self.now();
        let plan = plan_pool(&PoolInput {
            pool: &snap.pool,
            template: Some(&self.template),
            members,
            expectations: &self.pool_exp,
            seen_created,
            create_allowance: None,
            was_not_progressing: self.pool_not_progressing,
            now: &now,
            config: &self.pool_config,
        });
        let mut exp = plan.expectations.clone();
        for action in &plan.actions {
            match action {
                PoolAction::CreateMember { sandbox } => {
                    let mut sb = (**sandbox).clone();
                    let n = self.next();
                    let name = format!("{}{n:0>5}", sb.metadata.generate_name.clone().unwrap());
                    sb.metadata.name = Some(name.clone());
                    sb.metadata.uid = Some(format!("uid-{name}"));
                    sb.metadata.resource_version = Some(self.next());
                    sb.metadata.creation_timestamp = Some(now.clone());
                    sb.metadata.generation = Some(1);
                    self.objs.sandboxes.insert(name.clone(), sb);
                    exp.record_created(&name);
                }
                PoolAction::PatchMember { name, patch } => {
                    let rv = self.next();
                    if let Some(sb) = self.objs.sandboxes.get_mut(name)
                        && (patch.resource_version.is_none()
                            || patch.resource_version == sb.metadata.resource_version)
                    {
                        patch.apply(&mut sb.metadata);
                        sb.metadata.resource_version = Some(rv);
                    }
                }
                PoolAction::DeleteMember { target, .. } => {
                    match self.objs.sandboxes.get(&target.name) {
                        Some(sb)
                            if target.uid == sb.metadata.uid
                                && target.resource_version == sb.metadata.resource_version =>
                        {
                            self.objs.sandboxes.remove(&target.name);
                        }
                        Some(_) => exp.forget_delete(&target.name),
                        None => {}
                    }
                }
                PoolAction::Event { .. } => {}
            }
        }
        if plan.write_status {
            self.objs.pool.status = Some(plan.status.clone());
        }
        self.pool_exp = exp;
        self.pool_not_progressing = plan.not_progressing;
    }

    /// A conditional claim write: succeeds only if the claim still has `expected_rv`, which then
    /// becomes the version this write produced (the driver's resourceVersion chain).
    fn claim_write(
        &mut self,
        name: &str,
        expected_rv: &mut Option<String>,
        edit: impl FnOnce(&mut SandboxClaim),
    ) -> Result<(), FailureKind> {
        let rv = self.next();
        let claim = self
            .objs
            .claims
            .get_mut(name)
            .ok_or(FailureKind::NotFound)?;
        if claim.metadata.resource_version != *expected_rv {
            return Err(FailureKind::Conflict);
        }
        edit(claim);
        claim.metadata.resource_version = Some(rv.clone());
        *expected_rv = Some(rv);
        Ok(())
    }

    fn reconcile_claim(&mut self, name: &str, lag: usize) {
        let snap = self.read(&format!("claim/{name}"), lag);
        let Some(claim) = snap.claims.get(name) else {
            return;
        };
        let reserved: BTreeSet<String> = snap
            .claims
            .values()
            .filter(|c| c.metadata.name.as_deref() != Some(name))
            .filter_map(|c| {
                c.metadata
                    .annotations
                    .as_ref()
                    .and_then(|a| a.get(SANDBOX_NAME))
                    .cloned()
            })
            .collect();
        let now = self.now();
        let template = self.template.clone();
        let claim_config = self.claim_config.clone();
        let input = ClaimInput {
            claim,
            pool: Some(&snap.pool),
            template: Some(&template),
            sandboxes: snap.sandboxes.values().collect(),
            reserved,
            legacy_network_policy: None,
            now: &now,
            first_observed: None,
            config: &claim_config,
        };
        let plan = plan_claim(&input);
        let mut expected_rv = claim.metadata.resource_version.clone();
        let mut failure = None;
        for (i, action) in plan.actions.iter().enumerate() {
            let result = match action {
                ClaimAction::PatchClaim { patch } => {
                    self.claim_write(name, &mut expected_rv, |c| patch.apply(&mut c.metadata))
                }
                ClaimAction::Adopt { adoption } => {
                    let first = match &adoption.claim_patch {
                        Some(p) => {
                            self.claim_write(name, &mut expected_rv, |c| p.apply(&mut c.metadata))
                        }
                        None => Ok(()),
                    };
                    first.and_then(|()| {
                        let rv = self.next();
                        let sb = self
                            .objs
                            .sandboxes
                            .get_mut(&adoption.sandbox_name)
                            .ok_or(FailureKind::NotFound)?;
                        if let Some(lock) = &adoption.sandbox_patch.metadata.resource_version
                            && sb.metadata.resource_version.as_ref() != Some(lock)
                        {
                            return Err(FailureKind::Conflict);
                        }
                        adoption.sandbox_patch.apply(sb);
                        sb.metadata.resource_version = Some(rv);
                        self.adopted_by
                            .entry(adoption.sandbox_name.clone())
                            .or_default()
                            .insert(name.to_owned());
                        Ok(())
                    })
                }
                ClaimAction::PatchSandbox { patch } => {
                    let rv = self.next();
                    if let Some(sb) = self.objs.sandboxes.get_mut(&patch.name) {
                        patch.apply(sb);
                        sb.metadata.resource_version = Some(rv);
                    }
                    Ok(())
                }
                ClaimAction::CreateSandbox { sandbox } => {
                    let sb_name = sandbox.metadata.name.clone().unwrap();
                    if self.objs.sandboxes.contains_key(&sb_name) {
                        Err(FailureKind::AlreadyExists)
                    } else {
                        let mut sb = (**sandbox).clone();
                        sb.metadata.uid = Some(format!("uid-{sb_name}-{}", self.next()));
                        sb.metadata.resource_version = Some(self.next());
                        sb.metadata.creation_timestamp = Some(now.clone());
                        sb.metadata.generation = Some(1);
                        self.objs.sandboxes.insert(sb_name, sb);
                        Ok(())
                    }
                }
                ClaimAction::DeleteSandbox { target } => {
                    if self
                        .objs
                        .sandboxes
                        .get(&target.name)
                        .is_some_and(|sb| sb.metadata.uid == target.uid)
                    {
                        self.objs.sandboxes.remove(&target.name);
                    }
                    Ok(())
                }
                ClaimAction::DeleteClaim { .. } => {
                    self.objs.claims.remove(name);
                    return;
                }
                ClaimAction::Event { .. } | ClaimAction::DeleteLegacyNetworkPolicy { .. } => Ok(()),
            };
            if let Err(kind) = result {
                failure = Some(ApplyFailure {
                    action_index: i,
                    kind,
                    message: format!("{kind:?}"),
                });
                break;
            }
        }
        let status = match &failure {
            Some(f) => claim_status_after_failure(&input, &plan, f).status,
            None => plan.write_status.then(|| plan.status.clone()),
        };
        if let Some(status) = status {
            let _dropped_on_conflict =
                self.claim_write(name, &mut expected_rv, |c| c.status = Some(status));
        }
    }

    fn reconcile_sandbox(&mut self, name: &str, lag: usize) {
        let snap = self.read(&format!("sandbox/{name}"), lag);
        let Some(sb) = snap.sandboxes.get(name) else {
            return;
        };
        let now = self.now();
        let plan = plan_sandbox(&SandboxInput {
            sandbox: sb,
            pods: Ok(snap.pods.values().cloned().collect()),
            service: Ok(snap.services.get(name).cloned()),
            pvcs: Ok(snap.pvcs.values().cloned().collect()),
            cluster_domain: "cluster.local",
            now: &now,
        });
        let mut failure = None;
        for (i, action) in plan.actions.iter().enumerate() {
            let result: Result<(), FailureKind> = match action {
                SandboxAction::CreatePvc { pvc } => {
                    let n = pvc.metadata.name.clone().unwrap();
                    match self.objs.pvcs.entry(n) {
                        std::collections::btree_map::Entry::Occupied(_) => {
                            Err(FailureKind::AlreadyExists)
                        }
                        std::collections::btree_map::Entry::Vacant(v) => {
                            v.insert(PvcObservation::from_pvc(pvc));
                            Ok(())
                        }
                    }
                }
                SandboxAction::AdoptPvc { name, patch } => {
                    if let Some(p) = self.objs.pvcs.get_mut(name) {
                        p.owner_references = patch.owner_references.clone().unwrap_or_default();
                    }
                    Ok(())
                }
                SandboxAction::CreatePod { pod } => {
                    let n = pod.metadata.name.clone().unwrap();
                    if self.objs.pods.contains_key(&n) {
                        Err(FailureKind::AlreadyExists)
                    } else {
                        let mut obs = PodObservation::from_pod(pod);
                        obs.uid = Some(format!("pod-{n}-{}", self.next()));
                        obs.phase = "Pending".into();
                        self.objs.pods.insert(n, obs);
                        Ok(())
                    }
                }
                SandboxAction::PatchPod { name, patch } => {
                    if let Some(p) = self.objs.pods.get_mut(name) {
                        let mut meta = k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
                            labels: Some(p.labels.clone()),
                            annotations: Some(p.annotations.clone()),
                            owner_references: Some(p.owner_references.clone()),
                            ..Default::default()
                        };
                        patch.apply(&mut meta);
                        p.labels = meta.labels.unwrap_or_default();
                        p.annotations = meta.annotations.unwrap_or_default();
                        p.owner_references = meta.owner_references.unwrap_or_default();
                    }
                    Ok(())
                }
                SandboxAction::DeletePod { target } => {
                    if self
                        .objs
                        .pods
                        .get(&target.name)
                        .is_some_and(|p| target.uid.is_none() || p.uid == target.uid)
                    {
                        self.objs.pods.remove(&target.name);
                    }
                    Ok(())
                }
                SandboxAction::PatchSandbox { patch } => {
                    let rv = self.next();
                    if let Some(current) = self.objs.sandboxes.get_mut(name) {
                        patch.apply(&mut current.metadata);
                        current.metadata.resource_version = Some(rv);
                    }
                    Ok(())
                }
                SandboxAction::CreateService { service } => {
                    let mut obs = ServiceObservation::from_service(service);
                    obs.uid = Some(format!("svc-{}", self.next()));
                    self.objs.services.insert(obs.name.clone(), obs);
                    Ok(())
                }
                SandboxAction::AdoptService { name, edit }
                | SandboxAction::PatchService { name, edit } => {
                    if let Some(s) = self.objs.services.get_mut(name) {
                        s.labels.extend(edit.labels.clone());
                        if let Some(sel) = &edit.selector {
                            s.selector = sel.clone();
                        }
                        if let Some(ports) = &edit.ports {
                            s.ports = ports.clone();
                        }
                        if let Some(refs) = &edit.owner_references {
                            s.owner_references = refs.clone();
                        }
                    }
                    Ok(())
                }
                SandboxAction::DeleteService { target } => {
                    self.objs.services.remove(&target.name);
                    Ok(())
                }
                SandboxAction::DeleteSandbox { target } => {
                    self.objs.sandboxes.remove(&target.name);
                    return;
                }
                SandboxAction::Event { .. } => Ok(()),
            };
            if let Err(kind) = result {
                failure = Some(ApplyFailure {
                    action_index: i,
                    kind,
                    message: format!("{kind:?}"),
                });
                break;
            }
        }
        let status = match &failure {
            Some(f) => Some(status_after_failure(sb, &plan, f, &now).0),
            None => plan.write_status.then(|| plan.status.clone()),
        };
        if let Some(status) = status {
            let rv = self.next();
            if let Some(current) = self.objs.sandboxes.get_mut(name)
                && current.metadata.uid == sb.metadata.uid
            {
                current.status = Some(status);
                current.metadata.resource_version = Some(rv);
            }
        }
    }

    fn kubelet(&mut self, index: usize) {
        let names: Vec<String> = self.objs.pods.keys().cloned().collect();
        if names.is_empty() {
            return;
        }
        let n = index % names.len();
        if let Some(p) = self.objs.pods.get_mut(&names[n]) {
            let ok = || {
                Some(PodConditionObservation {
                    status: "True".into(),
                    reason: None,
                    message: None,
                })
            };
            p.phase = "Running".into();
            p.ready = ok();
            p.scheduled = ok();
            p.pod_ips = vec![format!("10.0.0.{n}")];
            p.node_name = Some(format!("node-{}", n % 3));
        }
    }

    /// Fresh reads, everything reconciled, every pod started, until nothing changes.
    fn settle(&mut self) {
        let mut quiet = 0;
        for _ in 0..40 {
            let before = self.objs.clone();
            self.now_ms += 1000;
            self.step(&Op::Pool { lag: 0 });
            let claims: Vec<String> = self.objs.claims.keys().cloned().collect();
            for c in claims {
                self.reconcile_claim(&c, 0);
                self.gc();
                self.snapshot();
                self.check_invariants();
            }
            let sandboxes: Vec<String> = self.objs.sandboxes.keys().cloned().collect();
            for s in sandboxes {
                self.reconcile_sandbox(&s, 0);
                self.gc();
                self.snapshot();
            }
            for i in 0..self.objs.pods.len() {
                self.kubelet(i);
            }
            self.gc();
            self.snapshot();
            self.check_invariants();
            quiet = if self.objs == before { quiet + 1 } else { 0 };
            if quiet >= 3 {
                break;
            }
        }
    }

    fn assert_settled(&self) {
        if std::env::var_os("SIM_STATS").is_some() {
            let warm = self.adopted_by.len();
            eprintln!(
                "claims={} warm_adoptions={warm} sandboxes={}",
                self.objs.claims.len(),
                self.objs.sandboxes.len()
            );
        }
        for (name, c) in &self.objs.claims {
            let uid = uid_of(&c.metadata);
            let owned: Vec<&String> = self
                .objs
                .sandboxes
                .iter()
                .filter(|(_, sb)| controller_of_meta(&sb.metadata).is_some_and(|r| r.uid == uid))
                .map(|(n, _)| n)
                .collect();
            assert_eq!(owned.len(), 1, "claim {name} controls {owned:?}");
            let status = c
                .status
                .as_ref()
                .unwrap_or_else(|| panic!("claim {name} has no status"));
            assert_eq!(
                status.sandbox.as_ref().and_then(|s| s.name.as_ref()),
                Some(owned[0]),
                "claim {name} binding"
            );
            assert!(
                status
                    .conditions
                    .as_deref()
                    .is_some_and(|cs| conditions::is_true(cs, "Ready")),
                "claim {name} not Ready: {:?}",
                status.conditions
            );
        }
        let replicas = usize::try_from(self.objs.pool.spec.effective_replicas()).unwrap();
        assert_eq!(self.live_members(), replicas, "pool refilled to replicas");
    }
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0..=MAX_LAG).prop_map(|lag| Op::Pool { lag }),
        6 => (0usize..16, 0..=MAX_LAG).prop_map(|(index, lag)| Op::Claim { index, lag }),
        4 => (0usize..16, 0..=MAX_LAG).prop_map(|(index, lag)| Op::Sandbox { index, lag }),
        3 => (0usize..16).prop_map(|index| Op::Kubelet { index }),
        1 => Just(Op::Tick),
        1 => Just(Op::AddClaim),
        2 => (0usize..16).prop_map(|index| Op::TouchClaim { index }),
    ]
}

fn template() -> impl Strategy<Value = SandboxTemplate> {
    arb_template_v1beta1().prop_map(|mut tpl| {
        // Claims here carry no env or extra volumes; the policies do not matter.
        tpl.spec.volume_claim_templates_policy = None;
        tpl
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn claims_and_pool_converge_without_double_adoption(
        tpl in template(),
        replicas in 0i32..4,
        claims in 1usize..6,
        warm in any::<bool>(),
        ops in prop::collection::vec(op(), 1..150),
    ) {
        let mut sim = Sim::new(tpl, replicas);
        if warm {
            sim.warm_up();
        }
        for i in 0..claims {
            sim.add_claim(&format!("first-{i}"));
        }
        for op in &ops {
            sim.step(op);
        }
        sim.settle();
        sim.assert_settled();
    }

    #[test]
    fn pool_never_exceeds_replicas_when_scaled(
        tpl in template(),
        replicas in 0i32..5,
        ops in prop::collection::vec(
            prop_oneof![
                4 => (0..=MAX_LAG).prop_map(|lag| Op::Pool { lag }),
                3 => (0usize..16, 0..=MAX_LAG).prop_map(|(index, lag)| Op::Sandbox { index, lag }),
                2 => (0usize..16).prop_map(|index| Op::Kubelet { index }),
                1 => Just(Op::Tick),
            ],
            1..120,
        ),
        scale_to in 0i32..5,
        scale_at in 0usize..120,
    ) {
        let mut sim = Sim::new(tpl, replicas);
        sim.warm_up();
        for (i, op) in ops.iter().enumerate() {
            if i == scale_at {
                sim.step(&Op::SetReplicas(scale_to));
            }
            sim.step(op);
        }
        // After one fresh pool pass, the pool is within its (possibly lowered) replicas.
        sim.step(&Op::Pool { lag: 0 });
        let replicas = usize::try_from(sim.objs.pool.spec.effective_replicas()).unwrap();
        prop_assert!(sim.live_members() <= replicas, "{} live > {replicas}", sim.live_members());
        sim.settle();
        sim.assert_settled();
    }
}
