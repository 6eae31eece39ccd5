//! A sandbox's egress record: the newest records in memory, and a feed for `?follow=true`.

use std::collections::VecDeque;
use std::sync::Mutex;

use paddock_wire::EgressRecord;
use tokio::sync::broadcast;

/// How many records a sandbox keeps.
pub const KEPT: usize = 10_000;

/// The records of one sandbox.
#[derive(Debug)]
pub struct EgressLogBook {
    records: Mutex<VecDeque<EgressRecord>>,
    feed: broadcast::Sender<EgressRecord>,
}

impl Default for EgressLogBook {
    fn default() -> Self {
        Self {
            records: Mutex::new(VecDeque::new()),
            // Followers are few and fast; a slow one skips ahead (the gateway drops lagged records).
            feed: broadcast::channel(64).0,
        }
    }
}

impl EgressLogBook {
    /// Appends a record (dropping the oldest beyond [`KEPT`]) and sends it to followers.
    pub fn push(&self, record: EgressRecord) {
        let mut records = self
            .records
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if records.len() == KEPT {
            records.pop_front();
        }
        records.push_back(record.clone());
        drop(records);
        let _ = self.feed.send(record);
    }

    /// The records kept, oldest first, and a feed of the ones that follow them (taken together,
    /// so nothing falls between).
    pub fn snapshot_and_follow(&self) -> (Vec<EgressRecord>, broadcast::Receiver<EgressRecord>) {
        let records = self
            .records
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let feed = self.feed.subscribe();
        (records.iter().cloned().collect(), feed)
    }

    /// The records kept, and a stream of the ones that follow (a follower that falls more
    /// than the feed's capacity behind skips ahead).
    pub fn follow(
        &self,
    ) -> (
        Vec<EgressRecord>,
        impl futures_util::Stream<Item = EgressRecord> + Send + 'static,
    ) {
        let (records, feed) = self.snapshot_and_follow();
        let stream = futures_util::stream::unfold(feed, |mut feed| async move {
            loop {
                match feed.recv().await {
                    Ok(record) => return Some((record, feed)),
                    Err(broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(broadcast::error::RecvError::Closed) => return None,
                }
            }
        });
        (records, stream)
    }

    /// The records kept, oldest first.
    pub fn snapshot(&self) -> Vec<EgressRecord> {
        self.snapshot_and_follow().0
    }
}
