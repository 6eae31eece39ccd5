//! A work queue in the style of client-go's: a key is queued at most once, never processed by
//! two workers at once, and re-queued once if it changed while being processed; delayed
//! re-queues for deadlines (expiry, grace periods, backoff).
//!
//! One idle worker at a time (the timer leader) sleeps until the earliest deadline; the others
//! wait for keys. A hundred idle workers therefore cost one wake-up per key, not a hundred.

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::hash::Hash;
use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

#[derive(Debug)]
struct State<K> {
    ready: VecDeque<K>,
    queued: HashSet<K>,
    processing: HashSet<K>,
    dirty: HashSet<K>,
    delayed: BTreeMap<(Instant, u64), K>,
    seq: u64,
    closed: bool,
    /// Whether an idle worker is sleeping until the earliest deadline.
    timer_leader: bool,
}

/// The queue.
#[derive(Debug)]
pub struct WorkQueue<K> {
    state: Mutex<State<K>>,
    /// Wakes one idle worker: a key is ready, or the timer needs a leader.
    notify: Notify,
    /// Wakes the timer leader: an earlier deadline arrived.
    timer: Notify,
}

impl<K: Clone + Eq + Hash> Default for WorkQueue<K> {
    fn default() -> Self {
        Self::new()
    }
}

impl<K: Clone + Eq + Hash> WorkQueue<K> {
    /// An empty queue.
    pub fn new() -> Self {
        Self {
            state: Mutex::new(State {
                ready: VecDeque::new(),
                queued: HashSet::new(),
                processing: HashSet::new(),
                dirty: HashSet::new(),
                delayed: BTreeMap::new(),
                seq: 0,
                closed: false,
                timer_leader: false,
            }),
            notify: Notify::new(),
            timer: Notify::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State<K>> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Queues `key` now.
    pub fn add(&self, key: K) {
        let mut s = self.lock();
        if s.processing.contains(&key) {
            s.dirty.insert(key);
            return;
        }
        if s.queued.insert(key.clone()) {
            s.ready.push_back(key);
            drop(s);
            self.notify.notify_one();
        }
    }

    /// Queues `key` after `delay`.
    pub fn add_after(&self, key: K, delay: Duration) {
        if delay.is_zero() {
            self.add(key);
            return;
        }
        let mut s = self.lock();
        s.seq += 1;
        let entry = (Instant::now() + delay, s.seq);
        s.delayed.insert(entry, key);
        let earliest = s.delayed.keys().next() == Some(&entry);
        let leader = s.timer_leader;
        drop(s);
        if !leader {
            self.notify.notify_one();
        } else if earliest {
            self.timer.notify_one();
        }
    }

    /// Ends the queue: `next` returns `None` from now on.
    pub fn close(&self) {
        self.lock().closed = true;
        self.notify.notify_waiters();
        self.notify.notify_one();
        self.timer.notify_one();
    }

    /// The next key to process; call [`WorkQueue::done`] with it when finished.
    pub async fn next(&self) -> Option<K> {
        loop {
            let notified = self.notify.notified();
            let lead_until = {
                let mut s = self.lock();
                if s.closed {
                    return None;
                }
                let now = Instant::now();
                while let Some((&(at, seq), _)) = s.delayed.iter().next() {
                    if at > now {
                        break;
                    }
                    if let Some(key) = s.delayed.remove(&(at, seq)) {
                        if s.processing.contains(&key) {
                            s.dirty.insert(key);
                        } else if s.queued.insert(key.clone()) {
                            s.ready.push_back(key);
                        }
                    }
                }
                if let Some(key) = s.ready.pop_front() {
                    s.queued.remove(&key);
                    s.processing.insert(key.clone());
                    // Hand on what this worker leaves: more ready keys, or a timer to lead.
                    let wake_another =
                        !s.ready.is_empty() || (!s.delayed.is_empty() && !s.timer_leader);
                    drop(s);
                    if wake_another {
                        self.notify.notify_one();
                    }
                    return Some(key);
                }
                match s.delayed.keys().next() {
                    Some(&(at, _)) if !s.timer_leader => {
                        s.timer_leader = true;
                        Some(at)
                    }
                    _ => None,
                }
            };
            match lead_until {
                Some(at) => {
                    let _leading = Leading(self);
                    tokio::select! {
                        () = notified => {}
                        () = self.timer.notified() => {}
                        () = tokio::time::sleep_until(at) => {}
                    }
                }
                None => notified.await,
            }
        }
    }

    /// Marks `key` processed; if it changed meanwhile it is queued again.
    pub fn done(&self, key: &K) {
        let mut s = self.lock();
        s.processing.remove(key);
        if s.dirty.remove(key) && s.queued.insert(key.clone()) {
            s.ready.push_back(key.clone());
            drop(s);
            self.notify.notify_one();
        }
    }
}

/// The timer leadership of one worker, given up when its wait ends (or is dropped).
struct Leading<'a, K: Clone + Eq + Hash>(&'a WorkQueue<K>);

impl<K: Clone + Eq + Hash> Drop for Leading<'_, K> {
    fn drop(&mut self) {
        self.0.lock().timer_leader = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn keys_are_deduplicated_and_requeued_when_dirty() {
        let q = WorkQueue::new();
        q.add("a");
        q.add("a");
        q.add("b");
        assert_eq!(q.next().await, Some("a"));
        q.add("a"); // changed while processing
        assert_eq!(q.next().await, Some("b"));
        q.done(&"a");
        assert_eq!(q.next().await, Some("a"));
        q.done(&"a");
        q.done(&"b");
        q.close();
        assert_eq!(q.next().await, None);
    }

    #[tokio::test(start_paused = true)]
    async fn delayed_keys_arrive_after_their_delay() {
        let q = std::sync::Arc::new(WorkQueue::new());
        q.add_after("late", Duration::from_secs(5));
        q.add_after("soon", Duration::from_secs(1));
        let start = Instant::now();
        assert_eq!(q.next().await, Some("soon"));
        assert!(start.elapsed() >= Duration::from_secs(1));
        assert_eq!(q.next().await, Some("late"));
        assert!(start.elapsed() >= Duration::from_secs(5));
    }

    #[tokio::test(start_paused = true)]
    async fn an_earlier_deadline_wakes_the_sleeping_timer_leader() {
        let q = std::sync::Arc::new(WorkQueue::new());
        q.add_after("late", Duration::from_secs(60));
        let waiter = tokio::spawn({
            let q = q.clone();
            async move { q.next().await }
        });
        tokio::task::yield_now().await;
        let start = Instant::now();
        q.add_after("soon", Duration::from_secs(1));
        assert_eq!(waiter.await.unwrap(), Some("soon"));
        assert!(start.elapsed() < Duration::from_secs(2));
    }

    #[tokio::test(start_paused = true)]
    async fn many_idle_workers_each_get_one_of_the_keys_that_fall_due() {
        let q = std::sync::Arc::new(WorkQueue::new());
        let workers: Vec<_> = (0..20)
            .map(|_| {
                let q = q.clone();
                tokio::spawn(async move { q.next().await })
            })
            .collect();
        tokio::task::yield_now().await;
        for i in 0..5 {
            q.add_after(i, Duration::from_millis(10 * (i + 1)));
        }
        q.add(99);
        tokio::time::sleep(Duration::from_secs(1)).await;
        q.close();
        let mut got: Vec<u64> = Vec::new();
        for w in workers {
            if let Some(k) = w.await.unwrap() {
                got.push(k);
            }
        }
        got.sort_unstable();
        assert_eq!(got, [0, 1, 2, 3, 4, 99]);
    }
}
