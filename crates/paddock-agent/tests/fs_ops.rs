//! `/v1/fs`: stat, mkdir, move, copy and the directory watch, confined to the root.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::{TestAgent, Via};
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use serde_json::Value;

async fn post(agent: &TestAgent, path: &str) -> common::Reply {
    agent.request(Method::POST, path, &[], Bytes::new()).await
}

#[tokio::test]
async fn stat_describes_files_directories_and_symlinks_without_following_them() {
    let agent = TestAgent::start().await;
    agent.put("/v1/files/a/b.txt", "hello").await;
    std::os::unix::fs::symlink("b.txt", agent.root_path("a/link")).unwrap();
    let file = agent.get("/v1/fs/stat?path=/a/b.txt").await.json();
    assert_eq!(
        (
            file["type"].as_str(),
            file["size"].as_u64(),
            file["path"].as_str()
        ),
        (Some("file"), Some(5), Some("/a/b.txt"))
    );
    assert!(file["modifiedAt"].as_str().unwrap().ends_with('Z'));
    let dir = agent.get("/v1/fs/stat?path=a").await.json();
    assert_eq!(dir["type"], "directory");
    let link = agent.get("/v1/fs/stat?path=/a/link").await.json();
    assert_eq!(
        (link["type"].as_str(), link["symlinkTarget"].as_str()),
        (Some("symlink"), Some("b.txt"))
    );
    assert_eq!(
        agent.get("/v1/fs/stat?path=/nope").await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        agent.get("/v1/fs/stat?path=/../etc").await.status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        agent.get("/v1/fs/stat").await.status,
        StatusCode::BAD_REQUEST
    );
}

#[tokio::test]
async fn mkdir_makes_parents_and_refuses_what_exists_or_escapes() {
    let agent = TestAgent::start().await;
    let made = post(&agent, "/v1/fs/mkdir?path=/x/y/z").await;
    assert_eq!(made.status, StatusCode::CREATED, "{}", made.text());
    assert_eq!(made.json()["type"], "directory");
    assert!(agent.root_path("x/y/z").is_dir());
    // As `mkdir -p`: an existing directory is fine; a file of that name is not.
    assert_eq!(
        post(&agent, "/v1/fs/mkdir?path=/x/y/z").await.status,
        StatusCode::CREATED
    );
    agent.put("/v1/files/x/file", "f").await;
    assert_eq!(
        post(&agent, "/v1/fs/mkdir?path=/x/file").await.status,
        StatusCode::CONFLICT
    );
    assert_eq!(
        post(&agent, "/v1/fs/mkdir?path=/x/y&parents=false")
            .await
            .status,
        StatusCode::CONFLICT
    );
    assert_eq!(
        post(&agent, "/v1/fs/mkdir?path=/p/q&parents=false")
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    // A symlink pointing out of the root cannot be a parent.
    std::os::unix::fs::symlink("/tmp", agent.root_path("out")).unwrap();
    assert_eq!(
        post(&agent, "/v1/fs/mkdir?path=/out/evil").await.status,
        StatusCode::FORBIDDEN
    );
}

#[tokio::test]
async fn move_and_copy_files_and_trees_and_refuse_to_clobber_unless_asked() {
    let agent = TestAgent::start().await;
    agent.put("/v1/files/src/one.txt", "1").await;
    agent.put("/v1/files/src/deep/two.txt", "22").await;
    agent.put("/v1/files/other.txt", "o").await;

    let copied = post(&agent, "/v1/fs/copy?from=/src&to=/dst").await;
    assert_eq!(copied.status, StatusCode::NO_CONTENT, "{}", copied.text());
    assert_eq!(
        std::fs::read_to_string(agent.root_path("dst/deep/two.txt")).unwrap(),
        "22"
    );
    assert!(
        agent.root_path("src/one.txt").exists(),
        "a copy keeps the source"
    );

    assert_eq!(
        post(&agent, "/v1/fs/move?from=/other.txt&to=/src/one.txt")
            .await
            .status,
        StatusCode::CONFLICT
    );
    let moved = post(
        &agent,
        "/v1/fs/move?from=/other.txt&to=/src/one.txt&overwrite=true",
    )
    .await;
    assert_eq!(moved.status, StatusCode::NO_CONTENT, "{}", moved.text());
    assert_eq!(
        std::fs::read_to_string(agent.root_path("src/one.txt")).unwrap(),
        "o"
    );
    assert!(!agent.root_path("other.txt").exists());

    assert_eq!(
        post(&agent, "/v1/fs/copy?from=/src&to=/src/inside")
            .await
            .status,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        post(&agent, "/v1/fs/move?from=/src&to=/../x").await.status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        post(&agent, "/v1/fs/copy?from=/missing&to=/y").await.status,
        StatusCode::NOT_FOUND
    );
}

/// Reads NDJSON lines from a streaming response until `n` arrived (or 5 s pass).
async fn read_events(body: &mut hyper::body::Incoming, n: usize) -> Vec<Value> {
    let mut buf = Vec::new();
    let mut events = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while events.len() < n {
        let frame = tokio::time::timeout_at(deadline, body.frame())
            .await
            .expect("events in time")
            .expect("stream open")
            .expect("frame");
        if let Some(data) = frame.data_ref() {
            buf.extend_from_slice(data);
        }
        while let Some(i) = buf.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = buf.drain(..=i).collect();
            events.push(serde_json::from_slice(&line).expect("json line"));
        }
    }
    events
}

#[tokio::test]
async fn watch_streams_changes_under_a_directory_recursively_until_it_goes() {
    let agent = TestAgent::start().await;
    agent.put("/v1/files/w/keep.txt", "k").await;
    let mut sender = agent.connect(Via::Tcp).await.unwrap();
    let req = Request::get("/v1/fs/watch?path=/w&recursive=true")
        .header("host", "agent")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let response = sender.send_request(req).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "application/x-ndjson");
    let mut body = response.into_body();
    tokio::time::sleep(Duration::from_millis(100)).await;

    std::fs::create_dir(agent.root_path("w/sub")).unwrap();
    let first = read_events(&mut body, 1).await;
    assert_eq!(
        (
            first[0]["type"].as_str(),
            first[0]["path"].as_str(),
            first[0]["isDir"].as_bool()
        ),
        (Some("create"), Some("/w/sub"), Some(true))
    );
    // The new subdirectory is watched too.
    tokio::time::sleep(Duration::from_millis(50)).await;
    std::fs::write(agent.root_path("w/sub/new.txt"), "n").unwrap();
    std::fs::rename(agent.root_path("w/keep.txt"), agent.root_path("w/kept.txt")).unwrap();
    std::fs::remove_file(agent.root_path("w/kept.txt")).unwrap();
    let events = read_events(&mut body, 5).await;
    let seen: Vec<(String, String)> = events
        .iter()
        .map(|e| {
            (
                e["type"].as_str().unwrap().to_owned(),
                e["path"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    for want in [
        ("create", "/w/sub/new.txt"),
        ("write", "/w/sub/new.txt"),
        ("rename", "/w/keep.txt"),
        ("rename", "/w/kept.txt"),
        ("remove", "/w/kept.txt"),
    ] {
        assert!(
            seen.contains(&(want.0.to_owned(), want.1.to_owned())),
            "{want:?} in {seen:?}"
        );
    }
    // The watched directory goes: a last `error` event, then the stream ends.
    std::fs::remove_dir_all(agent.root_path("w")).unwrap();
    let last = loop {
        let e = read_events(&mut body, 1).await.remove(0);
        if e["type"] == "error" {
            break e;
        }
    };
    assert_eq!(last["message"], "watched directory was removed or renamed");
    let end = tokio::time::timeout(Duration::from_secs(5), body.frame())
        .await
        .expect("ends");
    assert!(end.is_none(), "the stream ends after the error");

    // Watching a file, a missing path or an escape is refused.
    assert_eq!(
        agent.get("/v1/fs/watch?path=/nope").await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        agent.get("/v1/fs/watch?path=/..").await.status,
        StatusCode::FORBIDDEN
    );
}
