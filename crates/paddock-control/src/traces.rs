//! OpenTelemetry spans of the reconcile loops, with upstream's names (contract §11.9): each
//! reconcile continues the trace carried by the object's `opentelemetry.io/trace-context`
//! annotation (W3C TraceContext as JSON), so a claim's trace spans the SDK that made it, the
//! controller and the gateway. Spans go to the global tracer provider: a no-op unless the tier
//! installed one (`--enable-tracing`).

use opentelemetry::trace::{
    Span as _, SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState, Tracer as _,
};
use opentelemetry::{Context, KeyValue, global};
use paddock_api::names::TRACE_CONTEXT;

use crate::ports::Controller;

/// The tracer's name, as upstream's.
pub const TRACER: &str = "agent-sandbox-controller";

/// The span of one reconcile of `controller`, or `None` where upstream has none (warm pools).
pub fn reconcile_span_name(controller: Controller) -> Option<&'static str> {
    match controller {
        Controller::Sandbox => Some("ReconcileSandbox"),
        Controller::Claim => Some("ReconcileSandboxClaim"),
        Controller::Template => Some("ReconcileSandboxTemplate"),
        Controller::Pool => None,
    }
}

/// Parses a W3C `traceparent` (`00-<32 hex>-<16 hex>-<2 hex>`).
pub fn parse_traceparent(value: &str) -> Option<SpanContext> {
    let mut parts = value.trim().split('-');
    let (Some(version), Some(trace), Some(span), Some(flags)) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return None;
    };
    if version.len() != 2
        || version == "ff"
        || trace.len() != 32
        || span.len() != 16
        || flags.len() != 2
    {
        return None;
    }
    if version == "00" && parts.next().is_some() {
        return None;
    }
    let lower_hex = |s: &str| {
        s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    if ![version, trace, span, flags].iter().all(|s| lower_hex(s)) {
        return None;
    }
    let trace_id = TraceId::from_hex(trace).ok()?;
    let span_id = SpanId::from_hex(span).ok()?;
    let flags = u8::from_str_radix(flags, 16).ok()?;
    let sc = SpanContext::new(
        trace_id,
        span_id,
        TraceFlags::new(flags & 1),
        true,
        TraceState::default(),
    );
    sc.is_valid().then_some(sc)
}

/// The parent context an object's trace-context annotation names, if any.
pub fn parent_of(annotations: Option<&std::collections::BTreeMap<String, String>>) -> Context {
    annotations
        .and_then(|a| a.get(TRACE_CONTEXT))
        .and_then(|json| serde_json::from_str::<serde_json::Value>(json).ok())
        .and_then(|v| {
            v.get("traceparent")
                .and_then(|t| t.as_str())
                .and_then(parse_traceparent)
        })
        .map_or_else(Context::new, |sc| {
            Context::new().with_remote_span_context(sc)
        })
}

/// The annotation's value for a context: `{"traceparent": "00-…"}`, or `None` when the
/// context holds no valid span (tracing off).
pub fn carrier(cx: &Context) -> Option<String> {
    let span = cx.span();
    let sc = span.span_context();
    sc.is_valid().then(|| {
        serde_json::json!({
            "traceparent": format!(
                "00-{}-{}-{:02x}",
                sc.trace_id(),
                sc.span_id(),
                sc.trace_flags().to_u8()
            )
        })
        .to_string()
    })
}

/// Starts the span of one reconcile under the object's trace; ends when the context drops.
pub fn start_reconcile(
    controller: Controller,
    namespace: &str,
    name: &str,
    annotations: Option<&std::collections::BTreeMap<String, String>>,
    labels: Option<&std::collections::BTreeMap<String, String>>,
) -> Option<Context> {
    let span_name = reconcile_span_name(controller)?;
    let tracer = global::tracer(TRACER);
    let parent = parent_of(annotations);
    let mut attributes = Vec::new();
    if controller == Controller::Sandbox {
        attributes.push(KeyValue::new("sandbox.name", name.to_owned()));
        attributes.push(KeyValue::new("sandbox.namespace", namespace.to_owned()));
    }
    if let Some(created_by) = labels.and_then(|l| l.get(paddock_api::names::CREATED_BY)) {
        attributes.push(KeyValue::new(
            paddock_api::names::CREATED_BY,
            created_by.clone(),
        ));
    }
    let span = tracer
        .span_builder(span_name)
        .with_attributes(attributes)
        .start_with_context(&tracer, &parent);
    Some(parent.with_span(span))
}

/// Runs a child span `name` of `cx` around nothing but a mark (upstream's `reconcilePod`,
/// `reconcilePVCs`), with an event and its attributes when given.
pub fn child(cx: &Context, name: &'static str, event: Option<(&'static str, Vec<KeyValue>)>) {
    let tracer = global::tracer(TRACER);
    let mut span = tracer.start_with_context(name, cx);
    if let Some((event, attributes)) = event {
        span.add_event(event, attributes);
    }
    span.end();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparents_are_parsed_as_w3c_says() {
        let sc = parse_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
            .expect("valid");
        assert_eq!(
            sc.trace_id().to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert!(sc.is_sampled() && sc.is_remote());
        for bad in [
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x",
        ] {
            assert!(parse_traceparent(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn the_annotation_round_trips_through_a_context() {
        let mut a = std::collections::BTreeMap::new();
        a.insert(
            TRACE_CONTEXT.to_owned(),
            r#"{"traceparent":"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}"#
                .to_owned(),
        );
        let cx = parent_of(Some(&a));
        assert_eq!(
            carrier(&cx).as_deref(),
            Some(r#"{"traceparent":"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}"#)
        );
        assert_eq!(carrier(&parent_of(None)), None);
    }
}
