//! The `paddock` command: sandboxes for AI agents.
//!
//! This file only declares the command line and dispatches; each subcommand lives in `cmd/`.

mod cmd;
mod input;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

/// Sandboxes for AI agents: run untrusted code in isolated sandboxes, on one machine or on
/// Kubernetes, through the Agent Sandbox API (Sandbox, SandboxTemplate, SandboxClaim,
/// SandboxWarmPool).
#[derive(Debug, Parser)]
#[command(
    name = "paddock",
    version,
    propagate_version = true,
    max_term_width = 100
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Check manifests of the four kinds (either version) and print every problem with its
    /// field path and line.
    ///
    /// Exits 0 when every object is valid, 1 otherwise. Accepts files, directories (their
    /// *.yaml, *.yml and *.json files) and `-` for standard input; a file may hold several
    /// documents separated by `---`.
    #[command(
        after_help = "Examples:\n  paddock validate -f examples/v1alpha1\n  kubectl get sandboxes -o yaml | paddock validate -f -"
    )]
    Validate {
        /// A file, a directory or `-` (standard input). Repeatable.
        #[arg(short = 'f', long = "filename", value_name = "FILE", required = true)]
        files: Vec<PathBuf>,
        /// Print only problems, not the objects that are valid.
        #[arg(short, long)]
        quiet: bool,
    },
    /// Convert manifests between v1alpha1 and v1beta1 (for moving between versions: kubectl-ai
    /// and Sympozium still write v1alpha1).
    ///
    /// Objects are validated first; documents already in the target version are printed
    /// unchanged. Fields the target version cannot express are dropped unless --lossless keeps
    /// them in the `api.agents.x-k8s.io/<version>-<kind>-state` annotation, so converting back
    /// gives the original exactly.
    #[command(after_help = "Example:\n  paddock convert -f sandbox.yaml --to v1beta1")]
    Convert {
        /// A file, a directory or `-` (standard input). Repeatable.
        #[arg(short = 'f', long = "filename", value_name = "FILE", required = true)]
        files: Vec<PathBuf>,
        /// The version to convert to.
        #[arg(long, value_enum)]
        to: TargetVersion,
        /// Keep what the target version cannot express in annotations, for a lossless round trip.
        #[arg(long)]
        lossless: bool,
        /// Output format.
        #[arg(short, long, value_enum, default_value_t = Format::Yaml)]
        output: Format,
    },
    /// Run paddock on this machine: objects in an embedded database, sandboxes under gVisor,
    /// the REST API on 127.0.0.1:7878.
    ///
    /// Sandboxes survive a restart of the server: they are re-attached, not restarted.
    Serve(Box<cmd::serve::ServeArgs>),
    /// Run the in-sandbox agent: exec, processes and files over HTTP, WebSocket and gRPC.
    ///
    /// This is the server inside every sandbox (also shipped as the static `paddock-agent`
    /// binary). It speaks upstream's python-runtime endpoints, sandboxd's REST and gRPC APIs and
    /// paddock's own process API; see docs/agent-api.md.
    Agent(Box<paddock_agent::AgentArgs>),
    /// Print the CustomResourceDefinitions of the four kinds.
    ///
    /// Both versions are served and v1beta1 is stored. By default the CRDs name the controller's
    /// conversion webhook (the service `paddock controller` serves, which injects its CA bundle
    /// at start-up); --no-conversion leaves the stanza out.
    #[command(
        after_help = "Examples:\n  paddock crds | kubectl apply --server-side -f -\n  paddock crds --out-dir deploy/crds"
    )]
    Crds {
        /// Leave out the conversion webhook stanza.
        #[arg(long)]
        no_conversion: bool,
        /// Name of the webhook Service.
        #[arg(long, default_value = "agent-sandbox-webhook-service")]
        webhook_service: String,
        /// Namespace of the webhook Service.
        #[arg(long, default_value = "agent-sandbox-system")]
        webhook_namespace: String,
        /// Write one file per CRD into this directory instead of printing them.
        #[arg(long, value_name = "DIR")]
        out_dir: Option<PathBuf>,
    },
}

/// An API version to convert to.
#[derive(Debug, Clone, Copy, ValueEnum)]
enum TargetVersion {
    V1alpha1,
    V1beta1,
}

/// Output format of objects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Format {
    Yaml,
    Json,
}

/// Runs an async command on a multi-threaded runtime.
fn run_async(fut: impl Future<Output = anyhow::Result<ExitCode>>) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(fut)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Validate { files, quiet } => cmd::validate::run(&files, quiet),
        Command::Convert {
            files,
            to,
            lossless,
            output,
        } => {
            let to = match to {
                TargetVersion::V1alpha1 => paddock_api::kinds::Version::V1alpha1,
                TargetVersion::V1beta1 => paddock_api::kinds::Version::V1beta1,
            };
            cmd::convert::run(&files, to, lossless, output == Format::Json)
        }
        Command::Serve(args) => run_async(cmd::serve::run(*args)),
        Command::Agent(args) => run_async(async move {
            paddock_agent::run(*args).await?;
            Ok(ExitCode::SUCCESS)
        }),
        Command::Crds {
            no_conversion,
            webhook_service,
            webhook_namespace,
            out_dir,
        } => cmd::crds::run(
            no_conversion,
            webhook_service,
            webhook_namespace,
            out_dir.as_deref(),
        ),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("paddock: {e:#}");
            ExitCode::from(2)
        }
    }
}
