//! Durable-store behaviour beyond the shared suite: what survives a reopen, exclusive access,
//! the private directory, repair of dangling dependents on open, and corrupt records.

// Test code: a failed unwrap is a failed test, with the value in the message.
#![allow(clippy::unwrap_used)]

mod support;

use std::os::unix::fs::PermissionsExt;

use paddock_store::{
    DATABASE_FILE, DeleteOptions, ListOptions, ObjectStore, RedbStore, StoreError, WatchOptions,
};
use redb::{Database, ReadableDatabase, TableDefinition};
use serde_json::json;
use support::*;

/// The durable layout, as the store writes it.
const OBJECTS: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("objects");

#[tokio::test]
async fn reopen_keeps_every_object_and_continues_the_revision() {
    let dir = tempfile::tempdir().unwrap();
    let (kept, terminating, last) = {
        let store = RedbStore::open(dir.path()).unwrap();
        store.create(SANDBOX, sandbox("kept")).await.unwrap();
        let kept = store
            .patch_status(
                SANDBOX,
                "default",
                "kept",
                json!({"status": {"ready": true}}),
            )
            .await
            .unwrap();
        store.create(SANDBOX, sandbox("deleted")).await.unwrap();
        store
            .delete(SANDBOX, "default", "deleted", DeleteOptions::default())
            .await
            .unwrap();
        store
            .create(
                SANDBOX,
                with_finalizers(sandbox("held"), &["example.com/hold"]),
            )
            .await
            .unwrap();
        let terminating = store
            .delete(SANDBOX, "default", "held", DeleteOptions::default())
            .await
            .unwrap()
            .into_object();
        let last = store
            .list(SANDBOX, ListOptions::default())
            .await
            .unwrap()
            .resource_version
            .parse::<u64>()
            .unwrap();
        (kept, terminating, last)
    };
    let store = RedbStore::open(dir.path()).unwrap();
    assert_eq!(store.open_report().objects, 2);
    assert_eq!(store.open_report().revision, last);
    assert_eq!(store.open_report().garbage_collected, 0);
    assert_eq!(
        store.open_report().replayed,
        0,
        "a clean close checkpoints the change log"
    );
    assert_eq!(store.get(SANDBOX, "default", "kept").await.unwrap(), kept);
    assert_eq!(
        store.get(SANDBOX, "default", "held").await.unwrap(),
        terminating
    );
    assert!(matches!(
        store.get(SANDBOX, "default", "deleted").await,
        Err(StoreError::NotFound { .. })
    ));
    let next = store.create(SANDBOX, sandbox("new")).await.unwrap();
    assert_eq!(rv(&next), last + 1, "revisions continue where they stopped");
    let released = store
        .patch(
            SANDBOX,
            "default",
            "held",
            json!({"metadata": {"finalizers": null}}),
        )
        .await
        .unwrap();
    assert!(rv(&released) > rv(&next));
    assert!(matches!(
        store.get(SANDBOX, "default", "held").await,
        Err(StoreError::NotFound { .. })
    ));
}

#[tokio::test]
async fn watch_history_starts_afresh_after_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let first = {
        let store = RedbStore::open(dir.path()).unwrap();
        let first = store.create(SANDBOX, sandbox("a")).await.unwrap();
        store.create(SANDBOX, sandbox("b")).await.unwrap();
        first
    };
    let store = RedbStore::open(dir.path()).unwrap();
    match store
        .watch(SANDBOX, WatchOptions::after(rv(&first).to_string()))
        .await
    {
        Err(StoreError::Gone { requested, oldest }) => {
            assert_eq!((requested, oldest), (rv(&first), rv(&first) + 1))
        }
        other => panic!("a revision from before the reopen must be Gone, got {other:?}"),
    }
    let list = store.list(SANDBOX, ListOptions::default()).await.unwrap();
    let mut watch = store
        .watch(SANDBOX, WatchOptions::after(list.resource_version))
        .await
        .unwrap();
    store.create(SANDBOX, sandbox("c")).await.unwrap();
    assert_eq!(name(&next_event(&mut watch).await.object), "c");
}

#[test]
fn a_second_open_of_an_open_store_is_unavailable_and_says_why() {
    let dir = tempfile::tempdir().unwrap();
    let store = RedbStore::open(dir.path()).unwrap();
    match RedbStore::open(dir.path()) {
        Err(StoreError::Unavailable { reason }) => {
            assert!(reason.contains("already running"), "{reason}")
        }
        other => panic!("expected Unavailable, got {other:?}"),
    }
    drop(store);
    RedbStore::open(dir.path()).unwrap();
}

#[test]
fn the_store_directory_is_created_private() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nested/store");
    let store = RedbStore::open(&path).unwrap();
    assert_eq!(
        std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o700
    );
    assert_eq!(store.path(), path.join(DATABASE_FILE));
}

#[test]
fn an_uncreatable_directory_is_an_io_error_naming_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("file");
    std::fs::write(&file, b"x").unwrap();
    match RedbStore::open(file.join("store")) {
        Err(err @ StoreError::Io { .. }) => {
            assert!(err.to_string().contains("file/store"), "{err}")
        }
        other => panic!("expected Io, got {other:?}"),
    }
}

#[tokio::test]
async fn open_collects_dependents_whose_owner_vanished_outside_the_store() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = RedbStore::open(dir.path()).unwrap();
        let owner = store.create(SANDBOX, sandbox("owner")).await.unwrap();
        let child = store
            .create(SANDBOX, owned_by(sandbox("child"), &owner, true))
            .await
            .unwrap();
        store
            .create(SANDBOX, owned_by(sandbox("grandchild"), &child, true))
            .await
            .unwrap();
        store.create(SANDBOX, sandbox("bystander")).await.unwrap();
    }
    {
        // Simulate damage no store write can cause: the owner's record removed on its own.
        let db = Database::create(dir.path().join(DATABASE_FILE)).unwrap();
        let txn = db.begin_write().unwrap();
        txn.open_table(OBJECTS)
            .unwrap()
            .remove("sandboxes.agents.x-k8s.io/default/owner")
            .unwrap();
        txn.commit().unwrap();
    }
    let store = RedbStore::open(dir.path()).unwrap();
    assert_eq!(
        store.open_report().garbage_collected,
        2,
        "child and grandchild are collected on open"
    );
    let names: Vec<String> = store
        .list(SANDBOX, ListOptions::default())
        .await
        .unwrap()
        .items
        .iter()
        .map(|o| name(o).to_owned())
        .collect();
    assert_eq!(names, ["bystander"]);
    drop(store);
    assert_eq!(
        RedbStore::open(dir.path())
            .unwrap()
            .open_report()
            .garbage_collected,
        0,
        "the repair was committed"
    );
}

#[tokio::test]
async fn a_corrupt_record_is_reported_with_its_key() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = RedbStore::open(dir.path()).unwrap();
        store.create(SANDBOX, sandbox("fine")).await.unwrap();
    }
    {
        let db = Database::create(dir.path().join(DATABASE_FILE)).unwrap();
        let txn = db.begin_write().unwrap();
        txn.open_table(OBJECTS)
            .unwrap()
            .insert(
                "sandboxes.agents.x-k8s.io/default/broken",
                b"{not json".as_slice(),
            )
            .unwrap();
        txn.commit().unwrap();
        let read = db.begin_read().unwrap();
        assert!(
            read.open_table(OBJECTS)
                .unwrap()
                .get("sandboxes.agents.x-k8s.io/default/fine")
                .unwrap()
                .is_some()
        );
    }
    match RedbStore::open(dir.path()) {
        Err(StoreError::Corrupt { key, reason }) => {
            assert_eq!(key, "sandboxes.agents.x-k8s.io/default/broken");
            assert!(reason.contains("not JSON"), "{reason}");
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }
}
