//! Running a reconciler: workers take keys from a [`WorkQueue`], reconcile, and requeue as the
//! outcome says, with per-key exponential backoff for errors.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::informer::Key;
use crate::queue::WorkQueue;

/// What a reconcile asks for next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Nothing until the next change.
    Done,
    /// Reconcile again after this long.
    RequeueAfter(Duration),
    /// A transient error: retry with backoff.
    Retry(String),
}

/// One controller's logic.
pub trait Reconciler: Send + Sync + 'static {
    /// The controller's name, for logs.
    fn name(&self) -> &'static str;

    /// Brings one object's world in line with it.
    fn reconcile(&self, key: &Key) -> impl Future<Output = Outcome> + Send;
}

const BACKOFF_START: Duration = Duration::from_millis(50);
const BACKOFF_MAX: Duration = Duration::from_secs(30);

/// Starts `workers` workers reconciling keys from `queue` until `shutdown`.
pub fn spawn<R: Reconciler>(
    reconciler: Arc<R>,
    queue: Arc<WorkQueue<Key>>,
    workers: usize,
    shutdown: CancellationToken,
    tasks: &mut JoinSet<()>,
) {
    let failures: Arc<Mutex<HashMap<Key, u32>>> = Arc::default();
    for _ in 0..workers.max(1) {
        let (reconciler, queue, failures, shutdown) = (
            reconciler.clone(),
            queue.clone(),
            failures.clone(),
            shutdown.clone(),
        );
        tasks.spawn(async move {
            loop {
                let key = tokio::select! {
                    () = shutdown.cancelled() => return,
                    key = queue.next() => match key { Some(k) => k, None => return },
                };
                let outcome = reconciler.reconcile(&key).await;
                let retry = {
                    let mut f = failures.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                    match &outcome {
                        Outcome::Retry(_) => {
                            let n = f.entry(key.clone()).or_insert(0);
                            *n = n.saturating_add(1);
                            Some(BACKOFF_START.saturating_mul(2u32.saturating_pow((*n).min(20) - 1)).min(BACKOFF_MAX))
                        }
                        _ => {
                            f.remove(&key);
                            None
                        }
                    }
                };
                queue.done(&key);
                match outcome {
                    Outcome::Done => {}
                    Outcome::RequeueAfter(d) => queue.add_after(key, d),
                    Outcome::Retry(why) => {
                        let delay = retry.unwrap_or(BACKOFF_START);
                        tracing::debug!(controller = reconciler.name(), namespace = %key.0, name = %key.1, error = %why, ?delay, "retrying");
                        queue.add_after(key, delay);
                    }
                }
            }
        });
    }
}
