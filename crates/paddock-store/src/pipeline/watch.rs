//! Watches as cursors over the published change log.
//!
//! The log is one bounded ring shared by all watchers, so a watcher costs the store nothing
//! while it is idle or slow: it never blocks the writer and holds no events of its own beyond a
//! small read-ahead. A watcher whose cursor falls behind the ring's oldest change gets `Gone`.

use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use serde_json::Value;
use tokio::sync::watch as revision_channel;

use super::Shared;
use super::state::{Change, ChangeKind};
use crate::error::{Result, StoreError};
use crate::object_store::{WatchEvent, WatchEventType, WatchSource};
use crate::selector::{FieldSelector, LabelSelector};

/// Changes copied out of the log per lock acquisition.
const READ_AHEAD: usize = 256;

/// Which changes a watch reports.
#[derive(Debug)]
pub(crate) struct WatchFilter {
    prefix: String,
    labels: LabelSelector,
    fields: FieldSelector,
}

impl WatchFilter {
    pub(crate) fn new(prefix: String, labels: LabelSelector, fields: FieldSelector) -> Self {
        Self {
            prefix,
            labels,
            fields,
        }
    }

    pub(crate) fn prefix(&self) -> &str {
        &self.prefix
    }

    pub(crate) fn matches(&self, object: &Value) -> bool {
        self.labels.matches_object(object) && self.fields.matches_object(object)
    }

    /// The event a change produces for this watch, with Kubernetes' rule for selectors: an
    /// object that starts matching is `Added`, one that stops matching is `Deleted`.
    fn event(&self, change: &Change) -> Option<WatchEventType> {
        if !change.key.starts_with(&self.prefix) {
            return None;
        }
        let now = self.matches(&change.object);
        match change.kind {
            ChangeKind::Added => now.then_some(WatchEventType::Added),
            ChangeKind::Deleted => now.then_some(WatchEventType::Deleted),
            ChangeKind::Modified => {
                let before = change.previous.as_deref().is_some_and(|p| self.matches(p));
                match (before, now) {
                    (true, true) => Some(WatchEventType::Modified),
                    (false, true) => Some(WatchEventType::Added),
                    (true, false) => Some(WatchEventType::Deleted),
                    (false, false) => None,
                }
            }
        }
    }
}

/// A watch over the store's change log.
pub(crate) struct LogWatch {
    shared: Arc<Shared>,
    revisions: revision_channel::Receiver<u64>,
    /// Revision of the last change taken from the log.
    cursor: u64,
    filter: WatchFilter,
    initial: VecDeque<Arc<Value>>,
    pending: VecDeque<Arc<Change>>,
    /// The writer has stopped: finish after what the log still holds.
    closing: bool,
    done: bool,
}

impl fmt::Debug for LogWatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LogWatch")
            .field("cursor", &self.cursor)
            .field("filter", &self.filter)
            .field("buffered", &(self.initial.len() + self.pending.len()))
            .field("done", &self.done)
            .finish()
    }
}

impl LogWatch {
    pub(crate) fn new(
        shared: Arc<Shared>,
        revisions: revision_channel::Receiver<u64>,
        cursor: u64,
        filter: WatchFilter,
        initial: Vec<Arc<Value>>,
    ) -> Self {
        Self {
            shared,
            revisions,
            cursor,
            filter,
            initial: initial.into(),
            pending: VecDeque::new(),
            closing: false,
            done: false,
        }
    }

    /// Copies the next changes after the cursor out of the log; `Gone` if they were dropped.
    fn fetch(&mut self) -> Result<usize> {
        let published = self.shared.read();
        if self.cursor < published.compacted {
            return Err(StoreError::Gone {
                requested: self.cursor,
                oldest: published.compacted,
            });
        }
        let start = published.log.partition_point(|c| c.revision <= self.cursor);
        let before = self.pending.len();
        self.pending
            .extend(published.log.range(start..).take(READ_AHEAD).cloned());
        if let Some(last) = self.pending.back() {
            self.cursor = last.revision;
        }
        Ok(self.pending.len() - before)
    }

    async fn next_event(&mut self) -> Option<Result<WatchEvent>> {
        loop {
            if self.done {
                return None;
            }
            if let Some(object) = self.initial.pop_front() {
                return Some(Ok(WatchEvent {
                    event_type: WatchEventType::Added,
                    object: (*object).clone(),
                }));
            }
            while let Some(change) = self.pending.pop_front() {
                if let Some(event_type) = self.filter.event(&change) {
                    return Some(Ok(WatchEvent {
                        event_type,
                        object: (*change.object).clone(),
                    }));
                }
            }
            // Mark the current revision seen before reading the log, so a change published after
            // the read wakes `changed()` below.
            self.revisions.borrow_and_update();
            match self.fetch() {
                Err(gone) => {
                    self.done = true;
                    return Some(Err(gone));
                }
                Ok(0) => {}
                Ok(_) => continue,
            }
            if self.closing {
                self.done = true;
                return None;
            }
            if self.revisions.changed().await.is_err() {
                self.closing = true;
            }
        }
    }
}

impl WatchSource for LogWatch {
    fn next(&mut self) -> Pin<Box<dyn Future<Output = Option<Result<WatchEvent>>> + Send + '_>> {
        Box::pin(self.next_event())
    }
}
