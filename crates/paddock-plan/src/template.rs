//! The SandboxTemplate planner (contract §2.3): the `sandbox-template-ref-hash` label on the
//! template itself, the template-managed NetworkPolicy `<template>-network-policy`, and the
//! secure pod defaults every template-derived pod gets ([`apply_secure_defaults`]).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{PodDNSConfig, PodSpec};
use k8s_openapi::api::networking::v1::{
    IPBlock, NetworkPolicy, NetworkPolicyEgressRule, NetworkPolicyIngressRule, NetworkPolicyPeer,
    NetworkPolicySpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use paddock_api::names::{SANDBOX_TEMPLATE_REF_HASH, name_hash};
use paddock_api::v1beta1::{NetworkPolicyManagement, SandboxTemplate};
use serde::{Deserialize, Serialize};

use crate::hash::semantically_equal;
use crate::outcome::{ObjectRef, PlanError};
use crate::ownership::{Ownership, controller_ref, describe_owner, ownership};
use crate::patch::MetadataPatch;

/// Nameservers a secure-default sandbox resolves with (cluster DNS is blocked on purpose).
pub const SECURE_DEFAULT_NAMESERVERS: [&str; 2] = ["8.8.8.8", "1.1.1.1"];
/// IPv4 ranges the secure-default egress rule excludes: RFC 1918 and link-local (metadata).
pub const SECURE_DEFAULT_EXCLUDED_V4: [&str; 4] = [
    "10.0.0.0/8",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "169.254.0.0/16",
];
/// IPv6 ranges the secure-default egress rule excludes: unique-local and link-local.
pub const SECURE_DEFAULT_EXCLUDED_V6: [&str; 2] = ["fc00::/7", "fe80::/10"];
/// Namespace whose `app: sandbox-router` pods may reach secure-default sandboxes.
pub const ROUTER_NAMESPACE: &str = "agent-sandbox-system";

/// `<template>-network-policy`.
pub fn network_policy_name(template_name: &str) -> String {
    paddock_api::names::network_policy_name(template_name)
}

fn template_name(template: &SandboxTemplate) -> &str {
    template.metadata.name.as_deref().unwrap_or_default()
}

fn is_managed(template: &SandboxTemplate) -> bool {
    template.spec.network_policy_management != Some(NetworkPolicyManagement::Unmanaged)
}

/// Applies upstream's `ApplySandboxSecureDefaults` to a pod spec built from `template` (claim
/// cold path and warm-pool members; never to Sandboxes created directly):
/// `automountServiceAccountToken: false` when unset, and, under the secure-default network
/// policy (managed, no `networkPolicy`) with no `dnsPolicy`, `dnsPolicy: None` with public
/// nameservers, because the default policy blocks cluster DNS.
pub fn apply_secure_defaults(pod_spec: &mut PodSpec, template: &SandboxTemplate) {
    if pod_spec.automount_service_account_token.is_none() {
        pod_spec.automount_service_account_token = Some(false);
    }
    let secure_default_policy = is_managed(template) && template.spec.network_policy.is_none();
    let dns_unset = pod_spec.dns_policy.as_deref().is_none_or(str::is_empty);
    if secure_default_policy && dns_unset {
        pod_spec.dns_policy = Some("None".to_owned());
        let config = pod_spec
            .dns_config
            .get_or_insert_with(PodDNSConfig::default);
        if config.nameservers.as_ref().is_none_or(Vec::is_empty) {
            config.nameservers = Some(
                SECURE_DEFAULT_NAMESERVERS
                    .iter()
                    .map(|s| (*s).to_owned())
                    .collect(),
            );
        }
    }
}

fn template_selector(template_name: &str) -> LabelSelector {
    LabelSelector {
        match_labels: Some(BTreeMap::from([(
            SANDBOX_TEMPLATE_REF_HASH.to_owned(),
            name_hash(template_name),
        )])),
        match_expressions: None,
    }
}

fn policy_types() -> Option<Vec<String>> {
    Some(vec!["Ingress".to_owned(), "Egress".to_owned()])
}

/// Pods labelled `app: <app>` in [`ROUTER_NAMESPACE`] (the router's, the egress proxy's).
fn system_pod(app: &str) -> NetworkPolicyPeer {
    NetworkPolicyPeer {
        namespace_selector: Some(LabelSelector {
            match_labels: Some(BTreeMap::from([(
                "kubernetes.io/metadata.name".to_owned(),
                ROUTER_NAMESPACE.to_owned(),
            )])),
            match_expressions: None,
        }),
        pod_selector: Some(LabelSelector {
            match_labels: Some(BTreeMap::from([("app".to_owned(), app.to_owned())])),
            match_expressions: None,
        }),
        ip_block: None,
    }
}

/// The secure-default NetworkPolicy spec: ingress only from `app: sandbox-router` pods in the
/// `agent-sandbox-system` namespace, egress only to public IPv4/IPv6.
pub fn secure_default_network_policy_spec(template_name: &str) -> NetworkPolicySpec {
    let ip_block = |cidr: &str, except: &[&str]| NetworkPolicyPeer {
        ip_block: Some(IPBlock {
            cidr: cidr.to_owned(),
            except: Some(except.iter().map(|s| (*s).to_owned()).collect()),
        }),
        ..NetworkPolicyPeer::default()
    };
    NetworkPolicySpec {
        pod_selector: Some(template_selector(template_name)),
        policy_types: policy_types(),
        ingress: Some(vec![NetworkPolicyIngressRule {
            from: Some(vec![system_pod("sandbox-router")]),
            ports: None,
        }]),
        egress: Some(vec![NetworkPolicyEgressRule {
            to: Some(vec![
                ip_block("0.0.0.0/0", &SECURE_DEFAULT_EXCLUDED_V4),
                ip_block("::/0", &SECURE_DEFAULT_EXCLUDED_V6),
            ]),
            ports: None,
        }]),
    }
}

/// The labels of the in-cluster egress proxy's Pods (`paddock egress`, deploy/egress), in
/// [`ROUTER_NAMESPACE`].
pub const EGRESS_PROXY_APP: &str = "paddock-egress";
/// The egress proxy's port.
pub const EGRESS_PROXY_PORT: i32 = 3128;

/// The secure default for a template that names a SandboxPolicy (`paddock.dev/policy`): as
/// [`secure_default_network_policy_spec`], but egress only to the egress proxy, which enforces
/// the policy (no DNS, no other address).
pub fn egress_proxy_network_policy_spec(template_name: &str) -> NetworkPolicySpec {
    let mut spec = secure_default_network_policy_spec(template_name);
    spec.egress = Some(vec![NetworkPolicyEgressRule {
        to: Some(vec![system_pod(EGRESS_PROXY_APP)]),
        ports: Some(vec![k8s_openapi::api::networking::v1::NetworkPolicyPort {
            port: Some(
                k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(EGRESS_PROXY_PORT),
            ),
            protocol: Some("TCP".to_owned()),
            end_port: None,
        }]),
    }]);
    spec
}

/// The NetworkPolicy spec a managed template wants: its own rules verbatim, or the secure
/// default when it has none (egress only to the egress proxy when it names a SandboxPolicy).
pub fn desired_network_policy_spec(template: &SandboxTemplate) -> NetworkPolicySpec {
    let name = template_name(template);
    let names_policy = template
        .metadata
        .annotations
        .as_ref()
        .is_some_and(|a| a.contains_key(paddock_api::policy::POLICY_ANNOTATION));
    match &template.spec.network_policy {
        None if names_policy => egress_proxy_network_policy_spec(name),
        None => secure_default_network_policy_spec(name),
        Some(rules) => NetworkPolicySpec {
            pod_selector: Some(template_selector(name)),
            policy_types: policy_types(),
            ingress: Some(rules.ingress.clone().unwrap_or_default()),
            egress: Some(rules.egress.clone().unwrap_or_default()),
        },
    }
}

/// What the driver observed for one template.
#[derive(Clone, Copy, Debug)]
pub struct TemplateInput<'a> {
    /// The template.
    pub template: &'a SandboxTemplate,
    /// The NetworkPolicy named `<template>-network-policy` in the template's namespace, if any.
    pub network_policy: Option<&'a NetworkPolicy>,
}

/// One step of a template reconcile.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "camelCase")]
pub enum TemplateAction {
    /// Merge-patch the template's own metadata (the ref-hash label).
    PatchTemplate {
        /// The edits.
        patch: MetadataPatch,
    },
    /// Create the managed NetworkPolicy (controller reference to the template set).
    CreateNetworkPolicy {
        /// The complete object.
        network_policy: Box<NetworkPolicy>,
    },
    /// Replace the spec of the template's NetworkPolicy (update with `resourceVersion`).
    UpdateNetworkPolicy {
        /// The policy's name.
        name: String,
        /// Optimistic lock.
        resource_version: Option<String>,
        /// The new spec.
        spec: Box<NetworkPolicySpec>,
    },
    /// Delete the template's NetworkPolicy (Unmanaged).
    DeleteNetworkPolicy {
        /// The policy, with its UID as precondition.
        target: ObjectRef,
    },
}

/// The plan for one template.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TemplatePlan {
    /// Actions in order; stop at the first failure and requeue with backoff.
    pub actions: Vec<TemplateAction>,
    /// A problem the driver should log and retry (a foreign NetworkPolicy in the way).
    pub error: Option<PlanError>,
}

/// Plans one SandboxTemplate reconcile (contract §2.3).
pub fn plan_template(input: &TemplateInput<'_>) -> TemplatePlan {
    let template = input.template;
    let mut plan = TemplatePlan::default();
    if template.metadata.deletion_timestamp.is_some() {
        return plan;
    }
    let name = template_name(template);
    let hash = name_hash(name);
    let labels = template.metadata.labels.as_ref();
    if labels.and_then(|l| l.get(SANDBOX_TEMPLATE_REF_HASH)) != Some(&hash) {
        let mut patch = MetadataPatch::default();
        patch.set_label(SANDBOX_TEMPLATE_REF_HASH, &hash);
        plan.actions.push(TemplateAction::PatchTemplate { patch });
    }
    let uid = template.metadata.uid.as_deref().unwrap_or_default();
    let policy_name = network_policy_name(name);
    let existing = input.network_policy;
    let existing_refs = existing
        .and_then(|np| np.metadata.owner_references.as_deref())
        .unwrap_or_default();

    if !is_managed(template) {
        if let Some(np) = existing
            && ownership(existing_refs, uid) == Ownership::Owned
        {
            plan.actions.push(TemplateAction::DeleteNetworkPolicy {
                target: ObjectRef::new(&policy_name, np.metadata.uid.as_deref()),
            });
        }
        return plan;
    }

    let desired = desired_network_policy_spec(template);
    match existing {
        None => {
            if uid.is_empty() {
                plan.error = Some(PlanError::transient(format!(
                    "SandboxTemplate {name:?} has no metadata.uid yet; cannot own its NetworkPolicy"
                )));
                return plan;
            }
            plan.actions.push(TemplateAction::CreateNetworkPolicy {
                network_policy: Box::new(NetworkPolicy {
                    metadata: ObjectMeta {
                        name: Some(policy_name),
                        namespace: template.metadata.namespace.clone(),
                        owner_references: Some(vec![controller_ref(
                            SandboxTemplate::API_VERSION,
                            SandboxTemplate::KIND,
                            name,
                            uid,
                        )]),
                        ..ObjectMeta::default()
                    },
                    spec: Some(desired),
                }),
            });
        }
        Some(np) => match ownership(existing_refs, uid) {
            Ownership::Owned => {
                let current = np.spec.clone().unwrap_or_default();
                if !semantically_equal(&current, &desired) {
                    plan.actions.push(TemplateAction::UpdateNetworkPolicy {
                        name: policy_name,
                        resource_version: np.metadata.resource_version.clone(),
                        spec: Box::new(desired),
                    });
                }
            }
            Ownership::Unowned => {
                plan.error = Some(PlanError::transient(format!(
                    "NetworkPolicy {policy_name:?} exists but is not controlled by SandboxTemplate {name:?}; refusing to manage it (delete it or set networkPolicyManagement: Unmanaged)"
                )));
            }
            Ownership::OwnedByOther(owner) => {
                plan.error = Some(PlanError::transient(format!(
                    "NetworkPolicy {policy_name:?} is owned by {}, not by SandboxTemplate {name:?}; refusing to manage it (delete it or set networkPolicyManagement: Unmanaged)",
                    describe_owner(owner)
                )));
            }
        },
    }
    plan
}
