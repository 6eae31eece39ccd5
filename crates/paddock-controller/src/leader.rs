//! Leader election on a coordination.k8s.io Lease, as client-go's: acquire when the Lease is
//! free or its holder has not renewed within `leaseDurationSeconds` (measured on our clock from
//! when we last saw the record change, so clock skew cannot steal a lease), renew every retry
//! period, give up leadership when renewing keeps failing past the renew deadline, and release
//! the Lease on shutdown so a successor takes over at once.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::PostParams;
use kube::{Api, Client};
use paddock_plan::outcome::FailureKind;
use tokio_util::sync::CancellationToken;

use paddock_kube::classify;

use crate::error::ControllerError;

/// Upstream's Lease name.
pub const LEASE_NAME: &str = "a3317529.agent-sandbox.x-k8s.io";

/// controller-runtime's timings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timings {
    /// How long a Lease stays valid without renewal (15 s).
    pub lease_duration: Duration,
    /// How long a leader keeps trying to renew before giving up (10 s).
    pub renew_deadline: Duration,
    /// Between attempts (2 s).
    pub retry_period: Duration,
}

impl Default for Timings {
    fn default() -> Self {
        Self {
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        }
    }
}

/// What we last saw of the Lease, and when (on our clock) it last changed.
#[derive(Clone, Debug)]
struct Observed {
    holder: Option<String>,
    renew_time: Option<MicroTime>,
    changed_at: Instant,
}

/// One candidate for the Lease.
#[derive(Debug)]
pub struct LeaderElector {
    api: Api<Lease>,
    namespace: String,
    identity: String,
    timings: Timings,
    observed: Mutex<Option<Observed>>,
}

fn now_micro() -> MicroTime {
    MicroTime(jiff::Timestamp::now())
}

/// This replica's identity: `<hostname>_<random>`, as controller-runtime makes it.
pub fn default_identity() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .ok()
                .map(|s| s.trim().to_owned())
        })
        .unwrap_or_else(|| "paddock-controller".to_owned());
    let suffix: u128 = rand::random();
    format!("{host}_{suffix:032x}")
}

impl LeaderElector {
    /// A candidate for Lease [`LEASE_NAME`] in `namespace`.
    pub fn new(client: Client, namespace: &str, identity: String, timings: Timings) -> Self {
        Self {
            api: Api::namespaced(client, namespace),
            namespace: namespace.to_owned(),
            identity,
            timings,
            observed: Mutex::new(None),
        }
    }

    /// This candidate's identity.
    pub fn identity(&self) -> &str {
        &self.identity
    }

    fn lease_seconds(&self) -> i32 {
        i32::try_from(self.timings.lease_duration.as_secs()).unwrap_or(i32::MAX)
    }

    fn observe(&self, spec: &LeaseSpec) -> Observed {
        let mut guard = self
            .observed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let changed = guard
            .as_ref()
            .is_none_or(|o| o.holder != spec.holder_identity || o.renew_time != spec.renew_time);
        if changed {
            *guard = Some(Observed {
                holder: spec.holder_identity.clone(),
                renew_time: spec.renew_time.clone(),
                changed_at: Instant::now(),
            });
        }
        guard.clone().unwrap_or(Observed {
            holder: None,
            renew_time: None,
            changed_at: Instant::now(),
        })
    }

    /// One attempt to take or renew the Lease. `Ok(true)`: we hold it now.
    ///
    /// # Errors
    /// The API call failed (other than losing a race, which is `Ok(false)`).
    pub async fn try_acquire_or_renew(&self) -> Result<bool, kube::Error> {
        let now = now_micro();
        let Some(mut lease) = self.api.get_opt(LEASE_NAME).await? else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(LEASE_NAME.to_owned()),
                    namespace: Some(self.namespace.clone()),
                    ..ObjectMeta::default()
                },
                spec: Some(LeaseSpec {
                    holder_identity: Some(self.identity.clone()),
                    lease_duration_seconds: Some(self.lease_seconds()),
                    acquire_time: Some(now.clone()),
                    renew_time: Some(now),
                    lease_transitions: Some(0),
                    ..LeaseSpec::default()
                }),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(created) => {
                    if let Some(spec) = &created.spec {
                        self.observe(spec);
                    }
                    Ok(true)
                }
                Err(e)
                    if matches!(
                        classify(&e).0,
                        FailureKind::AlreadyExists | FailureKind::Conflict
                    ) =>
                {
                    Ok(false)
                }
                Err(e) => Err(e),
            };
        };
        let spec = lease.spec.clone().unwrap_or_default();
        let observed = self.observe(&spec);
        let holder = spec.holder_identity.clone().filter(|h| !h.is_empty());
        let ours = holder.as_deref() == Some(self.identity.as_str());
        let duration = spec
            .lease_duration_seconds
            .and_then(|s| u64::try_from(s).ok())
            .map_or(self.timings.lease_duration, Duration::from_secs);
        if holder.is_some() && !ours && observed.changed_at.elapsed() < duration {
            return Ok(false);
        }
        let mut new_spec = spec.clone();
        new_spec.holder_identity = Some(self.identity.clone());
        new_spec.lease_duration_seconds = Some(self.lease_seconds());
        new_spec.renew_time = Some(now.clone());
        if !ours {
            new_spec.acquire_time = Some(now);
            new_spec.lease_transitions =
                Some(spec.lease_transitions.unwrap_or(0).saturating_add(1));
        }
        lease.spec = Some(new_spec);
        lease.metadata.managed_fields = None;
        match self
            .api
            .replace(LEASE_NAME, &PostParams::default(), &lease)
            .await
        {
            Ok(updated) => {
                if let Some(spec) = &updated.spec {
                    self.observe(spec);
                }
                Ok(true)
            }
            Err(e) if classify(&e).0 == FailureKind::Conflict => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Waits until this candidate holds the Lease. `Ok(false)` when `shutdown` fired first.
    ///
    /// # Errors
    /// Never: API errors are logged and retried.
    pub async fn acquire(&self, shutdown: &CancellationToken) -> Result<bool, ControllerError> {
        let mut logged_waiting = false;
        loop {
            match self.try_acquire_or_renew().await {
                Ok(true) => {
                    tracing::info!(lease = LEASE_NAME, namespace = %self.namespace, identity = %self.identity, "acquired the leader lease");
                    return Ok(true);
                }
                Ok(false) => {
                    if !logged_waiting {
                        tracing::info!(lease = LEASE_NAME, namespace = %self.namespace, "another replica leads; waiting for the lease");
                        logged_waiting = true;
                    }
                }
                Err(e) => {
                    tracing::warn!(lease = LEASE_NAME, error = %e, "cannot acquire the leader lease; retrying")
                }
            }
            tokio::select! {
                () = shutdown.cancelled() => return Ok(false),
                () = tokio::time::sleep(self.timings.retry_period) => {}
            }
        }
    }

    /// Renews the Lease every retry period until `shutdown` (then `Ok`), or until renewal has
    /// failed for longer than the renew deadline or another holder took it (then an error:
    /// the caller must stop reconciling at once).
    ///
    /// # Errors
    /// [`ControllerError::LeadershipLost`].
    pub async fn hold(&self, shutdown: &CancellationToken) -> Result<(), ControllerError> {
        let mut last_renew = Instant::now();
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return Ok(()),
                () = tokio::time::sleep(self.timings.retry_period) => {}
            }
            let attempt =
                tokio::time::timeout(self.timings.renew_deadline, self.try_acquire_or_renew())
                    .await;
            match attempt {
                Ok(Ok(true)) => last_renew = Instant::now(),
                Ok(Ok(false)) => {
                    return Err(ControllerError::LeadershipLost {
                        lease: LEASE_NAME.to_owned(),
                        reason: "another replica holds the lease".to_owned(),
                    });
                }
                Ok(Err(e)) => {
                    tracing::warn!(lease = LEASE_NAME, error = %e, "cannot renew the leader lease")
                }
                Err(_) => tracing::warn!(lease = LEASE_NAME, "renewing the leader lease timed out"),
            }
            if last_renew.elapsed() > self.timings.renew_deadline {
                return Err(ControllerError::LeadershipLost {
                    lease: LEASE_NAME.to_owned(),
                    reason: format!("not renewed for {:?}", self.timings.renew_deadline),
                });
            }
        }
    }

    /// Releases the Lease if we hold it (holder cleared, duration 1 s), so a successor can
    /// take over without waiting for it to expire.
    pub async fn release(&self) {
        let result = async {
            let Some(mut lease) = self.api.get_opt(LEASE_NAME).await? else {
                return Ok(());
            };
            let spec = lease.spec.clone().unwrap_or_default();
            if spec.holder_identity.as_deref() != Some(self.identity.as_str()) {
                return Ok(());
            }
            let now = now_micro();
            lease.spec = Some(LeaseSpec {
                holder_identity: None,
                lease_duration_seconds: Some(1),
                acquire_time: Some(now.clone()),
                renew_time: Some(now),
                lease_transitions: spec.lease_transitions,
                ..LeaseSpec::default()
            });
            lease.metadata.managed_fields = None;
            self.api
                .replace(LEASE_NAME, &PostParams::default(), &lease)
                .await
                .map(drop)
        }
        .await;
        match result {
            Ok(()) => tracing::info!(lease = LEASE_NAME, "released the leader lease"),
            Err(e) => {
                tracing::warn!(lease = LEASE_NAME, error = %e, "cannot release the leader lease; it expires by itself")
            }
        }
    }
}

/// The namespace the controller runs in (from the service-account mount).
pub fn own_namespace() -> Option<String> {
    std::fs::read_to_string("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
        .ok()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
}
