//! The SandboxWarmPool controller on one machine: the planner of contract §2.4 with its
//! expectations kept here. Members are Sandboxes; the Sandbox controller starts their
//! workloads, so a pool holds running, agent-ready sandboxes.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use paddock_api::kinds::Kind;
use paddock_api::names;
use paddock_api::v1beta1::{Sandbox, SandboxTemplate, SandboxWarmPool};
use paddock_plan::outcome::ErrorClass;
use paddock_plan::pool::{PoolAction, PoolConfig, PoolExpectations, PoolInput, plan_pool};
use paddock_store::{DeleteOptions, ObjectStore, Preconditions, StoreError};
use serde_json::Value;

use crate::controller::{Outcome, Reconciler};
use crate::informer::{Informer, Key};
use crate::resources::resource;

#[derive(Debug, Default, Clone)]
struct PoolState {
    expectations: PoolExpectations,
    not_progressing: bool,
    /// Members seen at the last reconcile, to notice one leaving (adopted or deleted).
    members: usize,
    /// No refill before this instant: set when a member leaves.
    hold_until: Option<std::time::Instant>,
}

/// How long a pool waits after a member leaves before it refills. A claim finishes (and its
/// first command runs) in a few milliseconds; starting the replacement at once would compete
/// with it for the store and, for gVisor, ~150 ms of CPU. Bursts of claims refill once, after
/// the last one.
const REFILL_HOLD: std::time::Duration = std::time::Duration::from_millis(100);

/// The warm pool controller.
#[derive(Debug)]
pub struct PoolController {
    store: Arc<dyn ObjectStore>,
    informer: Arc<Informer>,
    config: PoolConfig,
    state: Mutex<HashMap<Key, PoolState>>,
}

impl PoolController {
    /// The controller.
    pub fn new(
        store: Arc<dyn ObjectStore>,
        informer: Arc<Informer>,
        config: PoolConfig,
    ) -> Arc<Self> {
        Arc::new(Self {
            store,
            informer,
            config,
            state: Mutex::default(),
        })
    }

    fn state(&self) -> std::sync::MutexGuard<'_, HashMap<Key, PoolState>> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

fn decode<T: serde::de::DeserializeOwned>(v: &Value) -> Option<T> {
    serde_json::from_value(v.clone()).ok()
}

impl Reconciler for PoolController {
    fn name(&self) -> &'static str {
        "sandboxwarmpool"
    }

    async fn reconcile(&self, key: &Key) -> Outcome {
        let Some(value) = self.informer.get(Kind::SandboxWarmPool, &key.0, &key.1) else {
            self.state().remove(key);
            return Outcome::Done;
        };
        let Some(pool) = decode::<SandboxWarmPool>(&value) else {
            return Outcome::Retry("stored SandboxWarmPool does not decode".to_owned());
        };
        let template: Option<SandboxTemplate> = self
            .informer
            .get(
                Kind::SandboxTemplate,
                &key.0,
                &pool.spec.sandbox_template_ref.name,
            )
            .and_then(|v| decode(&v));
        let hash = names::name_hash(&key.1);
        let all: Vec<Arc<Value>> = self.informer.list(Kind::Sandbox, &key.0);
        let members: Vec<Sandbox> = all
            .iter()
            .filter(|s| {
                s.pointer(&format!(
                    "/metadata/labels/{}",
                    names::WARM_POOL_SANDBOX.replace('/', "~1")
                ))
                .and_then(Value::as_str)
                    == Some(hash.as_str())
            })
            .filter_map(|s| decode(s))
            .collect();
        let state = self.state().get(key).cloned().unwrap_or_default();
        let seen_created: BTreeSet<String> = state
            .expectations
            .creates
            .iter()
            .filter(|name| {
                all.iter().any(|s| {
                    s.pointer("/metadata/name").and_then(Value::as_str) == Some(name.as_str())
                })
            })
            .cloned()
            .collect();
        let now = Time(jiff::Timestamp::now());
        let instant = std::time::Instant::now();
        let live = members
            .iter()
            .filter(|m| m.metadata.deletion_timestamp.is_none())
            .count();
        let hold_until = if live < state.members {
            Some(instant + REFILL_HOLD)
        } else {
            state.hold_until.filter(|t| *t > instant)
        };
        let plan = plan_pool(&PoolInput {
            pool: &pool,
            template: template.as_ref(),
            members: members.iter().collect(),
            expectations: &state.expectations,
            seen_created,
            create_allowance: hold_until.map(|_| 0),
            was_not_progressing: state.not_progressing,
            now: &now,
            config: &self.config,
        });
        let mut expectations = plan.expectations.clone();
        let mut retry = None;
        let mut made = 0;
        for action in plan.actions {
            match action {
                PoolAction::CreateMember { sandbox } => {
                    let object = serde_json::to_value(&*sandbox).unwrap_or(Value::Null);
                    match self.store.create(resource(Kind::Sandbox), object).await {
                        Ok(created) => {
                            if let Some(name) =
                                created.pointer("/metadata/name").and_then(Value::as_str)
                            {
                                expectations.record_created(name);
                            }
                            made += 1;
                            self.informer.observe_write(Kind::Sandbox, &created);
                        }
                        Err(e) => retry = Some(format!("creating a member: {e}")),
                    }
                }
                PoolAction::PatchMember { name, patch } => {
                    match self
                        .store
                        .patch(
                            resource(Kind::Sandbox),
                            &key.0,
                            &name,
                            patch.to_merge_patch(),
                        )
                        .await
                    {
                        Ok(updated) => self.informer.observe_write(Kind::Sandbox, &updated),
                        Err(e) => retry = Some(format!("patching member {name}: {e}")),
                    }
                }
                PoolAction::DeleteMember { target, .. } => {
                    let options = DeleteOptions {
                        preconditions: Preconditions {
                            uid: target.uid.clone(),
                            resource_version: target.resource_version.clone(),
                        },
                        ..DeleteOptions::default()
                    };
                    match self
                        .store
                        .delete(resource(Kind::Sandbox), &key.0, &target.name, options)
                        .await
                    {
                        Ok(_) | Err(StoreError::NotFound { .. }) => {}
                        Err(StoreError::Conflict { .. }) => {
                            expectations.forget_delete(&target.name)
                        }
                        Err(e) => retry = Some(format!("deleting member {}: {e}", target.name)),
                    }
                }
                PoolAction::Event { event } => {
                    tracing::info!(pool = %key.1, namespace = %key.0, reason = %event.reason, note = %event.note, "event");
                }
            }
        }
        self.state().insert(
            key.clone(),
            PoolState {
                expectations,
                not_progressing: plan.not_progressing,
                members: live + made,
                hold_until,
            },
        );
        if plan.write_status {
            let object = serde_json::json!({
                "apiVersion": SandboxWarmPool::API_VERSION, "kind": SandboxWarmPool::KIND,
                "metadata": {"name": key.1, "namespace": key.0},
                "status": plan.status,
            });
            match self
                .store
                .update_status(resource(Kind::SandboxWarmPool), object)
                .await
            {
                Ok(updated) => self.informer.observe_write(Kind::SandboxWarmPool, &updated),
                Err(StoreError::NotFound { .. }) => return Outcome::Done,
                Err(e) => retry = Some(format!("writing status: {e}")),
            }
        }
        if let Some(why) = retry {
            return Outcome::Retry(why);
        }
        let held = hold_until
            .filter(|_| plan.wanted_creates > 0)
            .map(|t| t.saturating_duration_since(instant));
        let requeue = match (plan.requeue_after, held) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        match (plan.error, requeue) {
            (Some(e), _) if e.class == ErrorClass::Transient => Outcome::Retry(e.message),
            (_, Some(d)) => Outcome::RequeueAfter(d),
            _ => Outcome::Done,
        }
    }
}
