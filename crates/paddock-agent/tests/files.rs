//! sandboxd REST compatibility (contract §3.2): `/v1/files` GET/HEAD/PUT/DELETE, `/v1/health`,
//! `/v1/metadata`, and the path confinement rules, one test per rule.

mod common;

use bytes::Bytes;
use common::{TestAgent, Via, multipart};
use http::{Method, StatusCode};
use serde_json::json;

#[tokio::test]
async fn put_then_get_round_trips_bytes_with_length_and_last_modified() {
    let agent = TestAgent::start().await;
    let data: Vec<u8> = (0..=255u8).cycle().take(70_000).collect();
    let reply = agent.put("/v1/files/dir/sub/blob.bin", data.clone()).await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT, "{}", reply.text());
    for via in [Via::Tcp, Via::Unix] {
        let reply = agent
            .request_via(
                via,
                Method::GET,
                "/v1/files/dir/sub/blob.bin",
                &[],
                Bytes::new(),
            )
            .await;
        assert_eq!(reply.status, StatusCode::OK);
        assert_eq!(reply.body, data);
        assert_eq!(reply.headers["content-type"], "application/octet-stream");
        assert_eq!(reply.headers["content-length"], "70000");
        assert!(
            reply.headers["last-modified"]
                .to_str()
                .unwrap()
                .ends_with(" GMT")
        );
    }
}

#[tokio::test]
async fn get_honours_single_byte_ranges() {
    let agent = TestAgent::start().await;
    std::fs::write(agent.root_path("r.txt"), "0123456789").unwrap();
    let reply = agent
        .request(
            Method::GET,
            "/v1/files/r.txt",
            &[("range", "bytes=2-5")],
            Bytes::new(),
        )
        .await;
    assert_eq!(reply.status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(reply.text(), "2345");
    assert_eq!(reply.headers["content-range"], "bytes 2-5/10");
    let suffix = agent
        .request(
            Method::GET,
            "/v1/files/r.txt",
            &[("range", "bytes=-3")],
            Bytes::new(),
        )
        .await;
    assert_eq!(suffix.text(), "789");
    let bad = agent
        .request(
            Method::GET,
            "/v1/files/r.txt",
            &[("range", "bytes=20-")],
            Bytes::new(),
        )
        .await;
    assert_eq!(bad.status, StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(bad.headers["content-range"], "bytes */10");
}

#[tokio::test]
async fn head_probes_existence_without_a_body() {
    let agent = TestAgent::start().await;
    std::fs::write(agent.root_path("h.txt"), "hello").unwrap();
    let reply = agent
        .request(Method::HEAD, "/v1/files/h.txt", &[], Bytes::new())
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.headers["content-length"], "5");
    assert!(reply.body.is_empty());
    let missing = agent
        .request(Method::HEAD, "/v1/files/none.txt", &[], Bytes::new())
        .await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn get_directory_lists_entries_sorted_with_mode_and_rfc3339_time() {
    let agent = TestAgent::start().await;
    std::fs::create_dir_all(agent.root_path("d/zdir")).unwrap();
    std::fs::write(agent.root_path("d/b.txt"), "bb").unwrap();
    std::fs::write(agent.root_path("d/a.txt"), "a").unwrap();
    std::os::unix::fs::symlink("/etc/hostname", agent.root_path("d/escaping-link")).unwrap();
    std::os::unix::fs::symlink("missing", agent.root_path("d/broken-link")).unwrap();
    std::os::unix::fs::symlink("a.txt", agent.root_path("d/good-link")).unwrap();
    let listing = agent.get("/v1/files/d").await.json();
    assert_eq!(listing["path"], "/d");
    let names: Vec<&str> = listing["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["a.txt", "b.txt", "good-link", "zdir"],
        "escaping and broken links are omitted"
    );
    let first = &listing["entries"][0];
    assert_eq!(first["size"], 1);
    assert_eq!(first["type"], "file");
    assert_eq!(first["mode"], "0644");
    let time = first["modified_at"].as_str().unwrap();
    assert!(time.ends_with('Z') && time.len() == 20, "{time}");
    assert_eq!(listing["entries"][3]["type"], "directory");
    let root = agent.get("/v1/files/").await.json();
    assert_eq!(root["path"], "/");
}

#[tokio::test]
async fn get_missing_file_is_404_not_found() {
    let agent = TestAgent::start().await;
    let reply = agent.get("/v1/files/missing.txt").await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    assert_eq!(reply.json()["code"], "NOT_FOUND");
}

#[tokio::test]
async fn put_applies_mode_and_rejects_bad_modes_and_directories() {
    let agent = TestAgent::start().await;
    assert_eq!(
        agent
            .put("/v1/files/run.sh?mode=0755", "#!/bin/sh\n")
            .await
            .status,
        StatusCode::NO_CONTENT
    );
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(agent.root_path("run.sh"))
            .unwrap()
            .permissions(),
    );
    assert_eq!(mode & 0o777, 0o755);
    let bad = agent.put("/v1/files/x?mode=755", "x").await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert_eq!(bad.json()["code"], "INVALID_ARGUMENT");
    assert!(
        bad.json()["message"]
            .as_str()
            .unwrap()
            .contains("^0[0-7]{3}$")
    );
    std::fs::create_dir(agent.root_path("adir")).unwrap();
    let dir = agent.put("/v1/files/adir", "x").await;
    assert_eq!(dir.status, StatusCode::BAD_REQUEST);
    assert!(dir.text().contains("directory"));
}

#[tokio::test]
async fn put_accepts_a_multipart_file_part_and_leaves_no_temp_files() {
    let agent = TestAgent::start().await;
    let (content_type, body) = multipart("file", Some("ignored.txt"), b"from multipart");
    let reply = agent
        .request(
            Method::PUT,
            "/v1/files/m.txt",
            &[("content-type", &content_type)],
            body,
        )
        .await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT, "{}", reply.text());
    assert_eq!(
        std::fs::read_to_string(agent.root_path("m.txt")).unwrap(),
        "from multipart"
    );
    let (content_type, body) = multipart("other", None, b"x");
    let missing = agent
        .request(
            Method::PUT,
            "/v1/files/n.txt",
            &[("content-type", &content_type)],
            body,
        )
        .await;
    assert_eq!(missing.status, StatusCode::BAD_REQUEST);
    assert!(missing.text().contains("\\\"file\\\" part"));
    let leftovers = || -> Vec<_> {
        std::fs::read_dir(&agent.root)
            .unwrap()
            .flatten()
            .filter(|e| {
                e.file_name()
                    .to_string_lossy()
                    .starts_with(".sandboxd-tmp-")
            })
            .map(|e| e.file_name())
            .collect()
    };
    // The rejected upload's temp file goes as its request ends.
    let cleaned =
        common::eventually(std::time::Duration::from_secs(5), || leftovers().is_empty()).await;
    assert!(cleaned, "temp files left: {:?}", leftovers());
}

#[tokio::test]
async fn put_replaces_atomically_and_last_writer_wins() {
    let agent = TestAgent::start().await;
    agent.put("/v1/files/same.txt", "first").await;
    agent.put("/v1/files/same.txt", "second").await;
    assert_eq!(agent.get("/v1/files/same.txt").await.text(), "second");
}

#[tokio::test]
async fn upload_over_the_size_limit_is_413_and_leaves_nothing() {
    let agent = TestAgent::start_with(|c| c.limits.max_upload_bytes = 1000).await;
    let reply = agent.put("/v1/files/big.bin", vec![0u8; 5000]).await;
    assert_eq!(reply.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(reply.json()["code"], "PAYLOAD_TOO_LARGE");
    let empty = common::eventually(std::time::Duration::from_secs(5), || {
        std::fs::read_dir(&agent.root).unwrap().count() == 0
    })
    .await;
    assert!(empty, "no file or temp file remains");
    let (content_type, body) = multipart("file", Some("big.bin"), &[1u8; 5000]);
    let legacy = agent
        .request(
            Method::POST,
            "/upload",
            &[("content-type", &content_type)],
            body,
        )
        .await;
    assert_eq!(legacy.status, StatusCode::PAYLOAD_TOO_LARGE);
}

#[tokio::test]
async fn delete_follows_sandboxd_semantics() {
    let agent = TestAgent::start().await;
    std::fs::create_dir_all(agent.root_path("full/inner")).unwrap();
    std::fs::write(agent.root_path("full/inner/f"), "x").unwrap();
    std::fs::write(agent.root_path("file.txt"), "x").unwrap();
    assert_eq!(
        agent.delete("/v1/files/absent").await.status,
        StatusCode::NOT_FOUND
    );
    let conflict = agent.delete("/v1/files/full").await;
    assert_eq!(conflict.status, StatusCode::CONFLICT);
    assert_eq!(conflict.json()["code"], "CONFLICT");
    let bad = agent.delete("/v1/files/full?recursive=maybe").await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        agent.delete("/v1/files/full?recursive=true").await.status,
        StatusCode::NO_CONTENT
    );
    assert!(!agent.root_path("full").exists());
    assert_eq!(
        agent.delete("/v1/files/file.txt").await.status,
        StatusCode::NO_CONTENT
    );
    std::fs::write(agent.root_path("keep-root.txt"), "x").unwrap();
    assert_eq!(
        agent.delete("/v1/files/").await.status,
        StatusCode::CONFLICT
    );
    assert_eq!(
        agent.delete("/v1/files/?recursive=1").await.status,
        StatusCode::NO_CONTENT
    );
    assert!(agent.root.exists(), "the root itself stays");
    assert_eq!(std::fs::read_dir(&agent.root).unwrap().count(), 0);
}

#[tokio::test]
async fn health_reports_ok_and_uptime() {
    let agent = TestAgent::start().await;
    let reply = agent.get("/v1/health").await;
    assert_eq!(reply.status, StatusCode::OK);
    let body = reply.json();
    assert_eq!(body["status"], "ok");
    assert!(body["uptime_seconds"].is_u64());
}

#[tokio::test]
async fn metadata_serves_prefixed_env_without_credentials() {
    let agent = TestAgent::start_with(|c| c.metadata_env_prefix = "PATH".to_owned()).await;
    let reply = agent.get("/v1/metadata").await.json();
    assert!(reply["env"]["PATH"].is_string(), "{reply}");
    assert_eq!(
        reply["env"]
            .as_object()
            .unwrap()
            .keys()
            .filter(|k| !k.starts_with("PATH"))
            .count(),
        0
    );
}

#[tokio::test]
async fn percent_encoded_slashes_are_decoded_in_file_paths() {
    let agent = TestAgent::start().await;
    agent.put("/v1/files/a%2Fb%2Fc.txt", "deep").await;
    assert_eq!(
        std::fs::read_to_string(agent.root_path("a/b/c.txt")).unwrap(),
        "deep"
    );
}

// Path confinement: one test per rule of §3.2.

async fn assert_denied(agent: &TestAgent, path: &str) {
    for method in [Method::GET, Method::PUT, Method::DELETE] {
        let reply = agent.request(method.clone(), path, &[], "x").await;
        assert_eq!(
            reply.status,
            StatusCode::FORBIDDEN,
            "{method} {path}: {}",
            reply.text()
        );
        assert_eq!(reply.json()["code"], "PERMISSION_DENIED");
    }
}

#[tokio::test]
async fn confinement_rejects_dotdot_escapes() {
    let agent = TestAgent::start().await;
    assert_denied(&agent, "/v1/files/..%2F..%2Fetc%2Fpasswd").await;
    assert_denied(&agent, "/v1/files/a%2F..%2F..%2Fx").await;
}

#[tokio::test]
async fn confinement_rejects_absolute_paths_outside_the_root() {
    let agent = TestAgent::start().await;
    assert_denied(&agent, "/v1/files/%2Fetc%2Fpasswd").await;
}

#[tokio::test]
async fn confinement_accepts_absolute_paths_inside_the_root() {
    let agent = TestAgent::start().await;
    let root = std::fs::canonicalize(&agent.root).unwrap();
    let encoded = format!("{}/inside.txt", root.display()).replace('/', "%2F");
    assert_eq!(
        agent
            .put(&format!("/v1/files/{encoded}"), "in")
            .await
            .status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        std::fs::read_to_string(agent.root_path("inside.txt")).unwrap(),
        "in"
    );
}

#[tokio::test]
async fn confinement_rejects_symlinks_pointing_out() {
    let agent = TestAgent::start().await;
    let outside = agent.dir.path().join("outside");
    std::fs::create_dir(&outside).unwrap();
    std::fs::write(outside.join("secret"), "secret").unwrap();
    std::os::unix::fs::symlink(&outside, agent.root_path("link")).unwrap();
    assert_denied(&agent, "/v1/files/link/secret").await;
    assert_denied(&agent, "/v1/files/link/new-file").await;
    assert_eq!(
        std::fs::read_to_string(outside.join("secret")).unwrap(),
        "secret"
    );
    assert!(!outside.join("new-file").exists());
}

#[tokio::test]
async fn confinement_rejects_symlinks_created_by_a_command_in_the_sandbox() {
    let agent = TestAgent::start().await;
    let outside = agent.dir.path().join("host-file");
    std::fs::write(&outside, "host").unwrap();
    let made = agent
        .exec(json!({"argv": ["ln", "-s", outside.to_str().unwrap(), "sneaky"]}))
        .await;
    assert_eq!(made["exit_code"], 0);
    assert_denied(&agent, "/v1/files/sneaky").await;
    // A dangling link made in the sandbox cannot be used to create a file outside either.
    let target = agent.dir.path().join("created-outside");
    agent
        .exec(json!({"argv": ["ln", "-s", target.to_str().unwrap(), "dangling"]}))
        .await;
    assert_eq!(
        agent.put("/v1/files/dangling", "x").await.status,
        StatusCode::FORBIDDEN
    );
    assert!(!target.exists());
    assert_eq!(std::fs::read_to_string(&outside).unwrap(), "host");
}

#[tokio::test]
async fn confinement_rejects_sibling_prefix_directories() {
    let agent = TestAgent::start().await;
    let evil = agent.dir.path().join("workspace-evil");
    std::fs::create_dir(&evil).unwrap();
    let root = std::fs::canonicalize(&agent.root).unwrap();
    let sibling = format!("{}-evil/x", root.display()).replace('/', "%2F");
    assert_denied(&agent, &format!("/v1/files/{sibling}")).await;
    assert_denied(&agent, "/v1/files/..%2Fworkspace-evil%2Fx").await;
    assert!(!evil.join("x").exists());
}

#[tokio::test]
async fn confinement_rejects_nul_and_control_characters() {
    let agent = TestAgent::start().await;
    assert_denied(&agent, "/v1/files/a%00b").await;
    assert_denied(&agent, "/v1/files/a%0Ab").await;
    assert_denied(&agent, "/v1/files/%1B%5B2J").await;
}

#[tokio::test]
async fn confinement_applies_to_process_cwd() {
    let agent = TestAgent::start().await;
    for cwd in ["..", "/etc", "../workspace-evil"] {
        let reply = agent
            .post_json("/v1/exec", json!({"argv": ["pwd"], "cwd": cwd}))
            .await;
        assert_eq!(reply.status, StatusCode::FORBIDDEN, "{cwd}");
        assert_eq!(reply.json()["code"], "PERMISSION_DENIED");
    }
}
