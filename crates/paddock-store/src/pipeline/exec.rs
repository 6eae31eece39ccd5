//! Executes one operation against the head state: the API-server semantics of create, update,
//! patch and delete, followed by garbage collection run to completion, so an operation and every
//! cascade it causes are one atomic unit of the batch.
//!
//! The garbage collector follows Kubernetes' (`attemptToDeleteItem`): an object whose owners are
//! all gone is deleted; one with a remaining live owner loses its dangling references; owners in
//! foreground deletion wait for dependents with `blockOwnerDeletion`; the `orphan` finalizer
//! strips the owner from its dependents.

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;

use serde_json::Value;

use super::state::{ChangeKind, Head, Txn};
use crate::error::{Result, StoreError};
use crate::merge_patch::merge_patch;
use crate::meta::{self, FOREGROUND_DELETION_FINALIZER as FOREGROUND, ORPHAN_FINALIZER as ORPHAN};
use crate::object_store::{DeleteOptions, PropagationPolicy};
use crate::resource::ResourceType;
use crate::validation::{validate_dns_label, validate_object, validate_subdomain};

/// Which part of an object an update writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Part {
    /// Everything but `status` (the main resource).
    Main,
    /// Only `status` (the status subresource).
    Status,
}

/// A write operation, as queued for the writer.
#[derive(Debug)]
pub(crate) enum Op {
    Create {
        resource: ResourceType,
        object: Value,
    },
    Update {
        resource: ResourceType,
        object: Value,
        part: Part,
    },
    Patch {
        resource: ResourceType,
        namespace: String,
        name: String,
        patch: Value,
        part: Part,
    },
    Delete {
        resource: ResourceType,
        namespace: String,
        name: String,
        options: DeleteOptions,
    },
}

/// What a successful operation returns.
#[derive(Debug)]
pub(crate) enum Outcome {
    Object(Arc<Value>),
    Removed(Arc<Value>),
    Terminating(Arc<Value>),
}

/// Metadata fields only the store writes; updates keep the stored values.
const STORE_OWNED_FIELDS: [&str; 6] = [
    "uid",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "generation",
    "resourceVersion",
];
/// Fields of the API server the store does not maintain; dropped from incoming objects.
const UNSUPPORTED_FIELDS: [&str; 2] = ["managedFields", "selfLink"];
/// `generateName` attempts before giving up with AlreadyExists (as Kubernetes retries).
const GENERATE_NAME_ATTEMPTS: usize = 8;
/// Metadata fields the API server omits when empty (Go `omitempty`).
const OMIT_WHEN_EMPTY: [&str; 4] = ["labels", "annotations", "finalizers", "ownerReferences"];
/// Fields that do not count for `generation`.
const NON_SPEC_FIELDS: [&str; 4] = ["metadata", "status", "apiVersion", "kind"];

/// Executes `op`, including the garbage collection it triggers. On error the caller rolls the
/// head back to the mark taken before the call.
pub(crate) fn execute(head: &mut Head, txn: &mut Txn, now: &str, op: Op) -> Result<Outcome> {
    let mark = txn.mark();
    let mut exec = Exec::new(head, txn, now);
    match op {
        Op::Create { resource, object } => {
            let (key, stored) = exec.create(resource, object)?;
            exec.collect_garbage()?;
            Ok(Outcome::Object(exec.latest(&key, stored)))
        }
        Op::Update {
            resource,
            object,
            part,
        } => {
            let (key, stored) = exec.update(resource, object, part)?;
            exec.collect_garbage()?;
            Ok(Outcome::Object(exec.latest(&key, stored)))
        }
        Op::Patch {
            resource,
            namespace,
            name,
            patch,
            part,
        } => {
            let (key, stored) = exec.patch(resource, &namespace, &name, &patch, part)?;
            exec.collect_garbage()?;
            Ok(Outcome::Object(exec.latest(&key, stored)))
        }
        Op::Delete {
            resource,
            namespace,
            name,
            options,
        } => {
            let (key, uid) = exec.delete(resource, &namespace, &name, &options)?;
            exec.collect_garbage()?;
            if let Some(current) = exec.head.get(&key).filter(|o| meta::uid(o) == uid) {
                return Ok(Outcome::Terminating(current.clone()));
            }
            let last = exec.txn.changes[mark..]
                .iter()
                .rev()
                .find(|c| c.key == key && c.kind == ChangeKind::Deleted)
                .map(|c| c.object.clone());
            last.map(Outcome::Removed)
                .ok_or_else(|| StoreError::Unavailable {
                    reason: format!("internal error: deletion of {key} left no record"),
                })
        }
    }
}

/// Garbage-collects the whole state: what the store does on open, as a safety net for objects
/// left dangling by anything outside the store's transactions.
pub(crate) fn sweep(head: &mut Head, txn: &mut Txn, now: &str) -> Result<()> {
    let keys: Vec<String> = head.objects().keys().cloned().collect();
    let mut exec = Exec::new(head, txn, now);
    for key in keys {
        exec.enqueue(&key);
    }
    exec.collect_garbage()
}

struct Exec<'a> {
    head: &'a mut Head,
    txn: &'a mut Txn,
    now: &'a str,
    queue: VecDeque<String>,
    queued: HashSet<String>,
}

fn not_found(resource: &ResourceType, namespace: &str, name: &str) -> StoreError {
    StoreError::NotFound {
        resource: resource.id(),
        namespace: namespace.to_owned(),
        name: name.to_owned(),
    }
}

fn conflict(resource: &ResourceType, namespace: &str, name: &str, reason: String) -> StoreError {
    StoreError::Conflict {
        resource: resource.id(),
        namespace: namespace.to_owned(),
        name: name.to_owned(),
        reason,
    }
}

fn check_scope(resource: &ResourceType, namespace: &str, field: &str) -> Result<()> {
    if resource.namespaced {
        if namespace.is_empty() {
            return Err(StoreError::invalid(
                field,
                format!("{resource} is namespaced: a namespace is required"),
            ));
        }
        validate_dns_label(field, namespace)
    } else if namespace.is_empty() {
        Ok(())
    } else {
        Err(StoreError::invalid(
            field,
            format!("{resource} is cluster-scoped: the namespace must be empty"),
        ))
    }
}

fn check_name(name: &str) -> Result<()> {
    if name.is_empty() {
        return Err(StoreError::invalid("metadata.name", "a name is required"));
    }
    Ok(())
}

/// Whether two objects differ only in `metadata`, `status` and the envelope.
fn same_spec(a: &Value, b: &Value) -> bool {
    let (Some(a), Some(b)) = (a.as_object(), b.as_object()) else {
        return a == b;
    };
    let relevant = |m: &serde_json::Map<String, Value>| {
        m.keys()
            .filter(|k| !NON_SPEC_FIELDS.contains(&k.as_str()))
            .count()
    };
    relevant(a) == relevant(b)
        && a.iter()
            .filter(|(k, _)| !NON_SPEC_FIELDS.contains(&k.as_str()))
            .all(|(k, v)| b.get(k) == Some(v))
}

/// Removes the `drop` finalizers and appends `add` unless present.
fn adjust_finalizers(finalizers: &mut Vec<String>, add: Option<&str>, drop: &[&str]) {
    finalizers.retain(|f| !drop.contains(&f.as_str()));
    if let Some(add) = add
        && !finalizers.iter().any(|f| f == add)
    {
        finalizers.push(add.to_owned());
    }
}

/// Drops null metadata fields and empty label, annotation, finalizer and owner lists, so that
/// "empty" has one representation (and an update that empties a list is not a no-op in disguise).
fn normalize_metadata(object: &mut Value) {
    meta::metadata_mut(object).retain(|key, value| {
        let empty = value.as_array().is_some_and(Vec::is_empty)
            || value.as_object().is_some_and(serde_json::Map::is_empty);
        !(value.is_null() || (empty && OMIT_WHEN_EMPTY.contains(&key.as_str())))
    });
}

fn deleting_dependents(object: &Value) -> bool {
    meta::is_terminating(object) && meta::has_finalizer(object, FOREGROUND)
}

impl<'a> Exec<'a> {
    fn new(head: &'a mut Head, txn: &'a mut Txn, now: &'a str) -> Self {
        Self {
            head,
            txn,
            now,
            queue: VecDeque::new(),
            queued: HashSet::new(),
        }
    }

    /// The object under `key` now, if it is still `written` (same uid); else `written`.
    fn latest(&self, key: &str, written: Arc<Value>) -> Arc<Value> {
        match self.head.get(key) {
            Some(current) if meta::uid(current) == meta::uid(&written) => current.clone(),
            _ => written,
        }
    }

    fn enqueue(&mut self, key: &str) {
        if self.queued.insert(key.to_owned()) {
            self.queue.push_back(key.to_owned());
        }
    }

    fn create(
        &mut self,
        resource: ResourceType,
        mut object: Value,
    ) -> Result<(String, Arc<Value>)> {
        validate_object(&resource, &object)?;
        normalize_metadata(&mut object);
        if !meta::resource_version(&object).is_empty() {
            return Err(StoreError::invalid(
                "metadata.resourceVersion",
                "must not be set on create",
            ));
        }
        let namespace = meta::namespace(&object).to_owned();
        check_scope(&resource, &namespace, "metadata.namespace")?;
        let name = meta::name(&object).to_owned();
        let generate_prefix = meta::meta_str(&object, "generateName").to_owned();

        let uid = loop {
            let uid = meta::new_uid()?;
            if self.head.key_of_uid(&uid).is_none() {
                break uid;
            }
        };
        let meta = meta::metadata_mut(&mut object);
        for field in STORE_OWNED_FIELDS.iter().chain(&UNSUPPORTED_FIELDS) {
            meta.remove(*field);
        }
        meta.insert("uid".into(), Value::String(uid));
        meta.insert(
            "creationTimestamp".into(),
            Value::String(self.now.to_owned()),
        );
        meta.insert("generation".into(), Value::from(1));
        if let Some(top) = object.as_object_mut() {
            top.remove("status");
        }

        let key = if !name.is_empty() {
            validate_subdomain("metadata.name", &name)?;
            let key = resource.key(&namespace, &name);
            if self.head.get(&key).is_some() {
                return Err(StoreError::AlreadyExists {
                    resource: resource.id(),
                    namespace,
                    name,
                });
            }
            key
        } else if generate_prefix.is_empty() {
            return Err(StoreError::invalid(
                "metadata.name",
                "a name or generateName is required",
            ));
        } else {
            let mut attempt = 0;
            loop {
                let candidate = meta::generate_name(&generate_prefix)?;
                validate_subdomain("metadata.generateName", &candidate).map_err(|_| {
                    StoreError::invalid(
                        "metadata.generateName",
                        format!("{generate_prefix:?} followed by 5 random characters is not a valid name: use lower-case letters, digits, '-' and '.'"),
                    )
                })?;
                let key = resource.key(&namespace, &candidate);
                if self.head.get(&key).is_none() {
                    meta::metadata_mut(&mut object).insert("name".into(), Value::String(candidate));
                    break key;
                }
                attempt += 1;
                if attempt == GENERATE_NAME_ATTEMPTS {
                    return Err(StoreError::AlreadyExists {
                        resource: resource.id(),
                        namespace,
                        name: candidate,
                    });
                }
            }
        };
        let stored = self.head.put(self.txn, &key, object);
        if !meta::owner_references(&stored).is_empty() {
            self.after_write(&key, None, &stored);
        }
        Ok((key, stored))
    }

    fn update(
        &mut self,
        resource: ResourceType,
        incoming: Value,
        part: Part,
    ) -> Result<(String, Arc<Value>)> {
        if !incoming.is_object() {
            return Err(StoreError::invalid("object", "must be a JSON object"));
        }
        let name = meta::name(&incoming).to_owned();
        let namespace = meta::namespace(&incoming).to_owned();
        check_name(&name)?;
        check_scope(&resource, &namespace, "metadata.namespace")?;
        let key = resource.key(&namespace, &name);
        let current = self
            .head
            .get(&key)
            .cloned()
            .ok_or_else(|| not_found(&resource, &namespace, &name))?;

        let requested_rv = meta::resource_version(&incoming);
        if !requested_rv.is_empty() && requested_rv != meta::resource_version(&current) {
            return Err(conflict(
                &resource,
                &namespace,
                &name,
                format!(
                    "the object has been modified (resourceVersion {requested_rv} is not the current {}); \
                     read it again and apply your changes to the latest version",
                    meta::resource_version(&current)
                ),
            ));
        }
        let requested_uid = meta::uid(&incoming);
        if !requested_uid.is_empty() && requested_uid != meta::uid(&current) {
            return Err(conflict(
                &resource,
                &namespace,
                &name,
                format!(
                    "Precondition failed: UID in precondition: {requested_uid}, UID in object meta: {}",
                    meta::uid(&current)
                ),
            ));
        }

        let new = match part {
            Part::Main => {
                validate_object(&resource, &incoming)?;
                let mut new = incoming;
                normalize_metadata(&mut new);
                let new_meta = meta::metadata_mut(&mut new);
                for field in STORE_OWNED_FIELDS {
                    match meta::metadata(&current).and_then(|m| m.get(field)) {
                        Some(value) => new_meta.insert(field.into(), value.clone()),
                        None => new_meta.remove(field),
                    };
                }
                for field in UNSUPPORTED_FIELDS {
                    new_meta.remove(field);
                }
                if let Some(top) = new.as_object_mut() {
                    match current.get("status") {
                        Some(status) => top.insert("status".into(), status.clone()),
                        None => top.remove("status"),
                    };
                }
                new
            }
            Part::Status => {
                let mut new = (*current).clone();
                if let Some(top) = new.as_object_mut() {
                    match incoming.get("status") {
                        Some(status) if !status.is_null() => {
                            top.insert("status".into(), status.clone())
                        }
                        _ => top.remove("status"),
                    };
                }
                new
            }
        };
        let stored = self.replace(&key, &current, new)?;
        Ok((key, stored))
    }

    fn patch(
        &mut self,
        resource: ResourceType,
        namespace: &str,
        name: &str,
        patch: &Value,
        part: Part,
    ) -> Result<(String, Arc<Value>)> {
        if !patch.is_object() {
            return Err(StoreError::invalid(
                "patch",
                "a JSON merge patch must be a JSON object",
            ));
        }
        check_name(name)?;
        check_scope(&resource, namespace, "namespace")?;
        let key = resource.key(namespace, name);
        let current = self
            .head
            .get(&key)
            .cloned()
            .ok_or_else(|| not_found(&resource, namespace, name))?;
        let mut patched = (*current).clone();
        merge_patch(&mut patched, patch);
        if meta::name(&patched) != name || meta::namespace(&patched) != namespace {
            return Err(StoreError::invalid(
                "metadata.name",
                "a patch cannot change an object's name or namespace",
            ));
        }
        self.update(resource, patched, part)
    }

    /// Writes `new` over `current` under `key`: enforces the finalizer rule, bumps the
    /// generation, skips no-op writes, and deletes a terminating object left without finalizers.
    fn replace(&mut self, key: &str, current: &Arc<Value>, mut new: Value) -> Result<Arc<Value>> {
        if meta::is_terminating(current) {
            let before = meta::finalizers(current);
            let added: Vec<&str> = meta::finalizers(&new)
                .into_iter()
                .filter(|f| !before.contains(f))
                .collect();
            if !added.is_empty() {
                return Err(StoreError::invalid(
                    "metadata.finalizers",
                    format!(
                        "no new finalizers can be added if the object is being deleted, found new finalizers {added:?}"
                    ),
                ));
            }
        }
        if !same_spec(current, &new) {
            meta::metadata_mut(&mut new).insert(
                "generation".into(),
                Value::from(meta::generation(current) + 1),
            );
        } else if new == **current {
            return Ok(current.clone());
        }
        if meta::is_terminating(&new)
            && meta::finalizers(&new).is_empty()
            && let Some(last) = self.head.remove(self.txn, key, Some(new.clone()))
        {
            self.on_removed(&last);
            return Ok(last);
        }
        let stored = self.head.put(self.txn, key, new);
        // A live object whose owner references did not change leaves the owner graph as it was.
        if meta::is_terminating(&stored)
            || meta::owner_references(&stored) != meta::owner_references(current)
        {
            self.after_write(key, Some(current), &stored);
        }
        Ok(stored)
    }

    /// Stores `new`, or removes the object when it is terminating without finalizers.
    fn write_finalized(&mut self, key: &str, new: Value) -> Arc<Value> {
        if meta::is_terminating(&new)
            && meta::finalizers(&new).is_empty()
            && let Some(last) = self.head.remove(self.txn, key, Some(new.clone()))
        {
            self.on_removed(&last);
            return last;
        }
        let stored = self.head.put(self.txn, key, new);
        self.enqueue(key);
        stored
    }

    /// Queues what a write may affect: the object itself (its owners may be gone or deleting)
    /// and its old and new owners (a foreground owner may no longer be blocked).
    fn after_write(&mut self, key: &str, previous: Option<&Arc<Value>>, new: &Value) {
        self.enqueue(key);
        let mut owners: Vec<String> = meta::owner_references(new)
            .iter()
            .map(|r| r.uid.to_owned())
            .collect();
        if let Some(previous) = previous {
            owners.extend(
                meta::owner_references(previous)
                    .iter()
                    .map(|r| r.uid.to_owned()),
            );
        }
        for uid in owners {
            if let Some(owner_key) = self.head.key_of_uid(&uid).cloned() {
                self.enqueue(&owner_key);
            }
        }
    }

    /// Queues what a removal affects: its dependents and its owners.
    fn on_removed(&mut self, last: &Value) {
        for dependent in self.head.dependents_of(meta::uid(last)) {
            self.enqueue(&dependent);
        }
        for owner in meta::owner_references(last) {
            if let Some(owner_key) = self.head.key_of_uid(owner.uid).cloned() {
                self.enqueue(&owner_key);
            }
        }
    }

    fn delete(
        &mut self,
        resource: ResourceType,
        namespace: &str,
        name: &str,
        options: &DeleteOptions,
    ) -> Result<(String, String)> {
        check_name(name)?;
        check_scope(&resource, namespace, "namespace")?;
        let key = resource.key(namespace, name);
        let current = self
            .head
            .get(&key)
            .cloned()
            .ok_or_else(|| not_found(&resource, namespace, name))?;
        if let Some(uid) = &options.preconditions.uid
            && uid != meta::uid(&current)
        {
            return Err(conflict(
                &resource,
                namespace,
                name,
                format!(
                    "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                    meta::uid(&current)
                ),
            ));
        }
        if let Some(rv) = &options.preconditions.resource_version
            && rv != meta::resource_version(&current)
        {
            return Err(conflict(
                &resource,
                namespace,
                name,
                format!(
                    "Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {}",
                    meta::resource_version(&current)
                ),
            ));
        }
        self.delete_object(&key, options.propagation_policy);
        Ok((key, meta::uid(&current).to_owned()))
    }

    /// Deletes the object under `key` with `policy` (`None`: keep whatever deletion finalizers it
    /// carries): removes it now if no finalizers remain, else marks it terminating.
    fn delete_object(&mut self, key: &str, policy: Option<PropagationPolicy>) {
        let Some(current) = self.head.get(key).cloned() else {
            return;
        };
        let before: Vec<String> = meta::finalizers(&current)
            .into_iter()
            .map(str::to_owned)
            .collect();
        let mut finalizers = before.clone();
        match policy {
            Some(PropagationPolicy::Foreground) => {
                adjust_finalizers(&mut finalizers, Some(FOREGROUND), &[ORPHAN])
            }
            Some(PropagationPolicy::Orphan) => {
                adjust_finalizers(&mut finalizers, Some(ORPHAN), &[FOREGROUND])
            }
            Some(PropagationPolicy::Background) => {
                adjust_finalizers(&mut finalizers, None, &[ORPHAN, FOREGROUND])
            }
            None => {}
        }
        let starts_foreground = finalizers.iter().any(|f| f == FOREGROUND)
            && !(meta::is_terminating(&current) && before.iter().any(|f| f == FOREGROUND));

        if meta::is_terminating(&current) {
            if finalizers == before {
                return;
            }
            let mut new = (*current).clone();
            meta::set_finalizers(&mut new, &finalizers);
            self.write_finalized(key, new);
        } else if finalizers.is_empty() {
            if let Some(last) = self.head.remove(self.txn, key, None) {
                self.on_removed(&last);
            }
            return;
        } else {
            let mut new = (*current).clone();
            let generation = meta::generation(&current);
            let meta = meta::metadata_mut(&mut new);
            meta.insert(
                "deletionTimestamp".into(),
                Value::String(self.now.to_owned()),
            );
            meta.insert("deletionGracePeriodSeconds".into(), Value::from(0));
            if generation > 0 {
                meta.insert("generation".into(), Value::from(generation + 1));
            }
            meta::set_finalizers(&mut new, &finalizers);
            self.head.put(self.txn, key, new);
            self.enqueue(key);
        }
        if starts_foreground {
            for dependent in self.head.dependents_of(meta::uid(&current)) {
                self.enqueue(&dependent);
            }
        }
    }

    /// The live owner with `uid` of `dependent`, if any. A namespaced owner only counts in the
    /// dependent's own namespace, as in Kubernetes.
    fn owner(&self, dependent: &Value, uid: &str) -> Option<Arc<Value>> {
        let owner = self.head.get(self.head.key_of_uid(uid)?)?;
        let owner_ns = meta::namespace(owner);
        (owner_ns.is_empty() || owner_ns == meta::namespace(dependent)).then(|| owner.clone())
    }

    fn collect_garbage(&mut self) -> Result<()> {
        let limit = 64 * (self.head.len() + 16);
        let mut steps = 0usize;
        while let Some(key) = self.queue.pop_front() {
            self.queued.remove(&key);
            steps += 1;
            if steps > limit {
                return Err(StoreError::Unavailable {
                    reason: format!(
                        "internal error: garbage collection did not converge after {limit} steps (at {key})"
                    ),
                });
            }
            self.attempt_to_delete(&key);
        }
        Ok(())
    }

    fn attempt_to_delete(&mut self, key: &str) {
        let Some(object) = self.head.get(key).cloned() else {
            return;
        };
        let uid = meta::uid(&object).to_owned();
        if meta::is_terminating(&object) {
            self.process_terminating(key, &object, &uid);
            return;
        }
        let refs = meta::owner_references(&object);
        if refs.is_empty() {
            return;
        }
        let (mut solid, mut dangling, mut waiting) = (0usize, Vec::new(), Vec::new());
        for r in &refs {
            match self.owner(&object, r.uid) {
                None => dangling.push(r.uid.to_owned()),
                Some(owner) if deleting_dependents(&owner) => waiting.push(r.uid.to_owned()),
                Some(_) => solid += 1,
            }
        }
        if solid > 0 {
            if !dangling.is_empty() || !waiting.is_empty() {
                self.edit_owner_refs(key, |r| {
                    let uid = r.get("uid").and_then(Value::as_str).unwrap_or("");
                    !(dangling.iter().any(|d| d == uid) || waiting.iter().any(|w| w == uid))
                });
                for owner_uid in &waiting {
                    if let Some(owner_key) = self.head.key_of_uid(owner_uid).cloned() {
                        self.enqueue(&owner_key);
                    }
                }
            }
            return;
        }
        if !waiting.is_empty() && self.head.has_dependents(&uid) {
            let cycle = self
                .head
                .dependents_of(&uid)
                .iter()
                .any(|d| self.head.get(d).is_some_and(|o| deleting_dependents(o)));
            if cycle {
                self.unblock_owner_refs(key);
            }
            self.delete_object(key, Some(PropagationPolicy::Foreground));
        } else {
            let policy = if meta::has_finalizer(&object, ORPHAN) {
                PropagationPolicy::Orphan
            } else if meta::has_finalizer(&object, FOREGROUND) {
                PropagationPolicy::Foreground
            } else {
                PropagationPolicy::Background
            };
            self.delete_object(key, Some(policy));
        }
    }

    /// A terminating object: complete orphaning or foreground deletion when its dependents allow.
    fn process_terminating(&mut self, key: &str, object: &Value, uid: &str) {
        let finalizers = meta::finalizers(object);
        if finalizers.is_empty() {
            if let Some(last) = self.head.remove(self.txn, key, None) {
                self.on_removed(&last);
            }
        } else if finalizers.contains(&ORPHAN) {
            for dependent in self.head.dependents_of(uid) {
                self.edit_owner_refs(&dependent, |r| {
                    r.get("uid").and_then(Value::as_str) != Some(uid)
                });
                self.enqueue(&dependent);
            }
            self.drop_finalizer(key, object, ORPHAN);
        } else if finalizers.contains(&FOREGROUND) {
            let blocking: Vec<String> = self
                .head
                .dependents_of(uid)
                .into_iter()
                .filter(|d| {
                    self.head.get(d).is_some_and(|o| {
                        meta::owner_references(o)
                            .iter()
                            .any(|r| r.uid == uid && r.block_owner_deletion)
                    })
                })
                .collect();
            if blocking.is_empty() {
                self.drop_finalizer(key, object, FOREGROUND);
            } else {
                for dependent in blocking {
                    if self
                        .head
                        .get(&dependent)
                        .is_some_and(|o| !meta::is_terminating(o))
                    {
                        self.enqueue(&dependent);
                    }
                }
            }
        }
    }

    fn drop_finalizer(&mut self, key: &str, object: &Value, finalizer: &str) {
        let remaining: Vec<String> = meta::finalizers(object)
            .into_iter()
            .filter(|f| *f != finalizer)
            .map(str::to_owned)
            .collect();
        let mut new = object.clone();
        meta::set_finalizers(&mut new, &remaining);
        self.write_finalized(key, new);
    }

    /// Keeps only the owner references for which `keep` is true (a metadata-only write).
    fn edit_owner_refs(&mut self, key: &str, keep: impl Fn(&Value) -> bool) {
        let Some(object) = self.head.get(key).cloned() else {
            return;
        };
        let mut new = (*object).clone();
        let meta = meta::metadata_mut(&mut new);
        let Some(Value::Array(refs)) = meta.get_mut("ownerReferences") else {
            return;
        };
        let before = refs.len();
        refs.retain(|r| keep(r));
        if refs.len() == before {
            return;
        }
        if refs.is_empty() {
            meta.remove("ownerReferences");
        }
        self.head.put(self.txn, key, new);
        self.enqueue(key);
    }

    /// Clears `blockOwnerDeletion` on the object's owner references, breaking foreground cycles.
    fn unblock_owner_refs(&mut self, key: &str) {
        let Some(object) = self.head.get(key).cloned() else {
            return;
        };
        let mut new = (*object).clone();
        let mut changed = false;
        if let Some(Value::Array(refs)) = meta::metadata_mut(&mut new).get_mut("ownerReferences") {
            for r in refs.iter_mut().filter_map(Value::as_object_mut) {
                if r.get("blockOwnerDeletion").and_then(Value::as_bool) == Some(true) {
                    r.insert("blockOwnerDeletion".into(), Value::Bool(false));
                    changed = true;
                }
            }
        }
        if changed {
            self.head.put(self.txn, key, new);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn generation_ignores_metadata_status_and_envelope() {
        let a = json!({"apiVersion": "g/v1", "kind": "K", "metadata": {"labels": {"a": "1"}}, "spec": {"x": 1}, "status": {"s": 1}});
        let mut b = a.clone();
        b["metadata"]["labels"]["a"] = json!("2");
        b["status"]["s"] = json!(2);
        b["apiVersion"] = json!("g/v2");
        assert!(same_spec(&a, &b));
        b["spec"]["x"] = json!(2);
        assert!(!same_spec(&a, &b));
        let mut c = a.clone();
        c["data"] = json!({});
        assert!(!same_spec(&a, &c), "a new top-level field counts");
    }
}
