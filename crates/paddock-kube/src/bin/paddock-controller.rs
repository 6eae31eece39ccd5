//! `paddock-controller`: the Kubernetes controller alone, for the small static container image
//! (`deploy/Dockerfile`). Same flags as `paddock controller`.

use std::process::ExitCode;

use clap::Parser;

/// paddock's Kubernetes controller: reconciles Sandbox, SandboxTemplate, SandboxWarmPool and
/// SandboxClaim (agents.x-k8s.io) into Pods, Services, PVCs and NetworkPolicies, and serves
/// the conversion webhook between v1alpha1 and v1beta1.
#[derive(Debug, Parser)]
#[command(name = "paddock-controller", version, max_term_width = 100)]
struct Cli {
    #[command(flatten)]
    args: paddock_kube::ControllerArgs,
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
    match runtime.block_on(paddock_kube::run(cli.args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("paddock-controller: {e}");
            ExitCode::FAILURE
        }
    }
}
