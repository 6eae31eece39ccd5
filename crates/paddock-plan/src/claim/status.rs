//! The claim status: the bound Sandbox's `Ready` (and `Finished`) forwarded or a claim-level
//! reason, the Sandbox name and pod IPs, and the first transition to Ready.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use paddock_api::conditions::{
    self as conds, claim as reason, sandbox as sandbox_reason, status as cstatus, types,
};
use paddock_api::names::{
    CLAIM_FIRST_READY_AT, CONTROLLER_FIRST_OBSERVED_AT, LAUNCH_TYPE, SANDBOX_NAME,
    SANDBOX_TEMPLATE_REF,
};
use paddock_api::v1beta1::{ClaimSandboxStatus, Sandbox, SandboxClaimStatus};

use super::expiry::CLAIM_EXPIRED_MESSAGE;
use super::plan::FirstReady;
use super::planner::Planner;
use super::{ClaimError, annotation};
use crate::patch::MetadataPatch;
use crate::time::rfc3339_nano;

/// Message when the bound Sandbox expired on its own.
pub const SANDBOX_EXPIRED_MESSAGE: &str =
    "Underlying Sandbox resource has expired independently of the Claim.";

pub(super) fn ready_condition(conditions: &[Condition]) -> Option<&Condition> {
    conds::find(conditions, types::READY)
}

fn sandbox_conditions(sb: &Sandbox) -> &[Condition] {
    sb.status
        .as_ref()
        .and_then(|s| s.conditions.as_deref())
        .unwrap_or_default()
}

fn sorted(mut conditions: Vec<Condition>) -> Vec<Condition> {
    conditions.sort_by(|a, b| a.type_.cmp(&b.type_));
    conditions
}

pub(super) fn normalized_status(mut status: SandboxClaimStatus) -> SandboxClaimStatus {
    status.conditions = status.conditions.map(sorted).filter(|c| !c.is_empty());
    if status
        .sandbox
        .as_ref()
        .is_some_and(|s| s.name.is_none() && s.pod_ips.as_ref().is_none_or(Vec::is_empty))
    {
        status.sandbox = None;
    }
    status
}

impl Planner<'_, '_> {
    fn compute_ready(
        &self,
        sandbox: Option<&Sandbox>,
        err: Option<&ClaimError>,
        expired: bool,
    ) -> Condition {
        if let Some(e) = err {
            let pool = &self.claim.spec.warm_pool_ref.name;
            return match e {
                ClaimError::TemplateNotFound(m) => {
                    self.ready(cstatus::FALSE, reason::TEMPLATE_NOT_FOUND, m.clone())
                }
                ClaimError::WarmPoolNotFound => self.ready(
                    cstatus::FALSE,
                    reason::WARM_POOL_NOT_FOUND,
                    format!("SandboxWarmPool {pool:?} not found"),
                ),
                ClaimError::InvalidMetadata(m) => {
                    self.ready(cstatus::FALSE, reason::INVALID_METADATA, m.clone())
                }
                ClaimError::EnvVarsInjectionRejected(m) => self.ready(
                    cstatus::FALSE,
                    reason::ENV_VARS_INJECTION_REJECTED,
                    m.clone(),
                ),
                ClaimError::VolumeClaimTemplates(m) => self.ready(
                    cstatus::FALSE,
                    reason::VOLUME_CLAIM_TEMPLATES_ERROR,
                    m.clone(),
                ),
                ClaimError::NotOwned(m) => self.ready(
                    cstatus::FALSE,
                    reason::CLAIM_EXPIRED,
                    format!("Claim expired. {m}; deletion skipped."),
                ),
                ClaimError::Other(m) => self.ready(
                    cstatus::FALSE,
                    reason::RECONCILER_ERROR,
                    format!("Error seen: {m}"),
                ),
            };
        }
        if expired {
            return self.ready(cstatus::FALSE, reason::CLAIM_EXPIRED, CLAIM_EXPIRED_MESSAGE);
        }
        let Some(sb) = sandbox else {
            return self.ready(
                cstatus::FALSE,
                reason::SANDBOX_MISSING,
                "Sandbox does not exist",
            );
        };
        match ready_condition(sandbox_conditions(sb)) {
            Some(c) if c.reason == sandbox_reason::SANDBOX_EXPIRED => self.ready(
                cstatus::FALSE,
                reason::SANDBOX_EXPIRED,
                SANDBOX_EXPIRED_MESSAGE,
            ),
            // The claim's own transition time: the Sandbox's may predate the claim.
            Some(c) => Condition {
                observed_generation: self.generation(),
                last_transition_time: self.input.now.clone(),
                ..c.clone()
            },
            None => self.ready(
                cstatus::FALSE,
                reason::SANDBOX_NOT_READY,
                "Sandbox is not ready",
            ),
        }
    }

    pub(super) fn set_status(
        &mut self,
        sandbox: Option<&Sandbox>,
        err: Option<&ClaimError>,
        expired: bool,
        launch: Option<&str>,
    ) {
        let mut status = self.old_status.clone();
        let mut c = status.conditions.take().unwrap_or_default();
        conds::set(&mut c, self.compute_ready(sandbox, err, expired));
        match sandbox {
            Some(sb) => match conds::find(sandbox_conditions(sb), types::FINISHED) {
                Some(f) => {
                    conds::set(&mut c, f.clone());
                }
                None => {
                    conds::remove(&mut c, types::FINISHED);
                }
            },
            None if !expired => {
                conds::remove(&mut c, types::FINISHED);
            }
            None => {}
        }
        status.conditions = Some(c);
        match sandbox {
            Some(sb) => {
                status.sandbox = Some(ClaimSandboxStatus {
                    name: sb.metadata.name.clone(),
                    pod_ips: sb
                        .status
                        .as_ref()
                        .and_then(|s| s.pod_ips.clone())
                        .filter(|v| !v.is_empty()),
                });
            }
            None if err.is_none() || matches!(err, Some(ClaimError::NotOwned(_))) => {
                status.sandbox = None
            }
            None => {}
        }
        let status = normalized_status(status);

        let was_ready = self
            .old_status
            .conditions
            .as_deref()
            .is_some_and(|c| conds::is_true(c, types::READY));
        let now_ready = status
            .conditions
            .as_deref()
            .is_some_and(|c| conds::is_true(c, types::READY));
        if now_ready && !was_ready && annotation(self.claim, CLAIM_FIRST_READY_AT).is_none() {
            let template = sandbox
                .and_then(|sb| sb.metadata.annotations.as_ref())
                .and_then(|a| a.get(SANDBOX_TEMPLATE_REF))
                .cloned()
                .unwrap_or_else(|| "unknown".to_owned());
            let launch = launch
                .map(str::to_owned)
                .or_else(|| {
                    sandbox
                        .and_then(|sb| sb.metadata.labels.as_ref())
                        .and_then(|l| l.get(LAUNCH_TYPE))
                        .cloned()
                })
                .unwrap_or_else(|| "unknown".to_owned());
            self.first_ready = Some(FirstReady {
                launch_type: launch,
                sandbox_template: template,
            });
            if self.input.config.observability_annotations {
                self.annotate_first_ready(sandbox);
            }
        }
        self.status = Some(status);
    }

    /// The claim's observability annotations, written once after the status that makes it
    /// Ready (off the claim's critical path, in one patch): when the controller first observed
    /// it, when it became Ready, and which Sandbox it adopted.
    fn annotate_first_ready(&mut self, sandbox: Option<&Sandbox>) {
        let mut patch = MetadataPatch::default();
        if annotation(self.claim, CONTROLLER_FIRST_OBSERVED_AT).is_none_or(str::is_empty) {
            let observed = self.input.first_observed.unwrap_or(self.input.now);
            patch.set_annotation(CONTROLLER_FIRST_OBSERVED_AT, &rfc3339_nano(observed));
        }
        patch.set_annotation(CLAIM_FIRST_READY_AT, &rfc3339_nano(self.input.now));
        if let Some(name) = sandbox.and_then(|sb| sb.metadata.name.as_deref())
            && name != self.name
            && annotation(self.claim, SANDBOX_NAME) != Some(name)
        {
            patch.set_annotation(SANDBOX_NAME, name);
        }
        self.annotate = Some(patch);
    }
}
