//! `--enable-tracing`: OpenTelemetry spans of the reconcile loops sent over OTLP/gRPC, the
//! exporter configured by the standard environment (`OTEL_EXPORTER_OTLP_ENDPOINT` or
//! `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`, `_HEADERS`, `_TIMEOUT`, ...), resource
//! `service.name=agent-sandbox-controller`, as upstream's controller (contract §11.5, §11.9).

use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SdkTracerProvider;

use crate::error::ControllerError;

/// The installed provider; flushes and stops on [`Tracing::shutdown`].
#[derive(Debug)]
pub struct Tracing {
    provider: SdkTracerProvider,
}

impl Tracing {
    /// Builds the OTLP exporter and installs the global tracer provider (inside the Tokio
    /// runtime: the gRPC client needs it).
    ///
    /// # Errors
    /// The exporter cannot be built (a malformed endpoint): start-up fails, as upstream's does.
    pub fn install() -> Result<Self, ControllerError> {
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .build()
            .map_err(|e| ControllerError::Tracing(e.to_string()))?;
        let provider = SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(
                Resource::builder_empty()
                    .with_service_name(paddock_control::traces::TRACER)
                    .build(),
            )
            .build();
        opentelemetry::global::set_tracer_provider(provider.clone());
        tracing::info!("OpenTelemetry tracing on (OTLP/gRPC, configured by OTEL_EXPORTER_OTLP_*)");
        Ok(Self { provider })
    }

    /// Sends what is buffered and stops the exporter.
    pub fn shutdown(self) {
        if let Err(e) = self.provider.shutdown() {
            tracing::warn!(error = %e, "flushing the last spans failed");
        }
    }
}
