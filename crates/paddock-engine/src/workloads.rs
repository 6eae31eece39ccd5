//! The control core's [`Workloads`] port on one machine: the local stand-ins for what a cluster
//! would have. A Sandbox's "pod" is a workload on the local runtime, its PVCs are host
//! directories, its Service and its template's NetworkPolicy are records (sandboxes have no
//! network at all here, which is stricter than any policy).
//!
//! Workloads are created and stopped in the background (a gVisor start takes ~200 ms, its death
//! ~1.4 s); every state change wakes the Sandbox's reconcile.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, OwnerReference, Time};
use paddock_api::conditions;
use paddock_api::names;
use paddock_api::v1beta1::Sandbox;
use paddock_backend::annotations::IDLE as IDLE_ANNOTATION;
use paddock_control::ports::{BoxFuture, Children, PolicyWrite, Release, Workloads, WriteError};
use paddock_control::{Key, Waker};
use paddock_plan::outcome::FailureKind;
use paddock_plan::patch::MetadataPatch;
use paddock_plan::sandbox::{
    PodConditionObservation, PodObservation, PvcObservation, SandboxAction, ServiceObservation,
};
use paddock_runtime::{
    Runtime, RuntimeClass, SandboxPod, UnhonouredField, WorkloadId, WorkloadState,
    workload_from_pod,
};
use tokio::sync::Semaphore;

/// The condition reporting pod-template fields this host cannot honour (never silently dropped).
pub const FIELDS_HONOURED: &str = "FieldsHonoured";

/// A local pod's phase, as Kubernetes names them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Being created (or waiting to retry a failed create).
    Pending,
    /// The agent answers.
    Running,
    /// The workload ended with exit code 0.
    Succeeded,
    /// The workload ended otherwise.
    Failed,
}

impl Phase {
    fn as_str(self) -> &'static str {
        match self {
            Phase::Pending => "Pending",
            Phase::Running => "Running",
            Phase::Succeeded => "Succeeded",
            Phase::Failed => "Failed",
        }
    }
}

/// A Sandbox's local workload.
#[derive(Clone, Debug)]
pub struct LocalPod {
    /// The pod name (the Sandbox's name).
    pub name: String,
    /// The workload on the runtime (the Sandbox's uid).
    pub workload: WorkloadId,
    /// gVisor or bwrap.
    pub runtime_class: Option<RuntimeClass>,
    /// Where it is.
    pub phase: Phase,
    /// The agent's socket while running.
    pub socket: Option<PathBuf>,
    /// Why the last create failed, shown on the Sandbox.
    pub error: Option<String>,
    /// Labels, annotations and owner references as the planner keeps them.
    pub labels: BTreeMap<String, String>,
    /// See `labels`.
    pub annotations: BTreeMap<String, String>,
    /// See `labels`.
    pub owner_references: Vec<OwnerReference>,
    /// Stopping (suspend, expiry or deletion).
    pub terminating: bool,
    /// Fields of the pod template this host cannot honour.
    pub unhonoured: Vec<UnhonouredField>,
}

/// The node name reported for local pods.
fn node_name() -> String {
    std::fs::read_to_string("/etc/hostname")
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|_| "localhost".to_owned())
}

/// Every local pod, Service record, volume and policy record, by Sandbox (or template).
#[derive(Debug)]
pub struct LocalWorkloads {
    runtime: Arc<dyn Runtime>,
    pods: Mutex<HashMap<Key, LocalPod>>,
    services: Mutex<HashMap<Key, Service>>,
    policies: Mutex<HashMap<Key, NetworkPolicy>>,
    /// The volume claims each Sandbox had when last seen, removed once it is gone.
    claims: Mutex<HashMap<Key, Vec<String>>>,
    wake: Waker,
    /// This registry, for the background tasks `&self` methods start.
    me: std::sync::Weak<LocalWorkloads>,
    volume_root: PathBuf,
    create_slots: Arc<Semaphore>,
    node: String,
    /// Teardowns in flight, so a clean shutdown can let them finish.
    teardowns: tokio_util::task::TaskTracker,
    /// Creates in flight: a shutdown waits for them too, so every workload it leaves behind is
    /// on disk for the next start (or its owner's cleanup) to find.
    creates: tokio_util::task::TaskTracker,
    /// Passes of the exit check so far (tests wait on it instead of sleeping).
    exit_checks: std::sync::atomic::AtomicU64,
    /// Networks for Sandboxes whose policy allows egress.
    egress: std::sync::OnceLock<Arc<crate::egress::LocalEgress>>,
}

/// Workloads started at once at most (a gVisor start is CPU-heavy on a small host).
const PARALLEL_CREATES: usize = 4;

fn guard<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl LocalWorkloads {
    /// The registry over `runtime`; state changes wake the Sandbox through `wake`.
    pub fn new(runtime: Arc<dyn Runtime>, wake: Waker, volume_root: PathBuf) -> Arc<Self> {
        Arc::new_cyclic(|me| Self {
            me: me.clone(),
            runtime,
            pods: Mutex::new(HashMap::new()),
            services: Mutex::default(),
            policies: Mutex::default(),
            claims: Mutex::default(),
            wake,
            volume_root,
            create_slots: Arc::new(Semaphore::new(PARALLEL_CREATES)),
            node: node_name(),
            teardowns: tokio_util::task::TaskTracker::new(),
            creates: tokio_util::task::TaskTracker::new(),
            exit_checks: std::sync::atomic::AtomicU64::new(0),
            egress: std::sync::OnceLock::new(),
        })
    }

    /// Gives Sandboxes whose policy allows egress their network (set once, at start).
    pub fn set_egress(&self, egress: Arc<crate::egress::LocalEgress>) {
        let _ = self.egress.set(egress);
    }

    /// Egress of this host's Sandboxes, when enabled.
    pub fn egress(&self) -> Option<&Arc<crate::egress::LocalEgress>> {
        self.egress.get()
    }

    fn this(&self) -> Option<Arc<Self>> {
        self.me.upgrade()
    }

    /// How many passes the exit check has made.
    pub fn exit_checks(&self) -> u64 {
        self.exit_checks.load(std::sync::atomic::Ordering::Acquire)
    }

    /// The runtime.
    pub fn runtime(&self) -> &Arc<dyn Runtime> {
        &self.runtime
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Key, LocalPod>> {
        guard(&self.pods)
    }

    /// The local pod of a Sandbox, if any.
    pub fn get(&self, key: &Key) -> Option<LocalPod> {
        self.lock().get(key).cloned()
    }

    /// Where the agent of a running Sandbox answers.
    pub fn socket(&self, key: &Key) -> Result<PathBuf, (Phase, Option<String>)> {
        match self.lock().get(key) {
            Some(p) if p.phase == Phase::Running && !p.terminating => {
                p.socket.clone().ok_or((p.phase, None))
            }
            Some(p) => Err((p.phase, p.error.clone())),
            None => Err((Phase::Pending, None)),
        }
    }

    /// Where a Sandbox's main process writes its output, and whether it may still write (the
    /// workload is starting or running); `None` when the Sandbox has no workload here.
    pub fn main_log(&self, key: &Key) -> Option<(PathBuf, bool)> {
        let pods = self.lock();
        let pod = pods.get(key)?;
        let live = matches!(pod.phase, Phase::Pending | Phase::Running) && !pod.terminating;
        Some((self.runtime.main_log(&pod.workload), live))
    }

    /// How a Sandbox's main process ended: its exit code and the last lines of its output;
    /// `None` while it runs, or when the sandbox has no workload here.
    pub fn termination(&self, key: &Key) -> Option<paddock_backend::Termination> {
        let pod = self.get(key)?;
        if let Some(e) = pod.error.filter(|_| pod.phase == Phase::Failed) {
            return Some(paddock_backend::Termination {
                exit_code: None,
                output_tail: String::new(),
                start_error: Some(e),
            });
        }
        let log = self.runtime.main_log(&pod.workload);
        let exit_code = main_finished(&log)?;
        Some(paddock_backend::Termination {
            exit_code: Some(exit_code),
            output_tail: output_tail(&log),
            start_error: None,
        })
    }

    /// The spare sandboxes of default pools: (namespace, pool, running, memory in bytes) each.
    pub fn default_pool_members(&self) -> Vec<(String, String, bool, Option<u64>)> {
        // A member still held by its pool has the pool's label; a claim's adoption removes it.
        let members: Vec<(String, String, bool, WorkloadId)> = self
            .lock()
            .iter()
            .filter(|(_, p)| p.labels.contains_key(names::WARM_POOL_SANDBOX))
            .filter_map(|(key, p)| {
                let pool = p.labels.get(names::DEFAULT_POOL)?;
                Some((
                    key.namespace.clone(),
                    pool.clone(),
                    p.phase == Phase::Running && !p.terminating,
                    p.workload.clone(),
                ))
            })
            .collect();
        members
            .into_iter()
            .map(|(ns, pool, running, id)| (ns, pool, running, self.runtime.memory_bytes(&id)))
            .collect()
    }

    /// The planner's view of a Sandbox's pod.
    pub fn observe_pods(&self, key: &Key) -> Vec<PodObservation> {
        let Some(pod) = self.get(key) else {
            return Vec::new();
        };
        let running = pod.phase == Phase::Running && !pod.terminating;
        let ready = PodConditionObservation {
            status: if running { "True" } else { "False" }.to_owned(),
            reason: None,
            message: pod.error.clone(),
        };
        let scheduled = match &pod.error {
            Some(e) => PodConditionObservation {
                status: "False".to_owned(),
                reason: Some("RuntimeError".to_owned()),
                message: Some(e.clone()),
            },
            None => PodConditionObservation {
                status: "True".to_owned(),
                reason: None,
                message: None,
            },
        };
        vec![PodObservation {
            name: pod.name.clone(),
            uid: Some(pod.workload.to_string()),
            owner_references: pod.owner_references.clone(),
            labels: pod.labels.clone(),
            annotations: pod.annotations.clone(),
            phase: pod.phase.as_str().to_owned(),
            ready: Some(ready),
            scheduled: Some(scheduled),
            pod_ips: if running {
                vec!["127.0.0.1".to_owned()]
            } else {
                Vec::new()
            },
            node_name: Some(self.node.clone()),
            terminating: pod.terminating,
        }]
    }

    /// Starts the workload for a pod the planner asked for, in the background.
    pub fn create(self: &Arc<Self>, key: Key, workload: WorkloadId, pod: &Pod) {
        let meta = &pod.metadata;
        let local = LocalPod {
            name: meta.name.clone().unwrap_or_default(),
            workload: workload.clone(),
            runtime_class: None,
            phase: Phase::Pending,
            socket: None,
            error: None,
            labels: meta.labels.clone().unwrap_or_default(),
            annotations: meta.annotations.clone().unwrap_or_default(),
            owner_references: meta.owner_references.clone().unwrap_or_default(),
            terminating: false,
            unhonoured: Vec::new(),
        };
        let idle = local
            .annotations
            .get(IDLE_ANNOTATION)
            .is_some_and(|v| v == "true");
        self.lock().insert(key.clone(), local);
        let this = self.clone();
        let spec = pod.spec.clone().unwrap_or_default();
        self.creates.spawn(async move {
            let result = this.start(&key, &workload, &spec, idle).await;
            let mut pods = this.lock();
            let Some(p) = pods.get_mut(&key) else { return };
            if p.workload != workload || p.terminating {
                return;
            }
            match result {
                Ok((class, socket, unhonoured)) => {
                    p.runtime_class = Some(class);
                    p.error = None;
                    p.unhonoured = unhonoured;
                    // A main process that already ended (it failed at once, or was a quick job)
                    // makes a terminal pod now, not at the next exit check.
                    match main_finished(&socket) {
                        Some(code) => {
                            p.phase = if code == 0 {
                                Phase::Succeeded
                            } else {
                                Phase::Failed
                            };
                            tracing::info!(sandbox = %key, exit_code = code, "sandbox main process ended as it started");
                        }
                        None => {
                            p.socket = Some(socket);
                            p.phase = Phase::Running;
                        }
                    }
                }
                Err(e) => {
                    // Nothing retries a workload that cannot start (an image that cannot be
                    // pulled, a runtime that refuses the spec): the pod fails, so the Sandbox
                    // says so at once instead of staying Pending.
                    tracing::warn!(sandbox = %key, error = %e, "sandbox workload did not start");
                    p.error = Some(e);
                    p.phase = Phase::Failed;
                }
            }
            drop(pods);
            this.wake.sandbox(&key.namespace, &key.name);
        });
    }

    async fn start(
        &self,
        key: &Key,
        workload: &WorkloadId,
        spec: &k8s_openapi::api::core::v1::PodSpec,
        idle: bool,
    ) -> Result<(RuntimeClass, PathBuf, Vec<UnhonouredField>), String> {
        let mapped = workload_from_pod(&SandboxPod {
            pod: spec,
            volume_claim_templates: &[],
            namespace: &key.namespace,
            sandbox_name: &key.name,
            persistent_volume_root: &self.volume_root,
        })
        .map_err(|e| e.to_string())?;
        let mut workload_spec = mapped.spec;
        workload_spec.idle = idle;
        let egress = self.egress.get();
        if let Some(egress) = egress
            && let Some((network, env)) = egress.attach(key, workload).await?
        {
            workload_spec.network = Some(network);
            for (name, value) in env {
                if !workload_spec.env.iter().any(|e| e.name == name) {
                    workload_spec
                        .env
                        .push(paddock_runtime::spec::EnvVar { name, value });
                }
            }
        }
        let networked = workload_spec.network.is_some();
        let detach_on_failure = |e: String| {
            if networked && let Some(egress) = egress {
                egress.detach(key);
            }
            e
        };
        let _slot = self
            .create_slots
            .clone()
            .acquire_owned()
            .await
            .map_err(|e| e.to_string())?;
        // A workload left from an earlier create of this Sandbox (a crash mid-create) goes first.
        if !matches!(
            self.runtime.state(workload).await,
            Ok(WorkloadState::Missing)
        ) {
            let _ = self.runtime.teardown(workload).await;
        }
        let started = self
            .runtime
            .create(workload, &workload_spec)
            .await
            .map_err(|e| detach_on_failure(e.to_string()))?;
        Ok((
            started.runtime_class,
            started.agent_socket,
            mapped.unhonoured,
        ))
    }

    /// Applies the planner's metadata edits to a local pod.
    pub fn patch(&self, key: &Key, patch: &MetadataPatch) {
        if let Some(p) = self.lock().get_mut(key) {
            let mut meta = k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
                labels: Some(std::mem::take(&mut p.labels)),
                annotations: Some(std::mem::take(&mut p.annotations)),
                owner_references: Some(std::mem::take(&mut p.owner_references)),
                ..Default::default()
            };
            patch.apply(&mut meta);
            p.labels = meta.labels.unwrap_or_default();
            p.annotations = meta.annotations.unwrap_or_default();
            p.owner_references = meta.owner_references.unwrap_or_default();
        }
    }

    /// Stops a Sandbox's workload (suspend, expiry, deletion): the record goes at once, the
    /// runtime tears the workload down in the background.
    pub fn delete(&self, key: &Key) {
        let Some(pod) = self.lock().remove(key) else {
            return;
        };
        let runtime = self.runtime.clone();
        let wake = self.wake.clone();
        let key = key.clone();
        if let Some(egress) = self.egress.get() {
            egress.detach(&key);
        }
        self.teardowns.spawn(async move {
            // Mark it stopping at once (state answers Stopping), then wait until it is gone.
            if let Err(e) = runtime.stop(&pod.workload).await {
                tracing::warn!(sandbox = %key, error = %e, "stopping the workload failed");
            }
            wake.sandbox(&key.namespace, &key.name);
            if let Err(e) = runtime.teardown(&pod.workload).await {
                tracing::warn!(sandbox = %key, error = %e, "tearing the workload down failed");
            }
        });
    }

    /// Waits (at most `limit`) for creates and teardowns in flight, so no sandbox is left half
    /// started or half torn down.
    pub async fn wait_for_in_flight(&self, limit: Duration) {
        self.creates.close();
        self.teardowns.close();
        let both = async {
            self.creates.wait().await;
            self.teardowns.wait().await;
        };
        if tokio::time::timeout(limit, both).await.is_err() {
            tracing::warn!(
                "some sandboxes were still starting or being torn down at shutdown; the next start finishes them"
            );
        }
    }

    /// Removes the host directories of a deleted Sandbox's volume claims (their PVCs are
    /// garbage-collected with the Sandbox, as on a cluster).
    pub fn remove_volumes(&self, namespace: &str, claims: &[String]) {
        for claim in claims {
            let dir = self.volume_root.join(namespace).join(claim);
            if dir.exists()
                && let Err(e) = std::fs::remove_dir_all(&dir)
            {
                tracing::warn!(dir = %dir.display(), error = %e, "removing a volume failed");
            }
        }
    }

    /// Creates the host directory of a volume claim.
    pub fn create_volume(&self, namespace: &str, claim: &str) -> std::io::Result<()> {
        std::fs::create_dir_all(self.volume_root.join(namespace).join(claim))
    }

    /// Whether a volume claim's directory exists.
    pub fn volume_exists(&self, namespace: &str, claim: &str) -> bool {
        self.volume_root.join(namespace).join(claim).is_dir()
    }

    /// The directory of volume claims.
    pub fn volume_root(&self) -> &Path {
        &self.volume_root
    }

    /// Re-attaches to the workloads that survived a restart: running ones become Running local
    /// pods of their Sandbox (by uid), ones whose main process ended become terminal pods; ones
    /// that died (or never finished starting) and ones whose Sandbox is gone are torn down, and
    /// the planner starts a fresh workload where a Sandbox still wants one.
    pub async fn reattach(&self, sandboxes: &HashMap<String, (Key, Pod)>) {
        let found = match self.runtime.list().await {
            Ok(f) => f,
            Err(e) => {
                tracing::warn!(error = %e, "listing workloads to re-attach failed");
                return;
            }
        };
        if let Some(egress) = self.egress.get() {
            let live: Vec<WorkloadId> = found.iter().map(|i| i.workload.id.clone()).collect();
            egress.sweep(&live);
        }
        for info in found {
            let id = info.workload.id.to_string();
            let finished = main_finished(&info.workload.agent_socket);
            let phase = match (info.state, finished) {
                (WorkloadState::Running, _) => Some(Phase::Running),
                (WorkloadState::Exited { .. }, Some(0)) => Some(Phase::Succeeded),
                (WorkloadState::Exited { .. }, Some(_)) => Some(Phase::Failed),
                _ => None,
            };
            match (sandboxes.get(&id), phase) {
                (Some((key, pod)), Some(phase)) => {
                    let meta = &pod.metadata;
                    self.lock().insert(
                        key.clone(),
                        LocalPod {
                            name: key.name.clone(),
                            workload: info.workload.id.clone(),
                            runtime_class: Some(info.workload.runtime_class),
                            phase,
                            socket: Some(info.workload.agent_socket.clone()),
                            error: None,
                            labels: meta.labels.clone().unwrap_or_default(),
                            annotations: meta.annotations.clone().unwrap_or_default(),
                            // The pod is the Sandbox's, as when it was created.
                            owner_references: vec![sandbox_owner(&key.name, &id)],
                            terminating: false,
                            unhonoured: Vec::new(),
                        },
                    );
                    if let Some(egress) = self.egress.get() {
                        egress.reattach(key, &info.workload.id).await;
                    }
                    tracing::info!(sandbox = %key, "re-attached to a sandbox");
                }
                (Some((key, _)), None) => {
                    tracing::info!(sandbox = %key, "the sandbox's workload died while paddock was down; it starts again");
                    let _ = self.runtime.teardown(&info.workload.id).await;
                }
                (None, _) => {
                    tracing::info!(workload = %id, "tearing down a workload that no Sandbox owns");
                    let _ = self.runtime.teardown(&info.workload.id).await;
                }
            }
        }
    }

    /// Notices workloads that ended on their own, until `shutdown`: one whose main process
    /// exited becomes a terminal pod (Succeeded/Failed, never restarted); one that died without
    /// its main process ending (killed, or an idle sandbox's agent gone) is like a pod that
    /// vanished while running, and is started again.
    pub async fn watch_exits(
        self: Arc<Self>,
        shutdown: tokio_util::sync::CancellationToken,
        every: Duration,
    ) {
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(every) => {}
            }
            self.exit_checks
                .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
            let running: Vec<(Key, WorkloadId, PathBuf)> = self
                .lock()
                .iter()
                .filter(|(_, p)| p.phase == Phase::Running && !p.terminating)
                .filter_map(|(k, p)| Some((k.clone(), p.workload.clone(), p.socket.clone()?)))
                .collect();
            if running.is_empty() {
                continue;
            }
            // One cheap pass for all workloads (no runsc call: each costs ~50 ms of CPU).
            let alive = self.runtime.alive_workloads();
            for (key, id, socket) in running {
                let finished = main_finished(&socket);
                if finished.is_none() && alive.contains(id.as_str()) {
                    continue;
                }
                let still_ours = |p: Option<&LocalPod>| {
                    p.is_some_and(|p| {
                        p.workload == id && p.phase == Phase::Running && !p.terminating
                    })
                };
                match finished {
                    Some(code) => {
                        let phase = if code == 0 {
                            Phase::Succeeded
                        } else {
                            Phase::Failed
                        };
                        {
                            let mut pods = self.lock();
                            if !still_ours(pods.get(&key)) {
                                continue;
                            }
                            if let Some(p) = pods.get_mut(&key) {
                                p.phase = phase;
                                p.socket = None;
                            }
                        }
                        tracing::info!(sandbox = %key, phase = phase.as_str(), exit_code = code, "sandbox main process ended");
                    }
                    None => {
                        {
                            let mut pods = self.lock();
                            if !still_ours(pods.get(&key)) {
                                continue;
                            }
                            pods.remove(&key);
                        }
                        tracing::warn!(sandbox = %key, "sandbox workload died; starting it again");
                        let _ = self.runtime.teardown(&id).await;
                    }
                }
                self.wake.sandbox(&key.namespace, &key.name);
            }
        }
    }
}

/// The controller reference of a Sandbox's pod.
fn sandbox_owner(name: &str, uid: &str) -> OwnerReference {
    OwnerReference {
        api_version: Sandbox::API_VERSION.to_owned(),
        kind: Sandbox::KIND.to_owned(),
        name: name.to_owned(),
        uid: uid.to_owned(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// The exit code of a sandbox's main process, from the status file its agent writes next to its
/// socket when the main process ends; `None` when it has not ended (or there is none).
fn main_finished(socket: &Path) -> Option<i32> {
    let path = socket.parent()?.join(paddock_runtime::agent::MAIN_STATUS);
    let bytes = std::fs::read(path).ok()?;
    let status: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    status
        .get("exit_code")
        .and_then(serde_json::Value::as_i64)
        .and_then(|c| i32::try_from(c).ok())
}

/// The end of a main process's log: its last 20 lines, at most 2 KiB.
fn output_tail(log: &Path) -> String {
    use std::io::{Read as _, Seek as _, SeekFrom};
    const MAX: u64 = 2048;
    let Ok(mut f) = std::fs::File::open(log) else {
        return String::new();
    };
    let len = f.metadata().map_or(0, |m| m.len());
    let _ = f.seek(SeekFrom::Start(len.saturating_sub(MAX)));
    let mut bytes = Vec::new();
    let _ = f.take(MAX).read_to_end(&mut bytes);
    let text = String::from_utf8_lossy(&bytes);
    let lines: Vec<&str> = text.trim_end().lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

/// The PVC names of a Sandbox's volume claim templates.
fn claim_names(sandbox: &Sandbox, name: &str) -> Vec<String> {
    sandbox
        .spec
        .blueprint
        .volume_claim_templates
        .iter()
        .flatten()
        .map(|t| names::pvc_name(t.name(), name))
        .collect()
}

fn not_local(action: &SandboxAction) -> WriteError {
    WriteError::new(
        FailureKind::Other,
        format!("{action:?} is not a child action of the local tier"),
    )
}

impl LocalWorkloads {
    /// The volume claims that exist on this host, as the planner sees PVCs.
    fn pvc_observations(&self, sandbox: &Sandbox, key: &Key) -> Vec<PvcObservation> {
        let owner = sandbox_owner(
            &key.name,
            sandbox.metadata.uid.as_deref().unwrap_or_default(),
        );
        claim_names(sandbox, &key.name)
            .into_iter()
            .filter(|claim| self.volume_exists(&key.namespace, claim))
            .map(|name| PvcObservation {
                name,
                owner_references: vec![owner.clone()],
                labels: BTreeMap::from([(
                    names::SANDBOX_NAME_HASH.to_owned(),
                    names::name_hash(&key.name),
                )]),
            })
            .collect()
    }

    fn fields_honoured(pod: &LocalPod, generation: Option<i64>, now: &Time) -> Condition {
        if pod.unhonoured.is_empty() {
            conditions::new(
                FIELDS_HONOURED,
                conditions::status::TRUE,
                "AllFieldsHonoured",
                "every field of the pod template is honoured on this host",
                generation,
                now.clone(),
            )
        } else {
            let list: Vec<String> = pod
                .unhonoured
                .iter()
                .map(|u| format!("{}: {}", u.path, u.reason))
                .collect();
            conditions::new(
                FIELDS_HONOURED,
                conditions::status::FALSE,
                "UnhonouredFields",
                format!("not honoured on this host: {}", list.join("; ")),
                generation,
                now.clone(),
            )
        }
    }
}

impl Workloads for LocalWorkloads {
    fn observe(&self, sandbox: &Sandbox) -> Children {
        let key = Key::of(sandbox);
        let uid = sandbox.metadata.uid.clone().unwrap_or_default();
        guard(&self.claims).insert(key.clone(), claim_names(sandbox, &key.name));
        // A local pod of an earlier Sandbox with this name goes first.
        if self.get(&key).is_some_and(|p| p.workload.as_str() != uid) {
            self.delete(&key);
        }
        let service = guard(&self.services)
            .get(&key)
            .map(ServiceObservation::from_service);
        Children {
            pods: Ok(self.observe_pods(&key)),
            service: Ok(service),
            pvcs: Ok(self.pvc_observations(sandbox, &key)),
        }
    }

    fn apply<'a>(
        &'a self,
        sandbox: &'a Sandbox,
        action: &'a SandboxAction,
    ) -> BoxFuture<'a, Result<(), WriteError>> {
        let key = Key::of(sandbox);
        let result = match action {
            SandboxAction::CreatePvc { pvc } => {
                let name = pvc.metadata.name.clone().unwrap_or_default();
                self.create_volume(&key.namespace, &name).map_err(|e| {
                    WriteError::new(
                        FailureKind::Other,
                        format!("creating the volume {name}: {e}"),
                    )
                })
            }
            SandboxAction::AdoptPvc { .. } => Ok(()),
            SandboxAction::CreatePod { pod } => {
                let uid = sandbox.metadata.uid.clone().unwrap_or_default();
                match WorkloadId::new(uid.clone()) {
                    Ok(workload) => {
                        // `create` needs the Arc to run the start in the background.
                        match self.this() {
                            Some(this) => {
                                this.create(key, workload, pod);
                                Ok(())
                            }
                            None => Err(WriteError::new(
                                FailureKind::Other,
                                "the local workloads are shutting down",
                            )),
                        }
                    }
                    Err(_) => Err(WriteError::new(
                        FailureKind::Invalid,
                        format!("Sandbox uid {uid:?} is not a usable workload id"),
                    )),
                }
            }
            SandboxAction::PatchPod { patch, .. } => {
                self.patch(&key, patch);
                Ok(())
            }
            SandboxAction::DeletePod { .. } => {
                self.delete(&key);
                Ok(())
            }
            SandboxAction::CreateService { service } => {
                guard(&self.services).insert(key, (**service).clone());
                Ok(())
            }
            SandboxAction::AdoptService { edit, .. } | SandboxAction::PatchService { edit, .. } => {
                if let Some(svc) = guard(&self.services).get_mut(&key) {
                    edit.apply(svc);
                }
                Ok(())
            }
            SandboxAction::DeleteService { .. } => {
                guard(&self.services).remove(&key);
                Ok(())
            }
            other => Err(not_local(other)),
        };
        Box::pin(std::future::ready(result))
    }

    fn conditions(&self, sandbox: &Sandbox, now: &Time) -> Vec<Condition> {
        // Only a started workload reflects a real mapping of the pod template.
        self.get(&Key::of(sandbox))
            .filter(|p| p.runtime_class.is_some())
            .map(|pod| Self::fields_honoured(&pod, sandbox.metadata.generation, now))
            .into_iter()
            .collect()
    }

    fn release(&self, namespace: &str, name: &str, why: Release) {
        let key = Key::new(namespace, name);
        self.delete(&key);
        if why == Release::Gone {
            guard(&self.services).remove(&key);
            // A deleted Sandbox's PVCs are garbage-collected with it, as on a cluster.
            if let Some(claims) = guard(&self.claims).remove(&key) {
                self.remove_volumes(namespace, &claims);
            }
        }
    }

    fn network_policy(&self, namespace: &str, name: &str) -> Option<NetworkPolicy> {
        guard(&self.policies)
            .get(&Key::new(namespace, name))
            .cloned()
    }

    fn write_network_policy<'a>(
        &'a self,
        namespace: &'a str,
        write: PolicyWrite<'a>,
    ) -> BoxFuture<'a, Result<(), WriteError>> {
        let mut policies = guard(&self.policies);
        match write {
            PolicyWrite::Create(np) => {
                let mut np = np.clone();
                np.metadata.resource_version = Some("1".to_owned());
                let name = np.metadata.name.clone().unwrap_or_default();
                policies.insert(Key::new(namespace, name), np);
            }
            PolicyWrite::Update { name, spec, .. } => {
                if let Some(np) = policies.get_mut(&Key::new(namespace, name)) {
                    np.spec = Some(spec.clone());
                }
            }
            PolicyWrite::Delete(target) => {
                policies.remove(&Key::new(namespace, &target.name));
            }
        }
        Box::pin(std::future::ready(Ok(())))
    }

    fn template_gone(&self, namespace: &str, name: &str) {
        guard(&self.policies).remove(&Key::new(namespace, names::network_policy_name(name)));
    }
}
