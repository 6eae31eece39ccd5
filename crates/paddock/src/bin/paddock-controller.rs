//! `paddock-controller`: the Kubernetes controller alone, for the small static container image
//! (`deploy/Dockerfile`). Same flags as `paddock controller`. The same binary serves the REST
//! gateway / sandbox-router with `paddock-controller gateway ...` (the flags of
//! `paddock gateway`) and the egress proxy with `paddock-controller egress ...`, so one image
//! runs every Deployment.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// paddock's Kubernetes controller: reconciles Sandbox, SandboxTemplate, SandboxWarmPool and
/// SandboxClaim (agents.x-k8s.io) into Pods, Services, PVCs and NetworkPolicies, and serves
/// the conversion webhook between v1alpha1 and v1beta1.
#[derive(Debug, Parser)]
#[command(
    name = "paddock-controller",
    version,
    max_term_width = 100,
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(flatten)]
    args: paddock_controller::ControllerArgs,
    #[command(subcommand)]
    mode: Option<Mode>,
}

#[derive(Debug, Subcommand)]
enum Mode {
    /// Serve paddock's REST API and upstream's sandbox-router contract instead (deployed as
    /// `sandbox-router-deployment`); see `paddock gateway --help`.
    Gateway(Box<paddock_router::GatewayArgs>),
    /// Serve the egress proxy for sandbox Pods with a SandboxPolicy instead (deployed as
    /// `paddock-egress`); see `paddock egress --help`.
    Egress(Box<paddock_kube_egress::EgressArgs>),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("paddock-controller: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = match cli.mode {
        Some(Mode::Gateway(args)) => runtime
            .block_on(paddock_router::run(*args))
            .map_err(|e| e.to_string()),
        Some(Mode::Egress(args)) => runtime
            .block_on(paddock_kube_egress::run(*args))
            .map_err(|e| e.to_string()),
        None => runtime
            .block_on(paddock_controller::run(cli.args))
            .map_err(|e| e.to_string()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("paddock-controller: {e}");
            ExitCode::FAILURE
        }
    }
}
