//! Logging flags for the Kubernetes commands (`paddock controller`, `paddock gateway`).

use clap::ValueEnum;

/// Logging flags, shared by the controller and the gateway.
#[derive(Clone, Debug, clap::Args)]
pub struct LogArgs {
    /// Log filter (tracing EnvFilter syntax), e.g. `info` or `paddock_kube=debug`.
    #[arg(
        long = "log",
        value_name = "FILTER",
        env = "PADDOCK_LOG",
        default_value = "info"
    )]
    pub log: String,

    /// Log format: one JSON object per line, or human-readable text.
    #[arg(long, value_enum, default_value_t = LogFormat::Json)]
    pub log_format: LogFormat,
}

impl LogArgs {
    /// Logs to standard error with these settings; keeps a subscriber already installed (the
    /// CLI's). A filter that does not parse falls back to `info`.
    pub fn init(&self) {
        let filter = tracing_subscriber::EnvFilter::try_new(&self.log)
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
        let builder = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr);
        let _ = match self.log_format {
            LogFormat::Json => builder.json().flatten_event(true).try_init(),
            LogFormat::Text => builder.try_init(),
        };
    }
}

/// How logs are written to standard error.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// One JSON object per line (for log collectors).
    Json,
    /// Human-readable lines.
    Text,
}
