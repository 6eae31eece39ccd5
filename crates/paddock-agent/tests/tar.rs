//! Directories as tar streams over real sockets: `GET /v1/files/{dir}?format=tar` and
//! `PUT /v1/files/{dir}?format=tar`, including the tar-slip and other escapes.

mod common;

use std::io::Read;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use bytes::Bytes;
use common::TestAgent;
use http::{Method, StatusCode};
use tar::EntryType;

/// One parsed entry of a downloaded tar.
#[derive(Debug)]
struct Item {
    path: String,
    kind: EntryType,
    link: Option<String>,
    mode: u32,
    data: Vec<u8>,
}

fn parse(body: &[u8]) -> Vec<Item> {
    let mut archive = tar::Archive::new(body);
    archive
        .entries()
        .expect("tar")
        .map(|entry| {
            let mut entry = entry.expect("entry");
            let mut data = Vec::new();
            entry.read_to_end(&mut data).expect("tar entries");
            Item {
                path: entry
                    .path()
                    .expect("tar entry")
                    .to_string_lossy()
                    .into_owned(),
                kind: entry.header().entry_type(),
                link: entry
                    .link_name()
                    .expect("entry data")
                    .map(|l| l.to_string_lossy().into_owned()),
                mode: entry.header().mode().expect("entry path") & 0o7777,
                data,
            }
        })
        .collect()
}

fn find<'a>(items: &'a [Item], path: &str) -> &'a Item {
    items
        .iter()
        .find(|i| i.path.trim_end_matches('/') == path)
        .unwrap_or_else(|| panic!("no entry {path} in {items:#?}"))
}

/// Appends one entry with a raw, unchecked name (and link name) to `out`.
fn raw_entry(out: &mut Vec<u8>, name: &str, kind: EntryType, link: &str, data: &[u8]) {
    let mut header = tar::Header::new_gnu();
    header.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
    header.as_old_mut().linkname[..link.len()].copy_from_slice(link.as_bytes());
    header.set_entry_type(kind);
    header.set_mode(0o644);
    header.set_size(data.len() as u64);
    header.set_cksum();
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(data);
    out.resize(out.len().next_multiple_of(512), 0);
}

fn finish(mut out: Vec<u8>) -> Vec<u8> {
    out.extend_from_slice(&[0u8; 1024]);
    out
}

/// Files whose name marks them as the agent's temp files, anywhere under `dir`.
fn temp_files(dir: &Path) -> Vec<String> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).expect("read dir").flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with(".sandboxd-tmp") {
                found.push(name);
            }
            if entry.file_type().expect("file type").is_dir() {
                pending.push(entry.path());
            }
        }
    }
    found
}

async fn put_tar(agent: &TestAgent, dir: &str, body: Vec<u8>) -> common::Reply {
    agent
        .request(
            Method::PUT,
            &format!("/v1/files/{dir}?format=tar"),
            &[("content-type", "application/x-tar")],
            Bytes::from(body),
        )
        .await
}

#[tokio::test]
async fn get_tar_streams_a_directory_with_symlinks_stored_not_followed() {
    let agent = TestAgent::start().await;
    let proj = agent.root_path("proj");
    std::fs::create_dir_all(proj.join("bin")).unwrap();
    std::fs::create_dir_all(proj.join("sub/deep")).unwrap();
    std::fs::write(proj.join("a.txt"), "hello").unwrap();
    std::fs::write(proj.join("bin/run.sh"), "#!/bin/sh\n").unwrap();
    std::fs::set_permissions(proj.join("bin/run.sh"), PermissionsExt::from_mode(0o755)).unwrap();
    std::fs::write(proj.join("sub/deep/x"), vec![7u8; 300_000]).unwrap();
    std::os::unix::fs::symlink("a.txt", proj.join("link")).unwrap();
    std::os::unix::fs::symlink("/etc", proj.join("out")).unwrap();
    let fifo = std::process::Command::new("mkfifo")
        .arg(proj.join("pipe"))
        .status()
        .unwrap();
    assert!(fifo.success());

    let reply = agent.get("/v1/files/proj?format=tar").await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert_eq!(reply.headers["content-type"], "application/x-tar");
    let items = parse(&reply.body);
    let a = find(&items, "a.txt");
    assert_eq!(
        (a.kind, a.data.as_slice(), a.mode),
        (EntryType::Regular, &b"hello"[..], 0o644)
    );
    assert_eq!(find(&items, "bin/run.sh").mode, 0o755);
    assert_eq!(find(&items, "bin").kind, EntryType::Directory);
    assert_eq!(find(&items, "sub/deep/x").data, vec![7u8; 300_000]);
    let link = find(&items, "link");
    assert_eq!(
        (link.kind, link.link.as_deref()),
        (EntryType::Symlink, Some("a.txt"))
    );
    let out = find(&items, "out");
    assert_eq!(
        (out.kind, out.link.as_deref()),
        (EntryType::Symlink, Some("/etc"))
    );
    assert!(
        items
            .iter()
            .all(|i| !i.path.starts_with("out/") && !i.path.contains("passwd")),
        "a symlink was followed"
    );
    assert!(
        items.iter().all(|i| i.path != "pipe"),
        "special file packed"
    );
    assert!(
        items
            .iter()
            .all(|i| !i.path.starts_with('/') && !i.path.starts_with("proj"))
    );
}

#[tokio::test]
async fn get_tar_needs_a_directory_and_a_known_format() {
    let agent = TestAgent::start().await;
    std::fs::write(agent.root_path("file"), "x").unwrap();
    let reply = agent.get("/v1/files/file?format=tar").await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert!(
        reply.json()["message"]
            .as_str()
            .unwrap()
            .contains("directory")
    );
    let reply = agent.get("/v1/files/?format=zip").await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert!(reply.json()["message"].as_str().unwrap().contains("zip"));
    let reply = agent.get("/v1/files/missing?format=tar").await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    let head = agent
        .request(Method::HEAD, "/v1/files/?format=tar", &[], Bytes::new())
        .await;
    assert_eq!(head.status, StatusCode::OK);
    assert_eq!(head.headers["content-type"], "application/x-tar");
    assert!(head.body.is_empty());
}

#[tokio::test]
async fn put_tar_extracts_files_directories_symlinks_and_hard_links() {
    let agent = TestAgent::start().await;
    let mut builder = tar::Builder::new(Vec::new());
    let mut add = |path: &str, kind: EntryType, mode: u32, data: &[u8], link: Option<&str>| {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(kind);
        header.set_mode(mode);
        header.set_uid(4242);
        header.set_size(data.len() as u64);
        match link {
            Some(link) => builder.append_link(&mut header, path, link).unwrap(),
            None => builder.append_data(&mut header, path, data).unwrap(),
        }
    };
    add("d", EntryType::Directory, 0o750, b"", None);
    add("d/f", EntryType::Regular, 0o640, b"content", None);
    add("setuid", EntryType::Regular, 0o4755, b"#!/bin/sh\n", None);
    add("l", EntryType::Symlink, 0o777, b"", Some("d/f"));
    add("abs", EntryType::Symlink, 0o777, b"", Some("/etc/passwd"));
    add("h", EntryType::Link, 0o640, b"", Some("d/f"));
    add("fifo", EntryType::Fifo, 0o644, b"", None);
    add("readonly", EntryType::Directory, 0o555, b"", None);
    add("readonly/inside", EntryType::Regular, 0o444, b"in", None);
    let long = format!("{}/file", "n".repeat(150));
    add(&long, EntryType::Regular, 0o644, b"long name", None);
    let body = builder.into_inner().unwrap();

    let reply = put_tar(&agent, "new/dir", body).await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT, "{}", reply.text());
    let dest = agent.root_path("new/dir");
    let mode = |p: &str| std::fs::symlink_metadata(dest.join(p)).unwrap().mode() & 0o7777;
    assert_eq!(
        std::fs::read_to_string(dest.join("d/f")).unwrap(),
        "content"
    );
    assert_eq!(mode("d"), 0o750);
    assert_eq!(mode("d/f"), 0o640);
    assert_eq!(mode("setuid"), 0o755, "setuid bit kept");
    assert_eq!(
        std::fs::read_link(dest.join("l")).unwrap(),
        Path::new("d/f")
    );
    assert_eq!(
        std::fs::read_link(dest.join("abs")).unwrap(),
        Path::new("/etc/passwd")
    );
    let ino = |p: &str| std::fs::metadata(dest.join(p)).unwrap().ino();
    assert_eq!(ino("h"), ino("d/f"), "hard link is not a link");
    assert!(!dest.join("fifo").exists());
    assert_eq!(mode("readonly"), 0o555);
    assert_eq!(
        std::fs::read_to_string(dest.join("readonly/inside")).unwrap(),
        "in"
    );
    assert_eq!(
        std::fs::read_to_string(dest.join(&long)).unwrap(),
        "long name"
    );
    assert!(temp_files(&agent.root).is_empty());
    std::fs::set_permissions(dest.join("readonly"), PermissionsExt::from_mode(0o755)).unwrap();
}

#[tokio::test]
async fn tar_round_trips_a_directory() {
    let agent = TestAgent::start().await;
    let src = agent.root_path("src");
    std::fs::create_dir_all(src.join("a/b")).unwrap();
    std::fs::write(
        src.join("a/b/data"),
        (0..=255u8).cycle().take(1 << 20).collect::<Vec<_>>(),
    )
    .unwrap();
    std::fs::write(src.join("top"), "top").unwrap();
    std::os::unix::fs::symlink("a/b/data", src.join("alias")).unwrap();
    let tar = agent.get("/v1/files/src?format=tar").await;
    assert_eq!(tar.status, StatusCode::OK);
    let reply = put_tar(&agent, "copy", tar.body.to_vec()).await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT, "{}", reply.text());
    let copy = agent.root_path("copy");
    assert_eq!(
        std::fs::read(copy.join("a/b/data")).unwrap(),
        std::fs::read(src.join("a/b/data")).unwrap()
    );
    assert_eq!(std::fs::read_to_string(copy.join("top")).unwrap(), "top");
    assert_eq!(
        std::fs::read_link(copy.join("alias")).unwrap(),
        Path::new("a/b/data")
    );
}

#[tokio::test]
async fn put_tar_refuses_escaping_entries_naming_them() {
    let agent = TestAgent::start().await;
    let outside = agent.dir.path().join("outside");
    std::fs::create_dir(&outside).unwrap();
    let outside_str = outside.to_str().unwrap().to_owned();
    // A symlink already in the target directory that leads out.
    std::fs::create_dir(agent.root_path("pre")).unwrap();
    std::os::unix::fs::symlink(&outside, agent.root_path("pre/exit")).unwrap();

    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "abs",
            {
                let mut t = Vec::new();
                raw_entry(
                    &mut t,
                    &format!("{outside_str}/abs"),
                    EntryType::Regular,
                    "",
                    b"x",
                );
                finish(t)
            },
            "absolute",
        ),
        (
            "dotdot",
            {
                let mut t = Vec::new();
                raw_entry(&mut t, "../dotdot", EntryType::Regular, "", b"x");
                finish(t)
            },
            "..",
        ),
        (
            "nested-dotdot",
            {
                let mut t = Vec::new();
                raw_entry(&mut t, "a/../../x", EntryType::Regular, "", b"x");
                finish(t)
            },
            "..",
        ),
        // The classic tar-slip: a symlink out, then a file through it.
        (
            "slip",
            {
                let mut t = Vec::new();
                raw_entry(&mut t, "evil", EntryType::Symlink, &outside_str, b"");
                raw_entry(&mut t, "evil/pwned", EntryType::Regular, "", b"x");
                finish(t)
            },
            "evil/pwned",
        ),
        (
            "slip-relative",
            {
                let mut t = Vec::new();
                raw_entry(&mut t, "up", EntryType::Symlink, "../..", b"");
                raw_entry(&mut t, "up/pwned", EntryType::Regular, "", b"x");
                finish(t)
            },
            "up/pwned",
        ),
        (
            "slip-directory",
            {
                let mut t = Vec::new();
                raw_entry(&mut t, "door", EntryType::Symlink, &outside_str, b"");
                raw_entry(&mut t, "door/newdir/", EntryType::Directory, "", b"");
                finish(t)
            },
            "door/newdir/",
        ),
        (
            "hard-link-out",
            {
                let mut t = Vec::new();
                raw_entry(&mut t, "hl", EntryType::Link, "/etc/passwd", b"");
                finish(t)
            },
            "hl",
        ),
        (
            "hard-link-not-extracted",
            {
                let mut t = Vec::new();
                raw_entry(&mut t, "hl2", EntryType::Link, "exit", b"");
                finish(t)
            },
            "not a regular file extracted earlier",
        ),
    ];
    for (name, body, needle) in cases {
        let reply = put_tar(&agent, "pre", body).await;
        assert_eq!(
            reply.status,
            StatusCode::BAD_REQUEST,
            "{name}: {}",
            reply.text()
        );
        let json = reply.json();
        assert_eq!(json["code"], "INVALID_ARGUMENT", "{name}");
        let message = json["message"].as_str().unwrap();
        assert!(message.contains("tar entry"), "{name}: {message}");
        assert!(message.contains(needle), "{name}: {message} lacks {needle}");
    }
    // The pre-existing symlink is followed by no entry either.
    let mut t = Vec::new();
    raw_entry(&mut t, "exit/pwned", EntryType::Regular, "", b"x");
    let reply = put_tar(&agent, "pre", finish(t)).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{}", reply.text());

    let escaped: Vec<_> = std::fs::read_dir(&outside).unwrap().flatten().collect();
    assert!(escaped.is_empty(), "files escaped: {escaped:?}");
    assert!(!agent.dir.path().join("dotdot").exists());
    assert!(temp_files(&agent.root).is_empty());
}

#[tokio::test]
async fn put_tar_over_the_upload_limit_is_413_without_a_partial_file() {
    let agent = TestAgent::start_with(|c| c.limits.max_upload_bytes = 64 * 1024).await;
    let mut t = Vec::new();
    raw_entry(&mut t, "small", EntryType::Regular, "", &[1u8; 1024]);
    raw_entry(&mut t, "big", EntryType::Regular, "", &[2u8; 256 * 1024]);
    let reply = put_tar(&agent, "limited", finish(t)).await;
    assert_eq!(
        reply.status,
        StatusCode::PAYLOAD_TOO_LARGE,
        "{}",
        reply.text()
    );
    assert_eq!(reply.json()["code"], "PAYLOAD_TOO_LARGE");
    let dest = agent.root_path("limited");
    assert_eq!(std::fs::read(dest.join("small")).unwrap(), vec![1u8; 1024]);
    assert!(!dest.join("big").exists(), "partial file at its final path");
    assert!(temp_files(&agent.root).is_empty());
}

#[tokio::test]
async fn a_truncated_tar_leaves_no_partial_file() {
    let agent = TestAgent::start().await;
    let mut t = Vec::new();
    raw_entry(&mut t, "cut", EntryType::Regular, "", &[3u8; 100 * 1024]);
    t.truncate(512 + 50 * 1024);
    let reply = put_tar(&agent, "cut-dir", t).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{}", reply.text());
    assert!(reply.json()["message"].as_str().unwrap().contains("cut"));
    assert!(!agent.root_path("cut-dir/cut").exists());
    assert!(temp_files(&agent.root).is_empty());
}

#[tokio::test]
async fn put_tar_refuses_oversized_extension_headers() {
    let agent = TestAgent::start().await;
    let mut t = Vec::new();
    raw_entry(
        &mut t,
        "././@LongLink",
        EntryType::GNULongName,
        "",
        &vec![b'a'; 3 << 20],
    );
    raw_entry(&mut t, "short", EntryType::Regular, "", b"x");
    let reply = put_tar(&agent, "ext", finish(t)).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{}", reply.text());
    assert!(
        reply.json()["message"]
            .as_str()
            .unwrap()
            .contains("extension headers"),
        "{}",
        reply.text()
    );
}

#[tokio::test]
async fn put_tar_onto_a_file_or_with_a_mode_is_400() {
    let agent = TestAgent::start().await;
    std::fs::write(agent.root_path("plain"), "x").unwrap();
    let reply = put_tar(&agent, "plain", finish(Vec::new())).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert!(
        reply.json()["message"]
            .as_str()
            .unwrap()
            .contains("is a file")
    );
    let reply = agent
        .request(
            Method::PUT,
            "/v1/files/d?format=tar&mode=0644",
            &[],
            Bytes::from(finish(Vec::new())),
        )
        .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    let reply = put_tar(&agent, "../escape", finish(Vec::new())).await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
}
