//! Kubernetes test support: an in-memory API server ([`api_server::FakeApiServer`]) for
//! scenario tests and benchmarks, and a scripted one ([`scripted`]) for tests that assert each
//! call.

pub mod api_server;
pub mod cluster;
pub mod rbac;
pub mod scripted;

pub use api_server::{ApiCosts, Converter, FakeApiServer, RequestRecord};

use std::sync::Arc;

/// A [`FakeApiServer`] that stores the agent-sandbox groups in `v1beta1` and serves `v1alpha1`
/// through paddock's own conversion webhook code (`paddock_webhook::convert::review`), as a
/// cluster with paddock's CRDs does.
pub fn converting_api_server() -> FakeApiServer {
    FakeApiServer::new().with_conversion(
        &[
            (paddock_api::names::CORE_GROUP, "v1beta1"),
            (paddock_api::names::EXTENSIONS_GROUP, "v1beta1"),
        ],
        paddock_conversion(),
    )
}

/// paddock's conversion webhook as a [`Converter`]: one ConversionReview per object.
pub fn paddock_conversion() -> Converter {
    Arc::new(|object, desired| {
        let review = serde_json::json!({
            "apiVersion": "apiextensions.k8s.io/v1", "kind": "ConversionReview",
            "request": {"uid": "fake", "desiredAPIVersion": desired, "objects": [object]}
        });
        let body = serde_json::to_vec(&review).map_err(|e| e.to_string())?;
        let answer = paddock_webhook::convert::review(&body).map_err(|e| e.to_string())?;
        let answer = serde_json::to_value(answer).map_err(|e| e.to_string())?;
        if answer["response"]["result"]["status"] != "Success" {
            return Err(answer["response"]["result"]["message"]
                .as_str()
                .unwrap_or("conversion failed")
                .to_owned());
        }
        answer["response"]["convertedObjects"][0]
            .as_object()
            .map(|o| serde_json::Value::Object(o.clone()))
            .ok_or_else(|| "no converted object".to_owned())
    })
}
