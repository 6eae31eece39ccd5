//! The Sandbox's optional headless Service (contract §2.2 step 4, Service): ports derived from
//! the containers and sidecars, the object to create, and the edits to adopt or repair one.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::{Container, Service, ServicePort, ServiceSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use paddock_api::names::SANDBOX_NAME_HASH;
use paddock_api::v1beta1::Sandbox;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::pod::sandbox_owner_ref;

/// The Service ports of a Sandbox: every container port plus those of sidecars (init containers
/// with `restartPolicy: Always`), deduplicated by (port, protocol), protocol defaulting to TCP;
/// the first explicit name wins; unnamed ports are `p-<port>-<protocol>` (with `-2`, `-3`, ...
/// on collision); sorted by port then protocol; `targetPort` = port.
pub fn derive_ports(sandbox: &Sandbox) -> Vec<ServicePort> {
    let spec = &sandbox.spec.blueprint.pod_template.spec;
    let mut names: BTreeMap<(i32, String), String> = BTreeMap::new();
    let mut reserved: BTreeSet<String> = BTreeSet::new();
    let mut add = |c: &Container| {
        for p in c.ports.as_deref().unwrap_or_default() {
            if p.container_port == 0 {
                continue;
            }
            let protocol = p
                .protocol
                .clone()
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| "TCP".to_owned());
            let entry = names.entry((p.container_port, protocol)).or_default();
            let Some(name) = p.name.as_deref().filter(|n| !n.is_empty()) else {
                continue;
            };
            if !entry.is_empty() || reserved.contains(name) {
                continue;
            }
            *entry = name.to_owned();
            reserved.insert(name.to_owned());
        }
    };
    for c in &spec.containers {
        add(c);
    }
    for c in spec.init_containers.as_deref().unwrap_or_default() {
        if c.restart_policy.as_deref() == Some("Always") {
            add(c);
        }
    }
    let mut ports = Vec::with_capacity(names.len());
    for ((port, protocol), explicit) in names {
        let name = if explicit.is_empty() {
            generated_port_name(port, &protocol, &reserved)
        } else {
            explicit
        };
        reserved.insert(name.clone());
        ports.push(ServicePort {
            name: Some(name),
            protocol: Some(protocol),
            port,
            target_port: Some(IntOrString::Int(port)),
            ..ServicePort::default()
        });
    }
    ports
}

fn generated_port_name(port: i32, protocol: &str, reserved: &BTreeSet<String>) -> String {
    let base = format!("p-{port}-{}", protocol.to_lowercase());
    if !reserved.contains(&base) {
        return base;
    }
    (2u32..)
        .map(|i| format!("{base}-{i}"))
        .find(|n| !reserved.contains(n))
        .unwrap_or(base)
}

/// Whether two port lists agree on name, protocol, port and target port, in order.
pub fn ports_equal(a: &[ServicePort], b: &[ServicePort]) -> bool {
    a.len() == b.len()
        && a.iter().zip(b).all(|(x, y)| {
            x.name == y.name
                && x.protocol == y.protocol
                && x.port == y.port
                && x.target_port == y.target_port
        })
}

/// `{sandbox-name-hash: <hash>}`: the Service's label and selector.
pub fn hash_selector(hash: &str) -> BTreeMap<String, String> {
    BTreeMap::from([(SANDBOX_NAME_HASH.to_owned(), hash.to_owned())])
}

/// The headless Service to create for a Sandbox.
pub fn desired_service(sandbox: &Sandbox, hash: &str, ports: Vec<ServicePort>) -> Service {
    Service {
        metadata: ObjectMeta {
            name: sandbox.metadata.name.clone(),
            namespace: sandbox.metadata.namespace.clone(),
            labels: Some(hash_selector(hash)),
            owner_references: Some(vec![sandbox_owner_ref(sandbox)]),
            ..ObjectMeta::default()
        },
        spec: Some(ServiceSpec {
            cluster_ip: Some("None".to_owned()),
            selector: Some(hash_selector(hash)),
            ports: if ports.is_empty() { None } else { Some(ports) },
            ..ServiceSpec::default()
        }),
        status: None,
    }
}

/// Edits to an existing Service: labels to set, and optionally the selector, ports and owner
/// references to replace.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceEdit {
    /// Optimistic lock (set for adoption, which upstream does as a full Update).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_version: Option<String>,
    /// Labels to set.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// The complete new selector.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<BTreeMap<String, String>>,
    /// The complete new port list.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ports: Option<Vec<ServicePort>>,
    /// The complete new owner references.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner_references: Option<Vec<OwnerReference>>,
}

impl ServiceEdit {
    /// Applies the edits to a Service object (for a driver that updates whole objects).
    pub fn apply(&self, svc: &mut Service) {
        if !self.labels.is_empty() {
            let labels = svc.metadata.labels.get_or_insert_with(BTreeMap::new);
            labels.extend(self.labels.clone());
        }
        if let Some(refs) = &self.owner_references {
            svc.metadata.owner_references = Some(refs.clone());
        }
        let spec = svc.spec.get_or_insert_with(ServiceSpec::default);
        if let Some(sel) = &self.selector {
            spec.selector = Some(sel.clone());
        }
        if let Some(ports) = &self.ports {
            spec.ports = if ports.is_empty() {
                None
            } else {
                Some(ports.clone())
            };
        }
    }

    /// The edits as a JSON merge patch. The selector is replaced whole: `old_selector` keys
    /// missing from the new one are sent as `null`.
    pub fn to_merge_patch(&self, old_selector: &BTreeMap<String, String>) -> Value {
        let mut meta = Map::new();
        if let Some(rv) = &self.resource_version {
            meta.insert("resourceVersion".into(), Value::String(rv.clone()));
        }
        if !self.labels.is_empty() {
            meta.insert(
                "labels".into(),
                serde_json::to_value(&self.labels).unwrap_or(Value::Null),
            );
        }
        if let Some(refs) = &self.owner_references {
            meta.insert(
                "ownerReferences".into(),
                serde_json::to_value(refs).unwrap_or(Value::Null),
            );
        }
        let mut spec = Map::new();
        if let Some(sel) = &self.selector {
            let mut s: Map<String, Value> = old_selector
                .keys()
                .map(|k| (k.clone(), Value::Null))
                .collect();
            for (k, v) in sel {
                s.insert(k.clone(), Value::String(v.clone()));
            }
            spec.insert("selector".into(), Value::Object(s));
        }
        if let Some(ports) = &self.ports {
            spec.insert(
                "ports".into(),
                serde_json::to_value(ports).unwrap_or(Value::Null),
            );
        }
        let mut root = Map::new();
        if !meta.is_empty() {
            root.insert("metadata".into(), Value::Object(meta));
        }
        if !spec.is_empty() {
            root.insert("spec".into(), Value::Object(spec));
        }
        Value::Object(root)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{ContainerPort, PodSpec};
    use paddock_api::v1beta1::{PodTemplate, SandboxBlueprint, SandboxSpec};

    fn port(n: i32, proto: Option<&str>, name: Option<&str>) -> ContainerPort {
        ContainerPort {
            container_port: n,
            protocol: proto.map(str::to_owned),
            name: name.map(str::to_owned),
            ..ContainerPort::default()
        }
    }

    fn sandbox(containers: Vec<Container>, init: Vec<Container>) -> Sandbox {
        Sandbox::new(
            "s",
            SandboxSpec {
                blueprint: SandboxBlueprint {
                    pod_template: PodTemplate {
                        spec: PodSpec {
                            containers,
                            init_containers: Some(init),
                            ..PodSpec::default()
                        },
                        metadata: None,
                    },
                    ..SandboxBlueprint::default()
                },
                ..SandboxSpec::default()
            },
        )
    }

    fn names(ports: &[ServicePort]) -> Vec<(String, i32, String)> {
        ports
            .iter()
            .map(|p| {
                (
                    p.name.clone().unwrap_or_default(),
                    p.port,
                    p.protocol.clone().unwrap_or_default(),
                )
            })
            .collect()
    }

    #[test]
    fn ports_are_deduplicated_named_and_sorted() {
        let main = Container {
            name: "main".into(),
            ports: Some(vec![
                port(8888, None, None),
                port(53, Some("UDP"), None),
                port(8888, Some("TCP"), Some("late-name")),
                port(80, None, Some("http")),
            ]),
            ..Container::default()
        };
        let sidecar = Container {
            name: "side".into(),
            restart_policy: Some("Always".into()),
            ports: Some(vec![port(9090, None, None)]),
            ..Container::default()
        };
        let plain_init = Container {
            name: "init".into(),
            ports: Some(vec![port(7000, None, None)]),
            ..Container::default()
        };
        let ports = derive_ports(&sandbox(vec![main], vec![sidecar, plain_init]));
        assert_eq!(
            names(&ports),
            vec![
                ("p-53-udp".into(), 53, "UDP".into()),
                ("http".into(), 80, "TCP".into()),
                ("late-name".into(), 8888, "TCP".into()),
                ("p-9090-tcp".into(), 9090, "TCP".into()),
            ]
        );
        assert_eq!(ports[0].target_port, Some(IntOrString::Int(53)));
    }

    #[test]
    fn generated_names_get_numeric_suffixes_on_collision() {
        let main = Container {
            name: "main".into(),
            ports: Some(vec![
                port(1, None, Some("p-80-tcp")),
                port(2, None, Some("p-80-tcp-2")),
                port(80, None, None),
            ]),
            ..Container::default()
        };
        let ports = derive_ports(&sandbox(vec![main], vec![]));
        assert_eq!(ports[2].name.as_deref(), Some("p-80-tcp-3"));
    }

    #[test]
    fn edit_merge_patch_nulls_old_selector_keys() {
        let edit = ServiceEdit {
            selector: Some(hash_selector("abc")),
            ..ServiceEdit::default()
        };
        let old = BTreeMap::from([("app".to_owned(), "x".to_owned())]);
        assert_eq!(
            edit.to_merge_patch(&old),
            serde_json::json!({"spec": {"selector": {"app": null, SANDBOX_NAME_HASH: "abc"}}})
        );
    }
}
