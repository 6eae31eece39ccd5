//! Find-or-adopt (contract §2.5): the bound Sandbox, an adoption in progress, the Sandbox named
//! like the claim, a warm member, or a new cold Sandbox; then keeping the one found current.

use std::time::Duration;

use paddock_api::names::{
    CREATED_BY, LAUNCH_TYPE, LAUNCH_TYPE_COLD, LAUNCH_TYPE_WARM, SANDBOX_NAME,
    SANDBOX_TEMPLATE_REF_HASH, name_hash,
};
use paddock_api::v1beta1::{Sandbox, SandboxTemplate, SandboxWarmPool, WarmPoolUpdateStrategyType};

use super::adopt::{Choice, adoption_patch, choose, is_adoptable_member};
use super::cold::build_cold_sandbox;
use super::metadata::{claim_created_by, claim_pod_metadata, validate_additional_pod_metadata};
use super::plan::{Adoption, ClaimAction};
use super::planner::Planner;
use super::{ClaimError, annotation, claim_label, error_text, template_name_for};
use crate::hash::semantically_equal;
use crate::outcome::{Event, ObjectRef};
use crate::ownership::{controller_of_meta, is_controlled_by, is_extensions_kind};
use crate::patch::{MetadataPatch, SandboxPatch};
use crate::pool::{TemplateFingerprint, is_ready};
use crate::time::since;

/// What find-or-adopt settled on.
pub(super) enum Found {
    /// This Sandbox (existing, just adopted, or just created) is the claim's.
    Sandbox {
        sandbox: Box<Sandbox>,
        launch: &'static str,
    },
    /// Warm members are still waiting for an address: look again shortly.
    Wait(Duration),
    /// The status names a member this claim adopted, but the observed member does not show
    /// the adoption yet (another controller's write, not yet seen): change nothing, look again.
    CacheBehind(Duration),
}

/// How soon to look again when the observed objects lag behind the claim's status.
const CACHE_BEHIND_REQUEUE: Duration = Duration::from_millis(50);

impl<'a> Planner<'a, '_> {
    pub(super) fn reconcile_active(&mut self) -> Result<Found, ClaimError> {
        let claim = self.claim;
        validate_additional_pod_metadata(
            claim.spec.additional_pod_metadata.as_ref(),
            &self.input.config.allowed_label_domains,
        )
        .map_err(|e| ClaimError::InvalidMetadata(format!("invalid additionalPodMetadata: {e}")))?;

        let found = self.find_or_adopt()?;
        if let Found::Sandbox { sandbox, launch } = &found {
            self.refresh_bound(sandbox, launch)?;
            self.delete_duplicates(sandbox);
        }
        Ok(found)
    }

    /// The template for this claim, or why there is none.
    fn template(&self) -> Result<&'a SandboxTemplate, ClaimError> {
        let wanted =
            template_name_for(self.claim, self.input.pool).ok_or(ClaimError::WarmPoolNotFound)?;
        match self.input.template {
            Some(t) if t.metadata.name.as_deref() == Some(wanted.as_str()) => Ok(t),
            _ => Err(ClaimError::TemplateNotFound(format!(
                "SandboxTemplate {wanted:?} not found"
            ))),
        }
    }

    fn recreate_fingerprint(&self) -> Option<TemplateFingerprint> {
        let pool = self.input.pool?;
        let recreate = pool.spec.update_strategy.as_ref().and_then(|s| s.type_)
            == Some(WarmPoolUpdateStrategyType::Recreate);
        if !recreate {
            return None;
        }
        self.template().ok().map(TemplateFingerprint::new)
    }

    fn find_or_adopt(&mut self) -> Result<Found, ClaimError> {
        let claim = self.claim;
        let uid = self.claim_uid();
        let annotated = annotation(claim, SANDBOX_NAME).filter(|v| !v.is_empty());
        let labelled = claim_label(claim, SANDBOX_NAME).filter(|v| !v.is_empty());

        // a. The Sandbox the status names.
        let named_by_status = self
            .old_status
            .sandbox
            .as_ref()
            .and_then(|s| s.name.as_deref())
            .and_then(|n| Some((n, self.by_name(n)?)));
        if let Some((status_name, sb)) = named_by_status
            && is_controlled_by(&sb.metadata, uid)
        {
            let warm = annotated == Some(status_name)
                || labelled == Some(status_name)
                || status_name != self.name;
            return Ok(Found::Sandbox {
                sandbox: Box::new(sb.clone()),
                launch: if warm {
                    LAUNCH_TYPE_WARM
                } else {
                    LAUNCH_TYPE_COLD
                },
            });
        }

        // The status is written only after an adoption landed: a member it names that still
        // looks like a pool's is a member whose adoption this controller has not seen yet.
        if let Some((_, sb)) = named_by_status
            && controller_of_meta(&sb.metadata)
                .is_some_and(|r| is_extensions_kind(r, SandboxWarmPool::KIND))
        {
            return Ok(Found::CacheBehind(CACHE_BEHIND_REQUEUE));
        }

        // b. The Sandbox the annotation (or legacy label) names.
        let assigned = annotated
            .map(|n| (n, false))
            .or(labelled.map(|n| (n, true)));
        if let Some((sb_name, from_label)) = assigned {
            let migrate = |p: &mut MetadataPatch| {
                if from_label {
                    p.set_annotation(SANDBOX_NAME, sb_name)
                        .remove_label(SANDBOX_NAME);
                }
            };
            match self.by_name(sb_name) {
                Some(sb) if is_controlled_by(&sb.metadata, uid) => {
                    let mut patch = self.claim_lock();
                    migrate(&mut patch);
                    if !patch.is_empty() {
                        self.actions.push(ClaimAction::PatchClaim { patch });
                    }
                    return Ok(Found::Sandbox {
                        sandbox: Box::new(sb.clone()),
                        launch: LAUNCH_TYPE_WARM,
                    });
                }
                Some(sb)
                    if controller_of_meta(&sb.metadata)
                        .is_some_and(|r| is_extensions_kind(r, SandboxWarmPool::KIND))
                        && self.verify_candidate(sb) =>
                {
                    let mut claim_patch = self.claim_lock();
                    migrate(&mut claim_patch);
                    return self.adopt(sb, (!claim_patch.is_empty()).then_some(claim_patch));
                }
                _ => {
                    let mut patch = self.claim_lock();
                    if from_label {
                        patch.remove_label(SANDBOX_NAME);
                    } else {
                        patch.remove_annotation(SANDBOX_NAME);
                    }
                    self.actions.push(ClaimAction::PatchClaim { patch });
                }
            }
        }

        // c. The Sandbox named like the claim.
        if let Some(sb) = self.by_name(self.name) {
            if !is_controlled_by(&sb.metadata, uid) {
                return Err(ClaimError::Other(format!(
                    "sandbox {:?} is not controlled by claim {:?}. Please use a different claim name or delete the sandbox manually",
                    self.name, self.name
                )));
            }
            return Ok(Found::Sandbox {
                sandbox: Box::new(sb.clone()),
                launch: LAUNCH_TYPE_COLD,
            });
        }

        // Any other Sandbox the claim controls (its binding was lost to a dropped write or a
        // stale cache): keep it rather than take a second one.
        if let Some(sb) = self.owned_sandboxes().into_iter().next() {
            return Ok(Found::Sandbox {
                sandbox: Box::new(sb.clone()),
                launch: LAUNCH_TYPE_WARM,
            });
        }

        // d. env or volume claim templates force a cold start.
        let forced_cold = claim.spec.env.as_ref().is_some_and(|e| !e.is_empty())
            || claim
                .spec
                .volume_claim_templates
                .as_ref()
                .is_some_and(|v| !v.is_empty());
        if !forced_cold {
            // e. Adopt from the warm pool.
            let pool_name = claim.spec.warm_pool_ref.name.as_str();
            let candidates: Vec<&Sandbox> = self
                .input
                .sandboxes
                .iter()
                .copied()
                .filter(|sb| is_adoptable_member(sb, self.namespace(), pool_name))
                .filter(|sb| {
                    !self
                        .input
                        .reserved
                        .contains(sb.metadata.name.as_deref().unwrap_or_default())
                })
                .collect();
            let fingerprint = self.recreate_fingerprint();
            match choose(candidates, fingerprint.as_ref()) {
                // The member is reserved for this claim by the driver while it plans, so the
                // member patch (locked to the member's resourceVersion) is the only write
                // adoption needs before the status; the claim finds it again by ownership.
                Choice::Take(sb) => return self.adopt(sb, None),
                Choice::Pending => {
                    let age = claim
                        .metadata
                        .creation_timestamp
                        .as_ref()
                        .map_or(Duration::ZERO, |t| since(self.input.now, t));
                    let grace = self.input.config.pending_address_grace;
                    if age < grace {
                        let wait = (grace - age).min(self.input.config.pending_address_requeue);
                        return Ok(Found::Wait(wait.max(Duration::from_millis(1))));
                    }
                }
                Choice::Empty => {}
            }
        }

        // f. Cold.
        let template = self.template()?;
        let sandbox = build_cold_sandbox(claim, template)?;
        self.actions.push(ClaimAction::CreateSandbox {
            sandbox: Box::new(sandbox.clone()),
        });
        self.actions.push(ClaimAction::Event {
            event: Event::normal(
                "SandboxProvisioned",
                "Provisioning",
                format!("Created Sandbox {:?}", self.name),
            ),
        });
        Ok(Found::Sandbox {
            sandbox: Box::new(sandbox),
            launch: LAUNCH_TYPE_COLD,
        })
    }

    fn owned_sandboxes(&self) -> Vec<&'a Sandbox> {
        let mut owned: Vec<&Sandbox> = self
            .input
            .sandboxes
            .iter()
            .copied()
            .filter(|sb| {
                sb.metadata.namespace.as_deref() == self.namespace()
                    && sb.metadata.deletion_timestamp.is_none()
                    && is_controlled_by(&sb.metadata, self.claim_uid())
            })
            .collect();
        owned.sort_by(|a, b| {
            a.metadata
                .creation_timestamp
                .cmp(&b.metadata.creation_timestamp)
                .then_with(|| a.metadata.name.cmp(&b.metadata.name))
        });
        owned.dedup_by(|a, b| a.metadata.name == b.metadata.name);
        owned
    }

    fn verify_candidate(&self, sb: &Sandbox) -> bool {
        is_adoptable_member(sb, self.namespace(), &self.claim.spec.warm_pool_ref.name)
            && self
                .recreate_fingerprint()
                .is_none_or(|fp| !fp.is_stale(sb))
    }

    fn adopt(
        &mut self,
        member: &Sandbox,
        claim_patch: Option<MetadataPatch>,
    ) -> Result<Found, ClaimError> {
        let template = self.template().ok();
        let sandbox_patch =
            adoption_patch(self.claim, member, template).map_err(ClaimError::Other)?;
        let mut after = member.clone();
        sandbox_patch.apply(&mut after);
        let member_name = member.metadata.name.clone().unwrap_or_default();
        self.actions.push(ClaimAction::Adopt {
            adoption: Adoption {
                sandbox_name: member_name.clone(),
                claim_patch,
                sandbox_patch,
                ready: is_ready(member),
            },
        });
        self.actions.push(ClaimAction::Event {
            event: Event::normal(
                "SandboxAdopted",
                "Adoption",
                format!("Adopted warm pool Sandbox {member_name:?}"),
            ),
        });
        Ok(Found::Sandbox {
            sandbox: Box::new(after),
            launch: LAUNCH_TYPE_WARM,
        })
    }

    /// Keeps the bound Sandbox's claim-derived metadata current (so later `additionalPodMetadata`
    /// edits reach it) and makes sure it has a `launch-type`.
    fn refresh_bound(&mut self, sandbox: &Sandbox, launch: &str) -> Result<(), ClaimError> {
        let just_written = self.actions.iter().any(|a| {
            matches!(
                a,
                ClaimAction::Adopt { .. } | ClaimAction::CreateSandbox { .. }
            )
        });
        if just_written {
            return Ok(());
        }
        let name = sandbox.metadata.name.clone().unwrap_or_default();
        let mut patch = SandboxPatch {
            name,
            ..SandboxPatch::default()
        };
        let labels = sandbox.metadata.labels.clone().unwrap_or_default();
        match self.template() {
            Ok(t) => {
                let merged = claim_pod_metadata(t, self.claim).map_err(ClaimError::Other)?;
                let current = sandbox
                    .spec
                    .blueprint
                    .pod_template
                    .metadata
                    .clone()
                    .unwrap_or_default();
                if !semantically_equal(&merged, &current) {
                    patch.pod_template_metadata = Some(merged);
                }
                let hash = name_hash(t.metadata.name.as_deref().unwrap_or_default());
                if labels.get(SANDBOX_TEMPLATE_REF_HASH) != Some(&hash) {
                    patch.metadata.set_label(SANDBOX_TEMPLATE_REF_HASH, &hash);
                }
                match claim_created_by(self.claim) {
                    Some(v) if labels.get(CREATED_BY).map(String::as_str) != Some(v) => {
                        patch.metadata.set_label(CREATED_BY, v);
                    }
                    None if labels.contains_key(CREATED_BY) => {
                        patch.metadata.remove_label(CREATED_BY);
                    }
                    _ => {}
                }
            }
            Err(e) => {
                let additions = self.claim.spec.additional_pod_metadata.as_ref();
                if additions.is_some_and(|m| {
                    m.labels.as_ref().is_some_and(|l| !l.is_empty())
                        || m.annotations.as_ref().is_some_and(|a| !a.is_empty())
                }) {
                    return Err(ClaimError::Other(format!(
                        "failed to get template for metadata propagation: {}",
                        error_text(&e, self.claim)
                    )));
                }
            }
        }
        if !labels.contains_key(LAUNCH_TYPE) {
            patch.metadata.set_label(LAUNCH_TYPE, launch);
        }
        if !patch.is_empty() {
            self.actions.push(ClaimAction::PatchSandbox { patch });
        }
        Ok(())
    }

    fn delete_duplicates(&mut self, keep: &Sandbox) {
        for sb in self.owned_sandboxes() {
            if sb.metadata.name != keep.metadata.name {
                self.actions.push(ClaimAction::DeleteSandbox {
                    target: ObjectRef::new(
                        sb.metadata.name.as_deref().unwrap_or_default(),
                        sb.metadata.uid.as_deref(),
                    ),
                });
            }
        }
    }
}
