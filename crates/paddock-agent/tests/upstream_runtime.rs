//! Compatibility tests for upstream's legacy python runtime endpoints (contract §3.1): each
//! request/response pair replayed against a real agent over TCP and the unix socket.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::{TestAgent, Via, alive, multipart, read_pid};
use http::{Method, StatusCode};
use serde_json::json;

#[tokio::test]
async fn root_reports_the_runtime_is_active_on_tcp_and_unix() {
    let agent = TestAgent::start().await;
    for via in [Via::Tcp, Via::Unix] {
        let reply = agent
            .request_via(via, Method::GET, "/", &[], Bytes::new())
            .await;
        assert_eq!(reply.status, StatusCode::OK);
        assert_eq!(
            reply.json(),
            json!({"status": "ok", "message": "Sandbox Runtime is active."})
        );
    }
}

#[tokio::test]
async fn execute_splits_like_shlex_without_a_shell_in_the_base_dir() {
    let agent = TestAgent::start().await;
    let reply = agent
        .post_json(
            "/execute",
            json!({"command": "echo 'a  b' $HOME \"c\\\"d\" | cat"}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(
        reply.json(),
        json!({"stdout": "a  b $HOME c\"d | cat\n", "stderr": "", "exit_code": 0, "timed_out": false})
    );
    let pwd = agent
        .post_json("/execute", json!({"command": "pwd"}))
        .await
        .json();
    let base = std::fs::canonicalize(&agent.legacy_root).unwrap();
    assert_eq!(pwd["stdout"], format!("{}\n", base.display()));
}

#[tokio::test]
async fn execute_reports_exit_codes_and_stderr() {
    let agent = TestAgent::start().await;
    let reply = agent
        .post_json(
            "/execute",
            json!({"command": "sh -c 'echo oops >&2; exit 7'"}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(
        reply.json(),
        json!({"stdout": "", "stderr": "oops\n", "exit_code": 7, "timed_out": false})
    );
}

#[tokio::test]
async fn execute_failures_are_200_with_exit_code_1() {
    let agent = TestAgent::start().await;
    let cases = [
        (
            "definitely-not-a-command",
            "Failed to execute command: [Errno 2] No such file or directory: 'definitely-not-a-command'",
        ),
        (
            "echo 'unterminated",
            "Failed to execute command: No closing quotation",
        ),
        ("", "Failed to execute command: list index out of range"),
    ];
    for (command, stderr) in cases {
        let reply = agent
            .post_json("/execute", json!({"command": command}))
            .await;
        assert_eq!(reply.status, StatusCode::OK, "{command}");
        assert_eq!(
            reply.json(),
            json!({"stdout": "", "stderr": stderr, "exit_code": 1, "timed_out": false})
        );
    }
}

#[tokio::test]
async fn execute_timeout_kills_the_whole_process_group() {
    let agent = TestAgent::start().await;
    let pid_file = agent.dir.path().join("grandchild.pid");
    let command = format!("sh -c 'sleep 30 & echo $! > {}; wait'", pid_file.display());
    let started = std::time::Instant::now();
    let reply = agent
        .post_json(
            "/execute",
            json!({"command": command, "timeout_seconds": 0.3}),
        )
        .await
        .json();
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(reply["timed_out"], true);
    assert_eq!(reply["exit_code"], -9, "python's returncode for SIGKILL");
    let grandchild = read_pid(&pid_file).await;
    assert!(
        common::eventually(Duration::from_secs(2), || !alive(grandchild)).await,
        "grandchild survived"
    );
}

#[tokio::test]
async fn execute_uses_the_configured_default_timeout() {
    let agent = TestAgent::start_with(|c| c.legacy_exec_timeout = Duration::from_millis(200)).await;
    let reply = agent
        .post_json("/execute", json!({"command": "sleep 10"}))
        .await
        .json();
    assert_eq!(reply["timed_out"], true);
}

#[tokio::test]
async fn execute_rejects_malformed_json_with_400_naming_the_problem() {
    let agent = TestAgent::start().await;
    let reply = agent.post_raw("/execute", "{\"command\": ").await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert!(
        reply.json()["message"]
            .as_str()
            .unwrap()
            .contains("invalid JSON"),
        "{}",
        reply.text()
    );
    let reply = agent.post_raw("/execute", "{\"cmd\": \"ls\"}").await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert!(reply.text().contains("command"), "{}", reply.text());
}

#[tokio::test]
async fn upload_saves_the_part_under_its_filename_creating_directories() {
    let agent = TestAgent::start().await;
    let (content_type, body) = multipart("file", Some("sub/dir/hello.txt"), b"hello world");
    let reply = agent
        .request(
            Method::POST,
            "/upload",
            &[("content-type", &content_type)],
            body,
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(
        reply.json(),
        json!({"message": "File 'sub/dir/hello.txt' uploaded successfully."})
    );
    assert_eq!(
        std::fs::read(agent.legacy_root.join("sub/dir/hello.txt")).unwrap(),
        b"hello world"
    );
}

#[tokio::test]
async fn upload_outside_the_base_dir_is_403_access_denied() {
    let agent = TestAgent::start().await;
    let (content_type, body) = multipart("file", Some("../escape.txt"), b"x");
    let reply = agent
        .request(
            Method::POST,
            "/upload",
            &[("content-type", &content_type)],
            body,
        )
        .await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    assert_eq!(reply.json(), json!({"message": "Access denied"}));
    assert!(!agent.dir.path().join("escape.txt").exists());
}

#[tokio::test]
async fn upload_without_a_file_part_or_with_broken_multipart_is_400() {
    let agent = TestAgent::start().await;
    let (content_type, body) = multipart("other", Some("x.txt"), b"x");
    let reply = agent
        .request(
            Method::POST,
            "/upload",
            &[("content-type", &content_type)],
            body,
        )
        .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert!(
        reply.text().contains("\\\"file\\\" part"),
        "{}",
        reply.text()
    );
    let reply = agent
        .request(
            Method::POST,
            "/upload",
            &[("content-type", "multipart/form-data; boundary=zzz")],
            "garbage",
        )
        .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert!(reply.text().contains("multipart"), "{}", reply.text());
    let reply = agent
        .request(
            Method::POST,
            "/upload",
            &[("content-type", "application/json")],
            "{}",
        )
        .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn download_returns_raw_bytes_with_disposition_and_404s() {
    let agent = TestAgent::start().await;
    std::fs::create_dir_all(agent.legacy_root.join("d")).unwrap();
    std::fs::write(agent.legacy_root.join("d/data.bin"), [0u8, 1, 2, 255]).unwrap();
    let reply = agent.get("/download/d%2Fdata.bin").await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(&reply.body[..], &[0u8, 1, 2, 255]);
    assert_eq!(reply.headers["content-type"], "application/octet-stream");
    assert_eq!(
        reply.headers["content-disposition"],
        "attachment; filename=\"data.bin\""
    );
    let missing = agent.get("/download/nope.txt").await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert_eq!(missing.json(), json!({"message": "File not found"}));
    let directory = agent.get("/download/d").await;
    assert_eq!(directory.status, StatusCode::NOT_FOUND);
    let escape = agent.get("/download/..%2F..%2Fetc%2Fpasswd").await;
    assert_eq!(escape.status, StatusCode::FORBIDDEN);
    assert_eq!(escape.json(), json!({"message": "Access denied"}));
}

#[tokio::test]
async fn list_returns_entries_with_name_size_type_and_mod_time() {
    let agent = TestAgent::start().await;
    std::fs::create_dir_all(agent.legacy_root.join("dir/inner")).unwrap();
    std::fs::write(agent.legacy_root.join("dir/a.txt"), "12345").unwrap();
    let reply = agent.get("/list/dir").await;
    assert_eq!(reply.status, StatusCode::OK);
    let mut entries = reply.json().as_array().unwrap().clone();
    entries.sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));
    assert_eq!(entries.len(), 2);
    assert_eq!(entries[0]["name"], "a.txt");
    assert_eq!(entries[0]["size"], 5);
    assert_eq!(entries[0]["type"], "file");
    assert!(entries[0]["mod_time"].as_f64().unwrap() > 1.6e9);
    assert_eq!(entries[1]["type"], "directory");
    let not_dir = agent.get("/list/dir%2Fa.txt").await;
    assert_eq!(not_dir.status, StatusCode::NOT_FOUND);
    assert_eq!(
        not_dir.json(),
        json!({"message": "Path is not a directory"})
    );
    assert_eq!(agent.get("/list/..").await.status, StatusCode::FORBIDDEN);
    assert_eq!(agent.get("/list/").await.status, StatusCode::OK);
}

#[tokio::test]
async fn exists_echoes_the_decoded_path() {
    let agent = TestAgent::start().await;
    std::fs::write(agent.legacy_root.join("here.txt"), "x").unwrap();
    assert_eq!(
        agent.get("/exists/here.txt").await.json(),
        json!({"path": "here.txt", "exists": true})
    );
    assert_eq!(
        agent.get("/exists/a%2Fmissing.txt").await.json(),
        json!({"path": "a/missing.txt", "exists": false})
    );
    let escape = agent.get("/exists/..%2Fx").await;
    assert_eq!(escape.status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn legacy_paths_with_a_leading_slash_are_relative_to_the_base_dir() {
    let agent = TestAgent::start().await;
    std::fs::create_dir_all(agent.legacy_root.join("etc")).unwrap();
    std::fs::write(agent.legacy_root.join("etc/passwd"), "not the host's").unwrap();
    let reply = agent.get("/download/%2Fetc%2Fpasswd").await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.text(), "not the host's");
}
