//! Fixtures shared by the scenario tests: objects as plain values.
#![allow(dead_code)]

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, ContainerPort, PodSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;
use paddock_api::conditions;
use paddock_api::names::name_hash;
use paddock_api::v1beta1::*;
use paddock_plan::ownership::controller_ref;
use paddock_plan::pool::{PoolConfig, TemplateFingerprint, build_member};
use paddock_plan::sandbox::{PodConditionObservation, PodObservation, sandbox_owner_ref};

pub const NS: &str = "default";

pub fn t(secs: i64) -> Time {
    Time(Timestamp::from_second(1_700_000_000 + secs).expect("valid time"))
}

pub fn meta(name: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_owned()),
        namespace: Some(NS.to_owned()),
        uid: Some(format!("uid-{name}")),
        generation: Some(3),
        resource_version: Some("100".to_owned()),
        creation_timestamp: Some(t(0)),
        ..ObjectMeta::default()
    }
}

pub fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

pub fn pod_spec() -> PodSpec {
    PodSpec {
        containers: vec![Container {
            name: "main".into(),
            image: Some("python:3".into()),
            ports: Some(vec![ContainerPort {
                container_port: 8888,
                ..ContainerPort::default()
            }]),
            ..Container::default()
        }],
        ..PodSpec::default()
    }
}

pub fn blueprint() -> SandboxBlueprint {
    SandboxBlueprint {
        pod_template: PodTemplate {
            spec: pod_spec(),
            metadata: Some(PodMetadata {
                labels: Some(map(&[("app", "agent")])),
                annotations: Some(map(&[("note", "hello")])),
            }),
        },
        volume_claim_templates: None,
        service: None,
    }
}

pub fn template(name: &str) -> SandboxTemplate {
    SandboxTemplate {
        metadata: meta(name),
        spec: SandboxTemplateSpec {
            blueprint: blueprint(),
            ..SandboxTemplateSpec::default()
        },
        status: None,
    }
}

pub fn pool(name: &str, template: &str, replicas: Option<i32>) -> SandboxWarmPool {
    SandboxWarmPool {
        metadata: meta(name),
        spec: SandboxWarmPoolSpec {
            replicas,
            sandbox_template_ref: NameRef {
                name: template.to_owned(),
            },
            update_strategy: None,
        },
        status: None,
    }
}

pub fn claim(name: &str, pool: &str) -> SandboxClaim {
    SandboxClaim {
        metadata: meta(name),
        spec: SandboxClaimSpec {
            warm_pool_ref: NameRef {
                name: pool.to_owned(),
            },
            ..SandboxClaimSpec::default()
        },
        status: None,
    }
}

pub fn sandbox(name: &str) -> Sandbox {
    Sandbox {
        metadata: meta(name),
        spec: SandboxSpec {
            blueprint: blueprint(),
            ..SandboxSpec::default()
        },
        status: None,
    }
}

pub fn cond(type_: &str, status: &str, reason: &str, msg: &str) -> Condition {
    conditions::new(type_, status, reason, msg, Some(1), t(0))
}

pub fn pod_cond(status: &str, reason: Option<&str>) -> PodConditionObservation {
    PodConditionObservation {
        status: status.to_owned(),
        reason: reason.map(str::to_owned),
        message: None,
    }
}

/// A running, ready pod with an IP, owned by `sb` and carrying its hash label.
pub fn running_pod(sb: &Sandbox) -> PodObservation {
    let name = sb.metadata.name.clone().unwrap_or_default();
    PodObservation {
        name: name.clone(),
        uid: Some(format!("pod-uid-{name}")),
        owner_references: vec![sandbox_owner_ref(sb)],
        labels: map(&[("agents.x-k8s.io/sandbox-name-hash", &name_hash(&name))]),
        annotations: BTreeMap::new(),
        phase: "Running".into(),
        ready: Some(pod_cond("True", None)),
        scheduled: Some(pod_cond("True", None)),
        pod_ips: vec!["10.0.0.7".into()],
        node_name: Some("node-a".into()),
        terminating: false,
    }
}

/// A warm member of `pool` made from `template`, named `name`, created at `created`.
pub fn member(
    pool: &SandboxWarmPool,
    template: &SandboxTemplate,
    name: &str,
    ready: bool,
    node: Option<&str>,
    created: i64,
) -> Sandbox {
    let fp = TemplateFingerprint::new(template);
    let mut sb = build_member(pool, template, &fp, &PoolConfig::default());
    sb.metadata.name = Some(name.to_owned());
    sb.metadata.generate_name = None;
    sb.metadata.uid = Some(format!("uid-{name}"));
    sb.metadata.resource_version = Some(format!("rv-{name}"));
    sb.metadata.creation_timestamp = Some(t(created));
    sb.metadata.generation = Some(1);
    let ready_cond = if ready {
        cond("Ready", "True", "DependenciesReady", "Pod is Ready")
    } else {
        cond(
            "Ready",
            "False",
            "DependenciesNotReady",
            "Pod is Running but not Ready",
        )
    };
    sb.status = Some(SandboxStatus {
        conditions: Some(vec![ready_cond]),
        pod_ips: Some(vec![format!("10.1.0.{}", created.rem_euclid(250))]),
        node_name: node.map(str::to_owned),
        ..SandboxStatus::default()
    });
    sb
}

/// A Sandbox controlled by `claim` (as a cold start or a finished adoption leaves it).
pub fn claimed(name: &str, claim: &SandboxClaim) -> Sandbox {
    let mut sb = sandbox(name);
    sb.metadata.owner_references = Some(vec![controller_ref(
        SandboxClaim::API_VERSION,
        "SandboxClaim",
        claim.metadata.name.as_deref().unwrap_or_default(),
        claim.metadata.uid.as_deref().unwrap_or_default(),
    )]);
    sb
}

pub fn find<'a>(conds: &'a Option<Vec<Condition>>, type_: &str) -> Option<&'a Condition> {
    conds.as_deref().and_then(|c| conditions::find(c, type_))
}

/// `(status, reason, message)` of a condition.
pub fn triple(conds: &Option<Vec<Condition>>, type_: &str) -> Option<(String, String, String)> {
    find(conds, type_).map(|c| (c.status.clone(), c.reason.clone(), c.message.clone()))
}

pub fn s3(a: &str, b: &str, c: &str) -> Option<(String, String, String)> {
    Some((a.to_owned(), b.to_owned(), c.to_owned()))
}
