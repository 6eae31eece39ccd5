//! Pods of Sandboxes that a SandboxPolicy governs reach the network through the in-cluster
//! egress proxy (`paddock egress`): the controller gives them its address in `HTTP_PROXY` and
//! friends, the trust store with the proxy's CA (the ConfigMap `paddock-egress-ca` the proxy
//! publishes), and a placeholder for each credential the proxy injects. The template-managed
//! NetworkPolicy lets them reach nothing else (`paddock_plan::template`).

use std::net::IpAddr;
use std::sync::Mutex;

use k8s_openapi::api::core::v1::{
    ConfigMapVolumeSource, Container, EnvVar, Pod, Service, Volume, VolumeMount,
};
use kube::Client;
use kube::api::DynamicObject;
use paddock_api::v1beta1::{Sandbox, SandboxClaim, SandboxTemplate};
use paddock_policy::{EgressRules, governing_policies};

/// The ConfigMap the egress proxy publishes in each sandbox namespace, and its key.
pub const CA_CONFIGMAP: &str = "paddock-egress-ca";
const CA_KEY: &str = "ca-certificates.crt";
const CA_VOLUME: &str = "paddock-egress-ca";
/// Where Pods find the trust store (Debian's path; the environment points the usual
/// libraries at it).
pub const CA_PATH: &str = "/etc/ssl/certs/ca-certificates.crt";

/// Where the proxy is: `IP:PORT`, or `SERVICE.NAMESPACE:PORT`, whose ClusterIP is looked up
/// (Pods get an address, so they need no DNS, which their NetworkPolicy does not allow).
#[derive(Debug)]
pub struct EgressProxyAddress {
    given: String,
    resolved: Mutex<Option<String>>,
}

impl EgressProxyAddress {
    /// Parses the flag's value.
    ///
    /// # Errors
    /// Not `HOST:PORT`.
    pub fn parse(given: &str) -> Result<Self, String> {
        let (host, port) = given.rsplit_once(':').ok_or_else(|| {
            format!("--egress-proxy {given:?}: give IP:PORT or SERVICE.NAMESPACE:PORT")
        })?;
        port.parse::<u16>()
            .map_err(|_| format!("--egress-proxy {given:?}: {port:?} is not a port"))?;
        let resolved = host.parse::<IpAddr>().is_ok().then(|| given.to_owned());
        if resolved.is_none() && host.split('.').count() != 2 {
            return Err(format!(
                "--egress-proxy {given:?}: give IP:PORT or SERVICE.NAMESPACE:PORT (e.g. paddock-egress.agent-sandbox-system:3128)"
            ));
        }
        Ok(Self {
            given: given.to_owned(),
            resolved: Mutex::new(resolved),
        })
    }

    /// `IP:PORT`, looking the Service up the first time.
    ///
    /// # Errors
    /// The Service is missing or has no ClusterIP.
    pub async fn address(&self, client: &Client) -> Result<String, String> {
        if let Some(a) = self
            .resolved
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
        {
            return Ok(a);
        }
        let (host, port) = self.given.rsplit_once(':').unwrap_or((&self.given, "3128"));
        let (service, namespace) = host.split_once('.').unwrap_or((host, "default"));
        let api: kube::Api<Service> = kube::Api::namespaced(client.clone(), namespace);
        let svc = api
            .get(service)
            .await
            .map_err(|e| format!("egress proxy Service {namespace}/{service}: {e}"))?;
        let ip = svc
            .spec
            .and_then(|s| s.cluster_ip)
            .filter(|ip| !ip.is_empty() && ip != "None")
            .ok_or_else(|| {
                format!("egress proxy Service {namespace}/{service} has no ClusterIP")
            })?;
        let address = if ip.contains(':') {
            format!("[{ip}]:{port}")
        } else {
            format!("{ip}:{port}")
        };
        *self
            .resolved
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(address.clone());
        Ok(address)
    }
}

/// The placeholders of the credentials the policies governing `sandbox` inject, as env vars;
/// `None` when no policy governs it (its Pod is left as it is).
///
/// # Errors
/// The API server failed.
pub async fn governed_env(
    client: &Client,
    sandbox: &Sandbox,
) -> Result<Option<Vec<(String, String)>>, kube::Error> {
    let ns = sandbox.metadata.namespace.clone().unwrap_or_default();
    let Ok(value) = serde_json::to_value(sandbox) else {
        return Ok(None);
    };
    let template = match paddock_policy::governs::template_of(&value) {
        Some(t) => kube::Api::<SandboxTemplate>::namespaced(client.clone(), &ns)
            .get_opt(t)
            .await?
            .and_then(|t| serde_json::to_value(t).ok()),
        None => None,
    };
    let claim = match paddock_policy::governs::claim_of(&value) {
        Some(c) => kube::Api::<SandboxClaim>::namespaced(client.clone(), &ns)
            .get_opt(c)
            .await?
            .and_then(|c| serde_json::to_value(c).ok()),
        None => None,
    };
    let refs = governing_policies(&value, template.as_ref(), claim.as_ref());
    if refs.is_empty() {
        return Ok(None);
    }
    let uid = sandbox.metadata.uid.clone().unwrap_or_default();
    let resource = paddock_policy_resource();
    let api: kube::Api<DynamicObject> = kube::Api::namespaced_with(client.clone(), &ns, &resource);
    let mut env = Vec::new();
    for r in refs {
        // A missing policy still governs (the proxy then denies all): the Pod gets the proxy.
        let Some(policy) = api.get_opt(&r.name).await? else {
            continue;
        };
        let Ok(policy) = serde_json::to_value(policy)
            .and_then(serde_json::from_value::<paddock_api::policy::SandboxPolicy>)
        else {
            continue;
        };
        let Some(rules) = policy
            .spec
            .egress
            .and_then(|e| EgressRules::compile(&e).ok())
        else {
            continue;
        };
        for (rule, injection) in rules.injections() {
            if let Some(name) = &injection.env {
                env.push((
                    name.clone(),
                    paddock_policy::placeholder::derived(&uid, rule, &injection.header),
                ));
            }
        }
    }
    Ok(Some(env))
}

fn paddock_policy_resource() -> kube::api::ApiResource {
    use paddock_api::policy::{POLICY_GROUP, POLICY_KIND, POLICY_PLURAL, POLICY_VERSION};
    kube::api::ApiResource::from_gvk_with_plural(
        &kube::api::GroupVersionKind::gvk(POLICY_GROUP, POLICY_VERSION, POLICY_KIND),
        POLICY_PLURAL,
    )
}

fn set_env(container: &mut Container, name: &str, value: &str) {
    let env = container.env.get_or_insert_with(Vec::new);
    env.retain(|e| e.name != name);
    env.push(EnvVar {
        name: name.to_owned(),
        value: Some(value.to_owned()),
        value_from: None,
    });
}

/// Points every container of `pod` at the proxy at `proxy` (`IP:PORT`), with the proxy's
/// trust store and the credentials' placeholders. Pure.
pub fn govern_pod(pod: &mut Pod, proxy: &str, placeholders: &[(String, String)]) {
    let Some(spec) = pod.spec.as_mut() else {
        return;
    };
    let host = proxy.rsplit_once(':').map_or(proxy, |(h, _)| h);
    let containers = spec
        .containers
        .iter_mut()
        .chain(spec.init_containers.iter_mut().flatten());
    let host = host.trim_matches(['[', ']']);
    let env = paddock_policy::sandbox_env::governed_env(proxy, &[host], CA_PATH);
    for c in containers {
        for (name, value) in env.iter().chain(placeholders) {
            set_env(c, name, value);
        }
        let mounts = c.volume_mounts.get_or_insert_with(Vec::new);
        mounts.retain(|m| m.mount_path != CA_PATH);
        mounts.push(VolumeMount {
            name: CA_VOLUME.to_owned(),
            mount_path: CA_PATH.to_owned(),
            sub_path: Some(CA_KEY.to_owned()),
            read_only: Some(true),
            ..VolumeMount::default()
        });
    }
    let volumes = spec.volumes.get_or_insert_with(Vec::new);
    volumes.retain(|v| v.name != CA_VOLUME);
    volumes.push(Volume {
        name: CA_VOLUME.to_owned(),
        config_map: Some(ConfigMapVolumeSource {
            name: CA_CONFIGMAP.to_owned(),
            optional: Some(false),
            ..ConfigMapVolumeSource::default()
        }),
        ..Volume::default()
    });
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::PodSpec;

    use super::*;

    #[test]
    fn a_governed_pod_gets_the_proxy_the_trust_store_and_placeholders_in_every_container() {
        let mut pod = Pod {
            spec: Some(PodSpec {
                containers: vec![
                    Container {
                        name: "main".into(),
                        ..Container::default()
                    },
                    Container {
                        name: "side".into(),
                        env: Some(vec![EnvVar {
                            name: "HTTP_PROXY".into(),
                            value: Some("http://mine".into()),
                            value_from: None,
                        }]),
                        ..Container::default()
                    },
                ],
                ..PodSpec::default()
            }),
            ..Pod::default()
        };
        govern_pod(
            &mut pod,
            "10.96.0.9:3128",
            &[("API_TOKEN".into(), "paddock-placeholder-x".into())],
        );
        let spec = pod.spec.as_ref().expect("spec");
        for c in &spec.containers {
            let env = |n: &str| {
                c.env
                    .as_ref()
                    .and_then(|e| e.iter().find(|v| v.name == n))
                    .and_then(|v| v.value.clone())
            };
            assert_eq!(env("HTTPS_PROXY").as_deref(), Some("http://10.96.0.9:3128"));
            assert_eq!(
                env("HTTP_PROXY").as_deref(),
                Some("http://10.96.0.9:3128"),
                "the proxy wins over the container's own"
            );
            assert_eq!(env("SSL_CERT_FILE").as_deref(), Some(CA_PATH));
            assert_eq!(env("API_TOKEN").as_deref(), Some("paddock-placeholder-x"));
            let mount = c
                .volume_mounts
                .as_ref()
                .and_then(|m| m.first())
                .expect("mount");
            assert_eq!(
                (mount.mount_path.as_str(), mount.sub_path.as_deref()),
                (CA_PATH, Some(CA_KEY))
            );
        }
        let volume = spec
            .volumes
            .as_ref()
            .and_then(|v| v.first())
            .expect("volume");
        assert_eq!(
            volume.config_map.as_ref().map(|c| c.name.as_str()),
            Some(CA_CONFIGMAP)
        );
    }

    #[test]
    fn the_proxy_address_is_an_ip_or_a_service() {
        assert!(EgressProxyAddress::parse("10.0.0.1:3128").is_ok());
        assert!(EgressProxyAddress::parse("paddock-egress.agent-sandbox-system:3128").is_ok());
        let err = EgressProxyAddress::parse("paddock-egress:3128").expect_err("no namespace");
        assert!(err.contains("SERVICE.NAMESPACE:PORT"), "{err}");
        assert!(EgressProxyAddress::parse("10.0.0.1").is_err());
    }
}
