//! The file operations (`/v1/sandboxes/{name}/fs/...`) through the gateway into a real bwrap
//! sandbox, with the Rust SDK: stat, mkdir, move, copy and a live directory watch.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use paddock_client::{CreateSandbox, ErrorCode};
use paddock_testkit::TestServer;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stat_mkdir_move_copy_and_watch_work_through_the_gateway() {
    let server = TestServer::start().await;
    let mut req = CreateSandbox::image("host");
    req.runtime = Some("bwrap".into());
    req.name = Some("fsops".into());
    server.client.create_sandbox(&req).await.unwrap();
    let sb = server.client.sandbox("fsops", "default");

    let made = sb.mkdir("/tmp/work/in").await.unwrap();
    assert_eq!(
        (made.type_.as_str(), made.path.as_str()),
        ("directory", "/tmp/work/in")
    );
    sb.write_file("/tmp/work/in/a.txt", "alpha", None)
        .await
        .unwrap();

    // A watch on /tmp/work sees what happens under it.
    let seen = Arc::new(Mutex::new(Vec::new()));
    let watcher = {
        let (sb, seen) = (sb.clone(), seen.clone());
        tokio::spawn(async move {
            sb.watch("/tmp/work", true, |e| {
                let mut s = seen.lock().unwrap();
                s.push((e.type_.clone(), e.path.clone()));
                s.len() < 3
            })
            .await
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;

    sb.copy_path("/tmp/work/in", "/tmp/work/out", false)
        .await
        .unwrap();
    assert_eq!(sb.read_file("/tmp/work/out/a.txt").await.unwrap(), "alpha");
    let err = sb
        .copy_path("/tmp/work/in", "/tmp/work/out", false)
        .await
        .expect_err("exists");
    assert_eq!(err.code, ErrorCode::AlreadyExists, "{err}");
    sb.move_path("/tmp/work/out/a.txt", "/tmp/work/b.txt", false)
        .await
        .unwrap();
    let stat = sb.stat("/tmp/work/b.txt").await.unwrap();
    assert_eq!((stat.type_.as_str(), stat.size), ("file", 5));
    assert_eq!(
        sb.stat("/tmp/work/out/a.txt")
            .await
            .expect_err("moved")
            .code,
        ErrorCode::NotFound
    );

    tokio::time::timeout(Duration::from_secs(10), watcher)
        .await
        .expect("the watch saw three changes")
        .unwrap()
        .unwrap();
    let seen = seen.lock().unwrap().clone();
    assert!(
        seen.contains(&("create".to_owned(), "/tmp/work/out".to_owned())),
        "{seen:?}"
    );
    sb.delete().await.unwrap();
}
