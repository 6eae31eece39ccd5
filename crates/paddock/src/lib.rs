//! The `paddock` command: sandboxes for AI agents.
//!
//! This file only declares the command line and dispatches; each subcommand lives in `cmd/`.
//! It is a library so that tests parse commands (the README's, say) with the real parser.

mod cmd;
mod input;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use cmd::client::ClientArgs;

/// Sandboxes for AI agents: run untrusted code in isolated sandboxes, on one machine or on
/// Kubernetes, through the Agent Sandbox API (Sandbox, SandboxTemplate, SandboxClaim,
/// SandboxWarmPool).
#[derive(Debug, Parser)]
#[command(
    name = "paddock",
    version,
    propagate_version = true,
    max_term_width = 100,
    after_help = "Start here:\n  paddock serve &                           # as root: the engine and REST API on 127.0.0.1:7878\n  paddock run -- python3 -c 'print(6*7)'    # a command in a fresh gVisor sandbox"
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run paddock on this machine: objects in an embedded database, sandboxes under gVisor,
    /// the REST API on 127.0.0.1:7878.
    ///
    /// Sandboxes survive a restart of the server: they are re-attached, not restarted.
    Serve(Box<cmd::serve::ServeArgs>),
    /// Run a command in a new sandbox: output streams live, paddock exits with the command's
    /// exit code, and the sandbox is deleted afterwards (unless --keep).
    #[command(
        after_help = "Examples:\n  paddock run -- python3 -c 'print(6*7)'\n  paddock run --runtime bwrap -v $PWD:/work -w /work -- ls\n  paddock run --pool python-pool -- python3 -V"
    )]
    Run(Box<cmd::run::RunArgs>),
    /// Create, list, inspect, delete, pause and resume sandboxes.
    Sandbox {
        #[command(flatten)]
        client: ClientArgs,
        #[command(subcommand)]
        command: cmd::sandbox::SandboxCommand,
    },
    /// SandboxPolicies: list, show, delete, and suggest one from what a sandbox reached.
    Policy {
        #[command(flatten)]
        client: ClientArgs,
        #[command(subcommand)]
        command: cmd::policy::PolicyCommand,
    },
    /// Audit logs: every decision about a governed sandbox (egress, exec, files, API
    /// operations) is appended to its hash-chained log; `verify` finds changed or missing lines.
    Audit {
        #[command(subcommand)]
        command: cmd::audit::AuditCommand,
    },
    /// Run a command in an existing sandbox (-it for an interactive terminal).
    #[command(
        after_help = "Examples:\n  paddock exec my-sandbox -- ls /\n  paddock exec -it my-sandbox -- bash"
    )]
    Exec(Box<cmd::exec::ExecArgs>),
    /// Copy files or directories between this host and a sandbox (SANDBOX:PATH).
    #[command(
        after_help = "Examples:\n  paddock cp ./src my-sandbox:/workspace/src\n  paddock cp my-sandbox:/workspace/out.json ."
    )]
    Cp(Box<cmd::cp::CpArgs>),
    /// Mint a scoped token: its holder may reach one sandbox through upstream's router
    /// contract (X-Sandbox-ID headers), and nothing else, until it expires.
    ///
    /// v1 (HMAC): the server knows the same secret (`paddock serve --scoped-token-secret-file`,
    /// or the gateway's `--auth scoped`). v2 (Ed25519): bound to the sandbox's UID, one port,
    /// one method and one path; routers need only the public keys. The wire formats are
    /// upstream's, so upstream's router and SDK accept these tokens.
    #[command(after_help = "Examples:
  head -c 32 /dev/urandom | base64 > secret && chmod 600 secret
  paddock serve --scoped-token-secret-file secret &
  paddock token my-sandbox --ttl 30m --secret-file secret

  paddock token keygen --signing-key-file signing.json --verification-keys-file keys.json
  paddock serve --scoped-token-signing-key-file signing.json &
  paddock token my-sandbox --server --port 8888 --method POST --path /execute --ttl 10m")]
    Token(Box<cmd::token::TokenArgs>),
    /// Fetch an image into paddock's cache (verified, unpacked once), with a progress bar.
    #[command(
        after_help = "Examples:\n  paddock pull 127.0.0.1:5000/busybox:latest\n  paddock pull oci:/srv/images/python:3.12"
    )]
    Pull {
        #[command(flatten)]
        client: ClientArgs,
        /// A registry reference (`registry/name:tag` or `@sha256:...`) or `oci:/path[:tag]`.
        image: String,
    },
    /// Create or update objects of the four kinds, and SandboxPolicies, from YAML or JSON, as on
    /// a cluster.
    Apply {
        #[command(flatten)]
        client: ClientArgs,
        /// A file, a directory or `-`. Repeatable.
        #[arg(short = 'f', long = "filename", value_name = "FILE", required = true)]
        files: Vec<PathBuf>,
    },
    /// Show objects of the four kinds (sandboxes, sandboxtemplates, sandboxclaims,
    /// sandboxwarmpools or swp), as kubectl does.
    #[command(
        after_help = "Examples:\n  paddock get sandboxes -o wide\n  paddock get sandbox my-sandbox -o yaml --api-version v1alpha1\n  paddock get sandboxclaims -o jsonpath='{.items[*].status.sandbox.name}'\n  paddock get swp --watch"
    )]
    Get {
        #[command(flatten)]
        client: ClientArgs,
        /// The kind: plural, singular or short name.
        resource: String,
        /// One object's name.
        name: Option<String>,
        /// Output format: table (default), wide, json, yaml, name or jsonpath=TEMPLATE.
        #[arg(short, long, value_name = "FORMAT", default_value = "table")]
        output: cmd::output::Output,
        /// API version of the output.
        #[arg(long, value_enum, default_value_t = TargetVersion::V1beta1)]
        api_version: TargetVersion,
        /// Every namespace.
        #[arg(short = 'A', long)]
        all_namespaces: bool,
        /// After listing, print each change until interrupted (Ctrl-C).
        #[arg(short, long)]
        watch: bool,
    },
    /// Delete objects by kind and name, or those of a manifest (-f).
    Delete {
        #[command(flatten)]
        client: ClientArgs,
        /// The kind.
        resource: Option<String>,
        /// Names.
        names: Vec<String>,
        /// Delete the objects of these manifests.
        #[arg(short = 'f', long = "filename", value_name = "FILE")]
        files: Vec<PathBuf>,
    },
    /// Check which isolation this host offers, and the remedy for what it lacks.
    Doctor {
        /// The static agent binary to try sandboxes with.
        #[arg(long, env = "PADDOCK_AGENT_BIN")]
        agent: Option<PathBuf>,
    },
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
    /// Run the in-sandbox agent: exec, processes and files over HTTP, WebSocket and gRPC.
    ///
    /// This is the server inside every sandbox (also shipped as the static `paddock-agent`
    /// binary). It speaks upstream's python-runtime endpoints, sandboxd's REST and gRPC APIs and
    /// paddock's own process API; see docs/agent-api.md.
    Agent(Box<paddock_agent::AgentArgs>),
    /// Run the Kubernetes controller: a drop-in for upstream agent-sandbox's (same CRDs, flags
    /// and behaviour), with its conversion webhook, leader election and metrics.
    ///
    /// Runs in-cluster (deploy/) or from a kubeconfig. Also shipped alone as the static
    /// `paddock-controller` binary of deploy/Dockerfile.
    #[cfg(feature = "kubernetes")]
    Controller(Box<paddock_controller::ControllerArgs>),
    /// Serve the REST API on a cluster: the same API as `paddock serve`, backed by the
    /// Kubernetes API, and a drop-in for upstream's sandbox-router (X-Sandbox-* headers).
    ///
    /// Creating a sandbox from a template makes a SandboxClaim and waits until it is Ready;
    /// exec, processes, files and ports go to the sandbox's agent at its pod IP. Runs in-cluster
    /// (deploy/router: Service sandbox-router-svc, port 8080) or from a kubeconfig. Also served
    /// by the static `paddock-controller gateway` of deploy/Dockerfile.
    #[cfg(feature = "kubernetes")]
    #[command(
        after_help = "Examples:\n  PADDOCK_GATEWAY_TOKEN=$(cat token) paddock gateway     # shared token on 127.0.0.1:8080\n  paddock gateway --auth tokenreview --authz-tokenreview-audiences sandbox-router\n  kubectl port-forward svc/sandbox-router-svc 8080:8080 -n agent-sandbox-system  # in-cluster"
    )]
    Gateway(Box<paddock_router::GatewayArgs>),
    /// Run the egress proxy on a cluster: sandbox Pods whose Sandbox names a SandboxPolicy
    /// reach the network only through it (the controller's --egress-proxy points them here).
    ///
    /// It tells sandboxes apart by their Pod's address, judges each connection by the
    /// Sandbox's policies as `paddock serve` does, reads injected secrets from Kubernetes
    /// Secrets, and publishes the CA sandboxes trust as the ConfigMap paddock-egress-ca in
    /// their namespaces (its key stays in the Secret paddock-egress-ca). See docs/egress.md.
    #[cfg(feature = "kubernetes")]
    #[command(
        after_help = "Examples:\n  paddock egress --kubeconfig ~/.kube/config          # on 127.0.0.1:3128\n  paddock egress --listen 0.0.0.0:3128                 # in a pod (deploy/egress)"
    )]
    Egress(Box<paddock_kube_egress::EgressArgs>),
}

/// An API version.
#[derive(Debug, Clone, Copy, ValueEnum)]
enum TargetVersion {
    V1alpha1,
    V1beta1,
}

impl TargetVersion {
    fn version(self) -> paddock_api::kinds::Version {
        match self {
            TargetVersion::V1alpha1 => paddock_api::kinds::Version::V1alpha1,
            TargetVersion::V1beta1 => paddock_api::kinds::Version::V1beta1,
        }
    }
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

/// `paddock agent`: prepares (sockets, Landlock) while the process has one thread, then runs;
/// exits with the main process's code when there is one.
fn run_agent(args: &paddock_agent::AgentArgs) -> anyhow::Result<ExitCode> {
    let prepared = args.prepare()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let code = runtime.block_on(prepared.run())?;
    Ok(ExitCode::from(u8::try_from(code).unwrap_or(1)))
}

/// Parses a command line (`args[0]` is the program) as the `paddock` binary would, without
/// running it: how tests hold the README's and the docs' commands to the real parser.
pub fn check_command_line(args: &[String]) -> Result<(), String> {
    Cli::try_parse_from(args)
        .map(drop)
        .map_err(|e| e.to_string())
}

/// Runs a parsed command line; returns the process's exit code.
pub fn run(cli: Cli) -> ExitCode {
    let result = match cli.command {
        Command::Serve(args) => run_async(cmd::serve::run(*args)),
        Command::Run(args) => run_async(cmd::run::run(*args)),
        Command::Sandbox { client, command } => run_async(cmd::sandbox::run(client, command)),
        Command::Policy { client, command } => run_async(cmd::policy::run(client, command)),
        Command::Audit { command } => cmd::audit::run(&command),
        Command::Exec(args) => run_async(cmd::exec::run(*args)),
        Command::Cp(args) => run_async(cmd::cp::run(*args)),
        Command::Token(args) => run_async(async move { cmd::token::run(&args).await }),
        Command::Pull { client, image } => run_async(cmd::pull::run(client, image)),
        Command::Apply { client, files } => run_async(cmd::objects::apply(client, files)),
        Command::Get {
            client,
            resource,
            name,
            output,
            api_version,
            all_namespaces,
            watch,
        } => run_async(cmd::objects::get(
            client,
            cmd::objects::GetRequest {
                resource,
                name,
                output,
                version: api_version.version(),
                all_namespaces,
                watch,
            },
        )),
        Command::Delete {
            client,
            resource,
            names,
            files,
        } => run_async(cmd::objects::delete(client, resource, names, files)),
        Command::Doctor { agent } => run_async(cmd::doctor::run(agent)),
        Command::Validate { files, quiet } => cmd::validate::run(&files, quiet),
        Command::Convert {
            files,
            to,
            lossless,
            output,
        } => cmd::convert::run(&files, to.version(), lossless, output == Format::Json),
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
        Command::Agent(args) => run_agent(&args),
        #[cfg(feature = "kubernetes")]
        Command::Controller(args) => run_async(async move {
            paddock_controller::run(*args).await?;
            Ok(ExitCode::SUCCESS)
        }),
        #[cfg(feature = "kubernetes")]
        Command::Gateway(args) => run_async(async move {
            paddock_router::run(*args).await?;
            Ok(ExitCode::SUCCESS)
        }),
        #[cfg(feature = "kubernetes")]
        Command::Egress(args) => run_async(async move {
            paddock_kube_egress::run(*args).await?;
            Ok(ExitCode::SUCCESS)
        }),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("paddock: {e:#}");
            ExitCode::from(2)
        }
    }
}
