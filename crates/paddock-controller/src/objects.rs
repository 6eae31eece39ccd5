//! The control core's [`Objects`] port on the API server: the four kinds, typed, in their
//! storage version. Watches are kube-rs watchers (relisting with backoff by themselves); every
//! object loses `managedFields` on the way in, as nothing reads them.

use std::fmt::Debug;

use futures::StreamExt;
use kube::Client;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use paddock_api::kinds::Kind;
use paddock_api::stored::{Object, StoredKind};
use paddock_api::v1beta1::{Sandbox, SandboxClaim, SandboxTemplate, SandboxWarmPool};
use paddock_control::ports::{BoxFuture, BoxStream, Objects, Part, WatchEvent, WriteError};
use paddock_plan::outcome::{ObjectRef, Propagation};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::writes::Writer;

/// The four kinds through the API server.
#[derive(Clone)]
pub struct ApiObjects {
    client: Client,
    writer: Writer,
}

impl Debug for ApiObjects {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiObjects").finish_non_exhaustive()
    }
}

impl ApiObjects {
    /// The port over `client`.
    pub fn new(client: Client) -> Self {
        Self {
            writer: Writer::new(client.clone()),
            client,
        }
    }
}

/// A stored kind the API server serves.
trait ApiKind:
    StoredKind
    + kube::Resource<DynamicType = (), Scope = kube::core::NamespaceResourceScope>
    + Serialize
    + DeserializeOwned
    + Clone
    + Debug
{
}

impl ApiKind for Sandbox {}
impl ApiKind for SandboxTemplate {}
impl ApiKind for SandboxClaim {}
impl ApiKind for SandboxWarmPool {}

/// A watch of kind `K` as the core's events: the watcher's initial (re)list is gathered into
/// one [`WatchEvent::Listed`].
fn watch_kind<K: ApiKind>(client: Client) -> BoxStream<Result<WatchEvent, String>> {
    let stream = watcher::watcher(
        kube::Api::<K>::all(client),
        watcher::Config::default().any_semantic(),
    )
    .default_backoff();
    let mut listing: Vec<Object> = Vec::new();
    let into_object = |mut o: K| {
        o.meta_mut().managed_fields = None;
        o.into_object()
    };
    Box::pin(stream.filter_map(move |event| {
        let out = match event {
            Err(e) => Some(Err(e.to_string())),
            Ok(Event::Init) => {
                listing.clear();
                None
            }
            Ok(Event::InitApply(o)) => {
                listing.push(into_object(o));
                None
            }
            Ok(Event::InitDone) => Some(Ok(WatchEvent::Listed(std::mem::take(&mut listing)))),
            Ok(Event::Apply(o)) => Some(Ok(WatchEvent::Applied(into_object(o)))),
            Ok(Event::Delete(o)) => Some(Ok(WatchEvent::Deleted(into_object(o)))),
        };
        std::future::ready(out)
    }))
}

fn wrap<K: ApiKind>(result: Result<K, WriteError>) -> Result<Object, WriteError> {
    result.map(StoredKind::into_object)
}

impl ApiObjects {
    async fn patch_kind<K: ApiKind>(
        &self,
        namespace: &str,
        name: &str,
        part: Part,
        patch: &Value,
    ) -> Result<Object, WriteError> {
        wrap(match part {
            Part::Main => self.writer.merge_patch::<K>(namespace, name, patch).await,
            Part::Status => self.writer.patch_status::<K>(namespace, name, patch).await,
        })
    }
}

impl Objects for ApiObjects {
    fn watch(&self, kind: Kind) -> BoxStream<Result<WatchEvent, String>> {
        let client = self.client.clone();
        match kind {
            Kind::Sandbox => watch_kind::<Sandbox>(client),
            Kind::SandboxTemplate => watch_kind::<SandboxTemplate>(client),
            Kind::SandboxClaim => watch_kind::<SandboxClaim>(client),
            Kind::SandboxWarmPool => watch_kind::<SandboxWarmPool>(client),
        }
    }

    fn create(&self, object: Object) -> BoxFuture<'_, Result<Object, WriteError>> {
        Box::pin(async move {
            let ns = object.namespace().to_owned();
            let w = &self.writer;
            match object {
                Object::Sandbox(o) => wrap(w.create(&ns, &o).await),
                Object::SandboxTemplate(o) => wrap(w.create(&ns, &o).await),
                Object::SandboxClaim(o) => wrap(w.create(&ns, &o).await),
                Object::SandboxWarmPool(o) => wrap(w.create(&ns, &o).await),
            }
        })
    }

    fn patch<'a>(
        &'a self,
        kind: Kind,
        namespace: &'a str,
        name: &'a str,
        part: Part,
        patch: &'a Value,
    ) -> BoxFuture<'a, Result<Object, WriteError>> {
        Box::pin(async move {
            match kind {
                Kind::Sandbox => {
                    self.patch_kind::<Sandbox>(namespace, name, part, patch)
                        .await
                }
                Kind::SandboxTemplate => {
                    self.patch_kind::<SandboxTemplate>(namespace, name, part, patch)
                        .await
                }
                Kind::SandboxClaim => {
                    self.patch_kind::<SandboxClaim>(namespace, name, part, patch)
                        .await
                }
                Kind::SandboxWarmPool => {
                    self.patch_kind::<SandboxWarmPool>(namespace, name, part, patch)
                        .await
                }
            }
        })
    }

    fn delete<'a>(
        &'a self,
        kind: Kind,
        namespace: &'a str,
        target: &'a ObjectRef,
        propagation: Option<Propagation>,
    ) -> BoxFuture<'a, Result<(), WriteError>> {
        Box::pin(async move {
            let w = &self.writer;
            match kind {
                Kind::Sandbox => w.delete::<Sandbox>(namespace, target, propagation).await,
                Kind::SandboxTemplate => {
                    w.delete::<SandboxTemplate>(namespace, target, propagation)
                        .await
                }
                Kind::SandboxClaim => {
                    w.delete::<SandboxClaim>(namespace, target, propagation)
                        .await
                }
                Kind::SandboxWarmPool => {
                    w.delete::<SandboxWarmPool>(namespace, target, propagation)
                        .await
                }
            }
        })
    }
}
