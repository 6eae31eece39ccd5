//! ConversionReview handling (apiextensions.k8s.io `v1` and `v1beta1`, identical shapes): each
//! object is parsed as its kind and version, converted with paddock-api's lossless conversion
//! (`AnyObject::convert`, which keeps the `…-state` annotations that make round trips exact)
//! and returned in request order. A bad object fails the whole review with a message naming
//! it, as the API server expects.

use paddock_api::any::AnyObject;
use paddock_api::kinds::{Kind, Version, split_api_version};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A ConversionReview as sent by the API server.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConversionReview {
    /// `apiextensions.k8s.io/v1` or `apiextensions.k8s.io/v1beta1`.
    pub api_version: String,
    /// `ConversionReview`.
    pub kind: String,
    /// The request.
    pub request: Option<ConversionRequest>,
}

/// The request part of a review.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConversionRequest {
    /// Echoed in the response.
    pub uid: String,
    /// `<group>/<version>` to convert to.
    #[serde(rename = "desiredAPIVersion")]
    pub desired_api_version: String,
    /// The objects.
    #[serde(default)]
    pub objects: Vec<Value>,
}

/// The response review.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ConversionReviewResponse {
    /// Same as the request's.
    pub api_version: String,
    /// `ConversionReview`.
    pub kind: String,
    /// The response.
    pub response: ConversionResponse,
}

/// The response part of a review.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ConversionResponse {
    /// The request's UID.
    pub uid: String,
    /// Converted objects, in request order (empty on failure).
    pub converted_objects: Vec<Value>,
    /// `Success` or `Failure` with a message.
    pub result: ConversionResult,
}

/// `metav1.Status` as a conversion result.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
pub struct ConversionResult {
    /// `Success` or `Failure`.
    pub status: String,
    /// Why it failed.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
}

/// Why a review could not be answered at all (HTTP 400).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ReviewError {
    /// The body is not a ConversionReview.
    #[error("the request body is not a ConversionReview: {0}")]
    Malformed(String),
    /// The review has no request.
    #[error("the ConversionReview has no request")]
    NoRequest,
}

/// Answers a ConversionReview body.
///
/// # Errors
/// [`ReviewError`] when the body is not a ConversionReview with a request; a failed
/// conversion is a `Failure` result inside a well-formed response.
pub fn review(body: &[u8]) -> Result<ConversionReviewResponse, ReviewError> {
    let review: ConversionReview =
        serde_json::from_slice(body).map_err(|e| ReviewError::Malformed(e.to_string()))?;
    if review.kind != "ConversionReview" {
        return Err(ReviewError::Malformed(format!("kind is {:?}", review.kind)));
    }
    let request = review.request.ok_or(ReviewError::NoRequest)?;
    let response = match convert_all(&request.objects, &request.desired_api_version) {
        Ok(objects) => ConversionResponse {
            uid: request.uid,
            converted_objects: objects,
            result: ConversionResult {
                status: "Success".to_owned(),
                message: String::new(),
            },
        },
        Err(message) => ConversionResponse {
            uid: request.uid,
            converted_objects: Vec::new(),
            result: ConversionResult {
                status: "Failure".to_owned(),
                message,
            },
        },
    };
    Ok(ConversionReviewResponse {
        api_version: review.api_version,
        kind: "ConversionReview".to_owned(),
        response,
    })
}

fn convert_all(objects: &[Value], desired: &str) -> Result<Vec<Value>, String> {
    let (desired_group, desired_version) = split_api_version(desired);
    let to = Version::parse(desired_version).ok_or_else(|| {
        format!("desiredAPIVersion {desired:?} is not a served version (v1alpha1, v1beta1)")
    })?;
    objects
        .iter()
        .enumerate()
        .map(|(i, obj)| convert_one(obj, desired_group, to).map_err(|e| format!("object {i}: {e}")))
        .collect()
}

fn convert_one(obj: &Value, desired_group: &str, to: Version) -> Result<Value, String> {
    let kind_name = obj.get("kind").and_then(Value::as_str).unwrap_or_default();
    let api_version = obj
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let name = obj
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("<unnamed>");
    let kind = Kind::from_kind(kind_name)
        .ok_or_else(|| format!("{name}: kind {kind_name:?} is not one of Sandbox, SandboxTemplate, SandboxClaim, SandboxWarmPool"))?;
    let (group, version) = split_api_version(api_version);
    if group != kind.group() || desired_group != kind.group() {
        return Err(format!(
            "{kind_name} {name}: group {group:?} → {desired_group:?} does not match the kind's group {:?}",
            kind.group()
        ));
    }
    let from = Version::parse(version).ok_or_else(|| {
        format!("{kind_name} {name}: apiVersion {api_version:?} is not a served version")
    })?;
    let typed = AnyObject::from_value(kind, from, obj.clone())
        .map_err(|e| format!("{kind_name} {name}: cannot read as {api_version}: {e}"))?;
    Ok(typed.convert(to).to_value())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn review_of(desired: &str, objects: Vec<Value>) -> Vec<u8> {
        serde_json::to_vec(&json!({
            "apiVersion": "apiextensions.k8s.io/v1",
            "kind": "ConversionReview",
            "request": {"uid": "u-1", "desiredAPIVersion": desired, "objects": objects}
        }))
        .expect("json")
    }

    fn alpha_sandbox() -> Value {
        json!({
            "apiVersion": "agents.x-k8s.io/v1alpha1",
            "kind": "Sandbox",
            "metadata": {"name": "sb", "namespace": "ns", "uid": "x", "resourceVersion": "7"},
            "spec": {"replicas": 0, "podTemplate": {"spec": {"containers": [{"name": "c", "image": "busybox"}]}}}
        })
    }

    #[test]
    fn sandbox_converts_up_and_back_exactly() {
        let up =
            review(&review_of("agents.x-k8s.io/v1beta1", vec![alpha_sandbox()])).expect("review");
        assert_eq!(up.response.result.status, "Success");
        assert_eq!(up.response.uid, "u-1");
        let beta = &up.response.converted_objects[0];
        assert_eq!(beta["apiVersion"], "agents.x-k8s.io/v1beta1");
        assert_eq!(beta["spec"]["operatingMode"], "Suspended");
        assert_eq!(beta["metadata"]["resourceVersion"], "7");
        let down =
            review(&review_of("agents.x-k8s.io/v1alpha1", vec![beta.clone()])).expect("review");
        let alpha = &down.response.converted_objects[0];
        assert_eq!(alpha["spec"]["replicas"], 0);
        assert_eq!(alpha["apiVersion"], "agents.x-k8s.io/v1alpha1");
    }

    #[test]
    fn v1beta1_reviews_are_answered_in_kind() {
        let body = serde_json::to_vec(&json!({
            "apiVersion": "apiextensions.k8s.io/v1beta1",
            "kind": "ConversionReview",
            "request": {"uid": "u-2", "desiredAPIVersion": "agents.x-k8s.io/v1beta1", "objects": [alpha_sandbox()]}
        }))
        .expect("json");
        let r = review(&body).expect("review");
        assert_eq!(r.api_version, "apiextensions.k8s.io/v1beta1");
        assert_eq!(r.response.result.status, "Success");
    }

    #[test]
    fn unknown_kind_fails_the_review_with_its_name() {
        let obj = json!({"apiVersion": "agents.x-k8s.io/v1alpha1", "kind": "Gadget", "metadata": {"name": "g"}});
        let r = review(&review_of("agents.x-k8s.io/v1beta1", vec![obj])).expect("review");
        assert_eq!(r.response.result.status, "Failure");
        assert!(
            r.response.result.message.contains("Gadget"),
            "{}",
            r.response.result.message
        );
        assert!(r.response.converted_objects.is_empty());
    }

    #[test]
    fn malformed_body_is_rejected() {
        assert!(matches!(
            review(b"not json"),
            Err(ReviewError::Malformed(_))
        ));
        let no_request = serde_json::to_vec(
            &json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "ConversionReview"}),
        )
        .expect("json");
        assert_eq!(review(&no_request), Err(ReviewError::NoRequest));
    }
}
