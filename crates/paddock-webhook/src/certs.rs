//! Webhook certificates, as upstream v0.5 manages them: a self-signed ECDSA P-256 CA
//! (`agent-sandbox-conversion-webhook-ca`) and a serving certificate for the webhook Service
//! (SANs `svc`, `svc.ns`, `svc.ns.svc`, `svc.ns.svc.<cluster-domain>`), kept in Secret
//! `agent-sandbox-webhook-certs` (`ca.crt`, `tls.crt`, `tls.key`), loaded or created at
//! start-up and regenerated when they no longer verify for the Service (or expire within 90
//! days); the CA is then patched into the four CRDs' conversion stanza.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use base64::Engine;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client};
use paddock_api::kinds::Kind;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, PKCS_ECDSA_P256_SHA256,
};
use rustls::RootCertStore;
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::ServerCertVerifier;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use serde_json::json;

use paddock_kube::classify;
use paddock_plan::outcome::FailureKind;

use crate::{WebhookError, WebhookSettings};

/// Name of the Secret holding the CA and serving certificate.
pub const SECRET_NAME: &str = "agent-sandbox-webhook-certs";
/// Common name of the CA.
pub const CA_COMMON_NAME: &str = "agent-sandbox-conversion-webhook-ca";
/// Secret key of the CA certificate (PEM).
pub const CA_KEY: &str = "ca.crt";
/// Secret key of the serving certificate (PEM).
pub const CERT_KEY: &str = "tls.crt";
/// Secret key of the serving private key (PEM, PKCS#8).
pub const KEY_KEY: &str = "tls.key";
/// Certificates expiring sooner than this are regenerated at start-up.
pub const RENEW_BEFORE: Duration = Duration::from_secs(90 * 24 * 3600);
/// Validity of generated certificates, in years.
const VALIDITY_YEARS: i16 = 10;

/// A CA and the serving certificate it signed, all PEM.
#[derive(Clone, PartialEq, Eq)]
pub struct CertBundle {
    /// CA certificate.
    pub ca_pem: String,
    /// Serving certificate.
    pub cert_pem: String,
    /// Serving key.
    pub key_pem: String,
}

impl std::fmt::Debug for CertBundle {
    /// Never prints the key.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertBundle")
            .field("ca_pem", &self.ca_pem)
            .finish_non_exhaustive()
    }
}

/// The DNS names the serving certificate must cover.
pub fn dns_names(service: &str, namespace: &str, cluster_domain: &str) -> Vec<String> {
    vec![
        service.to_owned(),
        format!("{service}.{namespace}"),
        format!("{service}.{namespace}.svc"),
        format!("{service}.{namespace}.svc.{cluster_domain}"),
    ]
}

fn cert_error(what: &str, e: impl std::fmt::Display) -> WebhookError {
    WebhookError::Certificates(format!("{what}: {e}"))
}

/// (year, month, day) of yesterday and of the end of validity, in UTC.
type Ymd = (i32, u8, u8);

fn validity() -> (Ymd, Ymd) {
    let today = jiff::Timestamp::now()
        .to_zoned(jiff::tz::TimeZone::UTC)
        .date();
    let yesterday = today.yesterday().unwrap_or(today);
    let ymd = |d: jiff::civil::Date| {
        (
            i32::from(d.year()),
            u8::try_from(d.month()).unwrap_or(1),
            u8::try_from(d.day()).unwrap_or(1),
        )
    };
    let (y, m, d) = ymd(today);
    // Day 28 exists in every month, so the end date is always valid.
    (
        (ymd(yesterday)),
        (y + i32::from(VALIDITY_YEARS), m, d.min(28)),
    )
}

/// Generates a fresh CA and a serving certificate for `names`.
///
/// # Errors
/// Key generation or signing failed.
pub fn generate(names: &[String]) -> Result<CertBundle, WebhookError> {
    let ((y0, m0, d0), (y1, m1, d1)) = validity();
    let not_before = rcgen::date_time_ymd(y0, m0, d0);
    let not_after = rcgen::date_time_ymd(y1, m1, d1);
    let ca_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)
        .map_err(|e| cert_error("generating the CA key", e))?;
    let mut ca_params =
        CertificateParams::new(Vec::<String>::new()).map_err(|e| cert_error("CA parameters", e))?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, CA_COMMON_NAME);
    ca_params.distinguished_name = dn;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    ca_params.not_before = not_before;
    ca_params.not_after = not_after;
    let ca_cert = ca_params
        .self_signed(&ca_key)
        .map_err(|e| cert_error("signing the CA", e))?;
    let issuer = Issuer::new(ca_params, ca_key);

    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)
        .map_err(|e| cert_error("generating the serving key", e))?;
    let mut params = CertificateParams::new(names.to_vec())
        .map_err(|e| cert_error("serving certificate parameters", e))?;
    let mut dn = DistinguishedName::new();
    dn.push(
        DnType::CommonName,
        names.first().cloned().unwrap_or_default(),
    );
    params.distinguished_name = dn;
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.not_before = not_before;
    params.not_after = not_after;
    params.use_authority_key_identifier_extension = true;
    let cert = params
        .signed_by(&key, &issuer)
        .map_err(|e| cert_error("signing the serving certificate", e))?;
    Ok(CertBundle {
        ca_pem: ca_cert.pem(),
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

/// Whether `bundle` is usable for `names` until `RENEW_BEFORE` from now: the key parses and
/// matches, and the serving certificate verifies against the CA for every name.
pub fn verify(bundle: &CertBundle, names: &[String]) -> Result<(), String> {
    server_config(bundle)?;
    let ca = CertificateDer::from_pem_slice(bundle.ca_pem.as_bytes())
        .map_err(|e| format!("ca.crt: {e}"))?;
    let cert = CertificateDer::from_pem_slice(bundle.cert_pem.as_bytes())
        .map_err(|e| format!("tls.crt: {e}"))?;
    let mut roots = RootCertStore::empty();
    roots.add(ca).map_err(|e| format!("ca.crt: {e}"))?;
    let verifier = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider())
        .build()
        .map_err(|e| format!("CA: {e}"))?;
    let later = SystemTime::now() + RENEW_BEFORE;
    let at = UnixTime::since_unix_epoch(
        later
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default(),
    );
    for name in names {
        let server_name = ServerName::try_from(name.clone()).map_err(|e| format!("{name}: {e}"))?;
        verifier
            .verify_server_cert(&cert, &[], &server_name, &[], at)
            .map_err(|e| format!("tls.crt for {name} (valid 90 days from now): {e}"))?;
    }
    Ok(())
}

/// The ring crypto provider (the process-wide default may not be installed).
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A TLS server configuration serving `bundle`'s certificate (HTTP/2 and HTTP/1.1).
///
/// # Errors
/// The certificate or key does not parse, or they do not match.
pub fn server_config(bundle: &CertBundle) -> Result<rustls::ServerConfig, String> {
    let certs: Vec<CertificateDer<'static>> =
        CertificateDer::pem_slice_iter(bundle.cert_pem.as_bytes())
            .collect::<Result<_, _>>()
            .map_err(|e| format!("tls.crt: {e}"))?;
    if certs.is_empty() {
        return Err("tls.crt holds no certificate".to_owned());
    }
    let key = PrivateKeyDer::from_pem_slice(bundle.key_pem.as_bytes())
        .map_err(|e| format!("tls.key: {e}"))?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| format!("tls.crt/tls.key: {e}"))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

fn bundle_from_secret(secret: &Secret) -> Option<CertBundle> {
    let data = secret.data.as_ref()?;
    let text = |k: &str| {
        data.get(k)
            .and_then(|b| String::from_utf8(b.0.clone()).ok())
    };
    Some(CertBundle {
        ca_pem: text(CA_KEY)?,
        cert_pem: text(CERT_KEY)?,
        key_pem: text(KEY_KEY)?,
    })
}

fn secret_data(bundle: &CertBundle) -> BTreeMap<String, ByteString> {
    BTreeMap::from([
        (
            CA_KEY.to_owned(),
            ByteString(bundle.ca_pem.clone().into_bytes()),
        ),
        (
            CERT_KEY.to_owned(),
            ByteString(bundle.cert_pem.clone().into_bytes()),
        ),
        (
            KEY_KEY.to_owned(),
            ByteString(bundle.key_pem.clone().into_bytes()),
        ),
    ])
}

/// Loads the bundle from the Secret, creating or regenerating it when missing or unusable.
/// Replicas racing to create converge on the first one written.
///
/// # Errors
/// The Secret could not be read or written.
pub async fn load_or_create(
    client: &Client,
    settings: &WebhookSettings,
) -> Result<CertBundle, WebhookError> {
    let names = dns_names(
        &settings.service_name,
        &settings.namespace,
        &settings.cluster_domain,
    );
    let api: Api<Secret> = Api::namespaced(client.clone(), &settings.namespace);
    for _attempt in 0..3 {
        let existing = api
            .get_opt(SECRET_NAME)
            .await
            .map_err(|e| WebhookError::Api {
                what: format!("reading Secret {}/{SECRET_NAME}", settings.namespace),
                source: e,
            })?;
        if let Some(secret) = &existing
            && let Some(bundle) = bundle_from_secret(secret)
        {
            match verify(&bundle, &names) {
                Ok(()) => {
                    tracing::info!(
                        secret = SECRET_NAME,
                        "using the webhook certificates in the Secret"
                    );
                    return Ok(bundle);
                }
                Err(why) => {
                    tracing::warn!(secret = SECRET_NAME, reason = %why, "webhook certificates unusable; regenerating")
                }
            }
        }
        let bundle = generate(&names)?;
        let result = match existing {
            None => {
                let secret = Secret {
                    metadata: ObjectMeta {
                        name: Some(SECRET_NAME.to_owned()),
                        namespace: Some(settings.namespace.clone()),
                        labels: Some(BTreeMap::from([(
                            "app".to_owned(),
                            "agent-sandbox-controller".to_owned(),
                        )])),
                        ..ObjectMeta::default()
                    },
                    data: Some(secret_data(&bundle)),
                    type_: Some("kubernetes.io/tls".to_owned()),
                    ..Secret::default()
                };
                api.create(&PostParams::default(), &secret).await
            }
            Some(mut secret) => {
                secret.data = Some(secret_data(&bundle));
                secret.metadata.managed_fields = None;
                api.replace(SECRET_NAME, &PostParams::default(), &secret)
                    .await
            }
        };
        match result {
            Ok(_) => {
                tracing::info!(secret = SECRET_NAME, "wrote new webhook certificates");
                return Ok(bundle);
            }
            Err(e) => {
                let (kind, _) = classify(&e);
                if matches!(kind, FailureKind::AlreadyExists | FailureKind::Conflict) {
                    // Another replica wrote first: use theirs.
                    continue;
                }
                return Err(WebhookError::Api {
                    what: format!("writing Secret {}/{SECRET_NAME}", settings.namespace),
                    source: e,
                });
            }
        }
    }
    Err(WebhookError::Certificates(format!(
        "Secret {}/{SECRET_NAME} kept changing while being written; restart to retry",
        settings.namespace
    )))
}

/// Reads the serving certificate and key from files (when certificates are not managed). The
/// CA is not needed: whoever issued them injects it.
///
/// # Errors
/// A file is missing or unreadable.
pub fn load_from_dir(settings: &WebhookSettings) -> Result<CertBundle, WebhookError> {
    let read = |name: &str| {
        let path = settings.cert_dir.join(name);
        std::fs::read_to_string(&path)
            .map_err(|e| cert_error(&format!("reading {}", path.display()), e))
    };
    Ok(CertBundle {
        ca_pem: String::new(),
        cert_pem: read(&settings.cert_name)?,
        key_pem: read(&settings.key_name)?,
    })
}

/// The merge patch that points a CRD's conversion webhook at the Service with `ca_pem`.
pub fn crd_conversion_patch(settings: &WebhookSettings, ca_pem: &str) -> serde_json::Value {
    json!({
        "spec": {
            "conversion": {
                "strategy": "Webhook",
                "webhook": {
                    "clientConfig": {
                        "caBundle": base64::engine::general_purpose::STANDARD.encode(ca_pem.as_bytes()),
                        "service": {
                            "name": settings.service_name,
                            "namespace": settings.namespace,
                            "path": "/convert",
                            "port": 443,
                        },
                    },
                    "conversionReviewVersions": ["v1", "v1beta1"],
                },
            },
        },
    })
}

/// Patches the CA bundle into the conversion stanza of the four CRDs.
///
/// # Errors
/// A CRD could not be patched (missing CRDs or RBAC).
pub async fn inject_ca_bundle(
    client: &Client,
    settings: &WebhookSettings,
    ca_pem: &str,
) -> Result<(), WebhookError> {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    let patch = crd_conversion_patch(settings, ca_pem);
    for kind in Kind::ALL {
        let name = kind.crd_name();
        api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map_err(|e| WebhookError::Api {
                what: format!(
                    "injecting the CA bundle into CRD {name} (install deploy/crds first)"
                ),
                source: e,
            })?;
    }
    tracing::info!("injected the webhook CA bundle into the four CRDs");
    Ok(())
}

/// The webhook's TLS configuration: certificates from the Secret it manages (its CA injected
/// into the CRDs), or from `--webhook-cert-dir`.
///
/// # Errors
/// The Secret or the CRDs cannot be read or written (a missing namespace, no RBAC), or the
/// certificates in the directory are unusable.
pub async fn tls_config(
    client: &Client,
    settings: &WebhookSettings,
) -> Result<rustls::ServerConfig, WebhookError> {
    let bundle = if settings.manage_certs {
        let bundle = load_or_create(client, settings).await?;
        inject_ca_bundle(client, settings, &bundle.ca_pem).await?;
        bundle
    } else {
        load_from_dir(settings)?
    };
    server_config(&bundle).map_err(WebhookError::Certificates)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_certificates_verify_for_every_service_name() {
        let names = dns_names(
            "agent-sandbox-webhook-service",
            "agent-sandbox-system",
            "cluster.local",
        );
        let bundle = generate(&names).expect("generate");
        assert!(bundle.key_pem.contains("PRIVATE KEY"));
        verify(&bundle, &names).expect("valid for its names");
        let other = dns_names("other-service", "agent-sandbox-system", "cluster.local");
        let err = verify(&bundle, &other).expect_err("not valid for another service");
        assert!(err.contains("other-service"), "{err}");
    }

    #[test]
    fn a_certificate_from_another_ca_does_not_verify() {
        let names = dns_names("svc", "ns", "cluster.local");
        let a = generate(&names).expect("a");
        let b = generate(&names).expect("b");
        let mixed = CertBundle {
            ca_pem: a.ca_pem,
            cert_pem: b.cert_pem,
            key_pem: b.key_pem,
        };
        assert!(verify(&mixed, &names).is_err());
    }

    #[test]
    fn debug_never_prints_the_key() {
        let names = dns_names("svc", "ns", "cluster.local");
        let b = generate(&names).expect("generate");
        assert!(!format!("{b:?}").contains("PRIVATE KEY"));
    }

    #[test]
    fn crd_patch_carries_base64_ca_and_service() {
        let settings = WebhookSettings {
            addr: "0.0.0.0:9443".parse().expect("addr"),
            manage_certs: true,
            cert_dir: "/tmp".into(),
            cert_name: "tls.crt".into(),
            key_name: "tls.key".into(),
            service_name: "svc".into(),
            namespace: "ns".into(),
            cluster_domain: "cluster.local".into(),
        };
        let p = crd_conversion_patch(&settings, "PEM");
        let cc = &p["spec"]["conversion"]["webhook"]["clientConfig"];
        assert_eq!(cc["caBundle"], "UEVN");
        assert_eq!(cc["service"]["name"], "svc");
        assert_eq!(cc["service"]["namespace"], "ns");
        assert_eq!(
            p["spec"]["conversion"]["webhook"]["conversionReviewVersions"][1],
            "v1beta1"
        );
    }
}
