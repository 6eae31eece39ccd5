//! OCI and Docker image documents (index / manifest list, manifest, config) and the choice of
//! the manifest for this host's platform. Parsing only.

use std::collections::BTreeMap;

use serde::Deserialize;

pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";

/// The `Accept` header for manifest requests: every kind we can read.
pub const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json";

/// Largest manifest or config document accepted (they are small JSON files).
pub const MAX_DOCUMENT_BYTES: u64 = 4 << 20;

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    #[serde(default)]
    pub media_type: Option<String>,
    pub digest: String,
    pub size: u64,
    #[serde(default)]
    pub platform: Option<Platform>,
    #[serde(default)]
    pub annotations: Option<BTreeMap<String, String>>,
    #[serde(default)]
    pub urls: Option<Vec<String>>,
}

/// An image platform (`linux/amd64`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Platform {
    pub architecture: String,
    pub os: String,
    #[serde(default)]
    pub variant: Option<String>,
}

impl Platform {
    /// The platform of this host, in OCI's names.
    pub fn host() -> Self {
        let architecture = match std::env::consts::ARCH {
            "x86_64" => "amd64",
            "aarch64" => "arm64",
            "x86" => "386",
            "powerpc64" => "ppc64le",
            other => other,
        };
        Self {
            architecture: architecture.to_owned(),
            os: "linux".to_owned(),
            variant: None,
        }
    }
}

impl std::fmt::Display for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Index {
    pub manifests: Vec<Descriptor>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageManifest {
    pub config: Descriptor,
    pub layers: Vec<Descriptor>,
}

/// A fetched manifest document.
#[derive(Debug, Clone)]
pub enum ManifestDoc {
    Index(Index),
    Image(ImageManifest),
}

/// Parses a manifest by its media type (from `Content-Type`, else the body's `mediaType`,
/// else its shape).
///
/// # Errors
/// Malformed JSON or an unknown media type, as text.
pub fn parse_manifest(content_type: Option<&str>, body: &[u8]) -> Result<ManifestDoc, String> {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Probe {
        #[serde(default)]
        media_type: Option<String>,
        #[serde(default)]
        manifests: Option<serde_json::Value>,
        #[serde(default)]
        schema_version: Option<u32>,
    }
    let probe: Probe =
        serde_json::from_slice(body).map_err(|e| format!("manifest is not valid JSON: {e}"))?;
    let media_type = content_type
        .map(|c| c.split(';').next().unwrap_or_default().trim().to_owned())
        .filter(|c| c.starts_with("application/vnd."))
        .or(probe.media_type);
    let is_index = match media_type.as_deref() {
        Some(OCI_INDEX | DOCKER_LIST) => true,
        Some(OCI_MANIFEST | DOCKER_MANIFEST) => false,
        Some(other) if other.contains("manifest.v1") => {
            return Err(format!(
                "{other} (Docker schema 1) is not supported; push the image again with a current tool"
            ));
        }
        Some(other) => return Err(format!("unsupported manifest media type {other}")),
        None if probe.schema_version == Some(1) => {
            return Err("Docker schema 1 manifests are not supported".to_owned());
        }
        None => probe.manifests.is_some(),
    };
    if is_index {
        serde_json::from_slice(body)
            .map(ManifestDoc::Index)
            .map_err(|e| format!("bad image index: {e}"))
    } else {
        serde_json::from_slice(body)
            .map(ManifestDoc::Image)
            .map_err(|e| format!("bad image manifest: {e}"))
    }
}

/// Picks the manifest for `want` from an index (os and architecture must match; a variant only
/// when both name one).
///
/// # Errors
/// The platforms the index does offer, for the message.
pub fn select_platform<'a>(index: &'a Index, want: &Platform) -> Result<&'a Descriptor, String> {
    index
        .manifests
        .iter()
        .find(|d| {
            d.platform.as_ref().is_some_and(|p| {
                p.os == want.os
                    && p.architecture == want.architecture
                    && (want.variant.is_none() || p.variant.is_none() || p.variant == want.variant)
            })
        })
        .ok_or_else(|| {
            let list: Vec<String> = index
                .manifests
                .iter()
                .filter_map(|d| d.platform.as_ref().map(ToString::to_string))
                .collect();
            if list.is_empty() {
                "none".to_owned()
            } else {
                list.join(", ")
            }
        })
}

/// The image config blob (`application/vnd.oci.image.config.v1+json`), the parts we use.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ConfigFile {
    #[serde(default)]
    pub config: Option<ContainerConfig>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ContainerConfig {
    #[serde(default)]
    pub entrypoint: Option<Vec<String>>,
    #[serde(default)]
    pub cmd: Option<Vec<String>>,
    #[serde(default)]
    pub env: Option<Vec<String>>,
    #[serde(default)]
    pub working_dir: Option<String>,
    #[serde(default)]
    pub user: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    const INDEX: &str = r#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[
        {"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:aa","size":1,"platform":{"architecture":"arm64","os":"linux","variant":"v8"}},
        {"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:bb","size":1,"platform":{"architecture":"amd64","os":"linux"}}]}"#;

    #[test]
    fn index_selects_the_manifest_for_linux_amd64() {
        let ManifestDoc::Index(index) = parse_manifest(None, INDEX.as_bytes()).unwrap() else {
            panic!()
        };
        let want = Platform {
            architecture: "amd64".into(),
            os: "linux".into(),
            variant: None,
        };
        assert_eq!(select_platform(&index, &want).unwrap().digest, "sha256:bb");
        let s390 = Platform {
            architecture: "s390x".into(),
            os: "linux".into(),
            variant: None,
        };
        assert_eq!(
            select_platform(&index, &s390).unwrap_err(),
            "linux/arm64/v8, linux/amd64"
        );
    }

    #[test]
    fn docker_manifest_list_content_type_is_an_index() {
        let body = INDEX.replace(
            "\"mediaType\":\"application/vnd.oci.image.index.v1+json\",",
            "",
        );
        assert!(matches!(
            parse_manifest(Some(DOCKER_LIST), body.as_bytes()),
            Ok(ManifestDoc::Index(_))
        ));
    }

    #[test]
    fn schema1_and_garbage_are_rejected_with_a_reason() {
        assert!(
            parse_manifest(None, br#"{"schemaVersion":1,"fsLayers":[]}"#)
                .unwrap_err()
                .contains("schema 1")
        );
        assert!(
            parse_manifest(None, b"<html>")
                .unwrap_err()
                .contains("JSON")
        );
    }

    #[test]
    fn config_reads_docker_pascal_case_fields() {
        let c: ConfigFile = serde_json::from_str(
            r#"{"config":{"Entrypoint":null,"Cmd":["sh"],"Env":["PATH=/bin"],"WorkingDir":"/w","User":"1000:1000"}}"#,
        )
        .unwrap();
        let c = c.config.unwrap();
        assert_eq!(c.cmd.unwrap(), vec!["sh"]);
        assert!(c.entrypoint.is_none());
        assert_eq!(c.user.as_deref(), Some("1000:1000"));
    }
}
