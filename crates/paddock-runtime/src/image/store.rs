//! The image cache: blobs by digest (verified on the way in), each image unpacked once into
//! `rootfs/<config-hex>` and shared read-only by every sandbox using it, tag → image records, and
//! imports from local OCI layouts.
//!
//! On disk (mode 0700): `blobs/sha256/<hex>`, `rootfs/<id>/`, `configs/<id>.json`,
//! `refs/<sha256 of the reference>.json`, `tmp/` (emptied on open).

use std::io::BufReader;
use std::path::{Path, PathBuf};

use rustix::fs::{Mode, OFlags, ResolveFlags};
use sha2::{Digest as _, Sha256};
use tokio::sync::Mutex;

use super::manifest::{
    self, ConfigFile, Descriptor, ImageManifest, MAX_DOCUMENT_BYTES, ManifestDoc, Platform,
};
use super::reference::{ImageRef, RegistryRef, valid_digest};
use super::registry::{ProgressFn, RegistryClient, RegistryConfig, hex};
use super::unpack::{UnpackLimits, UnpackStats, unpack_layer};
use super::{ImageConfig, ImageError};
use crate::spec::EnvVar;

/// An image ready to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PulledImage {
    /// The config digest (`sha256:…`): the image's identity.
    pub id: String,
    /// The unpacked root filesystem; shared, never write to it.
    pub rootfs: PathBuf,
    pub config: ImageConfig,
}

/// The content-addressed image cache.
#[derive(Debug)]
pub struct ImageStore {
    root: PathBuf,
    registry: RegistryClient,
    platform: Platform,
    limits: UnpackLimits,
    /// Pulls run one at a time: no blob is fetched or unpacked twice.
    pull_lock: Mutex<()>,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct RefRecord {
    reference: String,
    id: String,
}

/// Where blobs come from for one pull.
enum Source<'a> {
    Registry(&'a RegistryRef),
    Layout(&'a Path),
}

impl ImageStore {
    /// Opens (creating) the cache under `root` and empties its `tmp/`.
    ///
    /// # Errors
    /// The directories cannot be created.
    pub fn open(root: &Path, registry: RegistryConfig) -> Result<Self, ImageError> {
        for sub in ["blobs/sha256", "rootfs", "configs", "refs"] {
            std::fs::create_dir_all(root.join(sub))
                .map_err(ImageError::io("create", root.join(sub)))?;
        }
        let tmp = root.join("tmp");
        if tmp.exists() {
            std::fs::remove_dir_all(&tmp).map_err(ImageError::io("clean", &tmp))?;
        }
        std::fs::create_dir_all(&tmp).map_err(ImageError::io("create", &tmp))?;
        set_private(root)?;
        Ok(Self {
            root: root.to_owned(),
            registry: RegistryClient::new(registry),
            platform: Platform::host(),
            limits: UnpackLimits::default(),
            pull_lock: Mutex::new(()),
        })
    }

    /// Sets the bounds applied when unpacking.
    pub fn with_limits(mut self, limits: UnpackLimits) -> Self {
        self.limits = limits;
        self
    }

    /// The image if it is already unpacked (registry images by their last pulled reference).
    pub fn cached(&self, image: &ImageRef) -> Option<PulledImage> {
        let ImageRef::Registry(r) = image else {
            return None;
        };
        let record: RefRecord =
            serde_json::from_slice(&std::fs::read(self.ref_path(r)).ok()?).ok()?;
        self.load(&record.id).ok()
    }

    /// The cached image, or a pull when there is none (Kubernetes' `IfNotPresent`). Local
    /// layouts are always re-read (cheap; blobs and rootfs are still reused).
    ///
    /// # Errors
    /// See [`ImageStore::pull`].
    pub async fn get_or_pull(
        &self,
        image: &ImageRef,
        progress: &ProgressFn,
    ) -> Result<PulledImage, ImageError> {
        if let Some(hit) = self.cached(image) {
            return Ok(hit);
        }
        self.pull(image, progress).await
    }

    /// Resolves the reference now (a tag may have moved), fetches what is missing, verifies it
    /// and unpacks the image once.
    ///
    /// # Errors
    /// Registry, verification, layout and unpack failures, each naming what failed.
    pub async fn pull(
        &self,
        image: &ImageRef,
        progress: &ProgressFn,
    ) -> Result<PulledImage, ImageError> {
        let _guard = self.pull_lock.lock().await;
        match image {
            ImageRef::Host => Err(ImageError::HostImage),
            ImageRef::Registry(r) => {
                let source = Source::Registry(r);
                let (body, content_type, _digest) =
                    self.registry.fetch_manifest(r, &r.reference).await?;
                let manifest = self
                    .select(&source, &r.to_string(), content_type.as_deref(), &body)
                    .await?;
                let pulled = self
                    .materialize(&source, &r.to_string(), &manifest, progress)
                    .await?;
                let record = RefRecord {
                    reference: r.to_string(),
                    id: pulled.id.clone(),
                };
                let bytes = serde_json::to_vec(&record).map_err(|e| ImageError::Manifest {
                    reference: r.to_string(),
                    message: e.to_string(),
                })?;
                write_atomic(&self.root.join("tmp"), &self.ref_path(r), &bytes)?;
                Ok(pulled)
            }
            ImageRef::OciLayout { path, tag } => {
                let layout_err = |message: String| ImageError::Layout {
                    path: path.clone(),
                    message,
                };
                let index_path = path.join("index.json");
                let body = read_small(&index_path).map_err(|e| {
                    layout_err(format!(
                        "cannot read index.json ({e}); is this an OCI image layout?"
                    ))
                })?;
                let index: manifest::Index = serde_json::from_slice(&body)
                    .map_err(|e| layout_err(format!("bad index.json: {e}")))?;
                let name_of = |d: &Descriptor| {
                    d.annotations
                        .as_ref()
                        .and_then(|a| a.get("org.opencontainers.image.ref.name"))
                        .cloned()
                };
                let chosen = match tag {
                    Some(tag) => index
                        .manifests
                        .iter()
                        .find(|d| name_of(d).as_deref() == Some(tag.as_str())),
                    None if index.manifests.len() == 1 => index.manifests.first(),
                    None => None,
                };
                let Some(chosen) = chosen else {
                    let tags: Vec<String> = index.manifests.iter().filter_map(name_of).collect();
                    return Err(layout_err(format!(
                        "no image {} (tags: {}); name one as oci:{}:TAG",
                        tag.as_deref()
                            .map_or("without a tag".to_owned(), |t| format!("tagged {t:?}")),
                        if tags.is_empty() {
                            "none".to_owned()
                        } else {
                            tags.join(", ")
                        },
                        path.display()
                    )));
                };
                let source = Source::Layout(path);
                let reference = image.to_string();
                let body = self.document(&source, chosen).await?;
                let manifest = self
                    .select(&source, &reference, chosen.media_type.as_deref(), &body)
                    .await?;
                self.materialize(&source, &reference, &manifest, progress)
                    .await
            }
        }
    }

    fn ref_path(&self, r: &RegistryRef) -> PathBuf {
        self.root.join("refs").join(format!(
            "{}.json",
            hex(&Sha256::digest(r.to_string().as_bytes()))
        ))
    }

    fn blob_path(&self, digest: &str) -> PathBuf {
        self.root
            .join("blobs/sha256")
            .join(digest.trim_start_matches("sha256:"))
    }

    /// Follows an index to this platform's manifest.
    async fn select(
        &self,
        source: &Source<'_>,
        reference: &str,
        content_type: Option<&str>,
        body: &[u8],
    ) -> Result<ImageManifest, ImageError> {
        let bad = |message: String| ImageError::Manifest {
            reference: reference.to_owned(),
            message,
        };
        match manifest::parse_manifest(content_type, body).map_err(bad)? {
            ManifestDoc::Image(m) => Ok(m),
            ManifestDoc::Index(index) => {
                let chosen =
                    manifest::select_platform(&index, &self.platform).map_err(|available| {
                        ImageError::NoMatchingPlatform {
                            reference: reference.to_owned(),
                            wanted: self.platform.to_string(),
                            available,
                        }
                    })?;
                let body = match source {
                    Source::Registry(r) => self.registry.fetch_manifest(r, &chosen.digest).await?.0,
                    Source::Layout(_) => self.document(source, chosen).await?,
                };
                match manifest::parse_manifest(chosen.media_type.as_deref(), &body).map_err(bad)? {
                    ManifestDoc::Image(m) => Ok(m),
                    ManifestDoc::Index(_) => Err(ImageError::Manifest {
                        reference: reference.to_owned(),
                        message: "nested image indexes are not supported".into(),
                    }),
                }
            }
        }
    }

    /// A small verified document (manifest or config) from the cache or the source.
    async fn document(
        &self,
        source: &Source<'_>,
        desc: &Descriptor,
    ) -> Result<Vec<u8>, ImageError> {
        if desc.size > MAX_DOCUMENT_BYTES {
            return Err(ImageError::Manifest {
                reference: desc.digest.clone(),
                message: format!("document of {} bytes is too large", desc.size),
            });
        }
        let path = self.fetch(source, desc, &|_| {}).await?;
        std::fs::read(&path).map_err(ImageError::io("read", path))
    }

    /// Makes the blob present and verified in the cache; returns its path.
    async fn fetch(
        &self,
        source: &Source<'_>,
        desc: &Descriptor,
        progress: &ProgressFn,
    ) -> Result<PathBuf, ImageError> {
        if !valid_digest(&desc.digest) {
            return Err(ImageError::Manifest {
                reference: desc.digest.clone(),
                message: "only sha256 digests are supported".into(),
            });
        }
        let dest = self.blob_path(&desc.digest);
        if dest.exists() {
            return Ok(dest);
        }
        let tmp = self.root.join("tmp").join(format!("blob-{}", unique()));
        match source {
            Source::Registry(r) => {
                if desc.urls.as_ref().is_some_and(|u| !u.is_empty()) {
                    tracing::debug!(digest = %desc.digest, "ignoring foreign layer URLs; fetching from the registry");
                }
                self.registry.fetch_blob(r, desc, &tmp, progress).await?;
            }
            Source::Layout(layout) => {
                let src = layout
                    .join("blobs/sha256")
                    .join(desc.digest.trim_start_matches("sha256:"));
                let (src, tmp2, digest, size) =
                    (src.clone(), tmp.clone(), desc.digest.clone(), desc.size);
                tokio::task::spawn_blocking(move || copy_verified(&src, &tmp2, &digest, size))
                    .await
                    .map_err(|e| ImageError::Layout {
                        path: layout.to_path_buf(),
                        message: e.to_string(),
                    })??;
                progress(&super::PullProgress {
                    digest: &desc.digest,
                    done: desc.size,
                    total: desc.size,
                });
            }
        }
        std::fs::rename(&tmp, &dest).map_err(ImageError::io("store blob", &dest))?;
        Ok(dest)
    }

    /// Fetches config and layers and unpacks them once.
    async fn materialize(
        &self,
        source: &Source<'_>,
        reference: &str,
        m: &ImageManifest,
        progress: &ProgressFn,
    ) -> Result<PulledImage, ImageError> {
        let id = m.config.digest.clone();
        if let Ok(hit) = self.load(&id) {
            return Ok(hit);
        }
        let config_bytes = self.document(source, &m.config).await?;
        let config: ConfigFile =
            serde_json::from_slice(&config_bytes).map_err(|e| ImageError::Manifest {
                reference: reference.to_owned(),
                message: format!("bad image config: {e}"),
            })?;
        let mut layers = Vec::with_capacity(m.layers.len());
        for layer in &m.layers {
            layers.push((
                layer.digest.clone(),
                self.fetch(source, layer, progress).await?,
            ));
        }
        let staging = self.root.join("tmp").join(format!("rootfs-{}", unique()));
        std::fs::create_dir(&staging).map_err(ImageError::io("create", &staging))?;
        let limits = self.limits;
        let staging2 = staging.clone();
        let unpacked = tokio::task::spawn_blocking(move || -> Result<UnpackStats, ImageError> {
            let mut stats = UnpackStats::default();
            for (digest, path) in &layers {
                let file = std::fs::File::open(path).map_err(ImageError::io("open", path))?;
                unpack_layer(
                    BufReader::with_capacity(256 * 1024, file),
                    &staging2,
                    &limits,
                    &mut stats,
                )
                .map_err(|source| ImageError::Unpack {
                    digest: digest.clone(),
                    source,
                })?;
            }
            Ok(stats)
        })
        .await
        .map_err(|e| ImageError::Manifest {
            reference: reference.to_owned(),
            message: format!("unpack task failed: {e}"),
        });
        let stats = match unpacked {
            Ok(Ok(stats)) => stats,
            Ok(Err(e)) | Err(e) => {
                let _ = std::fs::remove_dir_all(&staging);
                return Err(e);
            }
        };
        tracing::debug!(
            image = reference,
            entries = stats.entries,
            bytes = stats.bytes,
            "unpacked"
        );
        let image_config =
            image_config(&staging, config.config.unwrap_or_default()).map_err(|message| {
                ImageError::Manifest {
                    reference: reference.to_owned(),
                    message,
                }
            })?;
        let config_json = serde_json::to_vec(&image_config).map_err(|e| ImageError::Manifest {
            reference: reference.to_owned(),
            message: e.to_string(),
        })?;
        let hexid = id.trim_start_matches("sha256:");
        let final_dir = self.root.join("rootfs").join(hexid);
        // The rootfs directory itself must be traversable whatever the image says.
        std::fs::set_permissions(
            &staging,
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .map_err(ImageError::io("chmod", &staging))?;
        match std::fs::rename(&staging, &final_dir) {
            Ok(()) => {}
            Err(_) if final_dir.exists() => {
                let _ = std::fs::remove_dir_all(&staging);
            }
            Err(e) => return Err(ImageError::io("store rootfs", &final_dir)(e)),
        }
        write_atomic(
            &self.root.join("tmp"),
            &self.root.join("configs").join(format!("{hexid}.json")),
            &config_json,
        )?;
        self.load(&id)
    }

    fn load(&self, id: &str) -> Result<PulledImage, ImageError> {
        let hexid = id.trim_start_matches("sha256:");
        let config_path = self.root.join("configs").join(format!("{hexid}.json"));
        let bytes = std::fs::read(&config_path).map_err(ImageError::io("read", &config_path))?;
        let config = serde_json::from_slice(&bytes).map_err(|e| ImageError::Manifest {
            reference: id.to_owned(),
            message: format!("cached config is corrupt: {e}"),
        })?;
        let rootfs = self.root.join("rootfs").join(hexid);
        if !rootfs.is_dir() {
            return Err(ImageError::io("find", &rootfs)(
                std::io::ErrorKind::NotFound.into(),
            ));
        }
        Ok(PulledImage {
            id: id.to_owned(),
            rootfs,
            config,
        })
    }
}

fn unique() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    format!(
        "{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

fn set_private(path: &Path) -> Result<(), ImageError> {
    std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o700))
        .map_err(ImageError::io("chmod", path))
}

fn read_small(path: &Path) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let file = std::fs::File::open(path)?;
    let mut out = Vec::new();
    file.take(MAX_DOCUMENT_BYTES + 1).read_to_end(&mut out)?;
    if out.len() as u64 > MAX_DOCUMENT_BYTES {
        return Err(std::io::Error::other("larger than 4 MiB"));
    }
    Ok(out)
}

fn write_atomic(tmp_dir: &Path, dest: &Path, bytes: &[u8]) -> Result<(), ImageError> {
    let tmp = tmp_dir.join(format!("w-{}", unique()));
    std::fs::write(&tmp, bytes).map_err(ImageError::io("write", &tmp))?;
    std::fs::rename(&tmp, dest).map_err(ImageError::io("write", dest))
}

/// Copies a layout blob into the cache, verifying size and digest.
fn copy_verified(src: &Path, dest: &Path, digest: &str, size: u64) -> Result<(), ImageError> {
    use std::io::{Read, Write};
    let mut input = std::fs::File::open(src).map_err(ImageError::io("open blob", src))?;
    let mut output = std::fs::File::create(dest).map_err(ImageError::io("create", dest))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    let mut total: u64 = 0;
    loop {
        let n = input
            .read(&mut buf)
            .map_err(ImageError::io("read blob", src))?;
        if n == 0 {
            break;
        }
        total += n as u64;
        if total > size {
            break;
        }
        hasher.update(&buf[..n]);
        output
            .write_all(&buf[..n])
            .map_err(ImageError::io("write", dest))?;
    }
    let actual = format!("sha256:{}", hex(&hasher.finalize()));
    if total != size || actual != digest {
        let _ = std::fs::remove_file(dest);
        return Err(ImageError::DigestMismatch {
            digest: digest.to_owned(),
            message: format!("{} holds {total} bytes hashing to {actual}", src.display()),
        });
    }
    Ok(())
}

/// Builds the runnable config, resolving a named `User` against the image's own files.
fn image_config(rootfs: &Path, c: manifest::ContainerConfig) -> Result<ImageConfig, String> {
    let env = c
        .env
        .unwrap_or_default()
        .into_iter()
        .filter_map(|kv| {
            kv.split_once('=').map(|(k, v)| EnvVar {
                name: k.to_owned(),
                value: v.to_owned(),
            })
        })
        .collect();
    let (uid, gid) = match c.user.as_deref().filter(|u| !u.is_empty()) {
        None => (None, None),
        Some(user) => resolve_user(rootfs, user)?,
    };
    Ok(ImageConfig {
        entrypoint: c.entrypoint.unwrap_or_default(),
        cmd: c.cmd.unwrap_or_default(),
        env,
        working_dir: c.working_dir.filter(|w| !w.is_empty()),
        uid,
        gid,
    })
}

/// `uid`, `uid:gid`, `name`, `name:group` → numbers, names looked up in the image.
fn resolve_user(rootfs: &Path, user: &str) -> Result<(Option<u32>, Option<u32>), String> {
    let (u, g) = match user.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (user, None),
    };
    let (uid, primary_gid) = match u.parse::<u32>() {
        Ok(n) => (n, None),
        Err(_) => {
            let passwd = read_in_root(rootfs, "etc/passwd")
                .map_err(|e| format!("image User {user:?}: cannot read /etc/passwd: {e}"))?;
            let line = passwd
                .lines()
                .map(|l| l.split(':').collect::<Vec<_>>())
                .find(|f| f.len() >= 4 && f[0] == u)
                .ok_or_else(|| format!("image User {u:?} is not in the image's /etc/passwd"))?;
            (
                line[2]
                    .parse()
                    .map_err(|_| format!("bad uid for {u:?} in /etc/passwd"))?,
                line[3].parse().ok(),
            )
        }
    };
    let gid = match g {
        None => primary_gid.or(Some(0)),
        Some(g) => Some(match g.parse::<u32>() {
            Ok(n) => n,
            Err(_) => {
                let group = read_in_root(rootfs, "etc/group")
                    .map_err(|e| format!("image User {user:?}: cannot read /etc/group: {e}"))?;
                group
                    .lines()
                    .map(|l| l.split(':').collect::<Vec<_>>())
                    .find(|f| f.len() >= 3 && f[0] == g)
                    .and_then(|f| f[2].parse().ok())
                    .ok_or_else(|| format!("image group {g:?} is not in the image's /etc/group"))?
            }
        }),
    };
    Ok((Some(uid), gid))
}

/// Reads a small file inside `root`, symlinks resolved as if `root` were `/`.
fn read_in_root(root: &Path, rel: &str) -> std::io::Result<String> {
    use std::io::Read;
    let dir = rustix::fs::open(
        root,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    let fd = rustix::fs::openat2(
        &dir,
        rel,
        OFlags::RDONLY | OFlags::CLOEXEC,
        Mode::empty(),
        ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
    )?;
    let mut out = String::new();
    std::fs::File::from(fd)
        .take(1 << 20)
        .read_to_string(&mut out)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn named_users_resolve_against_the_images_own_passwd() {
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir(t.path().join("etc")).unwrap();
        std::fs::write(
            t.path().join("etc/passwd"),
            "root:x:0:0::/root:/bin/sh\napp:x:1000:1001::/app:/bin/sh\n",
        )
        .unwrap();
        std::fs::write(t.path().join("etc/group"), "root:x:0:\nstaff:x:50:\n").unwrap();
        assert_eq!(
            resolve_user(t.path(), "app").unwrap(),
            (Some(1000), Some(1001))
        );
        assert_eq!(
            resolve_user(t.path(), "app:staff").unwrap(),
            (Some(1000), Some(50))
        );
        assert_eq!(resolve_user(t.path(), "42:7").unwrap(), (Some(42), Some(7)));
        assert_eq!(resolve_user(t.path(), "42").unwrap(), (Some(42), Some(0)));
        assert!(
            resolve_user(t.path(), "ghost")
                .unwrap_err()
                .contains("ghost")
        );
    }

    #[test]
    fn a_passwd_symlink_cannot_read_host_files() {
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir(t.path().join("etc")).unwrap();
        // Points at the host's /etc/passwd; resolved inside the image it is itself: a loop/miss.
        std::os::unix::fs::symlink("/etc/passwd", t.path().join("etc/passwd")).unwrap();
        assert!(resolve_user(t.path(), "root").is_err());
    }
}
