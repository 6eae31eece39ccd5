//! The gateway's [`Backend`] on the embedded engine: objects in the local store, sandboxes'
//! agents on unix sockets of this host.

use std::sync::Arc;

use paddock_api::kinds::Kind;
use paddock_gateway::backend::{
    Backend, BoxFuture, ByteStream, Endpoint, EventStream, ObjectEvent, ObjectList, ObjectWatch,
    Part, Propagation, Target,
};
use paddock_gateway::{ApiError, Code};
use paddock_store::{
    DeleteOptions, LabelSelector, ListOptions, ObjectStore, PropagationPolicy, WatchEventType,
    WatchOptions, WatchStart,
};
use serde_json::{Value, json};

use crate::informer::{Informer, Key};
use crate::resources::resource;
use crate::store_errors::api_error;
use crate::workloads::{Phase, Workloads};

/// The embedded backend.
#[derive(Debug)]
pub struct EngineBackend {
    pub(crate) store: Arc<dyn ObjectStore>,
    pub(crate) informer: Arc<Informer>,
    pub(crate) workloads: Arc<Workloads>,
    pub(crate) info: Value,
}

/// How often a followed log is checked for more output.
const LOG_POLL: std::time::Duration = std::time::Duration::from_millis(200);

/// Reads a Sandbox's main log from the start; with `follow`, keeps reading while the workload
/// lives, and ends once it has ended and everything it wrote was sent.
fn main_log_stream(workloads: Arc<Workloads>, key: Key, follow: bool) -> ByteStream {
    use tokio::io::AsyncReadExt as _;
    struct Reader {
        workloads: Arc<Workloads>,
        key: Key,
        follow: bool,
        file: Option<tokio::fs::File>,
        done: bool,
    }
    let start = Reader {
        workloads,
        key,
        follow,
        file: None,
        done: false,
    };
    Box::pin(futures_util::stream::unfold(start, |mut r| async move {
        loop {
            if r.done {
                return None;
            }
            // Whether it lived before the read: a workload that ended then wrote nothing since.
            let (path, live) = r.workloads.main_log(&r.key)?;
            let live = live && r.follow;
            if r.file.is_none() {
                match tokio::fs::File::open(&path).await {
                    Ok(f) => r.file = Some(f),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => {
                        r.done = true;
                        return Some((Err(e), r));
                    }
                }
            }
            if let Some(file) = r.file.as_mut() {
                let mut buf = vec![0u8; 64 * 1024];
                match file.read(&mut buf).await {
                    Ok(0) => {}
                    Ok(n) => {
                        buf.truncate(n);
                        return Some((Ok(bytes::Bytes::from(buf)), r));
                    }
                    Err(e) => {
                        r.done = true;
                        return Some((Err(e), r));
                    }
                }
            }
            if !live {
                return None;
            }
            tokio::time::sleep(LOG_POLL).await;
        }
    }))
}

fn selector(s: &str) -> Result<LabelSelector, ApiError> {
    LabelSelector::parse(s).map_err(|e| ApiError::invalid(format!("labelSelector: {e}")))
}

impl Backend for EngineBackend {
    fn name(&self) -> &'static str {
        "embedded"
    }

    fn get(
        &self,
        kind: Kind,
        namespace: &str,
        name: &str,
    ) -> BoxFuture<'_, Result<Value, ApiError>> {
        let (namespace, name) = (namespace.to_owned(), name.to_owned());
        Box::pin(async move {
            self.store
                .get(resource(kind), &namespace, &name)
                .await
                .map_err(api_error)
        })
    }

    fn list(
        &self,
        kind: Kind,
        namespace: Option<&str>,
        label_selector: &str,
    ) -> BoxFuture<'_, Result<ObjectList, ApiError>> {
        let options = selector(label_selector).map(|s| ListOptions {
            namespace: namespace.map(str::to_owned),
            label_selector: s,
            ..ListOptions::default()
        });
        Box::pin(async move {
            let list = self
                .store
                .list(resource(kind), options?)
                .await
                .map_err(api_error)?;
            Ok(ObjectList {
                items: list.items,
                resource_version: list.resource_version,
            })
        })
    }

    fn create(&self, kind: Kind, object: Value) -> BoxFuture<'_, Result<Value, ApiError>> {
        Box::pin(async move {
            let created = self
                .store
                .create(resource(kind), object)
                .await
                .map_err(api_error)?;
            self.informer.observe_write(kind, &created);
            Ok(created)
        })
    }

    fn update(
        &self,
        kind: Kind,
        object: Value,
        part: Part,
    ) -> BoxFuture<'_, Result<Value, ApiError>> {
        Box::pin(async move {
            let updated = match part {
                Part::Main => self.store.update(resource(kind), object).await,
                Part::Status => self.store.update_status(resource(kind), object).await,
            }
            .map_err(api_error)?;
            self.informer.observe_write(kind, &updated);
            Ok(updated)
        })
    }

    fn delete(
        &self,
        kind: Kind,
        namespace: &str,
        name: &str,
        propagation: Propagation,
    ) -> BoxFuture<'_, Result<Value, ApiError>> {
        let (namespace, name) = (namespace.to_owned(), name.to_owned());
        let policy = match propagation {
            Propagation::Background => PropagationPolicy::Background,
            Propagation::Foreground => PropagationPolicy::Foreground,
            Propagation::Orphan => PropagationPolicy::Orphan,
        };
        Box::pin(async move {
            let deleted = self
                .store
                .delete(
                    resource(kind),
                    &namespace,
                    &name,
                    DeleteOptions::propagation(policy),
                )
                .await
                .map_err(api_error)?;
            Ok(deleted.into_object())
        })
    }

    fn watch(
        &self,
        kind: Kind,
        namespace: Option<&str>,
        label_selector: &str,
        resource_version: Option<String>,
    ) -> BoxFuture<'_, Result<ObjectWatch, ApiError>> {
        let options = selector(label_selector).map(|s| WatchOptions {
            namespace: namespace.map(str::to_owned),
            label_selector: s,
            start: resource_version.map_or(WatchStart::InitialState, WatchStart::After),
            ..WatchOptions::default()
        });
        Box::pin(async move {
            let stream = self
                .store
                .watch(resource(kind), options?)
                .await
                .map_err(api_error)?;
            let events = futures_util::stream::unfold(stream, |mut stream| async move {
                let next = stream.next().await?;
                let item = next
                    .map(|e| ObjectEvent {
                        event_type: match e.event_type {
                            WatchEventType::Added => "ADDED",
                            WatchEventType::Modified => "MODIFIED",
                            WatchEventType::Deleted => "DELETED",
                        },
                        object: e.object,
                    })
                    .map_err(api_error);
                Some((item, stream))
            });
            Ok(Box::pin(events) as ObjectWatch)
        })
    }

    fn target(
        &self,
        namespace: &str,
        sandbox: &str,
        port: Option<u16>,
    ) -> BoxFuture<'_, Result<Target, ApiError>> {
        let key = (namespace.to_owned(), sandbox.to_owned());
        Box::pin(async move {
            if self.informer.get(Kind::Sandbox, &key.0, &key.1).is_none() {
                self.store
                    .get(resource(Kind::Sandbox), &key.0, &key.1)
                    .await
                    .map_err(api_error)?;
            }
            match self.workloads.socket(&key) {
                Ok(socket) => Ok(Target {
                    endpoint: Endpoint::Unix(socket),
                    path_prefix: port.map(|p| format!("/v1/ports/{p}")).unwrap_or_default(),
                }),
                Err((phase, error)) => {
                    let why = match (phase, error) {
                        (_, Some(e)) => format!("its workload failed to start: {e}"),
                        (Phase::Pending, None) => {
                            "it is not running (starting or suspended)".to_owned()
                        }
                        (Phase::Succeeded | Phase::Failed, None) => {
                            "its workload has ended".to_owned()
                        }
                        (Phase::Running, None) => "it is stopping".to_owned(),
                    };
                    Err(ApiError::new(
                        Code::SandboxNotReady,
                        format!("sandbox {:?} cannot take requests: {why}", key.1),
                    ))
                }
            }
        })
    }

    fn logs(
        &self,
        namespace: &str,
        sandbox: &str,
        follow: bool,
    ) -> BoxFuture<'_, Result<ByteStream, ApiError>> {
        let key = (namespace.to_owned(), sandbox.to_owned());
        Box::pin(async move {
            if self.workloads.main_log(&key).is_none() {
                return Err(ApiError::new(
                    Code::SandboxNotReady,
                    format!(
                        "sandbox {:?} has no workload on this host (suspended, or not started yet), so no log",
                        key.1
                    ),
                ));
            }
            Ok(main_log_stream(Arc::clone(&self.workloads), key, follow))
        })
    }

    fn default_runtime(&self) -> Option<&'static str> {
        Some("gvisor")
    }

    fn info(&self) -> Value {
        self.info.clone()
    }

    fn pull_image(&self, image: &str) -> BoxFuture<'_, Result<EventStream, ApiError>> {
        let parsed = paddock_runtime::ImageRef::parse(image)
            .map_err(|e| ApiError::invalid(format!("image: {e}")));
        let runtime = self.workloads.runtime().clone();
        let image = image.to_owned();
        Box::pin(async move {
            let parsed = parsed?;
            let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<Value>();
            if matches!(parsed, paddock_runtime::ImageRef::Host) {
                let _ = tx.send(json!({"type": "done", "image": image, "cached": true}));
            } else {
                tokio::spawn(async move {
                    let progress_tx = tx.clone();
                    let progress = move |p: &paddock_runtime::image::PullProgress<'_>| {
                        let _ = progress_tx.send(json!({"type": "progress", "digest": p.digest, "done": p.done, "total": p.total}));
                    };
                    let result = runtime.images().pull(&parsed, &progress).await;
                    let _ = tx.send(match result {
                        Ok(pulled) => json!({"type": "done", "image": image, "id": pulled.id}),
                        Err(e) => json!({"type": "error", "code": "UNAVAILABLE", "message": format!("pulling {image}: {e}")}),
                    });
                });
            }
            let stream = futures_util::stream::unfold(rx, |mut rx| async move {
                rx.recv().await.map(|v| (v, rx))
            });
            Ok(Box::pin(stream) as EventStream)
        })
    }
}
