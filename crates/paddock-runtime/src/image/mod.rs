//! Root filesystems from OCI images: references, the registry client, the content-addressed
//! cache with its one-time unpack, and local OCI layouts.
//!
//! Layout:
//! - `reference` — parsing `busybox`, `reg:5000/r:tag`, `oci:/path:tag`, `host`;
//! - `manifest` — the OCI / Docker JSON documents and platform selection;
//! - `auth` — `WWW-Authenticate` challenges, basic and bearer credentials;
//! - `registry` — the distribution-spec v2 client (manifests, blobs streamed and verified);
//! - `unpack` — applying layers safely (whiteouts, no path escapes, links);
//! - `store` — the cache: blobs by digest, each image unpacked once, shared read-only.

mod auth;
mod manifest;
mod reference;
mod registry;
mod store;
mod unpack;

use std::path::PathBuf;

pub use auth::Credentials;
pub use manifest::Platform;
pub use reference::{ImageRef, InvalidImageRef, RegistryRef, valid_digest};
pub(crate) use registry::hex;
pub use registry::{ProgressFn, PullProgress, RegistryClient, RegistryConfig};
pub use store::{ImageStore, PulledImage};
pub use unpack::{UnpackError, UnpackLimits, UnpackStats, unpack_layer};

use crate::spec::EnvVar;

/// The parts of an image's config that decide how its main process runs.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ImageConfig {
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    pub env: Vec<EnvVar>,
    pub working_dir: Option<String>,
    /// The image's `User`, resolved to numbers against the image's own `/etc/passwd`.
    pub uid: Option<u32>,
    pub gid: Option<u32>,
}

/// Why an image could not be made available.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("registry {registry}: {message}")]
    Registry { registry: String, message: String },
    #[error(
        "registry {registry} requires authentication for {repository}: {message}; configure credentials for it"
    )]
    Unauthorized {
        registry: String,
        repository: String,
        message: String,
    },
    #[error("{reference}: not found in the registry ({message})")]
    NotFound { reference: String, message: String },
    #[error("blob {digest} failed verification: {message}; nothing was cached")]
    DigestMismatch { digest: String, message: String },
    #[error("{reference}: {message}")]
    Manifest { reference: String, message: String },
    #[error("{reference}: no image for {wanted} (available: {available})")]
    NoMatchingPlatform {
        reference: String,
        wanted: String,
        available: String,
    },
    #[error("OCI layout {path}: {message}")]
    Layout { path: PathBuf, message: String },
    #[error("unpacking layer {digest}: {source}")]
    Unpack {
        digest: String,
        #[source]
        source: UnpackError,
    },
    #[error("{action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the host image has no rootfs to pull")]
    HostImage,
}

impl ImageError {
    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| Self::Io {
            action,
            path,
            source,
        }
    }
}
