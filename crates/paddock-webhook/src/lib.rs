//! The conversion webhook: the API server sends a ConversionReview, paddock answers with every
//! object converted between `v1alpha1` and `v1beta1` losslessly ([`convert`]), over HTTPS
//! ([`server`]) with a serving certificate paddock keeps itself or reads from a directory
//! ([`certs`]). Serving both versions is why kubectl-ai and Sympozium, which write `v1alpha1`,
//! work on paddock.
//!
//! # Layout
//! - [`convert`]: ConversionReview handling.
//! - [`certs`]: the self-signed CA and serving certificate, kept in a Secret; CA injection into
//!   the CRDs.
//! - [`server`]: the HTTPS server.

use std::net::SocketAddr;
use std::path::PathBuf;

pub mod certs;
pub mod convert;
pub mod server;

/// Where and how the webhook serves.
#[derive(Clone, Debug)]
pub struct WebhookSettings {
    /// Listener address (every interface, the given port).
    pub addr: SocketAddr,
    /// Self-managed certificates in a Secret (true) or files in `cert_dir`.
    pub manage_certs: bool,
    /// Certificate directory when not managed.
    pub cert_dir: PathBuf,
    /// Certificate file name.
    pub cert_name: String,
    /// Key file name.
    pub key_name: String,
    /// Service name (SANs, CRD stanza).
    pub service_name: String,
    /// Namespace of the Service and Secret.
    pub namespace: String,
    /// Cluster DNS domain (the last SAN).
    pub cluster_domain: String,
}

/// Why the webhook cannot serve.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    /// Certificates could not be created, loaded or checked.
    #[error("conversion webhook certificates: {0}")]
    Certificates(String),
    /// An API call the certificates depend on failed.
    #[error("{what}: {source}")]
    Api {
        /// What was being done.
        what: String,
        /// The client error.
        #[source]
        source: kube::Error,
    },
}
