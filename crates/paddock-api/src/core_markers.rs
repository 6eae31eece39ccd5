//! The list, map and struct markers of Kubernetes core types that CRDs embed (PodSpec,
//! PersistentVolumeClaimSpec, NetworkPolicy rules, metav1 types), as controller-gen renders
//! them into upstream's CRDs. k8s-openapi's schemas do not carry them, so they are kept here as
//! data and the schema generator stays generic. Only fields that exist in the k8s-openapi
//! version this crate builds against may be named (a test generates every schema).

use crate::schema::CoreAnnotation;
use crate::schema::CoreAnnotation::{
    AtomicList, AtomicMap, AtomicStruct, Constraint, Default, MapList, Optional,
};

const CONTAINER: &[CoreAnnotation] = &[
    MapList("env", &["name"]),
    MapList("ports", &["containerPort", "protocol"]),
    MapList("volumeMounts", &["mountPath"]),
    MapList("volumeDevices", &["devicePath"]),
    AtomicList("command"),
    AtomicList("args"),
    AtomicList("envFrom"),
    AtomicList("resizePolicy"),
];

const NAMED_REFERENCE: &[CoreAnnotation] =
    &[AtomicStruct, Default("name", "\"\""), Optional("name")];

/// Markers of one schema definition (k8s-openapi's definition name).
pub(crate) fn markers(def: &str) -> &'static [CoreAnnotation] {
    let Some(name) = def.strip_prefix("io.k8s.api.core.v1.") else {
        return match def {
            "io.k8s.apimachinery.pkg.apis.meta.v1.LabelSelector" => {
                &[AtomicStruct, AtomicList("matchExpressions")]
            }
            "io.k8s.apimachinery.pkg.apis.meta.v1.LabelSelectorRequirement" => {
                &[AtomicList("values")]
            }
            "io.k8s.apimachinery.pkg.apis.meta.v1.Condition" => &[
                Constraint("message", "maxLength", "32768"),
                Constraint("observedGeneration", "minimum", "0"),
                Constraint("reason", "minLength", "1"),
                Constraint("reason", "maxLength", "1024"),
                Constraint(
                    "reason",
                    "pattern",
                    r#""^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$""#,
                ),
                Constraint("status", "enum", r#"["True", "False", "Unknown"]"#),
                Constraint("type", "maxLength", "316"),
                Constraint(
                    "type",
                    "pattern",
                    r#""^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])$""#,
                ),
            ],
            "io.k8s.api.networking.v1.NetworkPolicyIngressRule" => {
                &[AtomicList("from"), AtomicList("ports")]
            }
            "io.k8s.api.networking.v1.NetworkPolicyEgressRule" => {
                &[AtomicList("to"), AtomicList("ports")]
            }
            "io.k8s.api.networking.v1.IPBlock" => &[AtomicList("except")],
            _ => &[],
        };
    };
    match name {
        "PodSpec" => &[
            MapList("containers", &["name"]),
            MapList("initContainers", &["name"]),
            MapList("ephemeralContainers", &["name"]),
            MapList("volumes", &["name"]),
            MapList("imagePullSecrets", &["name"]),
            MapList("hostAliases", &["ip"]),
            MapList("resourceClaims", &["name"]),
            MapList("schedulingGates", &["name"]),
            MapList(
                "topologySpreadConstraints",
                &["topologyKey", "whenUnsatisfiable"],
            ),
            AtomicList("readinessGates"),
            AtomicList("tolerations"),
            AtomicMap("nodeSelector"),
        ],
        "Container" | "EphemeralContainer" => CONTAINER,
        "ResourceRequirements" => &[MapList("claims", &["name"])],
        "ContainerPort" => &[Default("protocol", "\"TCP\"")],
        "NodeSelector" => &[AtomicStruct, AtomicList("nodeSelectorTerms")],
        "NodeSelectorTerm" => &[
            AtomicStruct,
            AtomicList("matchExpressions"),
            AtomicList("matchFields"),
        ],
        "NodeSelectorRequirement" => &[AtomicList("values")],
        "NodeAffinity" => &[AtomicList(
            "preferredDuringSchedulingIgnoredDuringExecution",
        )],
        "PodAffinity" | "PodAntiAffinity" => &[
            AtomicList("requiredDuringSchedulingIgnoredDuringExecution"),
            AtomicList("preferredDuringSchedulingIgnoredDuringExecution"),
        ],
        "PodAffinityTerm" => &[
            AtomicList("namespaces"),
            AtomicList("matchLabelKeys"),
            AtomicList("mismatchLabelKeys"),
        ],
        "ExecAction" => &[AtomicList("command")],
        "HTTPGetAction" => &[AtomicList("httpHeaders")],
        "GRPCAction" => &[Default("service", "\"\"")],
        "Capabilities" => &[AtomicList("add"), AtomicList("drop")],
        "PodDNSConfig" => &[
            AtomicList("nameservers"),
            AtomicList("searches"),
            AtomicList("options"),
        ],
        "HostAlias" => &[AtomicList("hostnames")],
        "PodSecurityContext" => &[AtomicList("supplementalGroups"), AtomicList("sysctls")],
        "TopologySpreadConstraint" => &[AtomicList("matchLabelKeys")],
        "ConfigMapVolumeSource" | "ConfigMapProjection" | "SecretProjection" => &[
            AtomicStruct,
            AtomicList("items"),
            Default("name", "\"\""),
            Optional("name"),
        ],
        "SecretVolumeSource" | "DownwardAPIVolumeSource" | "DownwardAPIProjection" => {
            &[AtomicList("items")]
        }
        "ProjectedVolumeSource" => &[AtomicList("sources")],
        "CephFSVolumeSource" => &[AtomicList("monitors")],
        "RBDVolumeSource" => &[
            AtomicList("monitors"),
            Default("keyring", "\"/etc/ceph/keyring\""),
            Default("pool", "\"rbd\""),
            Default("user", "\"admin\""),
        ],
        "ISCSIVolumeSource" => &[
            AtomicList("portals"),
            Default("iscsiInterface", "\"default\""),
        ],
        "FCVolumeSource" => &[AtomicList("targetWWNs"), AtomicList("wwids")],
        "AzureDiskVolumeSource" => &[Default("fsType", "\"ext4\""), Default("readOnly", "false")],
        "ScaleIOVolumeSource" => &[
            Default("fsType", "\"xfs\""),
            Default("storageMode", "\"ThinProvisioned\""),
        ],
        "PersistentVolumeClaimSpec" => &[AtomicList("accessModes")],
        "LocalObjectReference"
        | "ConfigMapKeySelector"
        | "SecretKeySelector"
        | "ConfigMapEnvSource"
        | "SecretEnvSource" => NAMED_REFERENCE,
        "ObjectFieldSelector" | "ResourceFieldSelector" | "TypedLocalObjectReference" => {
            &[AtomicStruct]
        }
        _ => &[],
    }
}
