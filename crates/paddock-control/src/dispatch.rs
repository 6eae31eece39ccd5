//! Which reconciles a change wakes (upstream's watches, contract §2.2–§2.5), written once for
//! both tiers: a Sandbox wakes itself, the pool and claim that control it (before and after the
//! change) and the claims still waiting on that pool; a template wakes itself, its pools and
//! their waiting claims; a pool wakes itself and, when its spec changed, its waiting claims; a
//! claim wakes itself. Children (pods, Services, network policies) are the tiers' to watch:
//! they call the [`Waker`].

use std::sync::Arc;

use paddock_api::kinds::Kind;
use paddock_api::names::{EXTENSIONS_GROUP, shadow_pool_name};
use paddock_api::v1beta1::{Sandbox, SandboxClaim, SandboxTemplate, SandboxWarmPool};
use paddock_plan::ownership::{controller_of_meta, group_of};

use crate::cache::{Cache, Change, Changed, Key, index};
use crate::ports::Controller;
use crate::queue::WorkQueue;

/// The four controllers' work queues.
#[derive(Debug, Default)]
pub struct Queues {
    sandbox: WorkQueue<Key>,
    template: WorkQueue<Key>,
    pool: WorkQueue<Key>,
    claim: WorkQueue<Key>,
}

impl Queues {
    /// Empty queues.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// The queue of `controller`.
    pub fn of(&self, controller: Controller) -> &WorkQueue<Key> {
        match controller {
            Controller::Sandbox => &self.sandbox,
            Controller::Template => &self.template,
            Controller::Pool => &self.pool,
            Controller::Claim => &self.claim,
        }
    }

    /// Ends every queue (shutdown).
    pub fn close(&self) {
        for c in Controller::ALL {
            self.of(c).close();
        }
    }
}

/// How a tier asks for a reconcile when something only it watches changed (a pod started, a
/// workload ended, a NetworkPolicy was edited).
#[derive(Clone, Debug)]
pub struct Waker(Arc<Queues>);

impl Waker {
    /// A waker feeding `queues`.
    pub fn new(queues: Arc<Queues>) -> Self {
        Self(queues)
    }

    /// Reconciles the Sandbox `namespace`/`name` soon.
    pub fn sandbox(&self, namespace: &str, name: &str) {
        self.0.sandbox.add(Key::new(namespace, name));
    }

    /// Reconciles the SandboxTemplate `namespace`/`name` soon.
    pub fn template(&self, namespace: &str, name: &str) {
        self.0.template.add(Key::new(namespace, name));
    }
}

fn controller_named<'a>(
    meta: &'a k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    kind: &str,
) -> Option<&'a str> {
    controller_of_meta(meta)
        .filter(|r| r.kind == kind && group_of(&r.api_version) == EXTENSIONS_GROUP)
        .map(|r| r.name.as_str())
}

/// Whether a claim still waits for a Sandbox: not bound, or bound but not Ready.
fn waiting(claim: &SandboxClaim) -> bool {
    let status = claim.status.as_ref();
    let bound = status
        .and_then(|s| s.sandbox.as_ref())
        .and_then(|s| s.name.as_deref())
        .is_some_and(|n| !n.is_empty());
    let ready = status
        .and_then(|s| s.conditions.as_deref())
        .is_some_and(|c| {
            paddock_api::conditions::is_true(c, paddock_api::conditions::types::READY)
        });
    !(bound && ready)
}

/// Routes cache changes to the queues.
#[derive(Debug)]
pub struct Dispatcher {
    queues: Arc<Queues>,
    extensions: bool,
}

impl Dispatcher {
    /// A dispatcher feeding `queues`; without `extensions` only the Sandbox controller runs.
    pub fn new(queues: Arc<Queues>, extensions: bool) -> Self {
        Self { queues, extensions }
    }

    /// Wakes what `changed` concerns.
    pub fn route(&self, cache: &Cache, changed: &Changed) {
        match changed {
            Changed::Sandbox(c) => self.sandbox(cache, c),
            Changed::SandboxTemplate(c) => self.template(cache, c),
            Changed::SandboxWarmPool(c) => self.pool(cache, c),
            Changed::SandboxClaim(c) => {
                if let Some(claim) = &c.new {
                    self.queues.claim.add(Key::of(claim.as_ref()));
                }
            }
        }
    }

    fn waiting_claims(&self, cache: &Cache, namespace: &str, pool: &str) {
        for claim in cache.by_index::<SandboxClaim>(&index::claims_of_pool(namespace, pool)) {
            if waiting(&claim) {
                self.queues.claim.add(Key::of(claim.as_ref()));
            }
        }
    }

    fn sandbox(&self, cache: &Cache, change: &Change<Sandbox>) {
        let Some(latest) = change.latest() else {
            return;
        };
        let key = Key::of(latest.as_ref());
        // The Sandbox loop writes a Sandbox's status from what it saw: a change of the status
        // alone is its own write and gives it nothing new to do (the pool and claim that
        // count on that status still hear of it below).
        if !status_only(change) {
            self.queues.sandbox.add(key.clone());
        }
        if !self.extensions {
            return;
        }
        let versions = [change.old.as_ref(), change.new.as_ref()];
        for sb in versions.into_iter().flatten() {
            if let Some(claim) = controller_named(&sb.metadata, SandboxClaim::KIND) {
                self.queues.claim.add(Key::new(&key.namespace, claim));
            }
            if let Some(pool) = controller_named(&sb.metadata, SandboxWarmPool::KIND) {
                self.queues.pool.add(Key::new(&key.namespace, pool));
                // A member appeared, changed or left: claims waiting on the pool may act.
                self.waiting_claims(cache, &key.namespace, pool);
            }
        }
    }

    fn template(&self, cache: &Cache, change: &Change<SandboxTemplate>) {
        let Some(latest) = change.latest() else {
            return;
        };
        let key = Key::of(latest.as_ref());
        self.queues.template.add(key.clone());
        let pools = cache
            .keys_by_index::<SandboxWarmPool>(&index::pools_of_template(&key.namespace, &key.name));
        for pool in pools {
            self.queues.pool.add(pool.clone());
            self.waiting_claims(cache, &key.namespace, &pool.name);
        }
        // Claims of a missing `shadow-pool-<template>` go cold from the template itself.
        self.waiting_claims(cache, &key.namespace, &shadow_pool_name(&key.name));
    }

    fn pool(&self, cache: &Cache, change: &Change<SandboxWarmPool>) {
        let Some(latest) = change.latest() else {
            return;
        };
        let key = Key::of(latest.as_ref());
        if change.new.is_none() {
            // The pool is gone: its reconcile forgets its expectations.
            self.queues.pool.add(key);
            return;
        }
        self.queues.pool.add(key.clone());
        let generation_changed = change.old.as_ref().map(|o| o.metadata.generation)
            != change.new.as_ref().map(|n| n.metadata.generation);
        if generation_changed {
            self.waiting_claims(cache, &key.namespace, &key.name);
        }
    }
}

/// Whether a Sandbox changed in its status (and resourceVersion) only.
fn status_only(change: &Change<Sandbox>) -> bool {
    let (Some(old), Some(new)) = (&change.old, &change.new) else {
        return false;
    };
    if old.status == new.status || old.spec != new.spec {
        return false;
    }
    let mut old_meta = old.metadata.clone();
    old_meta
        .resource_version
        .clone_from(&new.metadata.resource_version);
    old_meta
        .managed_fields
        .clone_from(&new.metadata.managed_fields);
    old_meta == new.metadata
}

/// The kinds each controller reads, whose caches must have listed before it runs.
pub fn kinds_read_by(controller: Controller) -> &'static [Kind] {
    match controller {
        Controller::Sandbox => &[Kind::Sandbox],
        Controller::Template => &[Kind::SandboxTemplate],
        Controller::Pool => &[Kind::SandboxWarmPool, Kind::SandboxTemplate, Kind::Sandbox],
        Controller::Claim => &[
            Kind::SandboxClaim,
            Kind::SandboxWarmPool,
            Kind::SandboxTemplate,
            Kind::Sandbox,
        ],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ports::WatchEvent;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;

    fn member(name: &str, rv: &str, owner_kind: &str, owner: &str) -> Sandbox {
        let mut sb = Sandbox::new(name, Default::default());
        sb.metadata.namespace = Some("ns".into());
        sb.metadata.resource_version = Some(rv.into());
        sb.metadata.owner_references = Some(vec![OwnerReference {
            api_version: format!("{EXTENSIONS_GROUP}/v1beta1"),
            kind: owner_kind.into(),
            name: owner.into(),
            uid: format!("uid-{owner}"),
            controller: Some(true),
            block_owner_deletion: Some(true),
        }]);
        sb
    }

    async fn drain(q: &WorkQueue<Key>) -> Vec<String> {
        let mut out = Vec::new();
        loop {
            let next = tokio::time::timeout(std::time::Duration::from_millis(5), q.next()).await;
            match next {
                Ok(Some(k)) => {
                    q.done(&k);
                    out.push(k.name);
                }
                _ => return out,
            }
        }
    }

    #[tokio::test]
    async fn an_adopted_member_wakes_the_pool_it_left_and_the_claim_that_took_it() {
        let queues = Queues::new();
        let dispatcher = Dispatcher::new(queues.clone(), true);
        let cache = Cache::new();
        for event in [
            WatchEvent::Applied(member("m", "1", "SandboxWarmPool", "pool").into()),
            WatchEvent::Applied(member("m", "2", "SandboxClaim", "c1").into()),
        ] {
            for changed in cache.apply(Kind::Sandbox, event) {
                dispatcher.route(&cache, &changed);
            }
        }
        assert_eq!(drain(queues.of(Controller::Sandbox)).await, ["m"]);
        assert_eq!(drain(queues.of(Controller::Pool)).await, ["pool"]);
        assert_eq!(drain(queues.of(Controller::Claim)).await, ["c1"]);
    }

    #[tokio::test]
    async fn a_status_only_change_wakes_the_pool_but_not_the_sandbox_loop() {
        let queues = Queues::new();
        let dispatcher = Dispatcher::new(queues.clone(), true);
        let cache = Cache::new();
        let first = member("m", "1", "SandboxWarmPool", "pool");
        let mut ready = member("m", "2", "SandboxWarmPool", "pool");
        ready.status = Some(paddock_api::v1beta1::SandboxStatus {
            pod_ips: Some(vec!["10.0.0.1".into()]),
            ..Default::default()
        });
        let mut relabelled = ready.clone();
        relabelled.metadata.resource_version = Some("3".into());
        relabelled.metadata.labels = Some([("a".to_owned(), "b".to_owned())].into());
        let mut steps = Vec::new();
        for sb in [first, ready, relabelled] {
            for changed in cache.apply(Kind::Sandbox, WatchEvent::Applied(sb.into())) {
                dispatcher.route(&cache, &changed);
            }
            steps.push((
                drain(queues.of(Controller::Sandbox)).await,
                drain(queues.of(Controller::Pool)).await,
            ));
        }
        let one = |s: &str| vec![s.to_owned()];
        assert_eq!(steps[0], (one("m"), one("pool")), "a new member");
        assert_eq!(
            steps[1],
            (vec![], one("pool")),
            "its status, written by the Sandbox loop"
        );
        assert_eq!(
            steps[2],
            (one("m"), one("pool")),
            "a label someone else set"
        );
    }
}
