//! The writer's working state ("head"): every object with the indexes garbage collection needs,
//! and the change records a batch produces. Every write assigns the next revision and records a
//! [`Change`], which is also what undoes it if its operation or the batch's commit fails.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use serde_json::Value;

use crate::meta;

/// What a change did to its object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ChangeKind {
    Added,
    Modified,
    Deleted,
}

/// One write: the unit of the change log, of persistence and of watch events.
#[derive(Debug)]
pub(crate) struct Change {
    pub key: String,
    pub kind: ChangeKind,
    pub revision: u64,
    /// The object after the change; for `Deleted`, its last state stamped with `revision`.
    pub object: Arc<Value>,
    /// The object before the change (`None` for `Added`).
    pub previous: Option<Arc<Value>>,
}

/// The changes of one batch, in order. Positions serve as savepoints for rollback.
#[derive(Debug, Default)]
pub(crate) struct Txn {
    pub changes: Vec<Change>,
}

impl Txn {
    pub fn mark(&self) -> usize {
        self.changes.len()
    }
}

/// All objects, by storage key, with the uid and owner indexes.
#[derive(Debug, Default)]
pub(crate) struct Head {
    objects: BTreeMap<String, Arc<Value>>,
    by_uid: HashMap<String, String>,
    /// Owner uid → keys of objects whose ownerReferences name it (the owner may not exist).
    dependents: HashMap<String, BTreeSet<String>>,
    revision: u64,
}

fn stamp(object: &mut Value, revision: u64) {
    meta::metadata_mut(object).insert(
        "resourceVersion".into(),
        Value::String(revision.to_string()),
    );
}

impl Head {
    /// A head holding `objects` (already stamped with their revisions) at `revision`.
    pub fn load(objects: impl IntoIterator<Item = (String, Value)>, revision: u64) -> Self {
        let mut head = Self {
            revision,
            ..Self::default()
        };
        for (key, object) in objects {
            head.set_raw(&key, Some(Arc::new(object)));
        }
        head
    }

    pub fn revision(&self) -> u64 {
        self.revision
    }

    pub fn len(&self) -> usize {
        self.objects.len()
    }

    pub fn objects(&self) -> &BTreeMap<String, Arc<Value>> {
        &self.objects
    }

    pub fn get(&self, key: &str) -> Option<&Arc<Value>> {
        self.objects.get(key)
    }

    pub fn key_of_uid(&self, uid: &str) -> Option<&String> {
        self.by_uid.get(uid)
    }

    /// Keys of the objects that name `uid` as an owner.
    pub fn dependents_of(&self, uid: &str) -> Vec<String> {
        self.dependents
            .get(uid)
            .map(|keys| keys.iter().cloned().collect())
            .unwrap_or_default()
    }

    pub fn has_dependents(&self, uid: &str) -> bool {
        self.dependents
            .get(uid)
            .is_some_and(|keys| !keys.is_empty())
    }

    /// Stores `object` under `key` as a new revision; returns the stored object.
    pub fn put(&mut self, txn: &mut Txn, key: &str, mut object: Value) -> Arc<Value> {
        self.revision += 1;
        stamp(&mut object, self.revision);
        let object = Arc::new(object);
        let previous = self.set_raw(key, Some(object.clone()));
        let kind = if previous.is_some() {
            ChangeKind::Modified
        } else {
            ChangeKind::Added
        };
        txn.changes.push(Change {
            key: key.to_owned(),
            kind,
            revision: self.revision,
            object: object.clone(),
            previous,
        });
        object
    }

    /// Removes the object under `key`, recording `last` (or the stored object) as its final
    /// state at a new revision. Returns that final state, or `None` if there was no object.
    pub fn remove(&mut self, txn: &mut Txn, key: &str, last: Option<Value>) -> Option<Arc<Value>> {
        let previous = self.objects.get(key)?.clone();
        self.revision += 1;
        let mut last = last.unwrap_or_else(|| (*previous).clone());
        stamp(&mut last, self.revision);
        let last = Arc::new(last);
        self.set_raw(key, None);
        txn.changes.push(Change {
            key: key.to_owned(),
            kind: ChangeKind::Deleted,
            revision: self.revision,
            object: last.clone(),
            previous: Some(previous),
        });
        Some(last)
    }

    /// Undoes every change after `mark`, newest first, and restores the revision.
    pub fn rollback(&mut self, txn: &mut Txn, mark: usize) {
        while txn.changes.len() > mark {
            let Some(change) = txn.changes.pop() else {
                break;
            };
            self.set_raw(&change.key, change.previous);
            self.revision = change.revision - 1;
        }
    }

    /// Replaces the object under `key` without recording a change, keeping the indexes right.
    fn set_raw(&mut self, key: &str, object: Option<Arc<Value>>) -> Option<Arc<Value>> {
        let previous = match &object {
            Some(object) => match self.objects.get_mut(key) {
                Some(slot) => Some(std::mem::replace(slot, object.clone())),
                None => self.objects.insert(key.to_owned(), object.clone()),
            },
            None => self.objects.remove(key),
        };
        if let (Some(old), Some(new)) = (&previous, &object)
            && meta::uid(old) == meta::uid(new)
            && meta::owner_references(old) == meta::owner_references(new)
        {
            return previous;
        }
        if let Some(old) = &previous {
            if self.by_uid.get(meta::uid(old)).is_some_and(|k| k == key) {
                self.by_uid.remove(meta::uid(old));
            }
            for owner in meta::owner_references(old) {
                if let Some(keys) = self.dependents.get_mut(owner.uid) {
                    keys.remove(key);
                    if keys.is_empty() {
                        self.dependents.remove(owner.uid);
                    }
                }
            }
        }
        if let Some(new) = &object {
            let uid = meta::uid(new);
            if !uid.is_empty() {
                self.by_uid.insert(uid.to_owned(), key.to_owned());
            }
            for owner in meta::owner_references(new) {
                self.dependents
                    .entry(owner.uid.to_owned())
                    .or_default()
                    .insert(key.to_owned());
            }
        }
        previous
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn rollback_restores_objects_indexes_and_revision() {
        let owner = json!({"metadata": {"name": "o", "uid": "u-o"}});
        let mut head = Head::load([("r/ns/o".to_owned(), owner)], 7);
        let mut txn = Txn::default();
        head.put(
            &mut txn,
            "r/ns/d",
            json!({"metadata": {"name": "d", "uid": "u-d", "ownerReferences": [{"uid": "u-o"}]}}),
        );
        let mark = txn.mark();
        head.remove(&mut txn, "r/ns/o", None);
        head.put(
            &mut txn,
            "r/ns/d",
            json!({"metadata": {"name": "d", "uid": "u-d"}}),
        );
        assert_eq!(head.revision(), 10);
        assert!(head.key_of_uid("u-o").is_none());
        assert!(!head.has_dependents("u-o"));

        head.rollback(&mut txn, mark);
        assert_eq!(head.revision(), 8);
        assert_eq!(head.key_of_uid("u-o").map(String::as_str), Some("r/ns/o"));
        assert_eq!(head.dependents_of("u-o"), ["r/ns/d"]);
        assert_eq!(meta::resource_version(head.get("r/ns/d").unwrap()), "8");

        head.rollback(&mut txn, 0);
        assert_eq!(head.revision(), 7);
        assert!(head.get("r/ns/d").is_none());
        assert!(!head.has_dependents("u-o"));
    }

    #[test]
    fn removal_records_the_last_state_at_a_new_revision() {
        let mut head = Head::load(
            [(
                "r/ns/o".to_owned(),
                json!({"metadata": {"name": "o", "resourceVersion": "3"}}),
            )],
            3,
        );
        let mut txn = Txn::default();
        let last = head.remove(&mut txn, "r/ns/o", None).unwrap();
        assert_eq!(meta::resource_version(&last), "4");
        assert_eq!(txn.changes[0].kind, ChangeKind::Deleted);
        assert_eq!(
            meta::resource_version(txn.changes[0].previous.as_ref().unwrap()),
            "3"
        );
        assert!(head.remove(&mut txn, "r/ns/o", None).is_none());
    }
}
