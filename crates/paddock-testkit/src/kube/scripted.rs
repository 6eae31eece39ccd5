//! A scripted API server: a kube client whose server is a tower-test mock the test answers
//! request by request (as kube-rs's controller-rs does), so a test asserts every call exactly.
//! Also [`authz`], which reads a request as RBAC sees it.

use std::time::Duration;

use http::{Request, Response};
use kube::Client;
use kube::client::Body;
use serde_json::Value;
use tower_test::mock::{self, Handle, SendResponse};

/// The scripted API server's handle.
pub type ApiHandle = Handle<Request<Body>, Response<Body>>;

/// A client whose every request the test answers through the returned handle.
pub fn scripted_client() -> (Client, ApiHandle) {
    let (service, handle) = mock::pair::<Request<Body>, Response<Body>>();
    (Client::new(service, "default"), handle)
}

/// One request the test received, with a way to answer it.
#[derive(Debug)]
pub struct Received {
    /// `GET`, `POST`, …
    pub method: String,
    /// Path without the query.
    pub path: String,
    /// The query string.
    pub query: String,
    /// The JSON body (`Null` when empty).
    pub body: Value,
    responder: SendResponse<Response<Body>>,
}

impl Received {
    /// Answers with `status` and a JSON body.
    pub fn respond(self, status: u16, body: &Value) {
        let resp = Response::builder()
            .status(status)
            .header("content-type", "application/json")
            .body(Body::from(serde_json::to_vec(body).expect("json")))
            .expect("response");
        self.responder.send_response(resp);
    }

    /// Answers 200 with `body`.
    pub fn ok(self, body: &Value) {
        self.respond(200, body);
    }

    /// Answers with a Kubernetes Status error.
    pub fn fail(self, code: u16, reason: &str) {
        let body = serde_json::json!({
            "kind": "Status", "apiVersion": "v1", "status": "Failure",
            "message": format!("{reason}: scripted failure"), "reason": reason, "code": code
        });
        self.respond(code, &body);
    }
}

/// Waits (at most 5 s) for the next request and checks its method and path.
pub async fn expect(handle: &mut ApiHandle, method: &str, path: &str) -> Received {
    let (req, responder) = tokio::time::timeout(Duration::from_secs(5), handle.next_request())
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {method} {path}"))
        .unwrap_or_else(|| panic!("client gone while waiting for {method} {path}"));
    let (parts, body) = req.into_parts();
    let bytes = http_body_util::BodyExt::collect(body)
        .await
        .expect("body")
        .to_bytes();
    let body: Value = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes).expect("json body")
    };
    assert_eq!(
        (parts.method.as_str(), parts.uri.path()),
        (method, path),
        "unexpected request; body: {body}"
    );
    Received {
        method: parts.method.to_string(),
        path: parts.uri.path().to_owned(),
        query: parts.uri.query().unwrap_or_default().to_owned(),
        body,
        responder,
    }
}

/// Asserts no further request arrives within 100 ms.
pub async fn expect_no_more(handle: &mut ApiHandle) {
    if let Ok(Some((req, _))) =
        tokio::time::timeout(Duration::from_millis(100), handle.next_request()).await
    {
        panic!(
            "unexpected extra request {} {}",
            req.method(),
            req.uri().path()
        );
    }
}

/// `obj` with `metadata.resourceVersion` and `uid` set, as the apiserver returns a created object.
pub fn stored(mut obj: Value, uid: &str, rv: &str) -> Value {
    obj["metadata"]["uid"] = Value::String(uid.to_owned());
    obj["metadata"]["resourceVersion"] = Value::String(rv.to_owned());
    obj
}

/// Decodes a typed object from JSON.
pub fn typed<T: serde::de::DeserializeOwned>(v: Value) -> T {
    serde_json::from_value(v).expect("typed object")
}

/// (apiGroup, resource, verb, namespace) of a recorded `METHOD path[?watch]`, as RBAC sees it;
/// `None` for non-resource URLs (`/version`, readable by everyone).
pub fn authz(request: &str) -> Option<(String, String, String, Option<String>)> {
    let (method, rest) = request.split_once(' ').expect("method");
    let (path, watch) = match rest.strip_suffix("?watch") {
        Some(p) => (p, true),
        None => (rest, false),
    };
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (group, rest) = match parts.as_slice() {
        ["api", _, rest @ ..] => ("", rest),
        ["apis", g, _, rest @ ..] => (*g, rest),
        _ => return None,
    };
    let (ns, rest) = match rest {
        ["namespaces", ns, rest @ ..] if !rest.is_empty() => (Some((*ns).to_owned()), rest),
        _ => (None, rest),
    };
    let (resource, named) = match rest {
        [r] => ((*r).to_owned(), false),
        [r, _] => ((*r).to_owned(), true),
        [r, _, sub] => (format!("{r}/{sub}"), true),
        _ => panic!("unexpected path {path}"),
    };
    let verb = match (method, named, watch) {
        ("GET", _, true) => "watch",
        ("GET", true, _) => "get",
        ("GET", false, _) => "list",
        ("POST", ..) => "create",
        ("PATCH", ..) => "patch",
        ("PUT", ..) => "update",
        ("DELETE", ..) => "delete",
        _ => panic!("unexpected method {method}"),
    };
    Some((group.to_owned(), resource, verb.to_owned(), ns))
}
