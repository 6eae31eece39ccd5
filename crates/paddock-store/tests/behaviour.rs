//! The behaviour suite: every semantic of the `ObjectStore` contract, run against both the
//! in-memory and the durable (redb) implementation.

// Test code: a failed unwrap is a failed test, with the value in the message.
#![allow(clippy::unwrap_used)]

mod support;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use paddock_store::{
    DeleteOptions, Deleted, FieldSelector, LabelSelector, ListOptions, ObjectStore, ObjectStoreExt,
    Preconditions, PropagationPolicy, StoreError, StoreOptions, WatchEventType, WatchOptions,
    WatchStart,
};
use serde_json::{Value, json};
use support::*;

use WatchEventType::{Added, Deleted as Removed, Modified};

/// Instantiates every case for both implementations.
macro_rules! behaviour_suite {
    ($($case:ident),* $(,)?) => {
        mod memory {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    super::$case(super::Backend::Memory).await;
                }
            )*
        }
        mod redb {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    super::$case(super::Backend::Redb).await;
                }
            )*
        }
    };
}

behaviour_suite!(
    create_assigns_uid_resource_version_generation_and_timestamp,
    create_drops_status_and_client_supplied_system_fields,
    create_rejects_a_taken_name_with_already_exists,
    create_rejects_bad_names_scopes_and_envelopes,
    generate_name_appends_five_characters_of_the_kubernetes_alphabet,
    resource_versions_increase_across_all_kinds,
    get_of_a_missing_object_is_not_found,
    list_filters_by_namespace_labels_and_fields_and_carries_the_revision,
    update_with_a_stale_resource_version_conflicts_and_an_empty_one_is_unconditional,
    update_with_another_uid_conflicts,
    generation_bumps_only_when_something_outside_metadata_and_status_changes,
    update_ignores_status_and_update_status_changes_only_status,
    update_that_changes_nothing_keeps_the_resource_version_and_emits_nothing,
    update_keeps_store_owned_metadata,
    update_of_a_missing_object_is_not_found,
    merge_patch_changes_spec_and_null_removes_fields,
    patch_status_changes_only_status,
    patch_resource_version_is_a_precondition,
    patch_cannot_rename_an_object,
    delete_of_an_object_with_finalizers_waits_for_them,
    terminating_object_cannot_gain_finalizers,
    delete_preconditions_check_uid_and_resource_version,
    background_delete_removes_children_and_grandchildren,
    background_delete_of_an_owner_with_finalizers_keeps_dependents_until_it_goes,
    foreground_delete_removes_dependents_before_the_owner,
    foreground_delete_waits_for_a_blocking_grandchild_with_a_finalizer,
    foreground_owner_is_not_held_by_non_blocking_dependents,
    orphan_delete_keeps_dependents_and_strips_the_owner_reference,
    dependent_with_another_live_owner_survives_and_drops_the_dead_reference,
    dependent_created_for_a_missing_owner_is_collected,
    watch_delivers_every_change_in_order_with_full_objects,
    watch_resumes_after_a_resource_version_without_gap_or_duplicate,
    watch_from_before_the_retained_log_is_gone,
    slow_watcher_gets_gone_and_never_blocks_writers,
    watch_filters_by_namespace_and_labels_like_kubernetes,
    watch_from_initial_state_sends_synthetic_added_events,
    watch_now_reports_only_later_changes,
    watch_ends_when_the_store_is_dropped,
    concurrent_updates_from_one_resource_version_let_exactly_one_win,
    concurrent_writers_all_succeed_with_distinct_revisions,
    typed_helpers_round_trip_through_serde,
);

fn assert_invalid<T: std::fmt::Debug>(
    result: Result<T, StoreError>,
    expected_field: &str,
) -> String {
    match result {
        Err(StoreError::Invalid { field, reason }) => {
            assert_eq!(field, expected_field, "reason: {reason}");
            reason
        }
        other => panic!("expected Invalid on {expected_field}, got {other:?}"),
    }
}

fn assert_conflict<T: std::fmt::Debug>(result: Result<T, StoreError>) -> String {
    match result {
        Err(StoreError::Conflict { reason, .. }) => reason,
        other => panic!("expected Conflict, got {other:?}"),
    }
}

fn assert_not_found<T: std::fmt::Debug>(result: Result<T, StoreError>) {
    assert!(
        matches!(result, Err(StoreError::NotFound { .. })),
        "expected NotFound, got {result:?}"
    );
}

async fn get(store: &dyn ObjectStore, name: &str) -> Value {
    store.get(SANDBOX, "default", name).await.unwrap()
}

async fn exists(store: &dyn ObjectStore, name: &str) -> bool {
    match store.get(SANDBOX, "default", name).await {
        Ok(_) => true,
        Err(StoreError::NotFound { .. }) => false,
        Err(other) => panic!("{other}"),
    }
}

async fn create_tree(store: &dyn ObjectStore, prefix: &str, block: bool) -> (Value, Value, Value) {
    let owner = store
        .create(SANDBOX, sandbox(&format!("{prefix}-owner")))
        .await
        .unwrap();
    let child = store
        .create(
            SANDBOX,
            owned_by(sandbox(&format!("{prefix}-child")), &owner, block),
        )
        .await
        .unwrap();
    let grandchild = store
        .create(
            SANDBOX,
            owned_by(sandbox(&format!("{prefix}-grandchild")), &child, block),
        )
        .await
        .unwrap();
    (owner, child, grandchild)
}

async fn create_assigns_uid_resource_version_generation_and_timestamp(backend: Backend) {
    let f = backend.open();
    let before = jiff::Timestamp::now().as_second();
    let created = f.store.create(SANDBOX, sandbox("sb")).await.unwrap();
    let meta = &created["metadata"];
    let uid = meta["uid"].as_str().unwrap();
    assert_eq!(uid.len(), 36);
    assert_eq!(&uid[14..15], "4", "UUID version 4: {uid}");
    assert!(rv(&created) > 0);
    assert_eq!(meta["generation"], 1);
    let created_at = meta["creationTimestamp"].as_str().unwrap();
    assert!(
        created_at.ends_with('Z') && !created_at.contains('.'),
        "{created_at}"
    );
    assert!(created_at.parse::<jiff::Timestamp>().unwrap().as_second() >= before);
    let typed: ObjectMeta = serde_json::from_value(meta.clone()).unwrap();
    assert_eq!(typed.uid.as_deref(), Some(uid));
    assert_eq!(typed.generation, Some(1));
    assert_eq!(
        get(&*f.store, "sb").await,
        created,
        "a read sees the acknowledged write"
    );
    let other = f.store.create(SANDBOX, sandbox("sb2")).await.unwrap();
    assert_ne!(other["metadata"]["uid"], created["metadata"]["uid"]);
}

async fn create_drops_status_and_client_supplied_system_fields(backend: Backend) {
    let f = backend.open();
    let mut object = sandbox("sb");
    object["status"] = json!({"phase": "forged"});
    object["metadata"]["uid"] = json!("forged-uid");
    object["metadata"]["generation"] = json!(42);
    object["metadata"]["creationTimestamp"] = json!("2000-01-01T00:00:00Z");
    object["metadata"]["deletionTimestamp"] = json!("2000-01-01T00:00:00Z");
    let created = f.store.create(SANDBOX, object).await.unwrap();
    assert!(created.get("status").is_none());
    assert_ne!(created["metadata"]["uid"], "forged-uid");
    assert_eq!(created["metadata"]["generation"], 1);
    assert_ne!(
        created["metadata"]["creationTimestamp"],
        "2000-01-01T00:00:00Z"
    );
    assert!(created["metadata"].get("deletionTimestamp").is_none());
}

async fn create_rejects_a_taken_name_with_already_exists(backend: Backend) {
    let f = backend.open();
    f.store.create(SANDBOX, sandbox("sb")).await.unwrap();
    match f.store.create(SANDBOX, sandbox("sb")).await {
        Err(StoreError::AlreadyExists {
            resource,
            namespace,
            name,
        }) => {
            assert_eq!(
                (resource.as_str(), namespace.as_str(), name.as_str()),
                ("sandboxes.agents.x-k8s.io", "default", "sb")
            );
        }
        other => panic!("{other:?}"),
    }
    // The same name in another namespace or of another kind is a different object.
    f.store
        .create(SANDBOX, object(SANDBOX, "other", "sb"))
        .await
        .unwrap();
    f.store
        .create(CLAIM, object(CLAIM, "default", "sb"))
        .await
        .unwrap();
    // A terminating object still holds its name.
    f.store
        .create(
            SANDBOX,
            with_finalizers(sandbox("held"), &["example.com/hold"]),
        )
        .await
        .unwrap();
    f.store
        .delete(SANDBOX, "default", "held", DeleteOptions::default())
        .await
        .unwrap();
    assert!(matches!(
        f.store.create(SANDBOX, sandbox("held")).await,
        Err(StoreError::AlreadyExists { .. })
    ));
}

async fn create_rejects_bad_names_scopes_and_envelopes(backend: Backend) {
    let f = backend.open();
    let s = &*f.store;
    assert_invalid(
        s.create(SANDBOX, sandbox("Bad_Name")).await,
        "metadata.name",
    );
    assert_invalid(
        s.create(SANDBOX, sandbox(&"a".repeat(254))).await,
        "metadata.name",
    );
    s.create(SANDBOX, sandbox(&"a".repeat(253))).await.unwrap();
    let mut no_name = sandbox("x");
    no_name["metadata"].as_object_mut().unwrap().remove("name");
    assert!(
        assert_invalid(s.create(SANDBOX, no_name).await, "metadata.name").contains("generateName")
    );
    assert_invalid(
        s.create(SANDBOX, object(SANDBOX, "", "x")).await,
        "metadata.namespace",
    );
    assert_invalid(
        s.create(SANDBOX, object(SANDBOX, "Not.A.Label", "x")).await,
        "metadata.namespace",
    );
    let mut wrong_kind = sandbox("x");
    wrong_kind["kind"] = json!("SandboxClaim");
    assert!(assert_invalid(s.create(SANDBOX, wrong_kind).await, "kind").contains("\"Sandbox\""));
    let mut wrong_group = sandbox("x");
    wrong_group["apiVersion"] = json!("extensions.agents.x-k8s.io/v1beta1");
    assert_invalid(s.create(SANDBOX, wrong_group).await, "apiVersion");
    let mut with_rv = sandbox("x");
    with_rv["metadata"]["resourceVersion"] = json!("5");
    assert_invalid(s.create(SANDBOX, with_rv).await, "metadata.resourceVersion");
    let mut bad_label = sandbox("x");
    bad_label["metadata"]["labels"] = json!({"app": "has space"});
    assert_invalid(
        s.create(SANDBOX, bad_label).await,
        "metadata.labels[\"app\"]",
    );
    assert_invalid(
        s.create(SANDBOX, json!(["not", "an", "object"])).await,
        "object",
    );
    assert_invalid(
        s.create(SANDBOX, with_finalizers(sandbox("x"), &["bad finalizer"]))
            .await,
        "metadata.finalizers[0]",
    );
    // Nothing of the failed creates was stored, and a v1alpha1 object of the group is accepted.
    let mut alpha = sandbox("x");
    alpha["apiVersion"] = json!("agents.x-k8s.io/v1alpha1");
    assert_eq!(
        s.create(SANDBOX, alpha).await.unwrap()["apiVersion"],
        "agents.x-k8s.io/v1alpha1"
    );
}

async fn generate_name_appends_five_characters_of_the_kubernetes_alphabet(backend: Backend) {
    let f = backend.open();
    let mut names = HashSet::new();
    for _ in 0..50 {
        let mut object = sandbox("x");
        object["metadata"].as_object_mut().unwrap().remove("name");
        object["metadata"]["generateName"] = json!("pool-");
        let created = f.store.create(SANDBOX, object).await.unwrap();
        let name = name(&created).to_owned();
        assert_eq!(name.len(), 10, "{name}");
        assert!(name.starts_with("pool-"));
        assert!(
            name[5..]
                .chars()
                .all(|c| "bcdfghjklmnpqrstvwxz2456789".contains(c)),
            "{name}"
        );
        assert_eq!(created["metadata"]["generateName"], "pool-");
        names.insert(name);
    }
    assert_eq!(names.len(), 50);
    let mut bad = sandbox("x");
    bad["metadata"].as_object_mut().unwrap().remove("name");
    bad["metadata"]["generateName"] = json!("Upper-");
    assert_invalid(f.store.create(SANDBOX, bad).await, "metadata.generateName");
}

async fn resource_versions_increase_across_all_kinds(backend: Backend) {
    let f = backend.open();
    let mut last = 0;
    for (i, resource) in [SANDBOX, TEMPLATE, CLAIM, POOL, SANDBOX]
        .into_iter()
        .enumerate()
    {
        let created = f
            .store
            .create(resource, object(resource, "default", &format!("o{i}")))
            .await
            .unwrap();
        assert!(rv(&created) > last, "{} after {last}", rv(&created));
        last = rv(&created);
    }
    let list = f.store.list(CLAIM, ListOptions::default()).await.unwrap();
    assert_eq!(
        list.resource_version,
        last.to_string(),
        "a list reflects the store-wide revision"
    );
}

async fn get_of_a_missing_object_is_not_found(backend: Backend) {
    let f = backend.open();
    match f.store.get(SANDBOX, "default", "nope").await {
        Err(err @ StoreError::NotFound { .. }) => {
            assert_eq!(
                err.to_string(),
                "sandboxes.agents.x-k8s.io \"default/nope\" not found"
            );
        }
        other => panic!("{other:?}"),
    }
    assert_invalid(f.store.get(SANDBOX, "", "x").await, "namespace");
}

async fn list_filters_by_namespace_labels_and_fields_and_carries_the_revision(backend: Backend) {
    let f = backend.open();
    let s = &*f.store;
    for (ns, name, tier) in [
        ("a", "x1", "web"),
        ("a", "x2", "db"),
        ("b", "x3", "web"),
        ("b", "x4", ""),
    ] {
        let mut o = object(SANDBOX, ns, name);
        if !tier.is_empty() {
            o["metadata"]["labels"] = json!({"tier": tier});
        }
        s.create(SANDBOX, o).await.unwrap();
    }
    s.create(CLAIM, object(CLAIM, "a", "claim")).await.unwrap();
    let names = |list: paddock_store::ObjectList| {
        list.items
            .iter()
            .map(|o| name(o).to_owned())
            .collect::<Vec<_>>()
    };

    let all = s.list(SANDBOX, ListOptions::default()).await.unwrap();
    assert_eq!(all.resource_version, "5");
    assert_eq!(names(all), ["x1", "x2", "x3", "x4"]);
    assert_eq!(
        names(s.list(SANDBOX, ListOptions::namespace("b")).await.unwrap()),
        ["x3", "x4"]
    );
    let web = ListOptions::default().labels(LabelSelector::parse("tier=web").unwrap());
    assert_eq!(names(s.list(SANDBOX, web).await.unwrap()), ["x1", "x3"]);
    let not_web = ListOptions::default().labels(LabelSelector::parse("tier!=web").unwrap());
    assert_eq!(names(s.list(SANDBOX, not_web).await.unwrap()), ["x2", "x4"]);
    let set = ListOptions::namespace("a")
        .labels(LabelSelector::parse("tier in (db,cache),!missing").unwrap());
    assert_eq!(names(s.list(SANDBOX, set).await.unwrap()), ["x2"]);
    let fields = ListOptions {
        field_selector: FieldSelector::parse("metadata.name!=x1,metadata.namespace=a").unwrap(),
        ..ListOptions::default()
    };
    assert_eq!(names(s.list(SANDBOX, fields).await.unwrap()), ["x2"]);
    assert_eq!(
        names(s.list(CLAIM, ListOptions::default()).await.unwrap()),
        ["claim"]
    );
    assert!(
        s.list(POOL, ListOptions::default())
            .await
            .unwrap()
            .items
            .is_empty()
    );
}

async fn update_with_a_stale_resource_version_conflicts_and_an_empty_one_is_unconditional(
    backend: Backend,
) {
    let f = backend.open();
    let created = f.store.create(SANDBOX, sandbox("sb")).await.unwrap();
    let mut first = created.clone();
    first["spec"]["replicas"] = json!(2);
    let updated = f.store.update(SANDBOX, first).await.unwrap();
    assert!(rv(&updated) > rv(&created));

    let mut stale = created.clone();
    stale["spec"]["replicas"] = json!(3);
    let reason = assert_conflict(f.store.update(SANDBOX, stale.clone()).await);
    assert!(reason.contains("modified"), "{reason}");
    assert_eq!(
        get(&*f.store, "sb").await["spec"]["replicas"],
        2,
        "the conflicting update changed nothing"
    );

    stale["metadata"]["resourceVersion"] = json!("");
    let forced = f.store.update(SANDBOX, stale).await.unwrap();
    assert_eq!(forced["spec"]["replicas"], 3);
}

async fn update_with_another_uid_conflicts(backend: Backend) {
    let f = backend.open();
    let created = f.store.create(SANDBOX, sandbox("sb")).await.unwrap();
    let mut other = created.clone();
    other["metadata"]["uid"] = json!("00000000-0000-4000-8000-000000000000");
    other["metadata"]["resourceVersion"] = json!("");
    assert!(assert_conflict(f.store.update(SANDBOX, other).await).contains("UID in precondition"));
}

async fn generation_bumps_only_when_something_outside_metadata_and_status_changes(
    backend: Backend,
) {
    let f = backend.open();
    let s = &*f.store;
    let created = s.create(SANDBOX, sandbox("sb")).await.unwrap();
    let mut labelled = created.clone();
    labelled["metadata"]["labels"] = json!({"a": "b"});
    labelled["metadata"]["annotations"] = json!({"note": "x"});
    let labelled = s.update(SANDBOX, labelled).await.unwrap();
    assert_eq!(labelled["metadata"]["generation"], 1);
    assert!(rv(&labelled) > rv(&created));

    let mut with_status = labelled.clone();
    with_status["status"] = json!({"replicas": 1});
    let with_status = s.update_status(SANDBOX, with_status).await.unwrap();
    assert_eq!(with_status["metadata"]["generation"], 1);

    let mut spec = with_status.clone();
    spec["spec"]["replicas"] = json!(0);
    let spec = s.update(SANDBOX, spec).await.unwrap();
    assert_eq!(spec["metadata"]["generation"], 2);

    let mut other_field = spec.clone();
    other_field["data"] = json!({"k": "v"});
    assert_eq!(
        s.update(SANDBOX, other_field).await.unwrap()["metadata"]["generation"],
        3
    );

    let patched = s
        .patch(SANDBOX, "default", "sb", json!({"spec": {"replicas": 1}}))
        .await
        .unwrap();
    assert_eq!(patched["metadata"]["generation"], 4);
}

async fn update_ignores_status_and_update_status_changes_only_status(backend: Backend) {
    let f = backend.open();
    let s = &*f.store;
    let created = s.create(SANDBOX, sandbox("sb")).await.unwrap();
    let mut status_write = created.clone();
    status_write["status"] = json!({"phase": "Ready"});
    status_write["spec"]["replicas"] = json!(9);
    status_write["metadata"]["labels"] = json!({"ignored": "yes"});
    let after_status = s.update_status(SANDBOX, status_write).await.unwrap();
    assert_eq!(after_status["status"]["phase"], "Ready");
    assert_eq!(
        after_status["spec"]["replicas"], 1,
        "update_status ignores spec"
    );
    assert!(
        after_status["metadata"].get("labels").is_none(),
        "update_status ignores metadata"
    );

    let mut main_write = after_status.clone();
    main_write["status"] = json!({"phase": "Forged"});
    main_write["spec"]["replicas"] = json!(2);
    let after_main = s.update(SANDBOX, main_write).await.unwrap();
    assert_eq!(
        after_main["status"]["phase"], "Ready",
        "update keeps the stored status"
    );
    assert_eq!(after_main["spec"]["replicas"], 2);

    let mut cleared = after_main.clone();
    cleared.as_object_mut().unwrap().remove("status");
    let cleared = s.update_status(SANDBOX, cleared).await.unwrap();
    assert!(cleared.get("status").is_none());
    let mut stale = after_main;
    stale["status"] = json!({"phase": "Late"});
    assert_conflict(s.update_status(SANDBOX, stale).await);
}

async fn update_that_changes_nothing_keeps_the_resource_version_and_emits_nothing(
    backend: Backend,
) {
    let f = backend.open();
    let created = f.store.create(SANDBOX, sandbox("sb")).await.unwrap();
    let mut watch = f
        .store
        .watch(SANDBOX, WatchOptions::after(rv(&created).to_string()))
        .await
        .unwrap();
    let same = f.store.update(SANDBOX, created.clone()).await.unwrap();
    assert_eq!(same, created);
    let same_status = f
        .store
        .update_status(SANDBOX, created.clone())
        .await
        .unwrap();
    assert_eq!(rv(&same_status), rv(&created));
    let same_patch = f
        .store
        .patch(SANDBOX, "default", "sb", json!({"spec": {"replicas": 1}}))
        .await
        .unwrap();
    assert_eq!(rv(&same_patch), rv(&created));
    assert_quiet(&mut watch, 100).await;
}

async fn update_keeps_store_owned_metadata(backend: Backend) {
    let f = backend.open();
    let created = f.store.create(SANDBOX, sandbox("sb")).await.unwrap();
    let mut tampered = created.clone();
    tampered["metadata"]["creationTimestamp"] = json!("2000-01-01T00:00:00Z");
    tampered["metadata"]["generation"] = json!(77);
    tampered["metadata"]["deletionTimestamp"] = json!("2000-01-01T00:00:00Z");
    tampered["metadata"]["labels"] = json!({"changed": "yes"});
    let updated = f.store.update(SANDBOX, tampered).await.unwrap();
    assert_eq!(
        updated["metadata"]["creationTimestamp"],
        created["metadata"]["creationTimestamp"]
    );
    assert_eq!(updated["metadata"]["uid"], created["metadata"]["uid"]);
    assert_eq!(updated["metadata"]["generation"], 1);
    assert!(updated["metadata"].get("deletionTimestamp").is_none());
    assert_eq!(updated["metadata"]["labels"]["changed"], "yes");
}

async fn update_of_a_missing_object_is_not_found(backend: Backend) {
    let f = backend.open();
    assert_not_found(f.store.update(SANDBOX, sandbox("ghost")).await);
    assert_not_found(f.store.update_status(SANDBOX, sandbox("ghost")).await);
    assert_not_found(f.store.patch(SANDBOX, "default", "ghost", json!({})).await);
    assert_not_found(
        f.store
            .delete(SANDBOX, "default", "ghost", DeleteOptions::default())
            .await,
    );
}

async fn merge_patch_changes_spec_and_null_removes_fields(backend: Backend) {
    let f = backend.open();
    let mut o = sandbox("sb");
    o["spec"]["extra"] = json!({"keep": 1, "drop": 2});
    o["metadata"]["labels"] = json!({"a": "1", "b": "2"});
    f.store.create(SANDBOX, o).await.unwrap();
    let patched = f
        .store
        .patch(
            SANDBOX,
            "default",
            "sb",
            json!({"metadata": {"labels": {"b": null, "c": "3"}}, "spec": {"extra": {"drop": null}, "replicas": 0},
                   "status": {"ignored": true}}),
        )
        .await
        .unwrap();
    assert_eq!(patched["metadata"]["labels"], json!({"a": "1", "c": "3"}));
    assert_eq!(
        patched["spec"],
        json!({"replicas": 0, "extra": {"keep": 1}})
    );
    assert!(
        patched.get("status").is_none(),
        "a main patch does not write status"
    );
    assert_invalid(
        f.store.patch(SANDBOX, "default", "sb", json!([1])).await,
        "patch",
    );
    assert_invalid(
        f.store
            .patch(
                SANDBOX,
                "default",
                "sb",
                json!({"metadata": {"labels": {"x": "bad value"}}}),
            )
            .await,
        "metadata.labels[\"x\"]",
    );
}

async fn patch_status_changes_only_status(backend: Backend) {
    let f = backend.open();
    f.store.create(SANDBOX, sandbox("sb")).await.unwrap();
    let first = f
        .store
        .patch_status(
            SANDBOX,
            "default",
            "sb",
            json!({"status": {"a": 1, "b": 2}, "spec": {"replicas": 5}}),
        )
        .await
        .unwrap();
    assert_eq!(first["status"], json!({"a": 1, "b": 2}));
    assert_eq!(first["spec"]["replicas"], 1);
    let second = f
        .store
        .patch_status(SANDBOX, "default", "sb", json!({"status": {"a": null}}))
        .await
        .unwrap();
    assert_eq!(second["status"], json!({"b": 2}));
    assert_eq!(second["metadata"]["generation"], 1);
}

async fn patch_resource_version_is_a_precondition(backend: Backend) {
    let f = backend.open();
    let created = f.store.create(SANDBOX, sandbox("sb")).await.unwrap();
    f.store
        .patch(SANDBOX, "default", "sb", json!({"spec": {"replicas": 2}}))
        .await
        .unwrap();
    let stale = json!({"metadata": {"resourceVersion": created["metadata"]["resourceVersion"]}, "spec": {"replicas": 3}});
    assert_conflict(f.store.patch(SANDBOX, "default", "sb", stale).await);
    let current = get(&*f.store, "sb").await;
    let fresh = json!({"metadata": {"resourceVersion": current["metadata"]["resourceVersion"]}, "spec": {"replicas": 3}});
    assert_eq!(
        f.store
            .patch(SANDBOX, "default", "sb", fresh)
            .await
            .unwrap()["spec"]["replicas"],
        3
    );
}

async fn patch_cannot_rename_an_object(backend: Backend) {
    let f = backend.open();
    f.store.create(SANDBOX, sandbox("sb")).await.unwrap();
    assert_invalid(
        f.store
            .patch(
                SANDBOX,
                "default",
                "sb",
                json!({"metadata": {"name": "other"}}),
            )
            .await,
        "metadata.name",
    );
    assert!(exists(&*f.store, "sb").await && !exists(&*f.store, "other").await);
}

async fn delete_of_an_object_with_finalizers_waits_for_them(backend: Backend) {
    let f = backend.open();
    let s = &*f.store;
    let created = s
        .create(
            SANDBOX,
            with_finalizers(sandbox("sb"), &["example.com/a", "example.com/b"]),
        )
        .await
        .unwrap();
    let mut watch = s
        .watch(SANDBOX, WatchOptions::after(rv(&created).to_string()))
        .await
        .unwrap();

    let Deleted::Terminating(marked) = s
        .delete(SANDBOX, "default", "sb", DeleteOptions::default())
        .await
        .unwrap()
    else {
        panic!("an object with finalizers must stay");
    };
    let deleted_at = marked["metadata"]["deletionTimestamp"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(deleted_at.parse::<jiff::Timestamp>().is_ok());
    assert_eq!(marked["metadata"]["deletionGracePeriodSeconds"], 0);
    assert_eq!(
        marked["metadata"]["generation"], 2,
        "starting deletion bumps the generation"
    );
    assert_eq!(get(s, "sb").await, marked);

    let again = s
        .delete(SANDBOX, "default", "sb", DeleteOptions::default())
        .await
        .unwrap();
    assert_eq!(
        again,
        Deleted::Terminating(marked.clone()),
        "a second delete changes nothing"
    );

    let one_left = s
        .patch(
            SANDBOX,
            "default",
            "sb",
            json!({"metadata": {"finalizers": ["example.com/b"]}}),
        )
        .await
        .unwrap();
    assert_eq!(
        one_left["metadata"]["deletionTimestamp"],
        deleted_at.as_str()
    );
    let mut last = one_left.clone();
    last["metadata"]["finalizers"] = json!([]);
    let gone = s.update(SANDBOX, last).await.unwrap();
    assert!(gone["metadata"].get("finalizers").is_none());
    assert_not_found(s.get(SANDBOX, "default", "sb").await);

    let events = next_events(&mut watch, 3).await;
    assert_eq!(
        events.iter().map(|e| e.0).collect::<Vec<_>>(),
        [Modified, Modified, Removed]
    );
    assert_eq!(
        events[2].2,
        rv(&gone),
        "the deleted event carries the deletion's revision"
    );
    assert_quiet(&mut watch, 50).await;
}

async fn terminating_object_cannot_gain_finalizers(backend: Backend) {
    let f = backend.open();
    let s = &*f.store;
    s.create(SANDBOX, with_finalizers(sandbox("sb"), &["example.com/a"]))
        .await
        .unwrap();
    s.delete(SANDBOX, "default", "sb", DeleteOptions::default())
        .await
        .unwrap();
    let reason = assert_invalid(
        s.patch(
            SANDBOX,
            "default",
            "sb",
            json!({"metadata": {"finalizers": ["example.com/a", "example.com/new"]}}),
        )
        .await,
        "metadata.finalizers",
    );
    assert!(reason.contains("example.com/new"), "{reason}");
    assert_eq!(
        get(s, "sb").await["metadata"]["finalizers"],
        json!(["example.com/a"])
    );
}

async fn delete_preconditions_check_uid_and_resource_version(backend: Backend) {
    let f = backend.open();
    let s = &*f.store;
    let created = s.create(SANDBOX, sandbox("sb")).await.unwrap();
    let with = |uid: Option<&str>, rv: Option<&str>| DeleteOptions {
        propagation_policy: None,
        preconditions: Preconditions {
            uid: uid.map(str::to_owned),
            resource_version: rv.map(str::to_owned),
        },
    };
    assert!(
        assert_conflict(
            s.delete(SANDBOX, "default", "sb", with(Some("other-uid"), None))
                .await
        )
        .contains("UID")
    );
    assert!(
        assert_conflict(
            s.delete(SANDBOX, "default", "sb", with(None, Some("1000")))
                .await
        )
        .contains("ResourceVersion")
    );
    assert!(exists(s, "sb").await);
    let uid = created["metadata"]["uid"].as_str().unwrap();
    let rv = created["metadata"]["resourceVersion"].as_str().unwrap();
    let deleted = s
        .delete(SANDBOX, "default", "sb", with(Some(uid), Some(rv)))
        .await
        .unwrap();
    assert!(deleted.is_removed());
    assert!(
        paddock_store::meta::resource_version(deleted.object())
            .parse::<u64>()
            .unwrap()
            > rv.parse().unwrap()
    );
}

async fn background_delete_removes_children_and_grandchildren(backend: Backend) {
    let f = backend.open();
    let s = &*f.store;
    let (owner, _, _) = create_tree(s, "bg", false).await;
    // A dependent of another kind is collected too.
    s.create(
        CLAIM,
        owned_by(object(CLAIM, "default", "bg-claim"), &owner, false),
    )
    .await
    .unwrap();
    let unrelated = s.create(SANDBOX, sandbox("unrelated")).await.unwrap();
    let mut watch = s
        .watch(SANDBOX, WatchOptions::after(rv(&unrelated).to_string()))
        .await
        .unwrap();

    let deleted = s
        .delete(
            SANDBOX,
            "default",
            "bg-owner",
            DeleteOptions::propagation(PropagationPolicy::Background),
        )
        .await
        .unwrap();
    assert!(deleted.is_removed());
    for name in ["bg-owner", "bg-child", "bg-grandchild"] {
        assert!(!exists(s, name).await, "{name} should be collected");
    }
    assert_not_found(s.get(CLAIM, "default", "bg-claim").await);
    assert_eq!(get(s, "unrelated").await, unrelated);
    let events = next_events(&mut watch, 3).await;
    assert_eq!(
        events
            .iter()
            .map(|(t, n, _)| (*t, n.as_str()))
            .collect::<Vec<_>>(),
        [
            (Removed, "bg-owner"),
            (Removed, "bg-child"),
            (Removed, "bg-grandchild")
        ],
        "background deletion removes the owner first"
    );
}

async fn background_delete_of_an_owner_with_finalizers_keeps_dependents_until_it_goes(
    backend: Backend,
) {
    let f = backend.open();
    let s = &*f.store;
    let owner = s
        .create(
            SANDBOX,
            with_finalizers(sandbox("owner"), &["example.com/hold"]),
        )
        .await
        .unwrap();
    s.create(SANDBOX, owned_by(sandbox("child"), &owner, true))
        .await
        .unwrap();
    assert!(
        !s.delete(SANDBOX, "default", "owner", DeleteOptions::default())
            .await
            .unwrap()
            .is_removed()
    );
    assert!(
        exists(s, "child").await,
        "a terminating owner is still an owner"
    );
    s.patch(
        SANDBOX,
        "default",
        "owner",
        json!({"metadata": {"finalizers": null}}),
    )
    .await
    .unwrap();
    assert!(!exists(s, "owner").await);
    assert!(!exists(s, "child").await);
}

async fn foreground_delete_removes_dependents_before_the_owner(backend: Backend) {
    let f = backend.open();
    let s = &*f.store;
    let (_, _, grandchild) = create_tree(s, "fg", true).await;
    let mut watch = s
        .watch(SANDBOX, WatchOptions::after(rv(&grandchild).to_string()))
        .await
        .unwrap();
    let deleted = s
        .delete(
            SANDBOX,
            "default",
            "fg-owner",
            DeleteOptions::propagation(PropagationPolicy::Foreground),
        )
        .await
        .unwrap();
    assert!(
        deleted.is_removed(),
        "nothing blocks, so the cascade completes in the same write"
    );
    for name in ["fg-owner", "fg-child", "fg-grandchild"] {
        assert!(!exists(s, name).await, "{name}");
    }
    let mut deleted_order = Vec::new();
    let mut owner_marked = false;
    while deleted_order.len() < 3 {
        let event = next_event(&mut watch).await;
        match event.event_type {
            Removed => deleted_order.push(name(&event.object).to_owned()),
            _ if name(&event.object) == "fg-owner" => {
                owner_marked |=
                    paddock_store::meta::has_finalizer(&event.object, "foregroundDeletion");
            }
            _ => {}
        }
    }
    assert!(
        owner_marked,
        "the owner carries the foregroundDeletion finalizer while it waits"
    );
    assert_eq!(
        deleted_order,
        ["fg-grandchild", "fg-child", "fg-owner"],
        "foreground deletion removes the owner last"
    );
}

async fn foreground_delete_waits_for_a_blocking_grandchild_with_a_finalizer(backend: Backend) {
    let f = backend.open();
    let s = &*f.store;
    let owner = s.create(SANDBOX, sandbox("owner")).await.unwrap();
    let child = s
        .create(SANDBOX, owned_by(sandbox("child"), &owner, true))
        .await
        .unwrap();
    s.create(
        SANDBOX,
        with_finalizers(
            owned_by(sandbox("grandchild"), &child, true),
            &["example.com/hold"],
        ),
    )
    .await
    .unwrap();

    let Deleted::Terminating(marked) = s
        .delete(
            SANDBOX,
            "default",
            "owner",
            DeleteOptions::propagation(PropagationPolicy::Foreground),
        )
        .await
        .unwrap()
    else {
        panic!("the owner must wait for its blocking descendants");
    };
    assert!(marked["metadata"]["deletionTimestamp"].is_string());
    assert_eq!(
        marked["metadata"]["finalizers"],
        json!(["foregroundDeletion"])
    );
    let child = get(s, "child").await;
    assert_eq!(
        child["metadata"]["finalizers"],
        json!(["foregroundDeletion"]),
        "the child waits in foreground too"
    );
    let grandchild = get(s, "grandchild").await;
    assert!(grandchild["metadata"]["deletionTimestamp"].is_string());

    s.patch(
        SANDBOX,
        "default",
        "grandchild",
        json!({"metadata": {"finalizers": null}}),
    )
    .await
    .unwrap();
    for name in ["owner", "child", "grandchild"] {
        assert!(
            !exists(s, name).await,
            "{name} should be gone once the finalizer is removed"
        );
    }
}

async fn foreground_owner_is_not_held_by_non_blocking_dependents(backend: Backend) {
    let f = backend.open();
    let s = &*f.store;
    let owner = s.create(SANDBOX, sandbox("owner")).await.unwrap();
    s.create(
        SANDBOX,
        with_finalizers(
            owned_by(sandbox("child"), &owner, false),
            &["example.com/hold"],
        ),
    )
    .await
    .unwrap();
    let deleted = s
        .delete(
            SANDBOX,
            "default",
            "owner",
            DeleteOptions::propagation(PropagationPolicy::Foreground),
        )
        .await
        .unwrap();
    assert!(
        deleted.is_removed(),
        "a dependent without blockOwnerDeletion does not hold the owner"
    );
    let child = get(s, "child").await;
    assert!(
        child["metadata"]["deletionTimestamp"].is_string(),
        "but it is still deleted"
    );
}

async fn orphan_delete_keeps_dependents_and_strips_the_owner_reference(backend: Backend) {
    let f = backend.open();
    let s = &*f.store;
    let owner = s.create(SANDBOX, sandbox("owner")).await.unwrap();
    let other_owner = s
        .create(POOL, object(POOL, "default", "pool"))
        .await
        .unwrap();
    let child = s
        .create(SANDBOX, owned_by(sandbox("child"), &owner, true))
        .await
        .unwrap();
    s.create(
        SANDBOX,
        owned_by(
            owned_by(sandbox("shared"), &owner, true),
            &other_owner,
            false,
        ),
    )
    .await
    .unwrap();
    s.create(SANDBOX, owned_by(sandbox("grandchild"), &child, true))
        .await
        .unwrap();

    let deleted = s
        .delete(
            SANDBOX,
            "default",
            "owner",
            DeleteOptions::propagation(PropagationPolicy::Orphan),
        )
        .await
        .unwrap();
    assert!(deleted.is_removed());
    assert!(!exists(s, "owner").await);
    let child = get(s, "child").await;
    assert!(
        child["metadata"].get("ownerReferences").is_none(),
        "{child}"
    );
    assert_eq!(
        child["metadata"]["generation"], 1,
        "orphaning is a metadata change"
    );
    let shared = get(s, "shared").await;
    assert_eq!(
        shared["metadata"]["ownerReferences"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(shared["metadata"]["ownerReferences"][0]["name"], "pool");
    assert!(exists(s, "grandchild").await);
}

async fn dependent_with_another_live_owner_survives_and_drops_the_dead_reference(backend: Backend) {
    let f = backend.open();
    let s = &*f.store;
    let a = s.create(SANDBOX, sandbox("a")).await.unwrap();
    let b = s.create(SANDBOX, sandbox("b")).await.unwrap();
    s.create(
        SANDBOX,
        owned_by(owned_by(sandbox("both"), &a, true), &b, true),
    )
    .await
    .unwrap();
    s.delete(SANDBOX, "default", "a", DeleteOptions::default())
        .await
        .unwrap();
    let both = get(s, "both").await;
    let refs = both["metadata"]["ownerReferences"].as_array().unwrap();
    assert_eq!(refs.len(), 1);
    assert_eq!(refs[0]["uid"], b["metadata"]["uid"]);
    // In foreground, the surviving dependent releases the owner instead of blocking it.
    let c = s.create(SANDBOX, sandbox("c")).await.unwrap();
    s.patch(SANDBOX, "default", "both", json!({"metadata": {"ownerReferences": [refs[0].clone(), {
        "apiVersion": c["apiVersion"], "kind": "Sandbox", "name": "c", "uid": c["metadata"]["uid"], "blockOwnerDeletion": true}]}}))
        .await
        .unwrap();
    assert!(
        s.delete(
            SANDBOX,
            "default",
            "c",
            DeleteOptions::propagation(PropagationPolicy::Foreground)
        )
        .await
        .unwrap()
        .is_removed()
    );
    assert_eq!(
        get(s, "both").await["metadata"]["ownerReferences"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    s.delete(SANDBOX, "default", "b", DeleteOptions::default())
        .await
        .unwrap();
    assert!(
        !exists(s, "both").await,
        "the last owner going takes the dependent"
    );
}

async fn dependent_created_for_a_missing_owner_is_collected(backend: Backend) {
    let f = backend.open();
    let s = &*f.store;
    let owner = s.create(SANDBOX, sandbox("owner")).await.unwrap();
    s.delete(SANDBOX, "default", "owner", DeleteOptions::default())
        .await
        .unwrap();
    let mut watch = s
        .watch(
            SANDBOX,
            WatchOptions {
                start: WatchStart::Now,
                ..WatchOptions::default()
            },
        )
        .await
        .unwrap();
    let created = s
        .create(SANDBOX, owned_by(sandbox("late"), &owner, true))
        .await
        .unwrap();
    assert_eq!(name(&created), "late", "the create itself is acknowledged");
    assert!(
        !exists(s, "late").await,
        "and the garbage collector removes it"
    );
    let events = next_events(&mut watch, 2).await;
    assert_eq!(
        events.iter().map(|e| e.0).collect::<Vec<_>>(),
        [Added, Removed]
    );
}

async fn watch_delivers_every_change_in_order_with_full_objects(backend: Backend) {
    let f = backend.open();
    let s = &*f.store;
    let start = s
        .list(SANDBOX, ListOptions::default())
        .await
        .unwrap()
        .resource_version;
    let mut watch = s.watch(SANDBOX, WatchOptions::after(start)).await.unwrap();
    let created = s.create(SANDBOX, sandbox("sb")).await.unwrap();
    let updated = s
        .patch(SANDBOX, "default", "sb", json!({"spec": {"replicas": 0}}))
        .await
        .unwrap();
    let status = s
        .patch_status(SANDBOX, "default", "sb", json!({"status": {"ok": true}}))
        .await
        .unwrap();
    let deleted = s
        .delete(SANDBOX, "default", "sb", DeleteOptions::default())
        .await
        .unwrap();

    let mut events = Vec::new();
    for _ in 0..4 {
        events.push(next_event(&mut watch).await);
    }
    assert_eq!(events[0].event_type, Added);
    assert_eq!(events[0].object, created);
    assert_eq!(
        (events[1].event_type, &events[1].object),
        (Modified, &updated)
    );
    assert_eq!(
        (events[2].event_type, &events[2].object),
        (Modified, &status)
    );
    assert_eq!(
        (events[3].event_type, &events[3].object),
        (Removed, deleted.object())
    );
    let revisions: Vec<u64> = events
        .iter()
        .map(|e| e.resource_version().parse().unwrap())
        .collect();
    assert!(revisions.windows(2).all(|w| w[0] < w[1]), "{revisions:?}");
    assert_quiet(&mut watch, 50).await;
}

async fn watch_resumes_after_a_resource_version_without_gap_or_duplicate(backend: Backend) {
    let f = backend.open();
    let s = &*f.store;
    let mut written = Vec::new();
    for i in 0..10 {
        written.push(rv(&s
            .create(SANDBOX, sandbox(&format!("sb{i}")))
            .await
            .unwrap()));
    }
    // Resume in the middle of history: exactly the later changes, then live ones.
    let mut watch = s
        .watch(SANDBOX, WatchOptions::after(written[4].to_string()))
        .await
        .unwrap();
    for i in 10..15 {
        written.push(rv(&s
            .create(SANDBOX, sandbox(&format!("sb{i}")))
            .await
            .unwrap()));
    }
    let events = next_events(&mut watch, 10).await;
    assert_eq!(events.iter().map(|e| e.2).collect::<Vec<_>>(), written[5..]);
    assert_eq!(
        events.iter().map(|e| e.1.clone()).collect::<Vec<_>>(),
        (5..15).map(|i| format!("sb{i}")).collect::<Vec<_>>()
    );
    assert_quiet(&mut watch, 50).await;

    // List-then-watch while a writer runs: every object is in the list or arrives as an event, once.
    let writer_store = f.store.clone();
    let writer = tokio::spawn(async move {
        for i in 0..100 {
            writer_store
                .create(SANDBOX, sandbox(&format!("live{i}")))
                .await
                .unwrap();
        }
    });
    // List while the writer is half-way: once it has written something.
    let list = loop {
        let list = s.list(SANDBOX, ListOptions::default()).await.unwrap();
        if list.items.iter().any(|o| name(o).starts_with("live")) {
            break list;
        }
        tokio::task::yield_now().await;
    };
    let mut seen: HashSet<String> = list.items.iter().map(|o| name(o).to_owned()).collect();
    let listed = seen.len();
    let mut watch = s
        .watch(SANDBOX, WatchOptions::after(list.resource_version))
        .await
        .unwrap();
    writer.await.unwrap();
    for _ in 0..(115 - listed) {
        let event = next_event(&mut watch).await;
        assert_eq!(event.event_type, Added);
        assert!(
            seen.insert(name(&event.object).to_owned()),
            "duplicate {}",
            name(&event.object)
        );
    }
    assert_eq!(seen.len(), 115);
    assert_quiet(&mut watch, 50).await;
}

async fn watch_from_before_the_retained_log_is_gone(backend: Backend) {
    let f = backend.open_with(&StoreOptions {
        watch_history: 8,
        ..StoreOptions::default()
    });
    let s = &*f.store;
    let first = s.create(SANDBOX, sandbox("first")).await.unwrap();
    for i in 0..20 {
        s.create(SANDBOX, sandbox(&format!("sb{i}"))).await.unwrap();
    }
    match s
        .watch(SANDBOX, WatchOptions::after(rv(&first).to_string()))
        .await
    {
        Err(err @ StoreError::Gone { .. }) => assert_eq!(err.http_status(), 410),
        other => panic!("expected Gone, got {other:?}"),
    }
    assert_invalid(
        s.watch(SANDBOX, WatchOptions::after("abc")).await,
        "resourceVersion",
    );
    // The latest revisions are still served.
    let list = s.list(SANDBOX, ListOptions::default()).await.unwrap();
    let recent = list.resource_version.parse::<u64>().unwrap() - 5;
    let mut watch = s
        .watch(SANDBOX, WatchOptions::after(recent.to_string()))
        .await
        .unwrap();
    assert_eq!(next_events(&mut watch, 5).await.len(), 5);
}

async fn slow_watcher_gets_gone_and_never_blocks_writers(backend: Backend) {
    let f = backend.open_with(&StoreOptions {
        watch_history: 16,
        ..StoreOptions::default()
    });
    let s = &*f.store;
    let mut slow = s
        .watch(
            SANDBOX,
            WatchOptions {
                start: WatchStart::Now,
                ..WatchOptions::default()
            },
        )
        .await
        .unwrap();
    let mut fast = s
        .watch(
            SANDBOX,
            WatchOptions {
                start: WatchStart::Now,
                ..WatchOptions::default()
            },
        )
        .await
        .unwrap();
    let started = Instant::now();
    for i in 0..200 {
        s.create(SANDBOX, sandbox(&format!("sb{i}"))).await.unwrap();
        if i % 4 == 3 {
            // The fast watcher keeps up; the slow one never reads.
            next_events(&mut fast, 4).await;
        }
    }
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "writers were held up"
    );
    match tokio::time::timeout(Duration::from_secs(5), slow.next())
        .await
        .unwrap()
    {
        Some(Err(StoreError::Gone { requested, oldest })) => assert!(requested < oldest),
        other => panic!("expected Gone for the watcher that fell behind, got {other:?}"),
    }
    assert!(slow.next().await.is_none(), "the stream ends after Gone");
    assert_quiet(&mut fast, 50).await;
}

async fn watch_filters_by_namespace_and_labels_like_kubernetes(backend: Backend) {
    let f = backend.open();
    let s = &*f.store;
    let options = WatchOptions {
        namespace: Some("team".into()),
        label_selector: LabelSelector::parse("pool=a").unwrap(),
        start: WatchStart::Now,
        ..WatchOptions::default()
    };
    let mut watch = s.watch(SANDBOX, options).await.unwrap();
    let labelled = |ns: &str, name: &str, pool: &str| {
        let mut o = object(SANDBOX, ns, name);
        o["metadata"]["labels"] = json!({"pool": pool});
        o
    };
    s.create(SANDBOX, labelled("other", "elsewhere", "a"))
        .await
        .unwrap();
    s.create(SANDBOX, labelled("team", "in-b", "b"))
        .await
        .unwrap();
    s.create(CLAIM, {
        let mut o = object(CLAIM, "team", "claim");
        o["metadata"]["labels"] = json!({"pool": "a"});
        o
    })
    .await
    .unwrap();
    s.create(SANDBOX, labelled("team", "member", "a"))
        .await
        .unwrap();
    s.patch(SANDBOX, "team", "member", json!({"spec": {"replicas": 0}}))
        .await
        .unwrap();
    s.patch(
        SANDBOX,
        "team",
        "member",
        json!({"metadata": {"labels": {"pool": "adopted"}}}),
    )
    .await
    .unwrap();
    s.patch(SANDBOX, "team", "member", json!({"spec": {"replicas": 1}}))
        .await
        .unwrap();
    s.patch(
        SANDBOX,
        "team",
        "in-b",
        json!({"metadata": {"labels": {"pool": "a"}}}),
    )
    .await
    .unwrap();
    s.delete(SANDBOX, "team", "in-b", DeleteOptions::default())
        .await
        .unwrap();

    let events = next_events(&mut watch, 5).await;
    let summary: Vec<(WatchEventType, &str)> =
        events.iter().map(|(t, n, _)| (*t, n.as_str())).collect();
    assert_eq!(
        summary,
        [
            (Added, "member"),
            (Modified, "member"),
            (Removed, "member"),
            (Added, "in-b"),
            (Removed, "in-b")
        ],
        "leaving the selector reads as Deleted, entering it as Added"
    );
    assert_quiet(&mut watch, 50).await;
}

async fn watch_from_initial_state_sends_synthetic_added_events(backend: Backend) {
    let f = backend.open();
    let s = &*f.store;
    let a = s.create(SANDBOX, sandbox("a")).await.unwrap();
    let b = s.create(SANDBOX, sandbox("b")).await.unwrap();
    s.create(CLAIM, object(CLAIM, "default", "c"))
        .await
        .unwrap();
    let mut watch = s.watch(SANDBOX, WatchOptions::default()).await.unwrap();
    let first = next_event(&mut watch).await;
    let second = next_event(&mut watch).await;
    assert_eq!((first.event_type, &first.object), (Added, &a));
    assert_eq!((second.event_type, &second.object), (Added, &b));
    let updated = s
        .patch(SANDBOX, "default", "a", json!({"spec": {"replicas": 3}}))
        .await
        .unwrap();
    let third = next_event(&mut watch).await;
    assert_eq!((third.event_type, &third.object), (Modified, &updated));
}

async fn watch_now_reports_only_later_changes(backend: Backend) {
    let f = backend.open();
    let s = &*f.store;
    s.create(SANDBOX, sandbox("before")).await.unwrap();
    let mut watch = s
        .watch(
            SANDBOX,
            WatchOptions {
                start: WatchStart::Now,
                ..WatchOptions::default()
            },
        )
        .await
        .unwrap();
    assert_quiet(&mut watch, 50).await;
    s.create(SANDBOX, sandbox("after")).await.unwrap();
    assert_eq!(name(&next_event(&mut watch).await.object), "after");
}

async fn watch_ends_when_the_store_is_dropped(backend: Backend) {
    let f = backend.open();
    f.store.create(SANDBOX, sandbox("sb")).await.unwrap();
    let mut watch = f
        .store
        .watch(SANDBOX, WatchOptions::after("0"))
        .await
        .unwrap();
    drop(f);
    let event = next_event(&mut watch).await;
    assert_eq!(
        name(&event.object),
        "sb",
        "changes already made are still delivered"
    );
    let end = tokio::time::timeout(Duration::from_secs(5), watch.next())
        .await
        .unwrap();
    assert!(end.is_none(), "{end:?}");
}

async fn concurrent_updates_from_one_resource_version_let_exactly_one_win(backend: Backend) {
    let f = backend.open();
    let created = f.store.create(SANDBOX, sandbox("sb")).await.unwrap();
    let mut tasks = Vec::new();
    for i in 0..20 {
        let store = f.store.clone();
        let mut update = created.clone();
        update["spec"]["replicas"] = json!(100 + i);
        tasks.push(tokio::spawn(
            async move { store.update(SANDBOX, update).await },
        ));
    }
    let mut winners = Vec::new();
    for task in tasks {
        match task.await.unwrap() {
            Ok(object) => winners.push(object),
            Err(StoreError::Conflict { .. }) => {}
            Err(other) => panic!("{other}"),
        }
    }
    assert_eq!(
        winners.len(),
        1,
        "optimistic concurrency lets exactly one writer win"
    );
    assert_eq!(get(&*f.store, "sb").await, winners[0]);
}

async fn concurrent_writers_all_succeed_with_distinct_revisions(backend: Backend) {
    let f = backend.open();
    let mut tasks = Vec::new();
    for w in 0..50 {
        let store: Arc<dyn ObjectStore> = f.store.clone();
        tasks.push(tokio::spawn(async move {
            let mut revisions = Vec::new();
            let mut object = store
                .create(SANDBOX, sandbox(&format!("w{w}")))
                .await
                .unwrap();
            revisions.push(rv(&object));
            for i in 0..5 {
                object["spec"]["replicas"] = json!(i);
                object = store.update(SANDBOX, object).await.unwrap();
                revisions.push(rv(&object));
            }
            assert!(
                revisions.windows(2).all(|p| p[0] < p[1]),
                "one writer's revisions grow: {revisions:?}"
            );
            revisions
        }));
    }
    let mut all = HashSet::new();
    for task in tasks {
        for revision in task.await.unwrap() {
            assert!(all.insert(revision), "revision {revision} given twice");
        }
    }
    assert_eq!(all.len(), 300);
    let list = f.store.list(SANDBOX, ListOptions::default()).await.unwrap();
    assert_eq!(list.items.len(), 50);
    assert_eq!(
        list.resource_version.parse::<u64>().unwrap(),
        *all.iter().max().unwrap()
    );
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct TypedClaim {
    api_version: String,
    kind: String,
    metadata: ObjectMeta,
    spec: TypedClaimSpec,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    status: Option<serde_json::Map<String, Value>>,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct TypedClaimSpec {
    warm_pool_ref: Value,
}

async fn typed_helpers_round_trip_through_serde(backend: Backend) {
    let f = backend.open();
    let s = &*f.store;
    let claim = TypedClaim {
        api_version: api_version(CLAIM),
        kind: "SandboxClaim".into(),
        metadata: ObjectMeta {
            name: Some("c".into()),
            namespace: Some("default".into()),
            ..ObjectMeta::default()
        },
        spec: TypedClaimSpec {
            warm_pool_ref: json!({"name": "pool"}),
        },
        status: None,
    };
    let created = s.create_typed(CLAIM, &claim).await.unwrap();
    assert!(created.metadata.uid.is_some());
    assert_eq!(created.metadata.generation, Some(1));
    let fetched: TypedClaim = s.get_as(CLAIM, "default", "c").await.unwrap();
    assert_eq!(fetched, created);
    let mut with_status = fetched.clone();
    with_status.status = Some(
        json!({"sandbox": {"name": "pool-abcde"}})
            .as_object()
            .unwrap()
            .clone(),
    );
    let updated = s.update_status_typed(CLAIM, &with_status).await.unwrap();
    assert_eq!(updated.status.unwrap()["sandbox"]["name"], "pool-abcde");
    let (items, revision) = s
        .list_as::<TypedClaim>(CLAIM, ListOptions::default())
        .await
        .unwrap();
    assert_eq!(items.len(), 1);
    assert_eq!(
        revision,
        items[0].metadata.resource_version.clone().unwrap()
    );
    match s.get_as::<u32>(CLAIM, "default", "c").await {
        Err(StoreError::Decode { .. }) => {}
        other => panic!("expected Decode, got {other:?}"),
    }
}

#[test]
fn zero_sized_store_options_are_rejected_with_the_field_named() {
    for options in [
        StoreOptions {
            watch_history: 0,
            ..StoreOptions::default()
        },
        StoreOptions {
            max_batch: 0,
            ..StoreOptions::default()
        },
    ] {
        match paddock_store::MemoryStore::with_options(&options) {
            Err(StoreError::Invalid { field, .. }) => assert_eq!(field, "StoreOptions"),
            other => panic!("expected Invalid, got {other:?}"),
        }
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(
            paddock_store::RedbStore::open_with(dir.path(), &options),
            Err(StoreError::Invalid { .. })
        ));
    }
}
