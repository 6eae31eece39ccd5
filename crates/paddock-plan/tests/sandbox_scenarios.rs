//! Sandbox planner scenarios (contract §2.2 and the conditions of §1.3), one per behaviour.

// Test code: a panic is a failed test.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::*;
use k8s_openapi::api::core::v1::{EmptyDirVolumeSource, PersistentVolumeClaimSpec, Volume};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use paddock_api::names::{name_hash, sandbox_selector};
use paddock_api::v1beta1::*;
use paddock_plan::outcome::{ApplyFailure, ErrorClass, EventType, FailureKind};
use paddock_plan::ownership::controller_ref;
use paddock_plan::sandbox::*;

const HASH_KEY: &str = "agents.x-k8s.io/sandbox-name-hash";

fn input<'a>(
    sb: &'a Sandbox,
    pods: Vec<PodObservation>,
    service: Option<ServiceObservation>,
    pvcs: Vec<PvcObservation>,
    now: &'a Time,
) -> SandboxInput<'a> {
    SandboxInput {
        sandbox: sb,
        pods: Ok(pods),
        service: Ok(service),
        pvcs: Ok(pvcs),
        cluster_domain: "cluster.local",
        now,
    }
}

fn plan(
    sb: &Sandbox,
    pods: Vec<PodObservation>,
    service: Option<ServiceObservation>,
) -> SandboxPlan {
    let now = t(10);
    plan_sandbox(&input(sb, pods, service, vec![], &now))
}

fn created_pod(p: &SandboxPlan) -> Option<&k8s_openapi::api::core::v1::Pod> {
    p.actions.iter().find_map(|a| match a {
        SandboxAction::CreatePod { pod } => Some(pod.as_ref()),
        _ => None,
    })
}

fn sandbox_patches(p: &SandboxPlan) -> Vec<&paddock_plan::patch::MetadataPatch> {
    p.actions
        .iter()
        .filter_map(|a| match a {
            SandboxAction::PatchSandbox { patch } => Some(patch),
            _ => None,
        })
        .collect()
}

fn vct(name: &str) -> PersistentVolumeClaimTemplate {
    PersistentVolumeClaimTemplate {
        metadata: Some(EmbeddedObjectMetadata {
            name: Some(name.into()),
            labels: Some(map(&[("tier", "data")])),
            annotations: Some(map(&[("a", "b")])),
        }),
        spec: PersistentVolumeClaimSpec::default(),
    }
}

fn owned_service(sb: &Sandbox) -> ServiceObservation {
    let name = sb.metadata.name.clone().unwrap_or_default();
    ServiceObservation {
        name: name.clone(),
        uid: Some("svc-uid".into()),
        resource_version: Some("7".into()),
        owner_references: vec![sandbox_owner_ref(sb)],
        labels: map(&[(HASH_KEY, &name_hash(&name))]),
        selector: map(&[(HASH_KEY, &name_hash(&name))]),
        cluster_ip: Some("None".into()),
        ports: derive_ports(sb),
    }
}

#[test]
fn sandbox_without_pod_creates_pod_named_like_it_with_owner_and_pod_name_annotation() {
    let sb = sandbox("box");
    let p = plan(&sb, vec![], None);
    let pod = created_pod(&p).expect("pod created");
    assert_eq!(pod.metadata.name.as_deref(), Some("box"));
    assert_eq!(pod.metadata.namespace.as_deref(), Some(NS));
    assert_eq!(
        pod.metadata.owner_references,
        Some(vec![controller_ref(
            "agents.x-k8s.io/v1beta1",
            "Sandbox",
            "box",
            "uid-box"
        )])
    );
    let labels = pod.metadata.labels.clone().unwrap();
    assert_eq!(labels.get(HASH_KEY), Some(&name_hash("box")));
    assert_eq!(labels.get("app").map(String::as_str), Some("agent"));
    let patches = sandbox_patches(&p);
    assert_eq!(patches.len(), 1);
    assert_eq!(
        patches[0].annotations.get("agents.x-k8s.io/pod-name"),
        Some(&Some("box".to_owned()))
    );
    assert_eq!(
        p.status.selector.as_deref(),
        Some(sandbox_selector("box").as_str())
    );
    assert_eq!(
        triple(&p.status.conditions, "Ready"),
        s3(
            "False",
            "DependenciesNotReady",
            "Pod exists with phase: Pending"
        )
    );
    assert_eq!(
        triple(&p.status.conditions, "PodScheduled"),
        s3(
            "Unknown",
            "PodSchedulingUnknown",
            "Pod has not reported a PodScheduled condition yet"
        )
    );
    assert_eq!(
        triple(&p.status.conditions, "Suspended"),
        s3("False", "NotSuspended", "Sandbox is not suspended")
    );
    assert!(p.write_status);
    assert_eq!(p.error, None);
}

#[test]
fn pod_labels_skip_reserved_keys_and_annotations_record_what_was_propagated() {
    let mut sb = sandbox("box");
    sb.spec.blueprint.pod_template.metadata = Some(PodMetadata {
        labels: Some(map(&[
            ("app", "agent"),
            ("team", "x"),
            ("agents.x-k8s.io/sandbox-name-hash", "spoofed"),
            ("extensions.agents.x-k8s.io/evil", "1"),
        ])),
        annotations: Some(map(&[
            ("note", "hi"),
            ("agents.x-k8s.io/pod-name", "spoof"),
            ("opentelemetry.io/trace-context", "{}"),
        ])),
    });
    sb.metadata.labels = Some(map(&[("agents.x-k8s.io/created-by", "my-tool")]));
    let p = plan(&sb, vec![], None);
    let pod = created_pod(&p).unwrap();
    assert_eq!(
        pod.metadata.labels.clone().unwrap(),
        map(&[
            ("app", "agent"),
            ("team", "x"),
            (HASH_KEY, &name_hash("box")),
            ("agents.x-k8s.io/created-by", "unknown"),
        ])
    );
    assert_eq!(
        pod.metadata.annotations.clone().unwrap(),
        map(&[
            ("note", "hi"),
            ("agents.x-k8s.io/propagated-labels", "app,team"),
            ("agents.x-k8s.io/propagated-annotations", "note"),
        ])
    );
}

#[test]
fn pod_gets_extension_labels_only_while_a_pool_controls_the_sandbox() {
    let mut sb = sandbox("pool-abcde");
    sb.metadata.labels = Some(map(&[
        ("agents.x-k8s.io/warm-pool-sandbox", "1234abcd"),
        ("agents.x-k8s.io/sandbox-template-ref-hash", "feedbeef"),
        ("agents.x-k8s.io/claim-uid", "c1"),
    ]));
    sb.metadata.owner_references = Some(vec![controller_ref(
        "extensions.agents.x-k8s.io/v1beta1",
        "SandboxWarmPool",
        "pool",
        "uid-pool",
    )]);
    let p = plan(&sb, vec![], None);
    let labels = created_pod(&p).unwrap().metadata.labels.clone().unwrap();
    assert_eq!(
        labels
            .get("agents.x-k8s.io/warm-pool-sandbox")
            .map(String::as_str),
        Some("1234abcd")
    );
    assert_eq!(
        labels
            .get("agents.x-k8s.io/sandbox-template-ref-hash")
            .map(String::as_str),
        Some("feedbeef")
    );
    assert!(
        !labels.contains_key("agents.x-k8s.io/claim-uid"),
        "claim-uid is not propagated"
    );

    // Once a claim controls it, the warm-pool label is no longer wanted on the pod.
    sb.metadata.owner_references = Some(vec![controller_ref(
        "extensions.agents.x-k8s.io/v1beta1",
        "SandboxClaim",
        "c",
        "uid-c",
    )]);
    let mut pod = running_pod(&sb);
    pod.labels.insert(
        "agents.x-k8s.io/warm-pool-sandbox".into(),
        "1234abcd".into(),
    );
    pod.annotations = map(&[
        ("cluster-autoscaler.kubernetes.io/safe-to-evict", "true"),
        (
            "agents.x-k8s.io/propagated-annotations",
            "cluster-autoscaler.kubernetes.io/safe-to-evict,note",
        ),
        ("note", "hello"),
        ("agents.x-k8s.io/propagated-labels", "app"),
    ]);
    pod.labels.insert("app".into(), "agent".into());
    let p = plan(&sb, vec![pod], None);
    let patch = p
        .actions
        .iter()
        .find_map(|a| match a {
            SandboxAction::PatchPod { patch, .. } => Some(patch),
            _ => None,
        })
        .expect("pod metadata patched");
    assert_eq!(
        patch.labels.get("agents.x-k8s.io/warm-pool-sandbox"),
        Some(&None)
    );
    assert_eq!(
        patch
            .labels
            .get("agents.x-k8s.io/sandbox-template-ref-hash"),
        Some(&Some("feedbeef".to_owned()))
    );
    assert_eq!(
        patch
            .annotations
            .get("cluster-autoscaler.kubernetes.io/safe-to-evict"),
        Some(&None),
        "the warm pool's safe-to-evict leaves the pod once the template drops it"
    );
    assert_eq!(
        patch
            .annotations
            .get("agents.x-k8s.io/propagated-annotations"),
        Some(&Some("note".to_owned()))
    );
}

#[test]
fn existing_pod_sync_removes_dropped_template_keys_and_scrubs_reserved_ones() {
    let sb = sandbox("box");
    let mut pod = running_pod(&sb);
    pod.labels.extend(map(&[
        ("app", "old"),
        ("gone", "x"),
        ("agents.x-k8s.io/claim-uid", "leaked"),
        ("agents.x-k8s.io/created-by", "python-client"),
    ]));
    pod.annotations = map(&[
        (
            "agents.x-k8s.io/propagated-labels",
            "agents.x-k8s.io/claim-uid,agents.x-k8s.io/sandbox-name-hash,app,gone",
        ),
        ("agents.x-k8s.io/propagated-annotations", "note,old-note"),
        ("note", "hello"),
        ("old-note", "x"),
    ]);
    let p = plan(&sb, vec![pod], None);
    assert!(
        created_pod(&p).is_none(),
        "an existing pod is never recreated"
    );
    let patch = p
        .actions
        .iter()
        .find_map(|a| match a {
            SandboxAction::PatchPod { name, patch } if name == "box" => Some(patch),
            _ => None,
        })
        .unwrap();
    assert_eq!(patch.labels.get("app"), Some(&Some("agent".to_owned())));
    assert_eq!(patch.labels.get("gone"), Some(&None));
    assert_eq!(patch.labels.get("agents.x-k8s.io/claim-uid"), Some(&None));
    assert_eq!(patch.labels.get("agents.x-k8s.io/created-by"), Some(&None));
    assert!(
        !patch.labels.contains_key(HASH_KEY),
        "the hash label is kept as is"
    );
    assert_eq!(patch.annotations.get("old-note"), Some(&None));
    assert_eq!(
        patch.annotations.get("agents.x-k8s.io/propagated-labels"),
        Some(&Some("app".to_owned()))
    );
    assert_eq!(
        patch
            .annotations
            .get("agents.x-k8s.io/propagated-annotations"),
        Some(&Some("note".to_owned()))
    );
    assert!(patch.owner_references.is_none());
}

#[test]
fn in_sync_ready_pod_needs_no_actions_and_makes_the_sandbox_ready() {
    let mut sb = sandbox("box");
    sb.metadata.annotations = Some(map(&[("agents.x-k8s.io/pod-name", "box")]));
    let mut pod = running_pod(&sb);
    pod.labels.insert("app".into(), "agent".into());
    pod.annotations = map(&[
        ("note", "hello"),
        ("agents.x-k8s.io/propagated-labels", "app"),
        ("agents.x-k8s.io/propagated-annotations", "note"),
    ]);
    let p = plan(&sb, vec![pod], None);
    assert_eq!(p.actions, vec![]);
    assert_eq!(
        triple(&p.status.conditions, "Ready"),
        s3("True", "DependenciesReady", "Pod is Ready")
    );
    assert_eq!(p.status.pod_ips, Some(vec!["10.0.0.7".to_owned()]));
    assert_eq!(p.status.node_name.as_deref(), Some("node-a"));
    assert_eq!(
        triple(&p.status.conditions, "PodScheduled"),
        s3("True", "PodScheduled", "")
    );
    for c in p.status.conditions.as_ref().unwrap() {
        assert_eq!(
            c.observed_generation,
            Some(3),
            "{} carries the generation",
            c.type_
        );
    }
}

#[test]
fn ready_condition_messages_follow_the_pod_and_service() {
    struct Case {
        name: &'static str,
        phase: &'static str,
        ready: bool,
        ips: bool,
        service: Option<bool>,
        service_exists: bool,
        want: (&'static str, &'static str, &'static str),
    }
    let cases = [
        Case {
            name: "pending",
            phase: "Pending",
            ready: false,
            ips: false,
            service: None,
            service_exists: false,
            want: (
                "False",
                "DependenciesNotReady",
                "Pod exists with phase: Pending",
            ),
        },
        Case {
            name: "running not ready",
            phase: "Running",
            ready: false,
            ips: true,
            service: None,
            service_exists: false,
            want: (
                "False",
                "DependenciesNotReady",
                "Pod is Running but not Ready",
            ),
        },
        Case {
            name: "ready without ips",
            phase: "Running",
            ready: true,
            ips: false,
            service: None,
            service_exists: false,
            want: (
                "False",
                "DependenciesNotReady",
                "Pod is Ready but has no podIPs yet",
            ),
        },
        Case {
            name: "ready with service",
            phase: "Running",
            ready: true,
            ips: true,
            service: Some(true),
            service_exists: true,
            want: ("True", "DependenciesReady", "Pod is Ready; Service Exists"),
        },
        Case {
            name: "ready, back-compat service",
            phase: "Running",
            ready: true,
            ips: true,
            service: None,
            service_exists: true,
            want: ("True", "DependenciesReady", "Pod is Ready; Service Exists"),
        },
        Case {
            name: "ready, service disabled",
            phase: "Running",
            ready: true,
            ips: true,
            service: Some(false),
            service_exists: false,
            want: ("True", "DependenciesReady", "Pod is Ready"),
        },
        Case {
            name: "succeeded",
            phase: "Succeeded",
            ready: false,
            ips: false,
            service: None,
            service_exists: false,
            want: ("False", "PodSucceeded", "Pod completed successfully"),
        },
        Case {
            name: "failed",
            phase: "Failed",
            ready: false,
            ips: false,
            service: None,
            service_exists: false,
            want: ("False", "PodFailed", "Pod failed"),
        },
    ];
    for c in cases {
        let mut sb = sandbox("box");
        sb.spec.blueprint.service = c.service;
        let mut pod = running_pod(&sb);
        pod.phase = c.phase.into();
        pod.ready = Some(pod_cond(if c.ready { "True" } else { "False" }, None));
        if !c.ips {
            pod.pod_ips.clear();
        }
        let svc = c.service_exists.then(|| owned_service(&sb));
        let p = plan(&sb, vec![pod], svc);
        assert_eq!(
            triple(&p.status.conditions, "Ready"),
            s3(c.want.0, c.want.1, c.want.2),
            "{}",
            c.name
        );
    }
}

#[test]
fn terminal_pods_drive_finished_and_are_not_recreated() {
    for (phase, reason, msg) in [
        ("Succeeded", "PodSucceeded", "Pod completed successfully"),
        ("Failed", "PodFailed", "Pod failed"),
    ] {
        let sb = sandbox("box");
        let mut pod = running_pod(&sb);
        pod.phase = phase.into();
        let p = plan(&sb, vec![pod], None);
        assert!(created_pod(&p).is_none());
        assert!(
            !p.actions
                .iter()
                .any(|a| matches!(a, SandboxAction::DeletePod { .. }))
        );
        assert_eq!(
            triple(&p.status.conditions, "Finished"),
            s3("True", reason, msg)
        );
        assert_eq!(
            triple(&p.status.conditions, "Ready"),
            s3("False", reason, msg)
        );
    }
}

#[test]
fn finished_is_removed_when_the_pod_is_not_terminal() {
    let mut sb = sandbox("box");
    sb.status = Some(SandboxStatus {
        conditions: Some(vec![cond(
            "Finished",
            "True",
            "PodSucceeded",
            "Pod completed successfully",
        )]),
        ..SandboxStatus::default()
    });
    let p = plan(&sb, vec![running_pod(&sb)], None);
    assert!(find(&p.status.conditions, "Finished").is_none());
}

#[test]
fn vanished_running_pod_is_recreated_with_the_same_name() {
    let mut sb = sandbox("box");
    sb.metadata.annotations = Some(map(&[("agents.x-k8s.io/pod-name", "box")]));
    sb.status = Some(SandboxStatus {
        pod_ips: Some(vec!["10.0.0.7".into()]),
        node_name: Some("node-a".into()),
        ..SandboxStatus::default()
    });
    let p = plan(&sb, vec![], None);
    assert_eq!(
        created_pod(&p).unwrap().metadata.name.as_deref(),
        Some("box")
    );
    assert!(
        sandbox_patches(&p).is_empty(),
        "annotation already names the pod"
    );
    assert_eq!(p.status.pod_ips, None);
    assert_eq!(p.status.node_name, None);
}

#[test]
fn stale_pod_name_annotation_is_replaced_by_the_owned_pod() {
    let mut sb = sandbox("pool-abcde");
    sb.metadata.annotations = Some(map(&[("agents.x-k8s.io/pod-name", "old-pod")]));
    let mut pod = running_pod(&sb);
    pod.name = "pool-abcde".into();
    let p = plan(&sb, vec![pod], None);
    assert!(created_pod(&p).is_none());
    let patches = sandbox_patches(&p);
    assert_eq!(
        patches[0].annotations.get("agents.x-k8s.io/pod-name"),
        Some(&Some("pool-abcde".to_owned()))
    );
}

#[test]
fn multiple_owned_pods_report_multiple_pods_and_leave_the_service_alone() {
    let mut sb = sandbox("box");
    sb.spec.blueprint.service = Some(true);
    let a = running_pod(&sb);
    let mut b = running_pod(&sb);
    b.name = "box-2".into();
    let p = plan(&sb, vec![a, b], None);
    assert_eq!(
        triple(&p.status.conditions, "Ready"),
        s3(
            "False",
            "MultiplePods",
            "multiple Pods (2) are controlled by this Sandbox; refusing to choose or create a Pod"
        )
    );
    assert!(!p.actions.iter().any(|a| matches!(
        a,
        SandboxAction::CreateService { .. } | SandboxAction::CreatePod { .. }
    )));
    let event = p.actions.iter().find_map(|a| match a {
        SandboxAction::Event { event } => Some(event),
        _ => None,
    });
    assert_eq!(
        event.map(|e| (e.type_, e.reason.as_str())),
        Some((EventType::Warning, "MultiplePods"))
    );
    assert_eq!(p.error, None, "a stable condition, not a retry loop");
    assert_eq!(p.requeue_after, None);

    // The event is recorded once.
    let mut again = sb.clone();
    again.status = Some(p.status.clone());
    let p2 = plan(
        &again,
        vec![running_pod(&sb), {
            let mut b = running_pod(&sb);
            b.name = "box-2".into();
            b
        }],
        None,
    );
    assert!(
        !p2.actions
            .iter()
            .any(|a| matches!(a, SandboxAction::Event { .. }))
    );
}

#[test]
fn suspend_deletes_only_the_pod_and_keeps_service_and_pvcs() {
    let mut sb = sandbox("box");
    sb.spec.operating_mode = Some(OperatingMode::Suspended);
    sb.spec.blueprint.service = Some(true);
    sb.spec.blueprint.volume_claim_templates = Some(vec![vct("data")]);
    sb.metadata.annotations = Some(map(&[("agents.x-k8s.io/pod-name", "box")]));
    let pvc = PvcObservation {
        name: "data-box".into(),
        owner_references: vec![sandbox_owner_ref(&sb)],
        labels: Default::default(),
    };
    let now = t(10);
    let p = plan_sandbox(&input(
        &sb,
        vec![running_pod(&sb)],
        Some(owned_service(&sb)),
        vec![pvc],
        &now,
    ));
    assert_eq!(
        p.actions
            .iter()
            .filter(|a| matches!(a, SandboxAction::DeletePod { .. }))
            .count(),
        1
    );
    assert!(!p.actions.iter().any(|a| matches!(
        a,
        SandboxAction::DeleteService { .. } | SandboxAction::CreatePvc { .. }
    )));
    assert_eq!(
        sandbox_patches(&p)[0]
            .annotations
            .get("agents.x-k8s.io/pod-name"),
        Some(&None)
    );
    assert_eq!(
        triple(&p.status.conditions, "Suspended"),
        s3(
            "False",
            "PodTerminating",
            "Pod is terminating. Sandbox is suspending"
        )
    );
    assert_eq!(
        triple(&p.status.conditions, "Ready"),
        s3("False", "SandboxSuspended", "Sandbox is suspending")
    );

    // A terminating pod is not deleted again.
    let mut terminating = running_pod(&sb);
    terminating.terminating = true;
    let p = plan(&sb, vec![terminating], None);
    assert!(
        !p.actions
            .iter()
            .any(|a| matches!(a, SandboxAction::DeletePod { .. }))
    );
}

#[test]
fn suspended_sandbox_without_pod_is_suspended() {
    let mut sb = sandbox("box");
    sb.spec.operating_mode = Some(OperatingMode::Suspended);
    let p = plan(&sb, vec![], None);
    assert_eq!(p.actions, vec![]);
    assert_eq!(
        triple(&p.status.conditions, "Suspended"),
        s3(
            "True",
            "PodTerminated",
            "Pod has been terminated. Sandbox is suspended"
        )
    );
    assert_eq!(
        triple(&p.status.conditions, "Ready"),
        s3("False", "SandboxSuspended", "Sandbox is suspended")
    );
    assert!(find(&p.status.conditions, "PodScheduled").is_none());
}

#[test]
fn suspended_sandbox_refuses_to_delete_a_pod_it_does_not_own() {
    let mut sb = sandbox("box");
    sb.spec.operating_mode = Some(OperatingMode::Suspended);
    let mut pod = running_pod(&sb);
    pod.owner_references.clear();
    let p = plan(&sb, vec![pod], None);
    assert!(
        !p.actions
            .iter()
            .any(|a| matches!(a, SandboxAction::DeletePod { .. }))
    );
    assert_eq!(
        triple(&p.status.conditions, "Suspended"),
        s3(
            "False",
            "PodNotOwned",
            "Refused to delete pod because it is not owned by this sandbox"
        )
    );
}

#[test]
fn v1alpha1_replicas_zero_suspends_through_conversion() {
    let alpha = paddock_api::v1alpha1::Sandbox {
        metadata: meta("box"),
        spec: paddock_api::v1alpha1::SandboxSpec {
            blueprint: blueprint(),
            lifecycle: Lifecycle::default(),
            replicas: Some(0),
        },
        status: None,
    };
    let sb = paddock_api::convert::sandbox_to_v1beta1(alpha);
    let p = plan(&sb, vec![running_pod(&sb)], None);
    assert!(
        p.actions
            .iter()
            .any(|a| matches!(a, SandboxAction::DeletePod { .. }))
    );
}

#[test]
fn resume_recreates_the_pod_rebinding_the_same_pvcs() {
    let mut sb = sandbox("box");
    sb.spec.operating_mode = Some(OperatingMode::Running);
    sb.spec.blueprint.volume_claim_templates = Some(vec![vct("data")]);
    sb.spec.blueprint.pod_template.spec.volumes = Some(vec![
        Volume {
            name: "data".into(),
            empty_dir: Some(EmptyDirVolumeSource::default()),
            ..Volume::default()
        },
        Volume {
            name: "scratch".into(),
            empty_dir: Some(EmptyDirVolumeSource::default()),
            ..Volume::default()
        },
    ]);
    sb.status = Some(SandboxStatus {
        conditions: Some(vec![cond("Suspended", "True", "PodTerminated", "x")]),
        ..SandboxStatus::default()
    });
    let pvc = PvcObservation {
        name: "data-box".into(),
        owner_references: vec![sandbox_owner_ref(&sb)],
        labels: Default::default(),
    };
    let now = t(10);
    let p = plan_sandbox(&input(&sb, vec![], None, vec![pvc], &now));
    assert!(
        !p.actions
            .iter()
            .any(|a| matches!(a, SandboxAction::CreatePvc { .. }))
    );
    let spec = created_pod(&p).unwrap().spec.clone().unwrap();
    let volumes = spec.volumes.unwrap();
    assert_eq!(volumes.len(), 2);
    assert_eq!(volumes[0].name, "scratch");
    assert_eq!(
        volumes[1].name, "data",
        "the claim volume replaces the template's volume of that name"
    );
    assert_eq!(
        volumes[1]
            .persistent_volume_claim
            .as_ref()
            .map(|c| c.claim_name.as_str()),
        Some("data-box")
    );
    assert_eq!(
        triple(&p.status.conditions, "Suspended"),
        s3("False", "NotSuspended", "Sandbox is not suspended")
    );
}

#[test]
fn missing_pvcs_are_created_with_template_metadata_hash_label_and_owner() {
    let mut sb = sandbox("box");
    sb.spec.blueprint.volume_claim_templates = Some(vec![vct("data"), vct("cache")]);
    let p = plan(&sb, vec![], None);
    let pvcs: Vec<_> = p
        .actions
        .iter()
        .filter_map(|a| match a {
            SandboxAction::CreatePvc { pvc } => Some(pvc),
            _ => None,
        })
        .collect();
    assert_eq!(pvcs.len(), 2);
    assert_eq!(pvcs[0].metadata.name.as_deref(), Some("data-box"));
    assert_eq!(pvcs[1].metadata.name.as_deref(), Some("cache-box"));
    assert_eq!(
        pvcs[0].metadata.labels.clone().unwrap(),
        map(&[("tier", "data"), (HASH_KEY, &name_hash("box"))])
    );
    assert_eq!(
        pvcs[0].metadata.annotations.clone().unwrap(),
        map(&[("a", "b")])
    );
    assert_eq!(
        pvcs[0].metadata.owner_references.as_ref().unwrap()[0].uid,
        "uid-box"
    );
    // PVCs come first.
    assert!(matches!(p.actions[0], SandboxAction::CreatePvc { .. }));
}

#[test]
fn unowned_pvcs_are_adopted_only_with_the_adoptable_or_hash_label() {
    let mut sb = sandbox("box");
    sb.spec.blueprint.volume_claim_templates = Some(vec![vct("data")]);
    let now = t(10);
    for (labels, adopted) in [
        (map(&[("agents.x-k8s.io/adoptable", "true")]), true),
        (map(&[(HASH_KEY, &name_hash("box"))]), true),
        (map(&[(HASH_KEY, "00000000")]), false),
        (map(&[]), false),
    ] {
        let pvc = PvcObservation {
            name: "data-box".into(),
            owner_references: vec![],
            labels,
        };
        let p = plan_sandbox(&input(&sb, vec![], None, vec![pvc], &now));
        let adopt = p.actions.iter().find_map(|a| match a {
            SandboxAction::AdoptPvc { name, patch } => Some((name, patch)),
            _ => None,
        });
        assert_eq!(adopt.is_some(), adopted);
        if let Some((name, patch)) = adopt {
            assert_eq!(name, "data-box");
            assert_eq!(patch.owner_references.as_ref().unwrap()[0].uid, "uid-box");
        } else {
            let (st, reason, msg) = triple(&p.status.conditions, "Ready").unwrap();
            assert_eq!((st.as_str(), reason.as_str()), ("False", "ReconcilerError"));
            assert_eq!(
                msg,
                "Error seen: cannot adopt unowned PVC \"data-box\": missing required pool authorization label (\"agents.x-k8s.io/adoptable\") or sandbox tracking label (\"agents.x-k8s.io/sandbox-name-hash\")"
            );
            assert_eq!(
                p.error.as_ref().map(|e| e.class),
                Some(ErrorClass::Transient)
            );
        }
    }
}

#[test]
fn pvc_owned_by_someone_else_is_an_error() {
    let mut sb = sandbox("box");
    sb.spec.blueprint.volume_claim_templates = Some(vec![vct("data")]);
    let pvc = PvcObservation {
        name: "data-box".into(),
        owner_references: vec![controller_ref("apps/v1", "StatefulSet", "db", "u9")],
        labels: Default::default(),
    };
    let now = t(10);
    let p = plan_sandbox(&input(&sb, vec![], None, vec![pvc], &now));
    assert_eq!(
        triple(&p.status.conditions, "Ready").unwrap().2,
        "Error seen: PVC \"data-box\" is owned by StatefulSet/db (UID: u9), not by sandbox \"box\""
    );
}

#[test]
fn unowned_pod_is_adopted_only_with_the_adoptable_or_hash_label() {
    let sb = sandbox("box");
    let mut pod = running_pod(&sb);
    pod.owner_references.clear();
    let p = plan(&sb, vec![pod.clone()], None);
    let patch = p.actions.iter().find_map(|a| match a {
        SandboxAction::PatchPod { patch, .. } => Some(patch),
        _ => None,
    });
    assert_eq!(
        patch.unwrap().owner_references.as_ref().unwrap()[0].uid,
        "uid-box"
    );

    pod.labels.clear();
    let p = plan(&sb, vec![pod], None);
    assert!(!p.actions.iter().any(|a| matches!(
        a,
        SandboxAction::PatchPod { .. } | SandboxAction::CreatePod { .. }
    )));
    assert!(
        triple(&p.status.conditions, "Ready")
            .unwrap()
            .2
            .contains("cannot adopt unowned pod \"box\"")
    );
    assert_eq!(
        triple(&p.status.conditions, "PodScheduled"),
        s3(
            "Unknown",
            "PodSchedulingUnknown",
            "Pod state is unknown. Pod scheduling cannot be determined"
        )
    );
}

#[test]
fn pod_owned_by_another_controller_is_refused_and_the_annotation_cleared() {
    let mut sb = sandbox("box");
    sb.metadata.annotations = Some(map(&[("agents.x-k8s.io/pod-name", "box")]));
    let mut pod = running_pod(&sb);
    pod.owner_references = vec![controller_ref("apps/v1", "ReplicaSet", "rs", "u7")];
    let p = plan(&sb, vec![pod], None);
    assert_eq!(
        triple(&p.status.conditions, "Ready").unwrap().2,
        "Error seen: pod \"box\" is owned by ReplicaSet/rs (UID: u7), not by sandbox \"box\""
    );
    assert_eq!(
        sandbox_patches(&p)[0]
            .annotations
            .get("agents.x-k8s.io/pod-name"),
        Some(&None)
    );
    assert_eq!(p.status.pod_ips, None);
}

#[test]
fn pod_lookup_failure_reports_unknown_scheduling_and_suspension() {
    let mut sb = sandbox("box");
    let now = t(10);
    let mut i = input(&sb, vec![], None, vec![], &now);
    i.pods = Err("connection refused".into());
    let p = plan_sandbox(&i);
    assert_eq!(
        triple(&p.status.conditions, "Ready"),
        s3(
            "False",
            "ReconcilerError",
            "Error seen: pod list failed: connection refused"
        )
    );
    assert_eq!(
        triple(&p.status.conditions, "PodScheduled").unwrap().0,
        "Unknown"
    );
    assert_eq!(
        p.error.as_ref().map(|e| e.class),
        Some(ErrorClass::Transient)
    );
    sb.spec.operating_mode = Some(OperatingMode::Suspended);
    let mut i = input(&sb, vec![], None, vec![], &now);
    i.pods = Err("boom".into());
    let p = plan_sandbox(&i);
    assert_eq!(
        triple(&p.status.conditions, "Suspended"),
        s3(
            "Unknown",
            "PodStateUnknown",
            "Pod state is unknown. Sandbox suspension cannot be confirmed"
        )
    );
}

#[test]
fn pod_scheduled_mirrors_the_pod_condition() {
    let sb = sandbox("box");
    for (obs, want) in [
        (
            Some(pod_cond("False", Some("Unschedulable"))),
            ("False", "Unschedulable"),
        ),
        (Some(pod_cond("True", None)), ("True", "PodScheduled")),
        (
            Some(pod_cond("False", None)),
            ("False", "PodSchedulingUnknown"),
        ),
        (None, ("Unknown", "PodSchedulingUnknown")),
    ] {
        let mut pod = running_pod(&sb);
        pod.phase = "Pending".into();
        pod.scheduled = obs;
        let p = plan(&sb, vec![pod], None);
        let (st, reason, _) = triple(&p.status.conditions, "PodScheduled").unwrap();
        assert_eq!((st.as_str(), reason.as_str()), want);
    }
}

#[test]
fn service_true_creates_a_headless_service_with_derived_ports_and_fqdn() {
    let mut sb = sandbox("box");
    sb.spec.blueprint.service = Some(true);
    let now = t(10);
    let mut i = input(&sb, vec![running_pod(&sb)], None, vec![], &now);
    i.cluster_domain = "example.internal";
    let p = plan_sandbox(&i);
    let svc = p
        .actions
        .iter()
        .find_map(|a| match a {
            SandboxAction::CreateService { service } => Some(service),
            _ => None,
        })
        .expect("service created");
    let spec = svc.spec.clone().unwrap();
    assert_eq!(spec.cluster_ip.as_deref(), Some("None"));
    assert_eq!(
        spec.selector.unwrap(),
        map(&[(HASH_KEY, &name_hash("box"))])
    );
    let ports = spec.ports.unwrap();
    assert_eq!(ports[0].name.as_deref(), Some("p-8888-tcp"));
    assert_eq!(
        svc.metadata.labels.clone().unwrap(),
        map(&[(HASH_KEY, &name_hash("box"))])
    );
    assert_eq!(p.status.service.as_deref(), Some("box"));
    assert_eq!(
        p.status.service_fqdn.as_deref(),
        Some("box.default.svc.example.internal")
    );
    assert_eq!(
        triple(&p.status.conditions, "Ready"),
        s3("True", "DependenciesReady", "Pod is Ready; Service Exists")
    );
}

#[test]
fn unset_service_ignores_an_unowned_one_and_uses_an_owned_one() {
    let mut sb = sandbox("box");
    sb.status = Some(SandboxStatus {
        service: Some("box".into()),
        service_fqdn: Some("box.default.svc.cluster.local".into()),
        ..SandboxStatus::default()
    });
    let mut unowned = owned_service(&sb);
    unowned.owner_references.clear();
    let p = plan(&sb, vec![running_pod(&sb)], Some(unowned));
    assert_eq!(p.status.service, None);
    assert_eq!(p.status.service_fqdn, None);
    assert!(
        !p.actions
            .iter()
            .any(|a| matches!(a, SandboxAction::AdoptService { .. }))
    );
    assert_eq!(
        triple(&p.status.conditions, "Ready").unwrap().2,
        "Pod is Ready"
    );

    let p = plan(&sb, vec![running_pod(&sb)], Some(owned_service(&sb)));
    assert_eq!(p.status.service.as_deref(), Some("box"));
    let p_none = plan(&sb, vec![running_pod(&sb)], None);
    assert!(
        !p_none
            .actions
            .iter()
            .any(|a| matches!(a, SandboxAction::CreateService { .. }))
    );
}

#[test]
fn service_false_deletes_an_owned_service() {
    let mut sb = sandbox("box");
    sb.spec.blueprint.service = Some(false);
    let p = plan(&sb, vec![running_pod(&sb)], Some(owned_service(&sb)));
    assert!(p.actions.iter().any(|a| matches!(a, SandboxAction::DeleteService { target } if target.name == "box" && target.uid.as_deref() == Some("svc-uid"))));
    assert_eq!(p.status.service, None);
    let mut foreign = owned_service(&sb);
    foreign.owner_references.clear();
    let p = plan(&sb, vec![running_pod(&sb)], Some(foreign));
    assert!(
        !p.actions
            .iter()
            .any(|a| matches!(a, SandboxAction::DeleteService { .. }))
    );
}

#[test]
fn service_true_adopts_an_unowned_headless_service_with_permission() {
    let mut sb = sandbox("box");
    sb.spec.blueprint.service = Some(true);
    let mut svc = owned_service(&sb);
    svc.owner_references.clear();
    svc.labels = map(&[("agents.x-k8s.io/adoptable", "true")]);
    svc.selector = map(&[("app", "x")]);
    svc.ports.clear();
    let p = plan(&sb, vec![running_pod(&sb)], Some(svc.clone()));
    let edit = p
        .actions
        .iter()
        .find_map(|a| match a {
            SandboxAction::AdoptService { edit, .. } => Some(edit),
            _ => None,
        })
        .unwrap();
    assert_eq!(edit.resource_version.as_deref(), Some("7"));
    assert_eq!(
        edit.selector.clone().unwrap(),
        map(&[(HASH_KEY, &name_hash("box"))])
    );
    assert_eq!(edit.ports.as_ref().unwrap().len(), 1);
    assert_eq!(edit.owner_references.as_ref().unwrap()[0].uid, "uid-box");

    let mut cluster_ip = svc.clone();
    cluster_ip.cluster_ip = Some("10.96.0.12".into());
    let p = plan(&sb, vec![running_pod(&sb)], Some(cluster_ip));
    assert_eq!(
        triple(&p.status.conditions, "Ready").unwrap().2,
        "Error seen: cannot adopt service \"box\": ClusterIP is \"10.96.0.12\" (expected \"None\", field is immutable)"
    );

    let mut no_label = svc;
    no_label.labels.clear();
    let p = plan(&sb, vec![running_pod(&sb)], Some(no_label));
    assert!(
        triple(&p.status.conditions, "Ready")
            .unwrap()
            .2
            .contains("cannot adopt unowned service")
    );
}

#[test]
fn owned_service_drift_is_repaired() {
    let mut sb = sandbox("box");
    sb.spec.blueprint.service = Some(true);
    let mut svc = owned_service(&sb);
    svc.labels.clear();
    svc.selector = map(&[("app", "x")]);
    svc.ports.clear();
    let p = plan(&sb, vec![running_pod(&sb)], Some(svc));
    let edit = p
        .actions
        .iter()
        .find_map(|a| match a {
            SandboxAction::PatchService { edit, .. } => Some(edit),
            _ => None,
        })
        .unwrap();
    assert_eq!(edit.labels, map(&[(HASH_KEY, &name_hash("box"))]));
    assert!(edit.selector.is_some());
    assert!(edit.ports.is_some());
    // In sync: nothing to do.
    let p = plan(&sb, vec![running_pod(&sb)], Some(owned_service(&sb)));
    assert!(
        !p.actions
            .iter()
            .any(|a| matches!(a, SandboxAction::PatchService { .. }))
    );
}

#[test]
fn service_owned_by_another_controller_is_an_error() {
    let mut sb = sandbox("box");
    sb.spec.blueprint.service = Some(true);
    let mut svc = owned_service(&sb);
    svc.owner_references = vec![controller_ref("v1", "Other", "o", "u5")];
    let p = plan(&sb, vec![running_pod(&sb)], Some(svc));
    assert_eq!(
        triple(&p.status.conditions, "Ready").unwrap().2,
        "Error seen: service \"box\" is owned by Other/o (UID: u5), not by sandbox \"box\""
    );
}

#[test]
fn service_name_longer_than_63_is_invalid_configuration_without_requeue() {
    let long = "a".repeat(64);
    let mut sb = sandbox(&long);
    sb.spec.blueprint.service = Some(true);
    sb.spec.lifecycle.shutdown_time = Some(t(100));
    let p = plan(&sb, vec![], None);
    assert!(
        !p.actions
            .iter()
            .any(|a| matches!(a, SandboxAction::CreateService { .. }))
    );
    let (st, reason, msg) = triple(&p.status.conditions, "Ready").unwrap();
    assert_eq!(
        (st.as_str(), reason.as_str()),
        ("False", "InvalidConfiguration")
    );
    assert!(msg.contains("must be no more than 63 characters"), "{msg}");
    assert_eq!(
        p.error.as_ref().map(|e| e.class),
        Some(ErrorClass::Permanent)
    );
    assert_eq!(p.requeue_after, None);
}

#[test]
fn expiry_first_marks_the_sandbox_expired_and_requeues_at_once() {
    let mut sb = sandbox("box");
    sb.spec.lifecycle.shutdown_time = Some(t(5));
    sb.status = Some(SandboxStatus {
        conditions: Some(vec![
            cond("Ready", "True", "DependenciesReady", "Pod is Ready"),
            cond("PodScheduled", "True", "PodScheduled", ""),
        ]),
        ..SandboxStatus::default()
    });
    let p = plan(&sb, vec![running_pod(&sb)], None);
    assert_eq!(p.actions, vec![]);
    assert_eq!(
        triple(&p.status.conditions, "Ready"),
        s3("False", "SandboxExpired", "Sandbox has expired")
    );
    assert!(find(&p.status.conditions, "PodScheduled").is_none());
    assert_eq!(p.requeue_after, Some(Duration::ZERO));
    assert!(p.write_status);
}

fn expired(policy: Option<ShutdownPolicy>) -> Sandbox {
    let mut sb = sandbox("box");
    sb.spec.lifecycle = Lifecycle {
        shutdown_time: Some(t(5)),
        shutdown_policy: policy,
    };
    sb.spec.blueprint.volume_claim_templates = Some(vec![vct("data")]);
    sb.status = Some(SandboxStatus {
        conditions: Some(vec![
            cond("Ready", "False", "SandboxExpired", "Sandbox has expired"),
            cond(
                "Finished",
                "True",
                "PodSucceeded",
                "Pod completed successfully",
            ),
        ]),
        service: Some("box".into()),
        service_fqdn: Some("box.default.svc.cluster.local".into()),
        selector: Some(sandbox_selector("box")),
        pod_ips: Some(vec!["10.0.0.7".into()]),
        node_name: Some("node-a".into()),
    });
    sb
}

#[test]
fn expired_sandbox_with_retain_keeps_pvcs_and_the_object() {
    let sb = expired(None);
    let p = plan(&sb, vec![running_pod(&sb)], Some(owned_service(&sb)));
    let kinds: Vec<&str> = p
        .actions
        .iter()
        .map(|a| match a {
            SandboxAction::DeletePod { .. } => "pod",
            SandboxAction::DeleteService { .. } => "service",
            SandboxAction::DeleteSandbox { .. } => "sandbox",
            _ => "other",
        })
        .collect();
    assert_eq!(kinds, vec!["pod", "service"]);
    assert_eq!(p.status.service, None);
    assert_eq!(p.status.selector, None);
    assert_eq!(p.status.pod_ips, None);
    assert_eq!(p.status.node_name, None);
    assert!(
        find(&p.status.conditions, "Finished").is_some(),
        "Finished is preserved"
    );
    assert_eq!(
        triple(&p.status.conditions, "Ready").unwrap().1,
        "SandboxExpired"
    );
    assert_eq!(p.requeue_after, None);
}

#[test]
fn expired_sandbox_with_delete_deletes_children_then_itself() {
    let sb = expired(Some(ShutdownPolicy::Delete));
    let p = plan(&sb, vec![running_pod(&sb)], Some(owned_service(&sb)));
    assert!(
        matches!(p.actions.last(), Some(SandboxAction::DeleteSandbox { target }) if target.uid.as_deref() == Some("uid-box"))
    );
    assert_eq!(p.actions.len(), 3);
    assert!(!p.write_status);
}

#[test]
fn expired_sandbox_never_deletes_what_it_does_not_own() {
    let sb = expired(None);
    let mut pod = running_pod(&sb);
    pod.owner_references.clear();
    let mut svc = owned_service(&sb);
    svc.owner_references.clear();
    let p = plan(&sb, vec![pod], Some(svc));
    assert_eq!(p.actions, vec![]);
}

#[test]
fn requeue_before_expiry_is_the_remaining_time_but_at_least_two_seconds() {
    for (shutdown, want) in [(20, Duration::from_secs(10)), (11, Duration::from_secs(2))] {
        let mut sb = sandbox("box");
        sb.spec.lifecycle.shutdown_time = Some(t(shutdown));
        let p = plan(&sb, vec![running_pod(&sb)], None);
        assert_eq!(p.requeue_after, Some(want));
    }
    let sb = sandbox("box");
    assert_eq!(plan(&sb, vec![running_pod(&sb)], None).requeue_after, None);
}

#[test]
fn node_name_alone_is_not_written_until_ready() {
    let mut sb = sandbox("box");
    sb.metadata.annotations = Some(map(&[("agents.x-k8s.io/pod-name", "box")]));
    let mut pod = running_pod(&sb);
    pod.phase = "Pending".into();
    pod.pod_ips.clear();
    pod.ready = None;
    pod.node_name = None;
    pod.labels.insert("app".into(), "agent".into());
    pod.annotations = map(&[
        ("note", "hello"),
        ("agents.x-k8s.io/propagated-labels", "app"),
        ("agents.x-k8s.io/propagated-annotations", "note"),
    ]);
    let first = plan(&sb, vec![pod.clone()], None);
    sb.status = Some(first.status.clone());
    pod.node_name = Some("node-b".into());
    let second = plan(&sb, vec![pod.clone()], None);
    assert_ne!(second.status, first.status);
    assert!(!second.write_status, "nodeName-only change waits for Ready");
    assert!(should_write_status(&first.status, &{
        let mut s = second.status.clone();
        s.conditions = Some(vec![cond(
            "Ready",
            "True",
            "DependenciesReady",
            "Pod is Ready",
        )]);
        s
    }));
}

#[test]
fn deleting_sandbox_is_left_to_garbage_collection() {
    let mut sb = sandbox("box");
    sb.metadata.deletion_timestamp = Some(t(1));
    let p = plan(&sb, vec![], None);
    assert_eq!(p.actions, vec![]);
    assert!(!p.write_status);
}

#[test]
fn failed_apply_reports_reconciler_error_or_invalid_configuration() {
    let sb = sandbox("box");
    let p = plan(&sb, vec![], None);
    let now = t(10);
    let (status, err) = status_after_failure(
        &sb,
        &p,
        &ApplyFailure {
            action_index: 0,
            kind: FailureKind::Other,
            message: "etcd timeout".into(),
        },
        &now,
    );
    assert_eq!(
        triple(&status.conditions, "Ready"),
        s3("False", "ReconcilerError", "Error seen: etcd timeout")
    );
    assert_eq!(err.class, ErrorClass::Transient);
    let (status, err) = status_after_failure(
        &sb,
        &p,
        &ApplyFailure {
            action_index: 0,
            kind: FailureKind::Invalid,
            message: "Pod \"box\" is invalid".into(),
        },
        &now,
    );
    assert_eq!(
        triple(&status.conditions, "Ready"),
        s3("False", "InvalidConfiguration", "Pod \"box\" is invalid")
    );
    assert_eq!(err.class, ErrorClass::Permanent);
}

#[test]
fn plans_serialise_for_drivers() {
    let mut sb = sandbox("box");
    sb.spec.blueprint.service = Some(true);
    let p = plan(&sb, vec![], None);
    let json = serde_json::to_value(&p).unwrap();
    assert_eq!(json["actions"][0]["action"], "createPod");
    let back: SandboxPlan = serde_json::from_value(json).unwrap();
    assert_eq!(back, p);
}
