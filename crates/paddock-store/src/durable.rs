//! The durable store on redb, one database file with three tables:
//! - `changes`: revision → change record (key and object JSON, or a deletion). Each batch of
//!   operations appends its changes here in one transaction committed with immediate durability
//!   (fsync) before any caller is answered. Appending under increasing keys touches few, adjacent
//!   pages, so a batch of 50 writes costs about as much disk traffic as its data.
//! - `objects`: key → object JSON, the state as of the last checkpoint. Checkpoints move the
//!   latest state of changed keys here and delete their change records, a bounded step at a time:
//!   while the store is idle, or one step per batch when many changes are pending.
//! - `meta`: the store's revision and the layout version.
//!
//! The state is `objects` with `changes` replayed in revision order; every transaction is atomic,
//! so a crash at any moment leaves a consistent state. On open everything is loaded into memory
//! (reads are served from there), garbage collection runs over every object as a safety net (the
//! store's own writes never leave a half-applied cascade, since each cascade commits atomically
//! with the write that caused it), and the change log is checkpointed.

use std::collections::{BTreeMap, HashMap};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use redb::{Database, DatabaseError, ReadableDatabase, ReadableTable, TableDefinition};
use serde_json::Value;

use crate::error::{Result, StoreError};
use crate::meta;
use crate::pipeline::state::{Change, ChangeKind, Head, Txn};
use crate::pipeline::{Moment, Persistence, Pipeline, StoreOptions, delegate_object_store, exec};
use crate::resource::split_key;

/// Name of the database file inside the store directory.
pub const DATABASE_FILE: &str = "objects.redb";

const OBJECTS: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("objects");
const CHANGES: TableDefinition<'_, u64, &[u8]> = TableDefinition::new("changes");
const META: TableDefinition<'_, &str, u64> = TableDefinition::new("meta");
const REVISION_KEY: &str = "revision";
const FORMAT_KEY: &str = "format";
/// Layout version of the tables above.
const FORMAT: u64 = 1;
/// Keys moved from `changes` to `objects` per checkpoint transaction while idle: small enough
/// that a request arriving meanwhile waits about as long as for one busy commit.
const CHECKPOINT_STEP: usize = 128;
/// Keys moved per checkpoint transaction under sustained load, after each batch.
const CHECKPOINT_STEP_UNDER_LOAD: usize = 64;
/// Above this many pending keys, a checkpoint step follows every batch (bounding the log, and
/// the replay work on open, to roughly this many records).
const CHECKPOINT_PRESSURE: usize = 16_384;

const RECORD_PUT: u8 = 1;
const RECORD_DELETE: u8 = 2;

/// A change record: tag, key length (u32 LE), key, and for a put the object's JSON.
fn encode_record(key: &str, object: Option<&Value>) -> Result<Vec<u8>> {
    let key_len = u32::try_from(key.len())
        .map_err(|_| StoreError::invalid("metadata.name", "the object key is longer than 4 GiB"))?;
    let mut record = Vec::with_capacity(5 + key.len() + 1024);
    record.push(if object.is_some() {
        RECORD_PUT
    } else {
        RECORD_DELETE
    });
    record.extend_from_slice(&key_len.to_le_bytes());
    record.extend_from_slice(key.as_bytes());
    if let Some(object) = object {
        serde_json::to_writer(&mut record, object).map_err(|e| StoreError::Corrupt {
            key: key.to_owned(),
            reason: format!("cannot serialise: {e}"),
        })?;
    }
    Ok(record)
}

/// The change record of a change.
fn encode_change(change: &Change) -> Result<Vec<u8>> {
    let object = match change.kind {
        ChangeKind::Deleted => None,
        ChangeKind::Added | ChangeKind::Modified => Some(&*change.object),
    };
    encode_record(&change.key, object)
}

/// Decodes a change record into its key and object (`None` for a deletion).
fn decode_record(record: &[u8]) -> std::result::Result<(String, Option<Value>), String> {
    let (&tag, rest) = record.split_first().ok_or("empty record")?;
    let len_bytes: [u8; 4] = rest
        .get(..4)
        .and_then(|b| b.try_into().ok())
        .ok_or("truncated key length")?;
    let key_len =
        usize::try_from(u32::from_le_bytes(len_bytes)).map_err(|_| "key length overflows")?;
    let key_end = key_len.checked_add(4).ok_or("key length overflows")?;
    let key = rest.get(4..key_end).ok_or("truncated key")?;
    let key = std::str::from_utf8(key)
        .map_err(|_| "key is not UTF-8")?
        .to_owned();
    let body = rest.get(key_end..).ok_or("truncated record")?;
    match tag {
        RECORD_PUT => {
            let object =
                serde_json::from_slice(body).map_err(|e| format!("object is not JSON: {e}"))?;
            Ok((key, Some(object)))
        }
        RECORD_DELETE if body.is_empty() => Ok((key, None)),
        other => Err(format!("unknown record tag {other}")),
    }
}

/// What opening a durable store found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenReport {
    /// Objects loaded.
    pub objects: usize,
    /// The store's revision after opening.
    pub revision: u64,
    /// Change records replayed from the log (writes acknowledged after the last checkpoint,
    /// typically because the previous process did not shut down cleanly).
    pub replayed: usize,
    /// Changes the garbage-collection sweep had to make on open. Always 0 for a store only ever
    /// written by this crate, crashes included.
    pub garbage_collected: usize,
}

/// A durable [`crate::ObjectStore`] in a directory, on redb.
///
/// One process at a time: opening a directory that another process has open fails with
/// `Unavailable`.
#[derive(Debug)]
pub struct RedbStore {
    pipeline: Pipeline,
    path: PathBuf,
    report: OpenReport,
}

impl RedbStore {
    /// Opens (creating if needed, mode 0700) the store in `dir`, with default options. Blocking:
    /// it reads the whole store; call it at start-up or from a blocking task.
    ///
    /// # Errors
    /// `Io` if the directory cannot be created, `Unavailable` if another process has the store
    /// open, `Storage`/`Corrupt` if the database cannot be read.
    pub fn open(dir: impl AsRef<Path>) -> Result<Self> {
        Self::open_with(dir, &StoreOptions::default())
    }

    /// Opens the store in `dir` with `options`; see [`RedbStore::open`].
    pub fn open_with(dir: impl AsRef<Path>, options: &StoreOptions) -> Result<Self> {
        let dir = dir.as_ref();
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| StoreError::Io {
                context: "cannot create the store directory".into(),
                path: dir.to_owned(),
                source: Arc::new(e),
            })?;
        let path = dir.join(DATABASE_FILE);
        let db = Database::create(&path).map_err(|e| match e {
            DatabaseError::DatabaseAlreadyOpen => StoreError::Unavailable {
                reason: format!(
                    "{} is open in another process (is `paddock serve` already running?)",
                    path.display()
                ),
            },
            other => StoreError::storage(format!("opening {}", path.display()), other),
        })?;
        initialise(&db, &path)?;
        let loaded = load(&db, &path)?;
        let mut head = Head::load(loaded.objects, loaded.revision);
        let mut persistence = RedbPersistence {
            db,
            path: path.clone(),
            pending: BTreeMap::new(),
        };
        let replayed = loaded.logged.len();
        for (revision, key) in loaded.logged {
            persistence
                .pending
                .entry(key.clone())
                .or_default()
                .logged
                .push(revision);
        }
        for (key, entry) in &mut persistence.pending {
            entry.state = head.get(key).cloned();
        }

        let mut txn = Txn::default();
        exec::sweep(&mut head, &mut txn, &meta::now_rfc3339())?;
        let garbage_collected = txn.changes.len();
        if garbage_collected > 0 {
            persistence.commit(&txn.changes, head.revision())?;
            tracing::warn!(path = %path.display(), changes = garbage_collected, "garbage collection on open repaired the store");
        }
        while persistence.checkpoint_step(CHECKPOINT_STEP)? {}
        let report = OpenReport {
            objects: head.len(),
            revision: head.revision(),
            replayed,
            garbage_collected,
        };
        let pipeline = Pipeline::start(head, persistence, options)?;
        Ok(Self {
            pipeline,
            path,
            report,
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// What opening the store found.
    pub fn open_report(&self) -> &OpenReport {
        &self.report
    }
}

delegate_object_store!(RedbStore);

/// Creates the tables and checks the layout version.
fn initialise(db: &Database, path: &Path) -> Result<()> {
    let context = || format!("initialising {}", path.display());
    let txn = db
        .begin_write()
        .map_err(|e| StoreError::storage(context(), e))?;
    {
        txn.open_table(OBJECTS)
            .map_err(|e| StoreError::storage(context(), e))?;
        txn.open_table(CHANGES)
            .map_err(|e| StoreError::storage(context(), e))?;
        let mut meta = txn
            .open_table(META)
            .map_err(|e| StoreError::storage(context(), e))?;
        let format = meta
            .get(FORMAT_KEY)
            .map_err(|e| StoreError::storage(context(), e))?
            .map(|v| v.value());
        match format {
            None => {
                meta.insert(FORMAT_KEY, FORMAT)
                    .map_err(|e| StoreError::storage(context(), e))?;
            }
            Some(FORMAT) => {}
            Some(other) => {
                return Err(StoreError::Unavailable {
                    reason: format!(
                        "{} has store format {other}, this paddock reads format {FORMAT}; use a matching paddock version",
                        path.display()
                    ),
                });
            }
        }
    }
    txn.commit().map_err(|e| StoreError::storage(context(), e))
}

/// The state read from disk.
struct Loaded {
    /// Checkpointed objects with the change log replayed.
    objects: Vec<(String, Value)>,
    /// The revision (at least the highest object revision).
    revision: u64,
    /// Change records still in the log, in revision order.
    logged: Vec<(u64, String)>,
}

fn object_revision(key: &str, object: &Value) -> Result<u64> {
    meta::resource_version(object)
        .parse::<u64>()
        .map_err(|_| StoreError::Corrupt {
            key: key.to_owned(),
            reason: "metadata.resourceVersion is not a number".into(),
        })
}

/// Reads the checkpointed objects and replays the change log over them.
fn load(db: &Database, path: &Path) -> Result<Loaded> {
    let context = || format!("loading {}", path.display());
    let txn = db
        .begin_read()
        .map_err(|e| StoreError::storage(context(), e))?;
    let meta = txn
        .open_table(META)
        .map_err(|e| StoreError::storage(context(), e))?;
    let mut revision = meta
        .get(REVISION_KEY)
        .map_err(|e| StoreError::storage(context(), e))?
        .map_or(0, |v| v.value());
    let mut objects = BTreeMap::new();
    let table = txn
        .open_table(OBJECTS)
        .map_err(|e| StoreError::storage(context(), e))?;
    for entry in table
        .iter()
        .map_err(|e| StoreError::storage(context(), e))?
    {
        let (key, value) = entry.map_err(|e| StoreError::storage(context(), e))?;
        let key = key.value().to_owned();
        if split_key(&key).is_none() {
            return Err(StoreError::Corrupt {
                key,
                reason: "the key is not resource/namespace/name".into(),
            });
        }
        let object: Value =
            serde_json::from_slice(value.value()).map_err(|e| StoreError::Corrupt {
                key: key.clone(),
                reason: format!("not JSON: {e}"),
            })?;
        revision = revision.max(object_revision(&key, &object)?);
        objects.insert(key, object);
    }
    let mut logged = Vec::new();
    let changes = txn
        .open_table(CHANGES)
        .map_err(|e| StoreError::storage(context(), e))?;
    for entry in changes
        .iter()
        .map_err(|e| StoreError::storage(context(), e))?
    {
        let (change_revision, record) = entry.map_err(|e| StoreError::storage(context(), e))?;
        let change_revision = change_revision.value();
        let (key, object) =
            decode_record(record.value()).map_err(|reason| StoreError::Corrupt {
                key: format!("change {change_revision}"),
                reason,
            })?;
        if split_key(&key).is_none() {
            return Err(StoreError::Corrupt {
                key,
                reason: "the key is not resource/namespace/name".into(),
            });
        }
        revision = revision.max(change_revision);
        match object {
            Some(object) => {
                revision = revision.max(object_revision(&key, &object)?);
                objects.insert(key.clone(), object);
            }
            None => {
                objects.remove(&key);
            }
        }
        logged.push((change_revision, key));
    }
    Ok(Loaded {
        objects: objects.into_iter().collect(),
        revision,
        logged,
    })
}

/// A key changed since the last checkpoint.
#[derive(Debug, Default)]
struct PendingKey {
    /// Its latest state (`None`: deleted).
    state: Option<Arc<Value>>,
    /// Revisions of its records in `changes`.
    logged: Vec<u64>,
}

struct RedbPersistence {
    db: Database,
    path: PathBuf,
    /// Keys whose latest state is only in the change log, ordered for local inserts.
    pending: BTreeMap<String, PendingKey>,
}

impl RedbPersistence {
    /// Moves up to `step` pending keys into `objects` and deletes their change records, in one
    /// transaction. Returns whether keys remain pending.
    fn checkpoint_step(&mut self, step: usize) -> Result<bool> {
        if self.pending.is_empty() {
            return Ok(false);
        }
        let context = || format!("checkpointing {}", self.path.display());
        let keys: Vec<String> = self.pending.keys().take(step).cloned().collect();
        let txn = self
            .db
            .begin_write()
            .map_err(|e| StoreError::storage(context(), e))?;
        {
            let mut objects = txn
                .open_table(OBJECTS)
                .map_err(|e| StoreError::storage(context(), e))?;
            let mut changes = txn
                .open_table(CHANGES)
                .map_err(|e| StoreError::storage(context(), e))?;
            for key in &keys {
                let Some(entry) = self.pending.get(key) else {
                    continue;
                };
                match &entry.state {
                    Some(object) => {
                        let bytes =
                            serde_json::to_vec(&**object).map_err(|e| StoreError::Corrupt {
                                key: key.clone(),
                                reason: format!("cannot serialise: {e}"),
                            })?;
                        objects
                            .insert(key.as_str(), bytes.as_slice())
                            .map_err(|e| StoreError::storage(context(), e))?;
                    }
                    None => {
                        objects
                            .remove(key.as_str())
                            .map_err(|e| StoreError::storage(context(), e))?;
                    }
                }
                for revision in &entry.logged {
                    changes
                        .remove(revision)
                        .map_err(|e| StoreError::storage(context(), e))?;
                }
            }
        }
        txn.commit()
            .map_err(|e| StoreError::storage(context(), e))?;
        for key in &keys {
            self.pending.remove(key);
        }
        Ok(!self.pending.is_empty())
    }
}

impl Persistence for RedbPersistence {
    fn commit(&mut self, changes: &[Change], revision: u64) -> Result<()> {
        let context = || format!("committing revision {revision} to {}", self.path.display());
        let mut last_write: HashMap<&str, usize> = HashMap::with_capacity(changes.len());
        for (i, change) in changes.iter().enumerate() {
            last_write.insert(&change.key, i);
        }
        let txn = self
            .db
            .begin_write()
            .map_err(|e| StoreError::storage(context(), e))?;
        {
            let mut log = txn
                .open_table(CHANGES)
                .map_err(|e| StoreError::storage(context(), e))?;
            for (i, change) in changes.iter().enumerate() {
                if last_write.get(change.key.as_str()) != Some(&i) {
                    continue;
                }
                let record = encode_change(change)?;
                log.insert(change.revision, record.as_slice())
                    .map_err(|e| StoreError::storage(context(), e))?;
            }
            let mut meta = txn
                .open_table(META)
                .map_err(|e| StoreError::storage(context(), e))?;
            meta.insert(REVISION_KEY, revision)
                .map_err(|e| StoreError::storage(context(), e))?;
        }
        txn.commit()
            .map_err(|e| StoreError::storage(context(), e))?;
        for (i, change) in changes.iter().enumerate() {
            if last_write.get(change.key.as_str()) != Some(&i) {
                continue;
            }
            let entry = self.pending.entry(change.key.clone()).or_default();
            entry.state = (change.kind != ChangeKind::Deleted).then(|| change.object.clone());
            entry.logged.push(change.revision);
        }
        Ok(())
    }

    fn has_idle_work(&self) -> bool {
        !self.pending.is_empty()
    }

    fn maintain(&mut self, moment: Moment) -> Result<bool> {
        match moment {
            Moment::Idle => self.checkpoint_step(CHECKPOINT_STEP),
            Moment::Busy if self.pending.len() > CHECKPOINT_PRESSURE => {
                self.checkpoint_step(CHECKPOINT_STEP_UNDER_LOAD)
            }
            Moment::Busy => Ok(!self.pending.is_empty()),
        }
    }
}

/// paddock's data directory: `$PADDOCK_HOME`, else `/var/lib/paddock` when running as root,
/// else `~/.local/share/paddock`. The caller picks the store directory inside it.
///
/// # Errors
/// `Invalid` when neither `PADDOCK_HOME` nor `HOME` is set for a non-root user.
pub fn default_home() -> Result<PathBuf> {
    home_from(
        std::env::var_os("PADDOCK_HOME").map(PathBuf::from),
        rustix::process::geteuid().is_root(),
        std::env::var_os("HOME").map(PathBuf::from),
    )
}

fn home_from(
    paddock_home: Option<PathBuf>,
    is_root: bool,
    home: Option<PathBuf>,
) -> Result<PathBuf> {
    if let Some(dir) = paddock_home.filter(|d| !d.as_os_str().is_empty()) {
        return Ok(dir);
    }
    if is_root {
        return Ok(PathBuf::from("/var/lib/paddock"));
    }
    match home.filter(|d| !d.as_os_str().is_empty()) {
        Some(home) => Ok(home.join(".local/share/paddock")),
        None => Err(StoreError::invalid(
            "PADDOCK_HOME",
            "neither PADDOCK_HOME nor HOME is set; set PADDOCK_HOME to the directory paddock should keep its data in",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn change_records_round_trip_and_reject_damage() {
        let object = json!({"metadata": {"name": "a", "resourceVersion": "7"}});
        let put = encode_record("sandboxes.agents.x-k8s.io/default/a", Some(&object)).unwrap();
        assert_eq!(
            decode_record(&put).unwrap(),
            (
                "sandboxes.agents.x-k8s.io/default/a".to_owned(),
                Some(object)
            )
        );
        let delete = encode_record("k/ns/a", None).unwrap();
        assert_eq!(decode_record(&delete).unwrap(), ("k/ns/a".to_owned(), None));
        assert!(decode_record(&[]).is_err());
        assert!(decode_record(&put[..7]).unwrap_err().contains("truncated"));
        assert!(
            decode_record(&put[..put.len() - 1])
                .unwrap_err()
                .contains("not JSON")
        );
        let mut bad_tag = delete.clone();
        bad_tag[0] = 9;
        assert!(decode_record(&bad_tag).unwrap_err().contains("tag 9"));
    }

    #[test]
    fn paddock_home_wins_then_root_then_the_users_data_dir() {
        let set = |s: &str| Some(PathBuf::from(s));
        assert_eq!(
            home_from(set("/x"), true, set("/home/u")).unwrap(),
            PathBuf::from("/x")
        );
        assert_eq!(
            home_from(set(""), true, None).unwrap(),
            PathBuf::from("/var/lib/paddock")
        );
        assert_eq!(
            home_from(None, false, set("/home/u")).unwrap(),
            PathBuf::from("/home/u/.local/share/paddock")
        );
        match home_from(None, false, None).unwrap_err() {
            StoreError::Invalid { field, .. } => assert_eq!(field, "PADDOCK_HOME"),
            other => panic!("{other:?}"),
        }
    }
}
