//! `paddock egress` wiring: flags, the cluster CA (kept in a Secret), the CA ConfigMaps in the
//! sandboxes' namespaces, Secrets for injection, and the server.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::Client;
use kube::api::{ObjectMeta, PostParams};
use paddock_api::policy::SecretSource;
use paddock_egress::secrets::{SecretFuture, SecretStore, read_file_secret};
use paddock_egress::{EgressProxy, Resolver, SandboxCa};
use paddock_kube::signals::on_signals;
use paddock_kube::{ClusterArgs, KubeError, LogArgs};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::cluster::{ClusterEgress, Scope};

/// The ConfigMap (in each sandbox namespace) and key holding the trust store sandboxes use:
/// the proxy's public roots plus its CA.
pub const CA_CONFIGMAP: &str = "paddock-egress-ca";
/// The key of the bundle in [`CA_CONFIGMAP`].
pub const CA_BUNDLE_KEY: &str = "ca-certificates.crt";

/// Flags of `paddock egress`.
#[derive(Clone, Debug, clap::Args)]
#[command(next_help_heading = "Egress")]
pub struct EgressArgs {
    /// Serve the proxy on this address. Loopback by default; in a pod, 0.0.0.0:3128 (deploy/
    /// does).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:3128")]
    pub listen: SocketAddr,
    /// Serve the records (`/v1/sandboxes/{namespace}/{name}/egress`) and `/metrics` here,
    /// for `paddock gateway` and Prometheus (`0` = off). In a pod, 0.0.0.0:9090 (deploy/ does).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:9090")]
    pub api_listen: String,
    /// Only sandboxes in this namespace (default: every namespace).
    #[arg(long = "sandbox-namespace", value_name = "NAMESPACE")]
    pub sandbox_namespace: Option<String>,
    /// The namespace of the Secret holding the proxy's CA key (created on first start).
    #[arg(
        long,
        env = "POD_NAMESPACE",
        value_name = "NAMESPACE",
        default_value = "agent-sandbox-system"
    )]
    pub namespace: String,
    /// The name of that Secret.
    #[arg(long, value_name = "NAME", default_value = "paddock-egress-ca")]
    pub ca_secret: String,
    /// Resolve destinations with this DNS server instead of the pod's resolver.
    #[arg(long, value_name = "ADDR")]
    pub egress_dns: Option<SocketAddr>,
    /// Also trust this CA upstream (for destinations the proxy makes TLS to). Repeatable.
    #[arg(long = "egress-ca-file", value_name = "PATH")]
    pub egress_ca_files: Vec<PathBuf>,
    /// The cluster.
    #[command(flatten)]
    pub cluster: ClusterArgs,
    /// Logging.
    #[command(flatten)]
    pub logging: LogArgs,
}

/// Why `paddock egress` stopped.
#[derive(Debug, thiserror::Error)]
pub enum EgressError {
    /// No cluster, or a bind failed.
    #[error(transparent)]
    Kube(#[from] KubeError),
    /// The CA could not be loaded or made.
    #[error("the egress CA (Secret {namespace}/{name}): {message}")]
    Ca {
        /// Namespace.
        namespace: String,
        /// Name.
        name: String,
        /// What failed.
        message: String,
    },
    /// A flag's value is not what it should be.
    #[error("{flag} {value:?}: give HOST:PORT, or 0 for off")]
    Flag {
        /// The flag.
        flag: &'static str,
        /// What was given.
        value: String,
    },
    /// A file flag could not be read.
    #[error("{flag} {path}: {source}")]
    File {
        /// The flag.
        flag: &'static str,
        /// The path.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// Secrets from files in the proxy's pod, or Kubernetes Secrets in the sandbox's namespace
/// (read at each use; the proxy's ServiceAccount needs `get` on them).
#[derive(Clone)]
pub struct KubeSecrets {
    client: Client,
}

impl std::fmt::Debug for KubeSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeSecrets").finish_non_exhaustive()
    }
}

impl SecretStore for KubeSecrets {
    fn read<'a>(&'a self, namespace: &'a str, source: &'a SecretSource) -> SecretFuture<'a> {
        Box::pin(async move {
            match (&source.file, &source.secret_key_ref) {
                (Some(path), _) => read_file_secret(path),
                (None, Some(r)) => {
                    let api: kube::Api<Secret> =
                        kube::Api::namespaced(self.client.clone(), namespace);
                    let secret = api.get(&r.name).await.map_err(|e| {
                        format!("cannot read Secret {namespace}/{}: {e} (the egress proxy's ServiceAccount needs get on secrets)", r.name)
                    })?;
                    let value = secret
                        .data
                        .as_ref()
                        .and_then(|d| d.get(&r.key))
                        .map(|b| b.0.clone())
                        .or_else(|| {
                            secret
                                .string_data
                                .as_ref()
                                .and_then(|d| d.get(&r.key))
                                .map(|s| s.clone().into_bytes())
                        })
                        .ok_or_else(|| {
                            format!("Secret {namespace}/{} has no key {:?}", r.name, r.key)
                        })?;
                    String::from_utf8(value)
                        .map(|s| s.trim_end_matches(['\n', '\r']).to_owned())
                        .map_err(|_| {
                            format!("Secret {namespace}/{} key {:?} is not text", r.name, r.key)
                        })
                }
                (None, None) => Err("the injection names no secret".into()),
            }
        })
    }
}

/// The proxy's CA key, from its Secret, made and stored on first start.
///
/// # Errors
/// The Secret cannot be read or created, or holds no usable key.
pub async fn load_or_create_ca(
    client: &Client,
    namespace: &str,
    name: &str,
) -> Result<String, EgressError> {
    let err = |message: String| EgressError::Ca {
        namespace: namespace.to_owned(),
        name: name.to_owned(),
        message,
    };
    let api: kube::Api<Secret> = kube::Api::namespaced(client.clone(), namespace);
    if let Some(secret) = api.get_opt(name).await.map_err(|e| err(e.to_string()))? {
        let key = secret
            .data
            .as_ref()
            .and_then(|d| d.get("ca.key"))
            .map(|b| String::from_utf8_lossy(&b.0).into_owned())
            .ok_or_else(|| err("it has no ca.key".into()))?;
        SandboxCa::from_key_pem("cluster", &key).map_err(|e| err(e.to_string()))?;
        return Ok(key);
    }
    let ca = SandboxCa::new("cluster").map_err(|e| err(e.to_string()))?;
    let key = ca.key_pem();
    let secret = Secret {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            namespace: Some(namespace.to_owned()),
            labels: Some(BTreeMap::from([(
                "app.kubernetes.io/part-of".to_owned(),
                "paddock".to_owned(),
            )])),
            ..ObjectMeta::default()
        },
        data: Some(BTreeMap::from([
            ("ca.key".to_owned(), ByteString(key.clone().into_bytes())),
            (
                "ca.crt".to_owned(),
                ByteString(ca.pem().as_bytes().to_vec()),
            ),
        ])),
        type_: Some("Opaque".to_owned()),
        ..Secret::default()
    };
    match api.create(&PostParams::default(), &secret).await {
        Ok(_) => Ok(key),
        // Another replica made it first: use that one.
        Err(kube::Error::Api(e)) if e.code == 409 => {
            Box::pin(load_or_create_ca(client, namespace, name)).await
        }
        Err(e) => Err(err(e.to_string())),
    }
}

/// The trust store sandboxes get: this host's public roots and the proxy's CA, as PEM.
pub fn trust_bundle(ca_pem: &str) -> String {
    let mut out = String::new();
    for cert in rustls_native_certs::load_native_certs().certs {
        out.push_str("-----BEGIN CERTIFICATE-----\n");
        let b64 = base64::engine::general_purpose::STANDARD.encode(cert.as_ref());
        for chunk in b64.as_bytes().chunks(64) {
            out.push_str(&String::from_utf8_lossy(chunk));
            out.push('\n');
        }
        out.push_str("-----END CERTIFICATE-----\n");
    }
    out.push_str(ca_pem);
    out
}

/// Makes sure `namespace` has the CA ConfigMap with `bundle`.
async fn ensure_ca_configmap(
    client: &Client,
    namespace: &str,
    bundle: &str,
) -> Result<(), kube::Error> {
    let api: kube::Api<ConfigMap> = kube::Api::namespaced(client.clone(), namespace);
    let data = BTreeMap::from([(CA_BUNDLE_KEY.to_owned(), bundle.to_owned())]);
    match api.get_opt(CA_CONFIGMAP).await? {
        Some(current) if current.data.as_ref() == Some(&data) => Ok(()),
        Some(mut current) => {
            current.data = Some(data);
            api.replace(CA_CONFIGMAP, &PostParams::default(), &current)
                .await
                .map(drop)
        }
        None => {
            let cm = ConfigMap {
                metadata: ObjectMeta {
                    name: Some(CA_CONFIGMAP.to_owned()),
                    namespace: Some(namespace.to_owned()),
                    labels: Some(BTreeMap::from([(
                        "app.kubernetes.io/part-of".to_owned(),
                        "paddock".to_owned(),
                    )])),
                    ..ObjectMeta::default()
                },
                data: Some(data),
                ..ConfigMap::default()
            };
            api.create(&PostParams::default(), &cm).await.map(drop)
        }
    }
}

/// Runs the proxy until SIGTERM/SIGINT.
///
/// # Errors
/// No cluster, the CA, a flag's file, or the address in use.
pub async fn run(args: EgressArgs) -> Result<(), EgressError> {
    args.logging.init();
    let client = paddock_kube::connect(&args.cluster, None, 100).await?;
    let listener = TcpListener::bind(args.listen)
        .await
        .map_err(|source| KubeError::Bind {
            what: "the egress proxy",
            addr: args.listen,
            source,
        })?;
    let shutdown = CancellationToken::new();
    on_signals(shutdown.clone());
    run_with(client, &args, listener, shutdown).await
}

/// Serves on `listener` with an existing client until `shutdown` (tests and embedding).
///
/// # Errors
/// The CA or a flag's file.
pub async fn run_with(
    client: Client,
    args: &EgressArgs,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> Result<(), EgressError> {
    let roots = args
        .egress_ca_files
        .iter()
        .map(|p| {
            std::fs::read_to_string(p).map_err(|source| EgressError::File {
                flag: "--egress-ca-file",
                path: p.clone(),
                source,
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let ca_key = load_or_create_ca(&client, &args.namespace, &args.ca_secret).await?;
    let ca_pem = SandboxCa::from_key_pem("cluster", &ca_key)
        .map_err(|e| EgressError::Ca {
            namespace: args.namespace.clone(),
            name: args.ca_secret.clone(),
            message: e.to_string(),
        })?
        .pem()
        .to_owned();
    let bundle = trust_bundle(&ca_pem);
    let resolver = args.egress_dns.map_or(Resolver::System, Resolver::Server);
    let proxy = EgressProxy::with_secrets(
        resolver,
        &roots,
        Arc::new(KubeSecrets {
            client: client.clone(),
        }),
    );
    let scope = match &args.sandbox_namespace {
        Some(ns) => Scope::Namespace(ns.clone()),
        None => Scope::All,
    };
    let cluster = Arc::new(ClusterEgress::start(&client, &scope, proxy.clone(), ca_key));
    cluster.ready().await;
    cluster.refresh();
    let identify = {
        let cluster = Arc::clone(&cluster);
        Arc::new(move |ip| cluster.identify(ip))
    };
    let server = proxy.serve_identified(listener, identify);
    let api = match args.api_listen.as_str() {
        "0" | "" => None,
        addr => {
            let addr: SocketAddr = addr.parse().map_err(|_| EgressError::Flag {
                flag: "--api-listen",
                value: addr.to_owned(),
            })?;
            let l = TcpListener::bind(addr)
                .await
                .map_err(|source| KubeError::Bind {
                    what: "the egress proxy's API",
                    addr,
                    source,
                })?;
            Some(tokio::spawn(crate::api::serve(
                l,
                proxy.clone(),
                shutdown.clone(),
            )))
        }
    };
    tracing::info!(listen = %args.listen, "egress proxy serving");
    let mut published: Vec<String> = Vec::new();
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            () = tokio::time::sleep(Duration::from_millis(250)) => {}
        }
        cluster.refresh();
        for ns in cluster.namespaces() {
            if published.contains(&ns) {
                continue;
            }
            match ensure_ca_configmap(&client, &ns, &bundle).await {
                Ok(()) => published.push(ns),
                Err(e) => {
                    tracing::warn!(namespace = %ns, error = %e, "cannot publish the egress CA")
                }
            }
        }
    }
    server.abort();
    if let Some(api) = api {
        api.abort();
    }
    Ok(())
}
