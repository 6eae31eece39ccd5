//! Proptest strategies for valid objects of every kind and version, for property tests here and
//! in the planner and store crates (feature `testing`).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Container, PersistentVolumeClaimSpec, PodSpec, VolumeResourceRequirements,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, ObjectMeta, Time};
use proptest::collection::{btree_map, vec};
use proptest::option;
use proptest::prelude::*;

use crate::common::*;
use crate::{v1alpha1, v1beta1};

/// A DNS-1123 label.
pub fn arb_name() -> impl Strategy<Value = String> {
    "[a-z][a-z0-9]{0,6}(-[a-z0-9]{1,5}){0,2}"
}

fn arb_labels() -> impl Strategy<Value = Option<BTreeMap<String, String>>> {
    option::of(btree_map(
        "(app|team|example\\.com/tier)",
        "[a-z0-9]{1,6}",
        1..3,
    ))
}

/// Object metadata with user labels and annotations (never the reserved state annotations).
pub fn arb_metadata() -> impl Strategy<Value = ObjectMeta> {
    (
        arb_name(),
        option::of("(default|team-a)"),
        arb_labels(),
        arb_labels(),
        option::of(1i64..10),
    )
        .prop_map(
            |(name, namespace, labels, annotations, generation)| ObjectMeta {
                name: Some(name),
                namespace,
                labels,
                annotations,
                generation,
                ..ObjectMeta::default()
            },
        )
}

fn arb_time() -> impl Strategy<Value = Time> {
    (1_600_000_000i64..1_900_000_000)
        .prop_map(|s| Time(jiff::Timestamp::from_second(s).unwrap_or(jiff::Timestamp::UNIX_EPOCH)))
}

fn arb_pod_template() -> impl Strategy<Value = PodTemplate> {
    (
        arb_name(),
        "(python|busybox|registry\\.local/app):(3|latest)",
        option::of(arb_labels()),
    )
        .prop_map(|(name, image, labels)| PodTemplate {
            spec: PodSpec {
                containers: vec![Container {
                    name,
                    image: Some(image),
                    ..Container::default()
                }],
                ..PodSpec::default()
            },
            metadata: labels.map(|labels| PodMetadata {
                labels,
                annotations: None,
            }),
        })
}

fn arb_vcts() -> impl Strategy<Value = Option<Vec<PersistentVolumeClaimTemplate>>> {
    option::of(vec((arb_name(), "[1-9]Gi"), 1..3).prop_map(|items| {
        items
            .into_iter()
            .map(|(name, size)| PersistentVolumeClaimTemplate {
                metadata: Some(EmbeddedObjectMetadata {
                    name: Some(name),
                    ..EmbeddedObjectMetadata::default()
                }),
                spec: PersistentVolumeClaimSpec {
                    access_modes: Some(vec!["ReadWriteOnce".to_owned()]),
                    resources: Some(VolumeResourceRequirements {
                        requests: Some(BTreeMap::from([("storage".to_owned(), Quantity(size))])),
                        ..VolumeResourceRequirements::default()
                    }),
                    ..PersistentVolumeClaimSpec::default()
                },
            })
            .collect()
    }))
}

/// A sandbox blueprint.
pub fn arb_blueprint() -> impl Strategy<Value = SandboxBlueprint> {
    (arb_pod_template(), arb_vcts(), option::of(any::<bool>())).prop_map(
        |(pod_template, volume_claim_templates, service)| SandboxBlueprint {
            pod_template,
            volume_claim_templates,
            service,
        },
    )
}

fn arb_lifecycle() -> impl Strategy<Value = Lifecycle> {
    (
        option::of(arb_time()),
        option::of(prop_oneof![
            Just(ShutdownPolicy::Delete),
            Just(ShutdownPolicy::Retain)
        ]),
    )
        .prop_map(|(shutdown_time, shutdown_policy)| Lifecycle {
            shutdown_time,
            shutdown_policy,
        })
}

fn arb_conditions() -> impl Strategy<Value = Option<Vec<Condition>>> {
    option::of(vec(
        (
            "(Ready|Suspended|Finished)",
            "(True|False|Unknown)",
            "(DependenciesReady|SandboxSuspended|PodSucceeded)",
            "[a-z ]{0,12}",
            option::of(0i64..5),
            arb_time(),
        )
            .prop_map(
                |(type_, status, reason, message, observed_generation, last_transition_time)| {
                    Condition {
                        type_,
                        status,
                        reason,
                        message,
                        observed_generation,
                        last_transition_time,
                    }
                },
            ),
        0..3,
    ))
}

fn arb_ips() -> impl Strategy<Value = Option<Vec<String>>> {
    option::of(vec("10\\.0\\.[0-9]{1,2}\\.[0-9]{1,2}", 1..3))
}

/// A v1alpha1 Sandbox.
pub fn arb_sandbox_v1alpha1() -> impl Strategy<Value = v1alpha1::Sandbox> {
    let status = option::of(
        (
            option::of(arb_name()),
            option::of(0i32..2),
            arb_conditions(),
            option::of(arb_name()),
            arb_ips(),
        )
            .prop_map(|(service, replicas, conditions, selector, pod_ips)| {
                v1alpha1::SandboxStatus {
                    service_fqdn: service
                        .as_ref()
                        .map(|s| format!("{s}.default.svc.cluster.local")),
                    service,
                    replicas,
                    conditions,
                    selector,
                    pod_ips,
                }
            }),
    );
    (
        arb_metadata(),
        arb_blueprint(),
        arb_lifecycle(),
        option::of(0i32..=1),
        status,
    )
        .prop_map(
            |(metadata, blueprint, lifecycle, replicas, status)| v1alpha1::Sandbox {
                metadata,
                spec: v1alpha1::SandboxSpec {
                    blueprint,
                    lifecycle,
                    replicas,
                },
                status,
            },
        )
}

/// A v1beta1 Sandbox.
pub fn arb_sandbox_v1beta1() -> impl Strategy<Value = v1beta1::Sandbox> {
    let mode = option::of(prop_oneof![
        Just(v1beta1::OperatingMode::Running),
        Just(v1beta1::OperatingMode::Suspended)
    ]);
    let status = option::of(
        (
            option::of(arb_name()),
            arb_conditions(),
            option::of(arb_name()),
            arb_ips(),
            option::of(arb_name()),
        )
            .prop_map(|(service, conditions, selector, pod_ips, node_name)| {
                v1beta1::SandboxStatus {
                    service_fqdn: service
                        .as_ref()
                        .map(|s| format!("{s}.default.svc.cluster.local")),
                    service,
                    conditions,
                    selector,
                    pod_ips,
                    node_name,
                }
            }),
    );
    (
        arb_metadata(),
        arb_blueprint(),
        arb_lifecycle(),
        mode,
        status,
    )
        .prop_map(|(metadata, blueprint, lifecycle, operating_mode, status)| {
            v1beta1::Sandbox {
                metadata,
                spec: v1beta1::SandboxSpec {
                    blueprint,
                    lifecycle,
                    operating_mode,
                },
                status,
            }
        })
}

fn arb_env_policy() -> impl Strategy<Value = Option<EnvVarsInjectionPolicy>> {
    option::of(prop_oneof![
        Just(EnvVarsInjectionPolicy::Allowed),
        Just(EnvVarsInjectionPolicy::Overrides),
        Just(EnvVarsInjectionPolicy::Disallowed)
    ])
}

fn arb_network() -> impl Strategy<
    Value = (
        Option<SandboxNetworkPolicy>,
        Option<NetworkPolicyManagement>,
    ),
> {
    (
        option::of(prop_oneof![
            Just(SandboxNetworkPolicy {
                ingress: Some(vec![]),
                egress: None
            }),
            Just(SandboxNetworkPolicy {
                ingress: None,
                egress: Some(vec![])
            }),
        ]),
        option::of(prop_oneof![
            Just(NetworkPolicyManagement::Managed),
            Just(NetworkPolicyManagement::Unmanaged)
        ]),
    )
}

/// A v1alpha1 SandboxTemplate.
pub fn arb_template_v1alpha1() -> impl Strategy<Value = v1alpha1::SandboxTemplate> {
    (
        arb_metadata(),
        arb_blueprint(),
        arb_network(),
        arb_env_policy(),
    )
        .prop_map(
            |(
                metadata,
                blueprint,
                (network_policy, network_policy_management),
                env_vars_injection_policy,
            )| v1alpha1::SandboxTemplate {
                metadata,
                spec: v1alpha1::SandboxTemplateSpec {
                    blueprint,
                    network_policy,
                    network_policy_management,
                    env_vars_injection_policy,
                },
                status: None,
            },
        )
}

/// A v1beta1 SandboxTemplate.
pub fn arb_template_v1beta1() -> impl Strategy<Value = v1beta1::SandboxTemplate> {
    let vct_policy = option::of(prop_oneof![
        Just(VolumeClaimTemplatesPolicy::Disallowed),
        Just(VolumeClaimTemplatesPolicy::Allowed),
        Just(VolumeClaimTemplatesPolicy::Overrides)
    ]);
    (
        arb_metadata(),
        arb_blueprint(),
        arb_network(),
        arb_env_policy(),
        vct_policy,
    )
        .prop_map(
            |(
                metadata,
                blueprint,
                (network_policy, network_policy_management),
                env_vars_injection_policy,
                volume_claim_templates_policy,
            )| {
                v1beta1::SandboxTemplate {
                    metadata,
                    spec: v1beta1::SandboxTemplateSpec {
                        blueprint,
                        network_policy,
                        network_policy_management,
                        env_vars_injection_policy,
                        volume_claim_templates_policy,
                    },
                    status: None,
                }
            },
        )
}

fn arb_claim_lifecycle() -> impl Strategy<Value = Option<ClaimLifecycle>> {
    option::of(
        (
            option::of(arb_time()),
            option::of(0i32..3600),
            option::of(prop_oneof![
                Just(ClaimShutdownPolicy::Delete),
                Just(ClaimShutdownPolicy::DeleteForeground),
                Just(ClaimShutdownPolicy::Retain)
            ]),
        )
            .prop_map(
                |(shutdown_time, ttl_seconds_after_finished, shutdown_policy)| ClaimLifecycle {
                    shutdown_time,
                    ttl_seconds_after_finished,
                    shutdown_policy,
                },
            ),
    )
}

fn arb_claim_env() -> impl Strategy<Value = Option<Vec<ClaimEnvVar>>> {
    option::of(
        vec(
            ("[A-Z][A-Z_]{0,6}", "[a-z0-9]{0,6}", option::of(arb_name())),
            1..3,
        )
        .prop_map(|items| {
            items
                .into_iter()
                .map(|(name, value, container_name)| ClaimEnvVar {
                    name,
                    value,
                    container_name,
                })
                .collect()
        }),
    )
}

/// A claim status whose bound Sandbox is unbound, named like the claim, or a pool member.
fn arb_claim_status(claim: String) -> impl Strategy<Value = Option<SandboxClaimStatus>> {
    let sandbox_name = prop_oneof![
        Just(None),
        Just(Some(claim)),
        (arb_name(), "[a-z0-9]{5}").prop_map(|(pool, suffix)| Some(format!("{pool}-{suffix}"))),
        "[a-z]{1,8}".prop_map(Some),
    ];
    option::of((arb_conditions(), sandbox_name, arb_ips()).prop_map(
        |(conditions, name, pod_ips)| SandboxClaimStatus {
            conditions,
            sandbox: Some(ClaimSandboxStatus { name, pod_ips }),
        },
    ))
}

/// A v1alpha1 SandboxClaim: every `warmpool` form (unset, `none`, `default`, empty, a pool name,
/// a `shadow-pool-` name).
pub fn arb_claim_v1alpha1() -> impl Strategy<Value = v1alpha1::SandboxClaim> {
    let warmpool = prop_oneof![
        Just(None),
        Just(Some("none".to_owned())),
        Just(Some("default".to_owned())),
        Just(Some(String::new())),
        arb_name().prop_map(Some),
        arb_name().prop_map(|n| Some(format!("shadow-pool-{n}"))),
    ];
    (
        arb_metadata(),
        arb_name(),
        warmpool,
        arb_claim_lifecycle(),
        arb_claim_env(),
        option::of(arb_labels()),
    )
        .prop_flat_map(
            |(metadata, template, warmpool, lifecycle, env, pod_labels)| {
                let claim_name = metadata.name.clone().unwrap_or_default();
                arb_claim_status(claim_name).prop_map(move |status| v1alpha1::SandboxClaim {
                    metadata: metadata.clone(),
                    spec: v1alpha1::SandboxClaimSpec {
                        sandbox_template_ref: NameRef {
                            name: template.clone(),
                        },
                        warmpool: warmpool.clone(),
                        lifecycle: lifecycle.clone(),
                        additional_pod_metadata: pod_labels.clone().map(|labels| PodMetadata {
                            labels,
                            annotations: None,
                        }),
                        env: env.clone(),
                    },
                    status,
                })
            },
        )
}

/// A v1beta1 SandboxClaim, with pools named freely or `shadow-pool-<template>`.
pub fn arb_claim_v1beta1() -> impl Strategy<Value = v1beta1::SandboxClaim> {
    let pool = prop_oneof![
        arb_name(),
        arb_name().prop_map(|n| format!("shadow-pool-{n}"))
    ];
    (
        arb_metadata(),
        pool,
        arb_claim_lifecycle(),
        arb_claim_env(),
        arb_vcts(),
    )
        .prop_flat_map(|(metadata, pool, lifecycle, env, volume_claim_templates)| {
            let claim_name = metadata.name.clone().unwrap_or_default();
            arb_claim_status(claim_name).prop_map(move |status| v1beta1::SandboxClaim {
                metadata: metadata.clone(),
                spec: v1beta1::SandboxClaimSpec {
                    warm_pool_ref: NameRef { name: pool.clone() },
                    lifecycle: lifecycle.clone(),
                    additional_pod_metadata: None,
                    env: env.clone(),
                    volume_claim_templates: volume_claim_templates.clone(),
                },
                status,
            })
        })
}

fn arb_update_strategy() -> impl Strategy<Value = Option<WarmPoolUpdateStrategy>> {
    option::of(option::of(prop_oneof![
        Just(WarmPoolUpdateStrategyType::Recreate),
        Just(WarmPoolUpdateStrategyType::OnReplenish)
    ]))
    .prop_map(|o| o.map(|type_| WarmPoolUpdateStrategy { type_ }))
}

/// A v1alpha1 SandboxWarmPool.
pub fn arb_warm_pool_v1alpha1() -> impl Strategy<Value = v1alpha1::SandboxWarmPool> {
    let status = option::of(
        (
            option::of(0i32..9),
            option::of(0i32..9),
            option::of(arb_name()),
        )
            .prop_map(|(replicas, ready_replicas, selector)| {
                v1alpha1::SandboxWarmPoolStatus {
                    replicas,
                    ready_replicas,
                    selector,
                }
            }),
    );
    (
        arb_metadata(),
        0i32..20,
        arb_name(),
        arb_update_strategy(),
        status,
    )
        .prop_map(|(metadata, replicas, template, update_strategy, status)| {
            v1alpha1::SandboxWarmPool {
                metadata,
                spec: v1alpha1::SandboxWarmPoolSpec {
                    replicas,
                    sandbox_template_ref: NameRef { name: template },
                    update_strategy,
                },
                status,
            }
        })
}

/// A v1beta1 SandboxWarmPool.
pub fn arb_warm_pool_v1beta1() -> impl Strategy<Value = v1beta1::SandboxWarmPool> {
    let status = option::of(
        (
            option::of(0i32..9),
            option::of(0i32..9),
            option::of(arb_name()),
            option::of(0i64..9),
        )
            .prop_map(
                |(replicas, ready_replicas, selector, observed_generation)| {
                    v1beta1::SandboxWarmPoolStatus {
                        replicas,
                        ready_replicas,
                        selector,
                        observed_generation,
                    }
                },
            ),
    );
    (
        arb_metadata(),
        option::of(0i32..20),
        arb_name(),
        arb_update_strategy(),
        status,
    )
        .prop_map(|(metadata, replicas, template, update_strategy, status)| {
            v1beta1::SandboxWarmPool {
                metadata,
                spec: v1beta1::SandboxWarmPoolSpec {
                    replicas,
                    sandbox_template_ref: NameRef { name: template },
                    update_strategy,
                },
                status,
            }
        })
}
