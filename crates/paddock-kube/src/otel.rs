//! `--enable-tracing` of the Kubernetes tier's processes: OpenTelemetry spans sent over
//! OTLP/gRPC, the exporter configured by the standard environment
//! (`OTEL_EXPORTER_OTLP_ENDPOINT` or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`, `_HEADERS`,
//! `_TIMEOUT`, ...), W3C TraceContext propagation, as upstream's controller and router do.

use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SdkTracerProvider;

/// The exporter could not be built.
#[derive(Debug, thiserror::Error)]
#[error("cannot start OpenTelemetry tracing: {0} (check OTEL_EXPORTER_OTLP_ENDPOINT)")]
pub struct TracingError(String);

/// The installed provider; flushes and stops on [`Tracing::shutdown`].
#[derive(Debug)]
pub struct Tracing {
    provider: SdkTracerProvider,
}

impl Tracing {
    /// Builds the OTLP exporter and installs the global tracer provider and the W3C
    /// propagator, with resource `service.name=<service>` (inside the Tokio runtime: the gRPC
    /// client needs it).
    ///
    /// # Errors
    /// The exporter cannot be built (a malformed endpoint): start-up fails, as upstream's does.
    pub fn install(service: &'static str) -> Result<Self, TracingError> {
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .build()
            .map_err(|e| TracingError(e.to_string()))?;
        let provider = SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(Resource::builder_empty().with_service_name(service).build())
            .build();
        opentelemetry::global::set_tracer_provider(provider.clone());
        opentelemetry::global::set_text_map_propagator(
            opentelemetry_sdk::propagation::TraceContextPropagator::new(),
        );
        tracing::info!(
            service,
            "OpenTelemetry tracing on (OTLP/gRPC, configured by OTEL_EXPORTER_OTLP_*)"
        );
        Ok(Self { provider })
    }

    /// Sends what is buffered and stops the exporter (blocks while it flushes).
    pub fn shutdown(self) {
        if let Err(e) = self.provider.shutdown() {
            tracing::warn!(error = %e, "flushing the last spans failed");
        }
    }
}
