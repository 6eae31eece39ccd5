//! Crash safety of the durable store: a child process (this test binary, re-invoked) writes to a
//! redb store from several tasks and prints every acknowledged write; the parent kills it with
//! SIGKILL at a random moment, reopens the store and checks that every acknowledged write is
//! there, that the store opened without repairs (no half-applied cascade), and that revisions
//! only grow. Several rounds run on the same directory.

// Test code: a failed unwrap is a failed test, with the value in the message.
#![allow(clippy::unwrap_used)]

mod support;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use paddock_store::{DeleteOptions, ListOptions, ObjectStore, PropagationPolicy, RedbStore, meta};
use serde_json::{Value, json};
use support::*;

const CHILD_DIR_ENV: &str = "PADDOCK_STORE_CRASH_CHILD_DIR";
const CHILD_ROUND_ENV: &str = "PADDOCK_STORE_CRASH_CHILD_ROUND";
const WRITER_TASKS: usize = 4;
const CHILDREN_PER_TREE: usize = 3;
/// The child stops by itself after this long, in case the parent died.
const CHILD_LIFETIME: Duration = Duration::from_secs(30);

fn random_below(n: u64) -> u64 {
    getrandom::u64().unwrap() % n
}

/// The writer child; a no-op unless the parent set `CHILD_DIR_ENV`.
#[test]
fn crash_child() {
    let Some(dir) = std::env::var_os(CHILD_DIR_ENV) else {
        return;
    };
    let round: u32 = std::env::var(CHILD_ROUND_ENV).unwrap().parse().unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        let store: std::sync::Arc<dyn ObjectStore> =
            std::sync::Arc::new(RedbStore::open(&dir).unwrap());
        println!("READY");
        let mut tasks = Vec::new();
        for task in 0..WRITER_TASKS {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                write_forever(&*store, round, task).await
            }));
        }
        for task in tasks {
            task.await.unwrap();
        }
    });
}

async fn write_forever(store: &dyn ObjectStore, round: u32, task: usize) {
    let started = Instant::now();
    let counter_name = format!("r{round}-w{task}-counter");
    let mut counter = store.create(SANDBOX, sandbox(&counter_name)).await.unwrap();
    println!("ACK {task} counter {counter_name} 0 {}", rv(&counter));
    let mut i: u64 = 0;
    while started.elapsed() < CHILD_LIFETIME {
        i += 1;
        counter["spec"]["counter"] = json!(i);
        counter = store.update(SANDBOX, counter).await.unwrap();
        println!("ACK {task} counter {counter_name} {i} {}", rv(&counter));
        if i.is_multiple_of(15) {
            // Pauses let the store go idle and checkpoint, so kills also land in checkpoints.
            tokio::time::sleep(Duration::from_millis(random_below(120))).await;
        }
        if i.is_multiple_of(4) {
            let tree = format!("r{round}-w{task}-t{i}");
            let owner = store.create(SANDBOX, sandbox(&tree)).await.unwrap();
            for c in 0..CHILDREN_PER_TREE {
                let child = store
                    .create(
                        SANDBOX,
                        owned_by(sandbox(&format!("{tree}-c{c}")), &owner, true),
                    )
                    .await
                    .unwrap();
                store
                    .create(
                        SANDBOX,
                        owned_by(sandbox(&format!("{tree}-c{c}-g")), &child, true),
                    )
                    .await
                    .unwrap();
            }
            println!("ACK {task} tree {tree} 0 {}", rv(&owner));
            let (policy, label) = match i / 4 % 3 {
                0 => (PropagationPolicy::Background, "background"),
                1 => (PropagationPolicy::Foreground, "foreground"),
                _ => (PropagationPolicy::Orphan, "orphan"),
            };
            let deleted = store
                .delete(
                    SANDBOX,
                    "default",
                    &tree,
                    DeleteOptions::propagation(policy),
                )
                .await
                .unwrap();
            assert!(deleted.is_removed(), "nothing blocks these cascades");
            println!(
                "ACK {task} delete-{label} {tree} 0 {}",
                rv(deleted.object())
            );
        }
    }
}

/// One acknowledged write as printed by the child.
#[derive(Debug, Clone)]
struct Ack {
    task: usize,
    kind: String,
    name: String,
    value: u64,
    revision: u64,
}

fn parse_ack(line: &str) -> Option<Ack> {
    let mut parts = line.strip_prefix("ACK ")?.split(' ');
    let ack = Ack {
        task: parts.next()?.parse().ok()?,
        kind: parts.next()?.to_owned(),
        name: parts.next()?.to_owned(),
        value: parts.next()?.parse().ok()?,
        revision: parts.next()?.parse().ok()?,
    };
    parts.next().is_none().then_some(ack)
}

/// Runs one child until it has acknowledged at least `min_acks` writes, kills it at a random
/// moment after that, and returns every complete acknowledgement line it printed.
fn run_and_kill(dir: &Path, round: u32, min_acks: usize) -> Vec<Ack> {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "crash_child", "--nocapture", "--test-threads=1"])
        .env(CHILD_DIR_ENV, dir)
        .env(CHILD_ROUND_ENV, round.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (lines_tx, lines_rx) = mpsc::channel::<String>();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if lines_tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut acks = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while acks.len() < min_acks {
        let line = lines_rx
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .unwrap_or_else(|_| {
                let _ = child.kill();
                panic!(
                    "the child acknowledged only {} writes before the deadline",
                    acks.len()
                );
            });
        acks.extend(parse_ack(&line));
    }
    std::thread::sleep(Duration::from_micros(random_below(20_000)));
    child.kill().unwrap();
    let status = child.wait().unwrap();
    assert!(!status.success(), "the child must die by the signal");
    reader.join().unwrap();
    acks.extend(lines_rx.try_iter().filter_map(|l| parse_ack(&l)));
    acks
}

/// Checks the reopened store against everything acknowledged so far.
async fn verify(store: &RedbStore, acks: &[Ack], previous_max: u64) -> u64 {
    assert_eq!(
        store.open_report().garbage_collected,
        0,
        "reopening found a half-applied cascade to repair"
    );
    let list = store.list(SANDBOX, ListOptions::default()).await.unwrap();
    let revision: u64 = list.resource_version.parse().unwrap();
    let objects: BTreeMap<String, Value> = list
        .items
        .into_iter()
        .map(|o| (name(&o).to_owned(), o))
        .collect();

    // Revisions: unique, increasing per writer task, above every earlier round, at most the store's.
    let mut seen = HashSet::new();
    let mut last_per_task: HashMap<usize, u64> = HashMap::new();
    for ack in acks {
        assert!(
            seen.insert(ack.revision),
            "revision {} acknowledged twice",
            ack.revision
        );
        assert!(
            ack.revision > previous_max,
            "revision {} not above the last round's {previous_max}",
            ack.revision
        );
        let last = last_per_task.entry(ack.task).or_insert(0);
        assert!(
            ack.revision > *last,
            "task {} went from revision {last} to {}",
            ack.task,
            ack.revision
        );
        *last = ack.revision;
    }
    let max_acked = acks
        .iter()
        .map(|a| a.revision)
        .max()
        .unwrap_or(previous_max);
    assert!(
        revision >= max_acked,
        "the store is at revision {revision} but {max_acked} was acknowledged"
    );

    // Every acknowledged counter value is there (or a later, unacknowledged one).
    let mut counters: HashMap<&str, (u64, u64)> = HashMap::new();
    for ack in acks.iter().filter(|a| a.kind == "counter") {
        counters.insert(&ack.name, (ack.value, ack.revision));
    }
    for (name, (value, acked_rv)) in &counters {
        let object = objects
            .get(*name)
            .unwrap_or_else(|| panic!("acknowledged object {name} is missing"));
        assert!(
            object["spec"]["counter"].as_u64().unwrap_or(0) >= *value,
            "{name} lost update {value}: {object}"
        );
        assert!(rv(object) >= *acked_rv);
    }

    // Acknowledged deletions took their whole cascade; orphaning kept dependents, unowned.
    for ack in acks.iter().filter(|a| a.kind.starts_with("delete-")) {
        let tree = &ack.name;
        assert!(
            !objects.contains_key(tree),
            "deleted owner {tree} is still there"
        );
        for c in 0..CHILDREN_PER_TREE {
            let (child, grandchild) = (format!("{tree}-c{c}"), format!("{tree}-c{c}-g"));
            if ack.kind == "delete-orphan" {
                let child = objects
                    .get(&child)
                    .unwrap_or_else(|| panic!("orphaned {child} is missing"));
                assert!(
                    child["metadata"].get("ownerReferences").is_none(),
                    "{child}"
                );
                assert!(objects.contains_key(&grandchild));
            } else {
                assert!(
                    !objects.contains_key(&child) && !objects.contains_key(&grandchild),
                    "{tree} left {child}"
                );
            }
        }
    }

    // No object anywhere is half-deleted or owned only by objects that are gone.
    let uids: HashSet<&str> = objects.values().map(meta::uid).collect();
    for object in objects.values() {
        assert!(
            !meta::is_terminating(object),
            "nothing in this workload should stay terminating: {object}"
        );
        let owners = meta::owner_references(object);
        assert!(
            owners.is_empty() || owners.iter().all(|r| uids.contains(r.uid)),
            "{} has an owner reference to an object that is gone",
            name(object)
        );
    }
    revision
}

#[test]
fn acknowledged_writes_survive_kill_9_at_random_moments() {
    let dir = tempfile::tempdir().unwrap();
    let store_dir = dir.path().join("store");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut all_acks = Vec::new();
    let mut previous_max = 0;
    let mut replayed = 0;
    for round in 0..6 {
        let min_acks = 20 + usize::try_from(random_below(400)).unwrap();
        let acks = run_and_kill(&store_dir, round, min_acks);
        assert!(acks.len() >= min_acks);
        let store = RedbStore::open(&store_dir).unwrap();
        let revision = runtime.block_on(verify(&store, &acks, previous_max));
        // Everything from earlier rounds is still there too.
        runtime.block_on(async {
            for ack in all_acks.iter().filter(|a: &&Ack| a.kind == "counter") {
                let object = store.get(SANDBOX, "default", &ack.name).await.unwrap();
                assert!(object["spec"]["counter"].as_u64().unwrap_or(0) >= ack.value);
            }
        });
        let report = store.open_report();
        eprintln!(
            "round {round}: {} writes acknowledged, store at revision {revision}, {} changes replayed from the log",
            acks.len(),
            report.replayed
        );
        replayed += report.replayed;
        previous_max = revision;
        all_acks.extend(acks);
    }
    assert!(
        replayed > 0,
        "no round left acknowledged writes in the change log: the test did not exercise replay"
    );
}
