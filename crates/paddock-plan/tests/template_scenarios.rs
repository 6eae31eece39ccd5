//! SandboxTemplate planner scenarios (contract §2.3): ref-hash label, managed NetworkPolicy,
//! secure pod defaults.

// Test code: a panic is a failed test.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use k8s_openapi::api::core::v1::PodSpec;
use k8s_openapi::api::networking::v1::{NetworkPolicy, NetworkPolicyIngressRule};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use paddock_api::names::name_hash;
use paddock_api::v1beta1::*;
use paddock_plan::ownership::controller_ref;
use paddock_plan::template::*;

fn plan(t: &SandboxTemplate, np: Option<&NetworkPolicy>) -> TemplatePlan {
    plan_template(&TemplateInput {
        template: t,
        network_policy: np,
    })
}

fn owned_policy(t: &SandboxTemplate) -> NetworkPolicy {
    NetworkPolicy {
        metadata: ObjectMeta {
            name: Some("tpl-network-policy".into()),
            namespace: Some(NS.into()),
            uid: Some("np-uid".into()),
            resource_version: Some("5".into()),
            owner_references: Some(vec![controller_ref(
                "extensions.agents.x-k8s.io/v1beta1",
                "SandboxTemplate",
                "tpl",
                t.metadata.uid.as_deref().unwrap(),
            )]),
            ..ObjectMeta::default()
        },
        spec: Some(desired_network_policy_spec(t)),
    }
}

fn labelled(mut t: SandboxTemplate) -> SandboxTemplate {
    t.metadata.labels = Some(map(&[(
        "agents.x-k8s.io/sandbox-template-ref-hash",
        &name_hash("tpl"),
    )]));
    t
}

#[test]
fn template_gets_its_ref_hash_label_once() {
    let t = template("tpl");
    let p = plan(&t, None);
    match &p.actions[0] {
        TemplateAction::PatchTemplate { patch } => assert_eq!(
            patch
                .labels
                .get("agents.x-k8s.io/sandbox-template-ref-hash"),
            Some(&Some(name_hash("tpl")))
        ),
        other => panic!("expected the label patch first, got {other:?}"),
    }
    let t = labelled(template("tpl"));
    let p = plan(&t, Some(&owned_policy(&t)));
    assert_eq!(p.actions, vec![]);
}

#[test]
fn managed_template_without_rules_gets_the_secure_default_policy() {
    let t = labelled(template("tpl"));
    let p = plan(&t, None);
    let np = match &p.actions[..] {
        [TemplateAction::CreateNetworkPolicy { network_policy }] => network_policy,
        other => panic!("{other:?}"),
    };
    assert_eq!(np.metadata.name.as_deref(), Some("tpl-network-policy"));
    assert_eq!(
        np.metadata.owner_references.as_ref().unwrap()[0].uid,
        "uid-tpl"
    );
    let json = serde_json::to_value(np.spec.as_ref().unwrap()).unwrap();
    assert_eq!(
        json,
        serde_json::json!({
            "podSelector": {"matchLabels": {"agents.x-k8s.io/sandbox-template-ref-hash": name_hash("tpl")}},
            "policyTypes": ["Ingress", "Egress"],
            "ingress": [{"from": [{
                "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "agent-sandbox-system"}},
                "podSelector": {"matchLabels": {"app": "sandbox-router"}}
            }]}],
            "egress": [{"to": [
                {"ipBlock": {"cidr": "0.0.0.0/0", "except": ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "169.254.0.0/16"]}},
                {"ipBlock": {"cidr": "::/0", "except": ["fc00::/7", "fe80::/10"]}}
            ]}]
        })
    );
}

#[test]
fn managed_template_rules_are_copied_verbatim_and_empty_lists_deny() {
    let mut t = labelled(template("tpl"));
    t.spec.network_policy = Some(SandboxNetworkPolicy {
        ingress: Some(vec![NetworkPolicyIngressRule::default()]),
        egress: Some(vec![]),
    });
    let spec = desired_network_policy_spec(&t);
    assert_eq!(
        spec.ingress,
        Some(vec![NetworkPolicyIngressRule::default()])
    );
    assert_eq!(
        spec.egress,
        Some(vec![]),
        "empty egress list = deny all egress"
    );
    assert_eq!(
        spec.policy_types,
        Some(vec!["Ingress".to_owned(), "Egress".to_owned()])
    );
    t.spec.network_policy = Some(SandboxNetworkPolicy {
        ingress: None,
        egress: None,
    });
    let spec = desired_network_policy_spec(&t);
    assert_eq!(spec.ingress, Some(vec![]));
}

#[test]
fn drifted_owned_policy_is_updated_and_an_identical_one_left_alone() {
    let t = labelled(template("tpl"));
    let mut np = owned_policy(&t);
    assert_eq!(plan(&t, Some(&np)).actions, vec![]);
    np.spec.as_mut().unwrap().egress = Some(vec![]);
    let p = plan(&t, Some(&np));
    match &p.actions[..] {
        [
            TemplateAction::UpdateNetworkPolicy {
                name,
                resource_version,
                spec,
            },
        ] => {
            assert_eq!(name, "tpl-network-policy");
            assert_eq!(resource_version.as_deref(), Some("5"));
            assert_eq!(**spec, desired_network_policy_spec(&t));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn unmanaged_template_deletes_only_its_own_policy() {
    let mut t = labelled(template("tpl"));
    t.spec.network_policy_management = Some(NetworkPolicyManagement::Unmanaged);
    let np = owned_policy(&t);
    let p = plan(&t, Some(&np));
    assert!(
        matches!(&p.actions[..], [TemplateAction::DeleteNetworkPolicy { target }] if target.uid.as_deref() == Some("np-uid"))
    );
    let mut foreign = np;
    foreign.metadata.owner_references = None;
    assert_eq!(plan(&t, Some(&foreign)).actions, vec![]);
    assert_eq!(plan(&t, None).actions, vec![]);
}

#[test]
fn foreign_policy_with_the_managed_name_is_refused() {
    let t = labelled(template("tpl"));
    let mut np = owned_policy(&t);
    np.metadata.owner_references = None;
    let p = plan(&t, Some(&np));
    assert_eq!(p.actions, vec![]);
    assert!(
        p.error
            .unwrap()
            .message
            .contains("not controlled by SandboxTemplate \"tpl\"")
    );
}

#[test]
fn secure_defaults_apply_only_what_is_unset() {
    let t = template("tpl");
    let mut spec = PodSpec::default();
    apply_secure_defaults(&mut spec, &t);
    assert_eq!(spec.automount_service_account_token, Some(false));
    assert_eq!(spec.dns_policy.as_deref(), Some("None"));
    assert_eq!(
        spec.dns_config.unwrap().nameservers,
        Some(vec!["8.8.8.8".to_owned(), "1.1.1.1".to_owned()])
    );

    let mut spec = PodSpec {
        automount_service_account_token: Some(true),
        dns_policy: Some("ClusterFirst".into()),
        ..PodSpec::default()
    };
    apply_secure_defaults(&mut spec, &t);
    assert_eq!(spec.automount_service_account_token, Some(true));
    assert_eq!(spec.dns_policy.as_deref(), Some("ClusterFirst"));
    assert_eq!(spec.dns_config, None);

    for change in [
        |t: &mut SandboxTemplate| t.spec.network_policy = Some(SandboxNetworkPolicy::default()),
        |t: &mut SandboxTemplate| {
            t.spec.network_policy_management = Some(NetworkPolicyManagement::Unmanaged)
        },
    ] {
        let mut t = template("tpl");
        change(&mut t);
        let mut spec = PodSpec::default();
        apply_secure_defaults(&mut spec, &t);
        assert_eq!(spec.automount_service_account_token, Some(false));
        assert_eq!(
            spec.dns_policy, None,
            "no DNS override without the secure-default policy"
        );
    }
}

#[test]
fn deleting_template_is_left_alone() {
    let mut tpl = template("tpl");
    tpl.metadata.deletion_timestamp = Some(t(1));
    assert_eq!(plan(&tpl, None), TemplatePlan::default());
}

#[test]
fn a_template_naming_a_sandbox_policy_lets_its_pods_reach_only_the_egress_proxy() {
    let mut t = template("governed");
    t.metadata.annotations = Some(std::collections::BTreeMap::from([(
        "paddock.dev/policy".to_owned(),
        "pypi".to_owned(),
    )]));
    let spec = desired_network_policy_spec(&t);
    let egress = spec.egress.expect("egress rules");
    assert_eq!(egress.len(), 1);
    let to = egress[0].to.as_ref().expect("peers");
    assert_eq!(to.len(), 1, "only the proxy, no address range");
    assert_eq!(
        to[0]
            .pod_selector
            .as_ref()
            .and_then(|s| s.match_labels.as_ref())
            .and_then(|l| l.get("app"))
            .map(String::as_str),
        Some("paddock-egress")
    );
    let ports = egress[0].ports.as_ref().expect("ports");
    assert_eq!(
        ports[0].port,
        Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(3128))
    );
    // The ingress from the router stays as in the secure default.
    assert_eq!(
        spec.ingress,
        secure_default_network_policy_spec("governed").ingress
    );
}
