//! `paddock run`: create a sandbox, run one command in it with its output streamed live, exit
//! with the command's exit code, and delete the sandbox.

use std::collections::BTreeMap;
use std::io::Write;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use paddock_client::{CreateSandbox, HostVolume, ProcessEvent, ProcessRequest, Resources};

use crate::cmd::client::{ClientArgs, explain};

/// Flags of `paddock run`.
#[derive(Debug, Clone, clap::Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    /// Image to run: `host` (the host's tools, read-only; nothing to pull), `oci:/path[:tag]`,
    /// or a registry reference such as `127.0.0.1:5000/busybox:latest`.
    #[arg(long, default_value = "host", conflicts_with_all = ["template", "pool"])]
    pub image: String,
    /// Isolation: gvisor (default; a user-space kernel) or bwrap (namespaces, seccomp and
    /// Landlock; faster, weaker).
    #[arg(long, value_parser = ["gvisor", "runsc", "bwrap"])]
    pub runtime: Option<String>,
    /// Take the sandbox from this SandboxTemplate (from a warm pool of it when there is one).
    #[arg(long, conflicts_with = "pool")]
    pub template: Option<String>,
    /// Take the sandbox from this SandboxWarmPool.
    #[arg(long)]
    pub pool: Option<String>,
    /// Mount a host directory: HOST:SANDBOX, or HOST:SANDBOX:ro for read-only. Repeatable.
    #[arg(short = 'v', long = "volume", value_name = "HOST:SANDBOX[:ro]")]
    pub volumes: Vec<String>,
    /// Set an environment variable for the command: KEY=VALUE. Repeatable.
    #[arg(short = 'e', long = "env", value_name = "KEY=VALUE")]
    pub env: Vec<String>,
    /// Working directory of the command inside the sandbox.
    #[arg(short = 'w', long = "workdir", value_name = "DIR")]
    pub workdir: Option<String>,
    /// Memory limit, e.g. 512Mi.
    #[arg(long)]
    pub memory: Option<String>,
    /// CPU limit, e.g. 1 or 500m.
    #[arg(long)]
    pub cpu: Option<String>,
    /// Name of the sandbox (generated when absent).
    #[arg(long)]
    pub name: Option<String>,
    /// Keep the sandbox after the command ends (delete it later with `paddock sandbox rm`).
    #[arg(long)]
    pub keep: bool,
    /// Kill the command (its whole process group) after this many seconds.
    #[arg(long, value_name = "SECONDS")]
    pub timeout: Option<u64>,
    /// The SandboxPolicy that governs the sandbox's network (`paddock apply -f` it first);
    /// without one the sandbox has no network.
    #[arg(long, value_name = "NAME")]
    pub policy: Option<String>,
    /// The command and its arguments, run without a shell (use `sh -c '...'` for one).
    #[arg(last = true, required = true, value_name = "CMD")]
    pub command: Vec<String>,
}

/// Parses `KEY=VALUE` pairs.
pub fn parse_env(pairs: &[String]) -> Result<BTreeMap<String, String>> {
    pairs
        .iter()
        .map(|p| match p.split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
            _ => bail!("-e {p:?}: write KEY=VALUE"),
        })
        .collect()
}

fn parse_volume(spec: &str) -> Result<HostVolume> {
    let parts: Vec<&str> = spec.split(':').collect();
    let (host, mount, read_only) = match parts.as_slice() {
        [h, m] => (*h, *m, false),
        [h, m, "ro"] => (*h, *m, true),
        [h, m, "rw"] => (*h, *m, false),
        _ => bail!("-v {spec:?}: write HOST:SANDBOX or HOST:SANDBOX:ro"),
    };
    let host = std::fs::canonicalize(host)
        .with_context(|| format!("-v {spec:?}: {host} does not exist on this host"))?;
    if !host.is_dir() {
        bail!(
            "-v {spec:?}: {} is not a directory (only directories can be mounted)",
            host.display()
        );
    }
    if !mount.starts_with('/') {
        bail!("-v {spec:?}: the sandbox path {mount:?} must be absolute");
    }
    Ok(HostVolume {
        host_path: host.display().to_string(),
        mount_path: mount.to_owned(),
        read_only,
    })
}

/// Creates the sandbox, runs the command, deletes the sandbox (unless `--keep`).
pub async fn run(args: RunArgs) -> Result<ExitCode> {
    let client = args.client.connect()?;
    let env = parse_env(&args.env)?;
    let mut create = match (&args.template, &args.pool) {
        (Some(t), _) => CreateSandbox::template(t),
        (None, Some(p)) => CreateSandbox::warm_pool(p),
        (None, None) => CreateSandbox::image(&args.image),
    };
    create.name.clone_from(&args.name);
    create.namespace = Some(args.client.namespace.clone());
    create.policy.clone_from(&args.policy);
    if args.template.is_none() && args.pool.is_none() {
        create.runtime.clone_from(&args.runtime);
        create.volumes = args
            .volumes
            .iter()
            .map(|v| parse_volume(v))
            .collect::<Result<_>>()?;
        if args.memory.is_some() || args.cpu.is_some() {
            create.resources = Some(Resources {
                memory: args.memory.clone(),
                cpu: args.cpu.clone(),
            });
        }
    } else if args.runtime.is_some()
        || !args.volumes.is_empty()
        || args.memory.is_some()
        || args.cpu.is_some()
    {
        bail!(
            "--runtime, -v, --memory and --cpu describe the sandbox, which comes from the template; set them in the SandboxTemplate"
        );
    }
    if args.template.is_none() && args.pool.is_none() {
        crate::cmd::pull::pull_with_progress(&client, &args.image).await?;
    }
    let info = client.create_sandbox(&create).await.map_err(explain)?;
    let sandbox = client.sandbox(&info.name, &info.namespace);
    let mut req = ProcessRequest::argv(args.command.clone());
    req.env = env;
    req.cwd.clone_from(&args.workdir);
    req.timeout_ms = args.timeout.map(|s| s.saturating_mul(1000));
    let stream = sandbox.run_streaming(&req, |event| match event {
        ProcessEvent::Stdout { data, .. } => {
            let mut out = std::io::stdout().lock();
            let _ = out.write_all(data);
            let _ = out.flush();
        }
        ProcessEvent::Stderr { data, .. } => {
            let mut err = std::io::stderr().lock();
            let _ = err.write_all(data);
            let _ = err.flush();
        }
        _ => {}
    });
    let status = tokio::select! {
        s = stream => s,
        _ = tokio::signal::ctrl_c() => {
            eprintln!("paddock: interrupted");
            if !args.keep {
                let _ = sandbox.delete().await;
            }
            return Ok(ExitCode::from(130));
        }
    };
    let cleanup = async {
        if args.keep {
            eprintln!(
                "paddock: kept sandbox {} (delete it with: paddock sandbox rm {})",
                info.name,
                info.claim.as_deref().unwrap_or(&info.name)
            );
        } else if let Err(e) = sandbox.delete().await {
            eprintln!(
                "paddock: could not delete sandbox {}: {}",
                info.name, e.message
            );
        }
    };
    let status = match status {
        Ok(s) => s,
        Err(e) => {
            cleanup.await;
            return Err(explain(e));
        }
    };
    cleanup.await;
    if status.timed_out {
        eprintln!("paddock: the command timed out and was killed");
    }
    Ok(ExitCode::from(
        u8::try_from(status.code().clamp(0, 255)).unwrap_or(1),
    ))
}
