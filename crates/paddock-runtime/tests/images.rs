//! Images end to end against a real registry: a busybox-static image is built with `umoci`,
//! pushed with `skopeo` to Debian's `docker-registry` on a free loopback port, and pulled back
//! through paddock's own client — anonymously, with basic auth (htpasswd) and with bearer
//! tokens (a token endpoint run by the test, JWTs signed with `openssl`). Also: corrupted blobs,
//! local OCI layouts, hostile layers, and sandboxes running the pulled image.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers fail loudly

mod common;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use paddock_runtime::image::{Credentials, ImageError, ImageStore, RegistryConfig};
use paddock_runtime::{ImageRef, Runtime, RuntimeClass, WorkloadId, WorkloadSpec};

const USER: &str = "tester";
const PASSWORD: &str = "s3cret-pw";
/// bcrypt (cost 4) of PASSWORD, for the registry's htpasswd file.
use paddock_testkit::registry::{Registry, build_layout, push, run, tools_present};

const PASSWORD_BCRYPT: &str = "$2b$04$o30GfJV0Pm/cbQXBUgiErOvA/KZP5rFWu0F7gR.pK91EwI8IHJopO";

fn image_ref(registry: &Registry) -> ImageRef {
    ImageRef::parse(&format!("{}/tools/box:v1", registry.host())).unwrap()
}

fn insecure(registry: &Registry) -> RegistryConfig {
    RegistryConfig {
        insecure: vec![registry.host()],
        ..RegistryConfig::default()
    }
}

/// A pushed image in a storage directory, shared by the tests of one file run.
fn pushed(dir: &Path) -> (PathBuf, PathBuf) {
    let layout = build_layout(dir);
    let storage = dir.join("storage");
    let registry = Registry::start(dir, &storage, "");
    push(&layout, &registry);
    (layout, storage)
}

#[tokio::test]
async fn image_is_pulled_verified_cached_and_run_on_both_backends() {
    if !tools_present() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let (_layout, storage) = pushed(tmp.path());
    let registry = Registry::start(tmp.path(), &storage, "");
    let (rt, guard) = common::runtime_with(|c| c.registry = insecure(&registry));
    let progress: Arc<Mutex<Vec<(String, u64, u64)>>> = Arc::default();
    let seen = Arc::clone(&progress);
    let pulled = rt
        .images()
        .pull(&image_ref(&registry), &move |p| {
            seen.lock()
                .unwrap()
                .push((p.digest.to_owned(), p.done, p.total))
        })
        .await
        .unwrap();
    assert!(pulled.rootfs.join("bin/busybox").is_file());
    assert_eq!(pulled.config.cmd, vec!["/bin/sh"]);
    assert_eq!(pulled.config.working_dir.as_deref(), Some("/home/app"));
    let events = progress.lock().unwrap().clone();
    let layer_done = events
        .iter()
        .any(|(_, done, total)| *total > 500_000 && done == total);
    assert!(
        layer_done,
        "no progress reached the end of the busybox layer: {events:?}"
    );

    // The registry goes away: sandboxes still start from the cache (IfNotPresent).
    let reference = image_ref(&registry);
    drop(registry);
    assert_eq!(rt.images().cached(&reference).as_ref(), Some(&pulled));
    // gVisor keeps the image's users: uid 1000 owns /home/app. bwrap maps one uid (the
    // workload's) to the host caller, so there the default root user writes the root dir.
    for (class, uid, target) in [
        (RuntimeClass::Gvisor, 1000, "/home/app/written"),
        (RuntimeClass::Bwrap, 0, "/written"),
    ] {
        let id = WorkloadId::new(format!("img-{class}")).unwrap();
        let mut spec = WorkloadSpec::new(class, reference.clone());
        spec.run_as_user = Some(uid);
        spec.run_as_group = Some(uid);
        // The image's CMD is a shell that ends at once, and with it the sandbox: run a
        // long main process so the execs below race nothing.
        spec.command = Some(vec!["sleep".into(), "600".into()]);
        let w = rt.create(&id, &spec).await.unwrap();
        let out = common::sh(&w.agent_socket, &format!("echo $GREETING; id -u; pwd; head -1 /etc/passwd; echo new > {target} && cat {target}")).await;
        assert_eq!(out.exit_code, Some(0), "{class}: {out:?}");
        assert_eq!(
            out.stdout,
            format!("from-image\n{uid}\n/home/app\nroot:x:0:0:root:/root:/bin/sh\nnew\n"),
            "{class}"
        );
        assert!(
            !pulled.rootfs.join(target.trim_start_matches('/')).exists(),
            "{class} wrote into the shared image"
        );
        rt.teardown(&id).await.unwrap();
        assert!(!rt.workload_path(&id).exists());
    }
    drop(guard);
}

fn store(dir: &Path, config: RegistryConfig) -> ImageStore {
    ImageStore::open(&dir.join("images"), config).unwrap()
}

#[tokio::test]
async fn basic_auth_registry_needs_and_accepts_credentials() {
    if !tools_present() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let (_layout, storage) = pushed(tmp.path());
    let htpasswd = tmp.path().join("htpasswd");
    std::fs::write(&htpasswd, format!("{USER}:{PASSWORD_BCRYPT}\n")).unwrap();
    let registry = Registry::start(
        tmp.path(),
        &storage,
        &format!(
            "auth:\n  htpasswd:\n    realm: paddock-test\n    path: {}\n",
            htpasswd.display()
        ),
    );

    let anonymous = store(tmp.path(), insecure(&registry));
    let err = anonymous
        .pull(&image_ref(&registry), &|_| {})
        .await
        .unwrap_err();
    assert!(matches!(err, ImageError::Unauthorized { .. }), "{err}");
    assert!(err.to_string().contains("credentials"), "{err}");

    let mut wrong = insecure(&registry);
    wrong.credentials.insert(
        registry.host(),
        Credentials {
            username: USER.into(),
            password: "nope".into(),
        },
    );
    assert!(matches!(
        store(&tmp.path().join("w"), wrong)
            .pull(&image_ref(&registry), &|_| {})
            .await,
        Err(ImageError::Unauthorized { .. })
    ));

    let mut right = insecure(&registry);
    right.credentials.insert(
        registry.host(),
        Credentials {
            username: USER.into(),
            password: PASSWORD.into(),
        },
    );
    let pulled = store(&tmp.path().join("r"), right)
        .pull(&image_ref(&registry), &|_| {})
        .await
        .unwrap();
    assert!(pulled.rootfs.join("bin/busybox").is_file());
}

/// A token endpoint: answers `GET /token` with a fixed JWT when given the right basic
/// credentials, records the query strings it saw.
struct TokenServer {
    port: u16,
    queries: Arc<Mutex<Vec<String>>>,
}

fn start_token_server(jwt: String) -> TokenServer {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let queries: Arc<Mutex<Vec<String>>> = Arc::default();
    let seen = Arc::clone(&queries);
    let expected = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{PASSWORD}"))
    );
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut stream = stream;
            let mut buf = [0u8; 8192];
            let n = stream.read(&mut buf).unwrap_or(0);
            let request = String::from_utf8_lossy(&buf[..n]).into_owned();
            let target = request
                .split_whitespace()
                .nth(1)
                .unwrap_or_default()
                .to_owned();
            seen.lock().unwrap().push(target);
            let authorized = request.lines().any(|l| {
                l.to_ascii_lowercase().starts_with("authorization:") && l[14..].trim() == expected
            });
            let response = if authorized {
                let body = format!("{{\"token\":\"{jwt}\",\"expires_in\":3600}}");
                format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                )
            } else {
                "HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                    .to_owned()
            };
            let _ = stream.write_all(response.as_bytes());
        }
    });
    TokenServer { port, queries }
}

/// A self-signed signing certificate and an RS256 JWT granting pull on `tools/box`.
fn signed_token(dir: &Path, issuer: &str, service: &str) -> (PathBuf, String) {
    let key = dir.join("token.key");
    let cert = dir.join("token.pem");
    run(Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=paddock-token",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert));
    let der = Command::new("openssl")
        .args(["x509", "-outform", "DER", "-in"])
        .arg(&cert)
        .output()
        .unwrap()
        .stdout;
    let b64 = base64::engine::general_purpose::STANDARD;
    let url = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let header = serde_json::json!({"alg": "RS256", "typ": "JWT", "x5c": [b64.encode(der)]});
    let claims = serde_json::json!({
        "iss": issuer, "sub": USER, "aud": service, "exp": now + 3600, "nbf": now - 60, "iat": now - 60, "jti": "paddock-test",
        "access": [{"type": "repository", "name": "tools/box", "actions": ["pull"]}],
    });
    let input = format!(
        "{}.{}",
        url.encode(header.to_string()),
        url.encode(claims.to_string())
    );
    let mut sign = Command::new("openssl")
        .args(["dgst", "-sha256", "-sign"])
        .arg(&key)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    sign.stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let signature = sign.wait_with_output().unwrap().stdout;
    (cert, format!("{input}.{}", url.encode(signature)))
}

#[tokio::test]
async fn bearer_token_registry_is_pulled_through_the_challenge_flow() {
    if !tools_present() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let (_layout, storage) = pushed(tmp.path());
    let (cert, jwt) = signed_token(tmp.path(), "paddock-test-issuer", "paddock-registry");
    let tokens = start_token_server(jwt);
    let registry = Registry::start(
        tmp.path(),
        &storage,
        &format!(
            "auth:\n  token:\n    realm: http://127.0.0.1:{}/token\n    service: paddock-registry\n    issuer: paddock-test-issuer\n    rootcertbundle: {}\n",
            tokens.port,
            cert.display()
        ),
    );
    let anonymous = store(tmp.path(), insecure(&registry));
    let err = anonymous
        .pull(&image_ref(&registry), &|_| {})
        .await
        .unwrap_err();
    assert!(matches!(err, ImageError::Unauthorized { .. }), "{err}");

    let mut config = insecure(&registry);
    config.credentials.insert(
        registry.host(),
        Credentials {
            username: USER.into(),
            password: PASSWORD.into(),
        },
    );
    let pulled = store(&tmp.path().join("b"), config)
        .pull(&image_ref(&registry), &|_| {})
        .await
        .unwrap();
    assert!(pulled.rootfs.join("bin/busybox").is_file());
    let queries = tokens.queries.lock().unwrap().clone();
    assert!(
        queries
            .iter()
            .any(|q| q.contains("scope=repository%3Atools%2Fbox%3Apull")
                && q.contains("service=paddock-registry")),
        "{queries:?}"
    );
}

#[tokio::test]
async fn a_corrupted_blob_is_rejected_and_nothing_is_cached() {
    if !tools_present() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let (_layout, storage) = pushed(tmp.path());
    // Flip bytes in the largest blob (the busybox layer), keeping its size.
    let mut largest: Option<(u64, PathBuf)> = None;
    for entry in walk(&storage.join("docker/registry/v2/blobs")) {
        if entry.file_name().is_some_and(|n| n == "data") {
            let size = std::fs::metadata(&entry).unwrap().len();
            if largest.as_ref().is_none_or(|(s, _)| size > *s) {
                largest = Some((size, entry));
            }
        }
    }
    let (_, blob) = largest.unwrap();
    let digest = format!(
        "sha256:{}",
        blob.parent()
            .unwrap()
            .file_name()
            .unwrap()
            .to_string_lossy()
    );
    let mut bytes = std::fs::read(&blob).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(&blob, bytes).unwrap();
    let registry = Registry::start(tmp.path(), &storage, "");
    let store = store(tmp.path(), insecure(&registry));
    let err = store
        .pull(&image_ref(&registry), &|_| {})
        .await
        .unwrap_err();
    assert!(matches!(err, ImageError::DigestMismatch { .. }), "{err}");
    assert!(
        err.to_string().contains(&digest) && err.to_string().contains("nothing was cached"),
        "{err}"
    );
    let images = tmp.path().join("images");
    assert!(
        !images
            .join("blobs/sha256")
            .join(digest.trim_start_matches("sha256:"))
            .exists()
    );
    assert_eq!(std::fs::read_dir(images.join("rootfs")).unwrap().count(), 0);
    assert_eq!(
        std::fs::read_dir(images.join("tmp")).unwrap().count(),
        0,
        "partial download left behind"
    );
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}

#[tokio::test]
async fn plain_http_is_used_only_for_registries_marked_insecure() {
    if !tools_present() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let storage = tmp.path().join("storage");
    let registry = Registry::start(tmp.path(), &storage, "");
    let config = RegistryConfig {
        retries: 0,
        ..RegistryConfig::default()
    };
    let err = store(tmp.path(), config)
        .pull(&image_ref(&registry), &|_| {})
        .await
        .unwrap_err();
    assert!(matches!(err, ImageError::Registry { .. }), "{err}");
}

#[tokio::test]
async fn local_oci_layouts_are_used_without_a_registry() {
    if !tools_present() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let layout = build_layout(tmp.path());
    let store = store(tmp.path(), RegistryConfig::default());
    let pulled = store
        .pull(
            &ImageRef::parse(&format!("oci:{}:v1", layout.display())).unwrap(),
            &|_| {},
        )
        .await
        .unwrap();
    assert!(pulled.rootfs.join("bin/busybox").is_file());
    let again = store
        .pull(
            &ImageRef::parse(&format!("oci:{}", layout.display())).unwrap(),
            &|_| {},
        )
        .await
        .unwrap();
    assert_eq!(
        again, pulled,
        "the only image of a layout needs no tag; it is unpacked once"
    );
    let err = store
        .pull(
            &ImageRef::parse(&format!("oci:{}:nope", layout.display())).unwrap(),
            &|_| {},
        )
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("v1"),
        "the error lists the tags: {err}"
    );
}

/// Writes a one-layer OCI layout whose layer is `layer_tar` (uncompressed).
fn hostile_layout(dir: &Path, layer_tar: &[u8]) -> PathBuf {
    use sha2::Digest as _;
    let layout = dir.join("hostile");
    let blobs = layout.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).unwrap();
    let put = |bytes: &[u8]| -> (String, usize) {
        let hex: String = sha2::Sha256::digest(bytes)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        std::fs::write(blobs.join(&hex), bytes).unwrap();
        (format!("sha256:{hex}"), bytes.len())
    };
    let (layer, layer_size) = put(layer_tar);
    let config = serde_json::json!({"architecture": "amd64", "os": "linux", "config": {}, "rootfs": {"type": "layers", "diff_ids": [layer]}}).to_string();
    let (config_digest, config_size) = put(config.as_bytes());
    let manifest = serde_json::json!({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config_size},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer, "size": layer_size}],
    })
    .to_string();
    let (manifest_digest, manifest_size) = put(manifest.as_bytes());
    std::fs::write(
        layout.join("oci-layout"),
        r#"{"imageLayoutVersion":"1.0.0"}"#,
    )
    .unwrap();
    std::fs::write(
        layout.join("index.json"),
        serde_json::json!({"schemaVersion": 2, "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": manifest_digest, "size": manifest_size}]}).to_string(),
    )
    .unwrap();
    layout
}

fn raw_tar_entry(out: &mut Vec<u8>, path: &str, kind: tar::EntryType, link: &str, data: &[u8]) {
    let mut h = tar::Header::new_old();
    h.as_old_mut().name[..path.len()].copy_from_slice(path.as_bytes());
    h.as_old_mut().linkname[..link.len()].copy_from_slice(link.as_bytes());
    h.set_entry_type(kind);
    h.set_mode(0o644);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h.set_size(data.len() as u64);
    h.set_cksum();
    out.extend_from_slice(h.as_bytes());
    out.extend_from_slice(data);
    out.resize(out.len().div_ceil(512) * 512, 0);
}

#[tokio::test]
async fn hostile_layers_cannot_write_outside_the_image() {
    let tmp = tempfile::tempdir().unwrap();
    let victim = tmp.path().join("victim");
    std::fs::create_dir(&victim).unwrap();
    let store = store(tmp.path(), RegistryConfig::default());

    // `..` climbs: refused.
    let mut tar = Vec::new();
    raw_tar_entry(
        &mut tar,
        &format!("../../../../../../..{}/dotdot", victim.display()),
        tar::EntryType::Regular,
        "",
        b"x",
    );
    tar.extend_from_slice(&[0u8; 1024]);
    let layout = hostile_layout(&tmp.path().join("a"), &tar);
    let err = store
        .pull(
            &ImageRef::OciLayout {
                path: layout,
                tag: None,
            },
            &|_| {},
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("escapes"), "{err}");

    // A symlink to the victim, then a write through it: lands inside the image root.
    let mut tar = Vec::new();
    raw_tar_entry(
        &mut tar,
        "link",
        tar::EntryType::Symlink,
        victim.to_str().unwrap(),
        b"",
    );
    raw_tar_entry(
        &mut tar,
        "link2",
        tar::EntryType::Symlink,
        "../../../../../../../..",
        b"",
    );
    raw_tar_entry(&mut tar, "link2/through", tar::EntryType::Regular, "", b"x");
    tar.extend_from_slice(&[0u8; 1024]);
    let layout = hostile_layout(&tmp.path().join("b"), &tar);
    let pulled = store
        .pull(
            &ImageRef::OciLayout {
                path: layout,
                tag: None,
            },
            &|_| {},
        )
        .await
        .unwrap();
    assert!(
        pulled.rootfs.join("through").is_file(),
        "the write was confined to the image root"
    );
    assert_eq!(
        std::fs::read_dir(&victim).unwrap().count(),
        0,
        "a hostile layer wrote outside the image"
    );
}
