//! The first container's environment and ports.

use k8s_openapi::api::core::v1::Container;

use super::{PodMappingError, UnhonouredField};
use crate::spec::{EnvVar, PortSpec};

pub(super) fn map_env(container: &Container, unhonoured: &mut Vec<UnhonouredField>) -> Vec<EnvVar> {
    let mut env = Vec::new();
    for (i, var) in container.env.iter().flatten().enumerate() {
        if var.value_from.is_some() {
            unhonoured.push(UnhonouredField {
                path: format!("containers[0].env[{i}].valueFrom"),
                reason: format!(
                    "{} is not set: valueFrom is not available locally; set a value",
                    var.name
                ),
            });
            continue;
        }
        env.push(EnvVar {
            name: var.name.clone(),
            value: var.value.clone().unwrap_or_default(),
        });
    }
    env
}

pub(super) fn map_ports(
    container: &Container,
    unhonoured: &mut Vec<UnhonouredField>,
) -> Result<Vec<PortSpec>, PodMappingError> {
    let mut ports = Vec::new();
    for (i, port) in container.ports.iter().flatten().enumerate() {
        let path = format!("containers[0].ports[{i}]");
        let number = u16::try_from(port.container_port)
            .ok()
            .filter(|p| *p > 0)
            .ok_or_else(|| PodMappingError::InvalidField {
                path: format!("{path}.containerPort"),
                reason: format!("{} is not a port number (1-65535)", port.container_port),
            })?;
        if port.host_port.is_some() || port.host_ip.is_some() {
            unhonoured.push(UnhonouredField {
                path: format!("{path}.hostPort"),
                reason: "local sandboxes publish no host ports; reach the port through the gateway"
                    .to_owned(),
            });
        }
        ports.push(PortSpec {
            name: port.name.clone(),
            container_port: number,
            protocol: port.protocol.clone().unwrap_or_else(|| "TCP".to_owned()),
        });
    }
    Ok(ports)
}
