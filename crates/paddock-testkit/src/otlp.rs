//! An in-process OTLP/gRPC trace collector on loopback, for tests of `--enable-tracing`.

use std::sync::{Arc, Mutex};

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};

/// Runs `test` in a fresh multi-threaded runtime with a collector on loopback and the standard
/// OTLP environment (`OTEL_EXPORTER_OTLP_ENDPOINT`, a 200 ms batch delay) pointing at it. Call
/// it from a plain `#[test]`, the only one of its test binary: the environment is set before
/// any thread starts, and a process has one global tracer provider.
///
/// # Panics
/// No loopback port, or no runtime.
pub fn with_collector<F, Fut>(test: F)
where
    F: FnOnce(Collector) -> Fut,
    Fut: Future<Output = ()>,
{
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    // SAFETY: no other thread runs yet (the runtime is built below); the exporter reads these
    // standard variables, as it does in a deployment.
    #[allow(unsafe_code)]
    unsafe {
        std::env::set_var("OTEL_EXPORTER_OTLP_ENDPOINT", format!("http://{addr}"));
        std::env::set_var("OTEL_BSP_SCHEDULE_DELAY", "200");
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async move {
        let collector = Collector::default();
        collector.serve(listener);
        test(collector).await;
    });
}

/// One received span.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReceivedSpan {
    /// The resource's `service.name`.
    pub service: String,
    /// The span's name.
    pub name: String,
    /// Its trace id, lower-case hex.
    pub trace_id: String,
    /// Its string attributes, `key=value`.
    pub attributes: Vec<String>,
}

/// The spans received so far.
#[derive(Clone, Debug, Default)]
pub struct Collector {
    spans: Arc<Mutex<Vec<ReceivedSpan>>>,
}

impl Collector {
    /// Serves on `listener` (a std listener, so a test can bind before its runtime starts).
    ///
    /// # Panics
    /// The listener cannot be used.
    pub fn serve(&self, listener: std::net::TcpListener) {
        listener.set_nonblocking(true).expect("nonblocking");
        let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
        let service = TraceServiceServer::new(self.clone());
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener)),
        );
    }

    /// What has arrived.
    ///
    /// # Panics
    /// A poisoned lock.
    pub fn spans(&self) -> Vec<ReceivedSpan> {
        self.spans.lock().expect("lock").clone()
    }
}

fn text(v: Option<&opentelemetry_proto::tonic::common::v1::AnyValue>) -> String {
    use opentelemetry_proto::tonic::common::v1::any_value::Value;
    match v.and_then(|v| v.value.as_ref()) {
        Some(Value::StringValue(s)) => s.clone(),
        Some(Value::IntValue(i)) => i.to_string(),
        Some(other) => format!("{other:?}"),
        None => String::new(),
    }
}

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let mut spans = self
            .spans
            .lock()
            .map_err(|_| tonic::Status::internal("lock"))?;
        for rs in request.into_inner().resource_spans {
            let service = rs
                .resource
                .iter()
                .flat_map(|r| &r.attributes)
                .find(|kv| kv.key == "service.name")
                .map(|kv| text(kv.value.as_ref()))
                .unwrap_or_default();
            for ss in rs.scope_spans {
                for span in ss.spans {
                    spans.push(ReceivedSpan {
                        service: service.clone(),
                        trace_id: span.trace_id.iter().map(|b| format!("{b:02x}")).collect(),
                        attributes: span
                            .attributes
                            .iter()
                            .map(|kv| format!("{}={}", kv.key, text(kv.value.as_ref())))
                            .collect(),
                        name: span.name,
                    });
                }
            }
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}
