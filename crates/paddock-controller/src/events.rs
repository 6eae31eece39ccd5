//! The control core's [`Events`] port on the API server: one `events.k8s.io` recorder per
//! controller, with upstream's reporting-controller names. Recording is best effort: a failure
//! is logged, never retried.

use std::fmt::Debug;

use k8s_openapi::api::core::v1::ObjectReference;
use kube::Client;
use kube::runtime::events::{Event as KubeEvent, EventType as KubeEventType, Recorder, Reporter};
use paddock_control::ports::{BoxFuture, Controller, Events};
use paddock_plan::outcome::{Event, EventType};

/// The four recorders.
#[derive(Clone)]
pub struct RecorderEvents {
    sandbox: Recorder,
    template: Recorder,
    pool: Recorder,
    claim: Recorder,
}

impl Debug for RecorderEvents {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecorderEvents").finish_non_exhaustive()
    }
}

impl RecorderEvents {
    /// Recorders writing through `client`; `instance` is this replica (its pod name).
    pub fn new(client: &Client, instance: &str) -> Self {
        let make = |controller: Controller| {
            Recorder::new(
                client.clone(),
                Reporter {
                    controller: controller.reporter().to_owned(),
                    instance: Some(instance.to_owned()),
                },
            )
        };
        Self {
            sandbox: make(Controller::Sandbox),
            template: make(Controller::Template),
            pool: make(Controller::Pool),
            claim: make(Controller::Claim),
        }
    }
}

impl Events for RecorderEvents {
    fn record<'a>(
        &'a self,
        controller: Controller,
        regarding: &'a ObjectReference,
        event: &'a Event,
    ) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            let recorder = match controller {
                Controller::Sandbox => &self.sandbox,
                Controller::Template => &self.template,
                Controller::Pool => &self.pool,
                Controller::Claim => &self.claim,
            };
            let ev = KubeEvent {
                type_: match event.type_ {
                    EventType::Normal => KubeEventType::Normal,
                    EventType::Warning => KubeEventType::Warning,
                },
                reason: event.reason.clone(),
                note: Some(event.note.clone()),
                action: event.action.clone(),
                secondary: None,
            };
            if let Err(e) = recorder.publish(&ev, regarding).await {
                tracing::warn!(reason = %event.reason, error = %e, "cannot record event");
            }
        })
    }
}
