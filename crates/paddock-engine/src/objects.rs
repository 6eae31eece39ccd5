//! The control core's [`Objects`] port on the embedded store: the four kinds as typed objects,
//! decoded once where they leave the store and encoded once where they enter it.

use std::sync::Arc;

use paddock_api::kinds::Kind;
use paddock_api::stored::Object;
use paddock_control::ports::{BoxFuture, BoxStream, Objects, Part, WatchEvent, WriteError};
use paddock_plan::outcome::{FailureKind, ObjectRef, Propagation};
use paddock_store::{
    DeleteOptions, ObjectStore, Preconditions, PropagationPolicy, StoreError, WatchEventType,
    WatchOptions, WatchStart,
};
use serde_json::Value;

use crate::resources::resource;
use crate::store_errors::failure_kind;

/// Where a watch of one kind is.
enum Phase {
    /// (Re)list.
    List,
    /// Watch from this revision.
    Watch(String),
    /// Following the store's change feed.
    Watching(paddock_store::WatchStream),
}

/// How long to wait before listing again after a failed list.
const RELIST_PAUSE: std::time::Duration = std::time::Duration::from_millis(500);

/// The four kinds in the embedded store.
#[derive(Debug, Clone)]
pub struct StoreObjects {
    store: Arc<dyn ObjectStore>,
}

impl StoreObjects {
    /// The port over `store`.
    pub fn new(store: Arc<dyn ObjectStore>) -> Self {
        Self { store }
    }
}

fn write_error(e: &StoreError) -> WriteError {
    WriteError::new(failure_kind(e), e.to_string())
}

/// Decodes a stored object of `kind`.
///
/// # Errors
/// The stored JSON does not fit the kind (written by something other than paddock).
pub fn decode(kind: Kind, value: Value) -> Result<Object, WriteError> {
    Object::from_value(kind, value).map_err(|e| {
        WriteError::new(
            FailureKind::Other,
            format!("a stored {kind} does not decode: {e}"),
        )
    })
}

impl Objects for StoreObjects {
    fn watch(&self, kind: Kind) -> BoxStream<Result<WatchEvent, String>> {
        let state = (self.store.clone(), Phase::List);
        Box::pin(futures_util::stream::unfold(
            state,
            move |(store, mut phase)| async move {
                let res = resource(kind);
                loop {
                    match phase {
                        Phase::List => match store.list(res, Default::default()).await {
                            Ok(list) => {
                                let objects = list
                                    .items
                                    .into_iter()
                                    .filter_map(|v| decode(kind, v).ok())
                                    .collect();
                                let next = Phase::Watch(list.resource_version);
                                return Some((Ok(WatchEvent::Listed(objects)), (store, next)));
                            }
                            Err(e) => {
                                tokio::time::sleep(RELIST_PAUSE).await;
                                return Some((Err(format!("listing: {e}")), (store, Phase::List)));
                            }
                        },
                        Phase::Watch(rv) => {
                            let options = WatchOptions {
                                start: WatchStart::After(rv),
                                ..WatchOptions::default()
                            };
                            match store.watch(res, options).await {
                                Ok(w) => phase = Phase::Watching(w),
                                Err(e) => {
                                    return Some((
                                        Err(format!("watching: {e}")),
                                        (store, Phase::List),
                                    ));
                                }
                            }
                        }
                        Phase::Watching(mut watch) => match watch.next().await {
                            // The store closed.
                            None => return None,
                            Some(Err(StoreError::Gone { .. })) => phase = Phase::List,
                            Some(Err(e)) => {
                                return Some((
                                    Err(format!("watch ended: {e}")),
                                    (store, Phase::List),
                                ));
                            }
                            Some(Ok(event)) => {
                                let next = Phase::Watching(watch);
                                let item = decode(kind, event.object)
                                    .map(|object| match event.event_type {
                                        WatchEventType::Deleted => WatchEvent::Deleted(object),
                                        WatchEventType::Added | WatchEventType::Modified => {
                                            WatchEvent::Applied(object)
                                        }
                                    })
                                    .map_err(|e| e.message);
                                return Some((item, (store, next)));
                            }
                        },
                    }
                }
            },
        ))
    }

    fn create(&self, object: Object) -> BoxFuture<'_, Result<Object, WriteError>> {
        Box::pin(async move {
            let kind = object.kind();
            let created = self
                .store
                .create(resource(kind), object.to_value())
                .await
                .map_err(|e| write_error(&e))?;
            decode(kind, created)
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
            let res = resource(kind);
            let updated = match part {
                Part::Main => self.store.patch(res, namespace, name, patch.clone()).await,
                Part::Status => {
                    self.store
                        .patch_status(res, namespace, name, patch.clone())
                        .await
                }
            }
            .map_err(|e| write_error(&e))?;
            decode(kind, updated)
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
            let options = DeleteOptions {
                propagation_policy: propagation.map(|p| match p {
                    Propagation::Background => PropagationPolicy::Background,
                    Propagation::Foreground => PropagationPolicy::Foreground,
                }),
                preconditions: Preconditions {
                    uid: target.uid.clone(),
                    resource_version: target.resource_version.clone(),
                },
            };
            self.store
                .delete(resource(kind), namespace, &target.name, options)
                .await
                .map(drop)
                .map_err(|e| write_error(&e))
        })
    }
}
