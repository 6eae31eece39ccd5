//! Tests for the pod-template mapping: what is honoured, what is reported, what is refused.

use k8s_openapi::api::core::v1::{
    Capabilities, ConfigMapVolumeSource, Container, ContainerPort, EmptyDirVolumeSource,
    EnvVarSource, PersistentVolumeClaimVolumeSource, PodSecurityContext, Probe,
    ResourceRequirements, SecurityContext, Volume,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use super::*;
use crate::spec::{EnvVar, VolumeSource};

fn container() -> Container {
    Container {
        name: "main".into(),
        image: Some("python:3.12".into()),
        ..Default::default()
    }
}

fn map(pod: &PodSpec, vcts: &[String]) -> Result<MappedWorkload, PodMappingError> {
    workload_from_pod(&SandboxPod {
        pod,
        volume_claim_templates: vcts,
        namespace: "default",
        sandbox_name: "sb1",
        persistent_volume_root: Path::new("/var/lib/paddock/volumes"),
    })
}

#[test]
fn first_container_command_env_workdir_ports_and_limits_are_mapped() {
    let mut c = container();
    c.command = Some(vec!["python3".into()]);
    c.args = Some(vec!["-m".into(), "http.server".into()]);
    c.env = Some(vec![k8s_openapi::api::core::v1::EnvVar {
        name: "A".into(),
        value: Some("1".into()),
        value_from: None,
    }]);
    c.working_dir = Some("/app".into());
    c.ports = Some(vec![ContainerPort {
        container_port: 8888,
        ..Default::default()
    }]);
    c.resources = Some(ResourceRequirements {
        limits: Some(
            [
                ("memory".to_owned(), Quantity("512Mi".into())),
                ("cpu".to_owned(), Quantity("500m".into())),
            ]
            .into(),
        ),
        ..Default::default()
    });
    let pod = PodSpec {
        containers: vec![c],
        runtime_class_name: Some("bwrap".into()),
        ..Default::default()
    };
    let mapped = map(&pod, &[]).unwrap();
    let s = &mapped.spec;
    assert_eq!(s.runtime_class, RuntimeClass::Bwrap);
    assert_eq!(s.command.as_deref(), Some(&["python3".to_owned()][..]));
    assert_eq!(s.args.as_ref().unwrap().len(), 2);
    assert_eq!(
        s.env,
        vec![EnvVar {
            name: "A".into(),
            value: "1".into()
        }]
    );
    assert_eq!(s.working_dir.as_deref(), Some("/app"));
    assert_eq!(s.ports[0].container_port, 8888);
    assert_eq!(s.ports[0].protocol, "TCP");
    assert_eq!(s.limits.memory_bytes, Some(512 * 1024 * 1024));
    assert_eq!(s.limits.cpu_millis, Some(500));
    assert_eq!(s.hostname, "sb1");
    assert!(mapped.unhonoured.is_empty(), "{:?}", mapped.unhonoured);
}

#[test]
fn volume_claim_templates_and_empty_dirs_become_host_directories() {
    let mut c = container();
    c.volume_mounts = Some(vec![
        k8s_openapi::api::core::v1::VolumeMount {
            name: "data".into(),
            mount_path: "/data".into(),
            ..Default::default()
        },
        k8s_openapi::api::core::v1::VolumeMount {
            name: "scratch".into(),
            mount_path: "/scratch".into(),
            sub_path: Some("a/b".into()),
            ..Default::default()
        },
        k8s_openapi::api::core::v1::VolumeMount {
            name: "shm".into(),
            mount_path: "/dev/shm".into(),
            ..Default::default()
        },
        k8s_openapi::api::core::v1::VolumeMount {
            name: "old".into(),
            mount_path: "/old".into(),
            read_only: Some(true),
            ..Default::default()
        },
    ]);
    let pod = PodSpec {
        containers: vec![c],
        volumes: Some(vec![
            Volume {
                name: "data".into(),
                config_map: Some(ConfigMapVolumeSource::default()),
                ..Default::default()
            },
            Volume {
                name: "scratch".into(),
                empty_dir: Some(EmptyDirVolumeSource::default()),
                ..Default::default()
            },
            Volume {
                name: "shm".into(),
                empty_dir: Some(EmptyDirVolumeSource {
                    medium: Some("Memory".into()),
                    size_limit: Some(Quantity("64Mi".into())),
                }),
                ..Default::default()
            },
            Volume {
                name: "old".into(),
                persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                    claim_name: "legacy".into(),
                    read_only: None,
                }),
                ..Default::default()
            },
        ]),
        ..Default::default()
    };
    let mapped = map(&pod, &["data".to_owned()]).unwrap();
    let m = &mapped.spec.mounts;
    // The claim template replaces the same-named configMap volume (upstream's rule).
    assert_eq!(
        m[0].source,
        VolumeSource::HostDir {
            path: "/var/lib/paddock/volumes/default/data-sb1".into()
        }
    );
    assert_eq!(m[1].source, VolumeSource::EmptyDir);
    assert_eq!(m[1].sub_path.as_deref(), Some("a/b"));
    assert_eq!(
        m[2].source,
        VolumeSource::Memory {
            size_limit: Some(64 << 20)
        }
    );
    assert_eq!(
        m[3].source,
        VolumeSource::HostDir {
            path: "/var/lib/paddock/volumes/default/legacy".into()
        }
    );
    assert!(m[3].read_only);
    assert!(mapped.unhonoured.is_empty(), "{:?}", mapped.unhonoured);
}

#[test]
fn unsupported_volume_types_are_reported_with_the_mount_they_skip() {
    let mut c = container();
    c.volume_mounts = Some(vec![k8s_openapi::api::core::v1::VolumeMount {
        name: "cfg".into(),
        mount_path: "/cfg".into(),
        ..Default::default()
    }]);
    let pod = PodSpec {
        containers: vec![c],
        volumes: Some(vec![Volume {
            name: "cfg".into(),
            config_map: Some(ConfigMapVolumeSource::default()),
            ..Default::default()
        }]),
        ..Default::default()
    };
    let mapped = map(&pod, &[]).unwrap();
    assert!(mapped.spec.mounts.is_empty());
    let paths: Vec<_> = mapped.unhonoured.iter().map(|u| u.path.as_str()).collect();
    assert_eq!(
        paths,
        vec!["volumes[0].configMap", "containers[0].volumeMounts[0]"]
    );
    assert!(mapped.unhonoured[1].reason.contains("/cfg"));
}

#[test]
fn fields_that_cannot_be_honoured_are_listed_with_paths_and_reasons() {
    let mut c = container();
    c.liveness_probe = Some(Probe {
        period_seconds: Some(5),
        ..Default::default()
    });
    c.env = Some(vec![k8s_openapi::api::core::v1::EnvVar {
        name: "POD".into(),
        value: None,
        value_from: Some(EnvVarSource::default()),
    }]);
    c.security_context = Some(SecurityContext {
        privileged: Some(true),
        capabilities: Some(Capabilities {
            add: Some(vec!["NET_ADMIN".into()]),
            drop: Some(vec!["ALL".into()]),
        }),
        ..Default::default()
    });
    c.resources = Some(ResourceRequirements {
        limits: Some([("nvidia.com/gpu".to_owned(), Quantity("1".into()))].into()),
        requests: Some([("cpu".to_owned(), Quantity("1".into()))].into()),
        ..Default::default()
    });
    let pod = PodSpec {
        containers: vec![
            c,
            Container {
                name: "sidecar".into(),
                ..Default::default()
            },
        ],
        host_network: Some(true),
        host_pid: Some(false),
        node_selector: Some([("a".to_owned(), "b".to_owned())].into()),
        ..Default::default()
    };
    let mapped = map(&pod, &[]).unwrap();
    let paths: Vec<_> = mapped.unhonoured.iter().map(|u| u.path.as_str()).collect();
    for expected in [
        "hostNetwork",
        "nodeSelector",
        "containers[1]",
        "containers[0].livenessProbe",
        "containers[0].env[0].valueFrom",
        "containers[0].resources.limits.nvidia.com/gpu",
        "containers[0].resources.requests",
        "containers[0].securityContext.privileged",
        "containers[0].securityContext.capabilities.add",
    ] {
        assert!(paths.contains(&expected), "missing {expected} in {paths:?}");
    }
    assert!(
        !paths.contains(&"hostPID"),
        "a false flag is a no-op: {paths:?}"
    );
    assert!(mapped.unhonoured.iter().all(|u| !u.reason.is_empty()));
    assert!(mapped.spec.env.is_empty());
}

#[test]
fn run_as_user_container_level_overrides_pod_level() {
    let mut c = container();
    c.security_context = Some(SecurityContext {
        run_as_user: Some(1000),
        ..Default::default()
    });
    let pod = PodSpec {
        containers: vec![c],
        security_context: Some(PodSecurityContext {
            run_as_user: Some(5),
            run_as_group: Some(6),
            ..Default::default()
        }),
        ..Default::default()
    };
    let s = map(&pod, &[]).unwrap().spec;
    assert_eq!((s.run_as_user, s.run_as_group), (Some(1000), Some(6)));
}

#[test]
fn run_as_non_root_with_uid_zero_is_rejected() {
    let mut c = container();
    c.security_context = Some(SecurityContext {
        run_as_user: Some(0),
        run_as_non_root: Some(true),
        ..Default::default()
    });
    let pod = PodSpec {
        containers: vec![c],
        ..Default::default()
    };
    assert!(matches!(
        map(&pod, &[]),
        Err(PodMappingError::InvalidField { .. })
    ));
}

#[test]
fn templates_that_cannot_run_are_errors_naming_the_field() {
    let none = PodSpec::default();
    assert_eq!(map(&none, &[]), Err(PodMappingError::NoContainers));
    let no_image = PodSpec {
        containers: vec![Container::default()],
        ..Default::default()
    };
    assert_eq!(map(&no_image, &[]), Err(PodMappingError::MissingImage));
    let kata = PodSpec {
        containers: vec![container()],
        runtime_class_name: Some("kata".into()),
        ..Default::default()
    };
    assert!(map(&kata, &[]).unwrap_err().to_string().contains("kata"));
    let mut c = container();
    c.volume_mounts = Some(vec![k8s_openapi::api::core::v1::VolumeMount {
        name: "ghost".into(),
        mount_path: "/g".into(),
        ..Default::default()
    }]);
    let err = map(
        &PodSpec {
            containers: vec![c],
            ..Default::default()
        },
        &[],
    )
    .unwrap_err();
    assert!(
        err.to_string()
            .contains("containers[0].volumeMounts[0].name"),
        "{err}"
    );
    let mut c = container();
    c.volume_mounts = Some(vec![k8s_openapi::api::core::v1::VolumeMount {
        name: "v".into(),
        mount_path: "/v".into(),
        sub_path: Some("../../etc".into()),
        ..Default::default()
    }]);
    let pod = PodSpec {
        containers: vec![c],
        volumes: Some(vec![Volume {
            name: "v".into(),
            empty_dir: Some(Default::default()),
            ..Default::default()
        }]),
        ..Default::default()
    };
    assert!(map(&pod, &[]).unwrap_err().to_string().contains("subPath"));
}

#[test]
fn claim_names_cannot_escape_the_volume_root() {
    let pod = PodSpec {
        containers: vec![container()],
        volumes: Some(vec![Volume {
            name: "v".into(),
            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                claim_name: "../x".into(),
                read_only: None,
            }),
            ..Default::default()
        }]),
        ..Default::default()
    };
    assert!(matches!(
        map(&pod, &[]),
        Err(PodMappingError::InvalidField { .. })
    ));
}

#[test]
fn quantities_parse_binary_decimal_milli_and_exponent_forms() {
    let q = |s| parse_quantity(s, "x").unwrap();
    assert_eq!(q("128Mi"), 134_217_728.0);
    assert_eq!(q("1G"), 1e9);
    assert_eq!(q("500m"), 0.5);
    assert_eq!(q("2"), 2.0);
    assert_eq!(q("1.5Gi"), 1.5 * 1024.0 * 1024.0 * 1024.0);
    assert_eq!(q("1e3"), 1000.0);
    for bad in ["", "-1", "1Xi", "abc", "1e99", "."] {
        assert!(parse_quantity(bad, "x").is_err(), "{bad}");
    }
}

#[test]
fn host_path_volumes_mount_existing_directories_only() {
    use k8s_openapi::api::core::v1::{HostPathVolumeSource, VolumeMount as K8sMount};
    let dir = std::env::temp_dir();
    let mut pod = PodSpec {
        containers: vec![Container {
            volume_mounts: Some(vec![K8sMount {
                name: "data".into(),
                mount_path: "/data".into(),
                read_only: Some(true),
                ..K8sMount::default()
            }]),
            ..container()
        }],
        volumes: Some(vec![Volume {
            name: "data".into(),
            host_path: Some(HostPathVolumeSource {
                path: dir.display().to_string(),
                type_: None,
            }),
            ..Volume::default()
        }]),
        ..PodSpec::default()
    };
    let root = Path::new("/var/lib/paddock/volumes");
    let input = |pod: &PodSpec| {
        workload_from_pod(&SandboxPod {
            pod,
            volume_claim_templates: &[],
            namespace: "default",
            sandbox_name: "s",
            persistent_volume_root: root,
        })
        .map(|m| (m.spec, m.unhonoured))
    };
    let (spec, unhonoured) = input(&pod).unwrap();
    assert!(unhonoured.is_empty(), "{unhonoured:?}");
    assert_eq!(
        spec.mounts[0].source,
        VolumeSource::HostDir { path: dir.clone() }
    );
    assert!(spec.mounts[0].read_only);
    pod.volumes.as_mut().unwrap()[0]
        .host_path
        .as_mut()
        .unwrap()
        .path = "/no/such/dir".into();
    let err = input(&pod).unwrap_err().to_string();
    assert!(
        err.contains("/no/such/dir is not an existing directory"),
        "{err}"
    );
}
