//! Image references as users write them: `busybox`, `ghcr.io/o/r:tag`, `host/r@sha256:…`,
//! `oci:/path/to/layout[:tag]`, and the built-in `host`. Parsing only; no IO.

use std::fmt;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// Where a sandbox's root filesystem comes from.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ImageRef {
    /// Read-only views of this host's `/usr`, `/etc` (secrets masked), …: nothing to pull.
    Host,
    /// An image in an OCI distribution registry.
    Registry(RegistryRef),
    /// An image in a local OCI image layout directory.
    OciLayout {
        path: PathBuf,
        /// The `org.opencontainers.image.ref.name` to pick; the only manifest when `None`.
        tag: Option<String>,
    },
}

/// A `registry/repository:tag` or `registry/repository@digest` reference.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct RegistryRef {
    /// `host[:port]` as written (`docker.io` for Docker Hub).
    pub registry: String,
    /// `library/busybox`, `org/repo`.
    pub repository: String,
    /// A tag or a `sha256:` digest.
    pub reference: String,
}

/// An image reference that cannot be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid image reference {reference:?}: {reason}")]
pub struct InvalidImageRef {
    pub reference: String,
    pub reason: &'static str,
}

impl RegistryRef {
    /// The host the distribution API is served on (`registry-1.docker.io` for Docker Hub).
    pub fn api_host(&self) -> &str {
        if self.registry == "docker.io" {
            "registry-1.docker.io"
        } else {
            &self.registry
        }
    }

    /// Whether `reference` is a content digest rather than a tag.
    pub fn is_digest(&self) -> bool {
        self.reference.contains(':')
    }
}

impl fmt::Display for RegistryRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sep = if self.is_digest() { '@' } else { ':' };
        write!(
            f,
            "{}/{}{}{}",
            self.registry, self.repository, sep, self.reference
        )
    }
}

impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Host => f.write_str("host"),
            Self::Registry(r) => r.fmt(f),
            Self::OciLayout {
                path,
                tag: Some(tag),
            } => write!(f, "oci:{}:{tag}", path.display()),
            Self::OciLayout { path, tag: None } => write!(f, "oci:{}", path.display()),
        }
    }
}

impl std::str::FromStr for ImageRef {
    type Err = InvalidImageRef;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ImageRef::parse(s)
    }
}

impl ImageRef {
    /// Parses a reference. `host` is the built-in image; `oci:PATH[:TAG]` a local layout;
    /// anything else a registry reference with Docker's defaults (`docker.io`, `library/`,
    /// `latest`).
    ///
    /// # Errors
    /// A reference that is empty, has bad characters, an empty component or a malformed digest.
    pub fn parse(s: &str) -> Result<Self, InvalidImageRef> {
        let bad = |reason| InvalidImageRef {
            reference: s.to_owned(),
            reason,
        };
        if s == "host" {
            return Ok(Self::Host);
        }
        if let Some(rest) = s.strip_prefix("oci:") {
            if rest.is_empty() {
                return Err(bad(
                    "oci: needs a layout directory, as in oci:/path/to/layout[:tag]",
                ));
            }
            let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
            let (path, tag) = match rest[last_slash..].rfind(':') {
                Some(i) => {
                    let split = last_slash + i;
                    (&rest[..split], Some(&rest[split + 1..]))
                }
                None => (rest, None),
            };
            if let Some(tag) = tag
                && !valid_tag(tag)
            {
                return Err(bad("the tag after the layout path is not a valid tag"));
            }
            return Ok(Self::OciLayout {
                path: PathBuf::from(path),
                tag: tag.map(str::to_owned),
            });
        }
        if s.is_empty() || s.len() > 4096 {
            return Err(bad("must be 1 to 4096 characters"));
        }
        let (name, digest) = match s.split_once('@') {
            Some((name, digest)) => (name, Some(digest)),
            None => (s, None),
        };
        let (registry, remainder) = match name.split_once('/') {
            Some((first, rest))
                if first.contains('.') || first.contains(':') || first == "localhost" =>
            {
                (first.to_owned(), rest)
            }
            _ => ("docker.io".to_owned(), name),
        };
        let last_slash = remainder.rfind('/').map_or(0, |i| i + 1);
        let (repository, tag) = match remainder[last_slash..].rfind(':') {
            Some(i) => (
                &remainder[..last_slash + i],
                Some(&remainder[last_slash + i + 1..]),
            ),
            None => (remainder, None),
        };
        if repository.is_empty() || !repository.split('/').all(valid_path_component) {
            return Err(bad(
                "the repository must be lowercase letters, digits and . _ - separated by /",
            ));
        }
        let repository = if registry == "docker.io" && !repository.contains('/') {
            format!("library/{repository}")
        } else {
            repository.to_owned()
        };
        let reference = match (tag, digest) {
            (_, Some(digest)) => {
                if !valid_digest(digest) {
                    return Err(bad(
                        "the digest must be sha256: followed by 64 lowercase hex digits",
                    ));
                }
                digest.to_owned()
            }
            (Some(tag), None) => {
                if !valid_tag(tag) {
                    return Err(bad("the tag must be 1 to 128 of letters, digits, _ . -"));
                }
                tag.to_owned()
            }
            (None, None) => "latest".to_owned(),
        };
        Ok(Self::Registry(RegistryRef {
            registry,
            repository,
            reference,
        }))
    }
}

fn valid_path_component(c: &str) -> bool {
    !c.is_empty()
        && c.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
        && c.as_bytes()[0].is_ascii_alphanumeric()
}

fn valid_tag(t: &str) -> bool {
    !t.is_empty()
        && t.len() <= 128
        && t.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
        && (t.as_bytes()[0].is_ascii_alphanumeric() || t.as_bytes()[0] == b'_')
}

/// Whether `d` is `sha256:` and 64 lowercase hex digits (the only algorithm accepted).
pub fn valid_digest(d: &str) -> bool {
    d.strip_prefix("sha256:").is_some_and(|h| {
        h.len() == 64
            && h.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reg(s: &str) -> RegistryRef {
        match ImageRef::parse(s).unwrap() {
            ImageRef::Registry(r) => r,
            other => panic!("not a registry ref: {other:?}"),
        }
    }

    #[test]
    fn short_names_get_docker_hub_library_and_latest() {
        let r = reg("busybox");
        assert_eq!(
            (
                r.registry.as_str(),
                r.repository.as_str(),
                r.reference.as_str()
            ),
            ("docker.io", "library/busybox", "latest")
        );
        assert_eq!(r.api_host(), "registry-1.docker.io");
        assert_eq!(reg("org/app:1.2").repository, "org/app");
    }

    #[test]
    fn registry_with_port_is_not_mistaken_for_a_tag() {
        let r = reg("127.0.0.1:5000/tools/box:v1");
        assert_eq!(r.registry, "127.0.0.1:5000");
        assert_eq!(r.repository, "tools/box");
        assert_eq!(r.reference, "v1");
        assert_eq!(reg("localhost/app").registry, "localhost");
        assert_eq!(reg("127.0.0.1:5000/box").reference, "latest");
    }

    #[test]
    fn digest_references_win_over_tags() {
        let d = format!("sha256:{}", "a".repeat(64));
        let r = reg(&format!("ghcr.io/o/r:tag@{d}"));
        assert_eq!(r.reference, d);
        assert!(r.is_digest());
        assert_eq!(r.to_string(), format!("ghcr.io/o/r@{d}"));
    }

    #[test]
    fn malformed_references_are_rejected_with_a_reason() {
        for bad in [
            "",
            "UPPER/case",
            "a//b",
            "busybox@sha256:xyz",
            "busybox:",
            "a/b:bad/tag",
            "oci:",
        ] {
            let err = ImageRef::parse(bad).unwrap_err();
            assert!(!err.reason.is_empty(), "{bad}");
        }
    }

    #[test]
    fn host_and_oci_layouts_parse() {
        assert_eq!(ImageRef::parse("host").unwrap(), ImageRef::Host);
        assert_eq!(
            ImageRef::parse("oci:/srv/img:v2").unwrap(),
            ImageRef::OciLayout {
                path: "/srv/img".into(),
                tag: Some("v2".into())
            }
        );
        assert_eq!(
            ImageRef::parse("oci:/srv/my.img").unwrap(),
            ImageRef::OciLayout {
                path: "/srv/my.img".into(),
                tag: None
            }
        );
    }
}
