//! OpenTelemetry spans of the gateway (with `--enable-tracing`): one `HTTP <method>` span per
//! request, continuing the W3C `traceparent` the client sent, with upstream's router
//! attributes (`http.method`, `http.target`, `sandbox.id`, `sandbox.namespace`,
//! `http.status_code`); its context goes on to the sandbox (routed requests) and into the
//! `opentelemetry.io/trace-context` annotation of the claims the gateway creates, so one trace
//! runs from the client through the gateway to the controller.

use std::collections::HashMap;

use http::HeaderMap;
use opentelemetry::propagation::{Extractor, Injector};
use opentelemetry::trace::{TraceContextExt, Tracer as _};
use opentelemetry::{Context, KeyValue, global};

/// The tracer's name.
pub const TRACER: &str = "sandbox-router";

/// The span context of one request, kept in the request's extensions.
#[derive(Clone, Debug)]
pub struct RequestTrace(pub Context);

struct HeaderExtractor<'a>(&'a HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(http::HeaderName::as_str).collect()
    }
}

struct HeaderInjector<'a>(&'a mut HeaderMap);

impl Injector for HeaderInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(name), Ok(value)) = (
            http::HeaderName::from_bytes(key.as_bytes()),
            http::HeaderValue::from_str(&value),
        ) {
            self.0.insert(name, value);
        }
    }
}

/// Starts the `HTTP <method>` span of a request under the client's `traceparent`, if any.
pub fn start(method: &str, target: &str, headers: &HeaderMap) -> Context {
    let parent = global::get_text_map_propagator(|p| p.extract(&HeaderExtractor(headers)));
    let tracer = global::tracer(TRACER);
    let span = tracer
        .span_builder(format!("HTTP {method}"))
        .with_attributes([
            KeyValue::new("http.method", method.to_owned()),
            KeyValue::new("http.target", target.to_owned()),
        ])
        .start_with_context(&tracer, &parent);
    parent.with_span(span)
}

/// Records the answer's status and ends the span.
pub fn finish(cx: &Context, status: u16) {
    let span = cx.span();
    span.set_attribute(KeyValue::new("http.status_code", i64::from(status)));
    span.end();
}

/// Adds the routed sandbox to the span.
pub fn routed_to(cx: &Context, namespace: &str, sandbox: &str) {
    let span = cx.span();
    span.set_attribute(KeyValue::new("sandbox.id", sandbox.to_owned()));
    span.set_attribute(KeyValue::new("sandbox.namespace", namespace.to_owned()));
}

/// Puts the span's context on a request to the sandbox (`traceparent`).
pub fn inject(cx: &Context, headers: &mut HeaderMap) {
    global::get_text_map_propagator(|p| p.inject_context(cx, &mut HeaderInjector(headers)));
}

/// The `opentelemetry.io/trace-context` annotation's value for the span: the W3C carrier as
/// JSON, or `None` when the span is not recording (tracing off).
pub fn annotation(cx: &Context) -> Option<String> {
    if !cx.span().span_context().is_valid() {
        return None;
    }
    let mut carrier: HashMap<String, String> = HashMap::new();
    global::get_text_map_propagator(|p| p.inject_context(cx, &mut carrier));
    (!carrier.is_empty()).then(|| serde_json::to_string(&carrier).unwrap_or_default())
}
