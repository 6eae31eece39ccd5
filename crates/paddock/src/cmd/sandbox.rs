//! `paddock sandbox create|ls|get|logs|rm|pause|resume`.

use std::process::ExitCode;

use anyhow::Result;
use paddock_client::{CreateSandbox, Resources, SandboxInfo};

use crate::cmd::client::{ClientArgs, explain};

/// `paddock sandbox` subcommands.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum SandboxCommand {
    /// Create a sandbox and wait until it is ready; prints its name.
    Create {
        /// Name (generated when absent).
        name: Option<String>,
        /// Image (`host`, `oci:/path`, or a registry reference).
        #[arg(long, conflicts_with_all = ["template", "pool"])]
        image: Option<String>,
        /// gvisor (default) or bwrap.
        #[arg(long, value_parser = ["gvisor", "runsc", "bwrap"])]
        runtime: Option<String>,
        /// From a SandboxTemplate.
        #[arg(long, conflicts_with = "pool")]
        template: Option<String>,
        /// From a SandboxWarmPool.
        #[arg(long)]
        pool: Option<String>,
        /// Memory limit, e.g. 512Mi.
        #[arg(long)]
        memory: Option<String>,
        /// CPU limit.
        #[arg(long)]
        cpu: Option<String>,
        /// Delete the sandbox this many seconds after creation.
        #[arg(long, value_name = "SECONDS")]
        timeout: Option<u64>,
        /// The sandbox's main process (a server, say): the sandbox ends when it ends, and
        /// `paddock sandbox logs` shows its output. Without one the sandbox idles for exec.
        #[arg(last = true, value_name = "CMD", conflicts_with_all = ["template", "pool"])]
        command: Vec<String>,
    },
    /// List sandboxes.
    #[command(alias = "list")]
    Ls {
        /// Every namespace.
        #[arg(short = 'A', long)]
        all_namespaces: bool,
    },
    /// Show a sandbox.
    Get {
        /// Sandbox or claim name.
        name: String,
    },
    /// Print the output of a sandbox's main process.
    Logs {
        /// Sandbox or claim name.
        name: String,
        /// Keep printing what it writes until it ends (Ctrl-C to stop).
        #[arg(short, long)]
        follow: bool,
    },
    /// Delete sandboxes (their claims, when they have one). Teardown continues in the background.
    #[command(alias = "delete")]
    Rm {
        /// Sandbox or claim names.
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Suspend a sandbox: its processes stop, its volumes stay.
    Pause {
        /// Sandbox or claim name.
        name: String,
    },
    /// Run a suspended sandbox again.
    Resume {
        /// Sandbox or claim name.
        name: String,
    },
}

fn age(created: Option<&str>) -> String {
    let Some(t) = created.and_then(|c| c.parse::<jiff::Timestamp>().ok()) else {
        return "-".to_owned();
    };
    let secs = jiff::Timestamp::now().duration_since(t).as_secs().max(0);
    match secs {
        s if s < 120 => format!("{s}s"),
        s if s < 7200 => format!("{}m", s / 60),
        s if s < 172_800 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86400),
    }
}

fn table(items: &[SandboxInfo], with_ns: bool) {
    let mut rows = vec![{
        let mut h = vec![
            "NAME", "READY", "PHASE", "RUNTIME", "LAUNCH", "CLAIM", "AGE",
        ]
        .into_iter()
        .map(str::to_owned)
        .collect::<Vec<_>>();
        if with_ns {
            h.insert(0, "NAMESPACE".to_owned());
        }
        h
    }];
    for s in items {
        let mut r = vec![
            s.name.clone(),
            if s.ready {
                "True".to_owned()
            } else {
                "False".to_owned()
            },
            s.phase.to_string(),
            s.runtime.clone().unwrap_or_default(),
            s.launch_type.clone().unwrap_or_default(),
            s.claim.clone().unwrap_or_else(|| "-".to_owned()),
            age(s.created_at.as_deref()),
        ];
        if with_ns {
            r.insert(0, s.namespace.clone());
        }
        rows.push(r);
    }
    print_table(&rows);
}

/// Prints rows as aligned columns, as kubectl does.
pub fn print_table(rows: &[Vec<String>]) {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..cols)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(String::len)
                .max()
                .unwrap_or(0)
        })
        .collect();
    for row in rows {
        let line: Vec<String> = row
            .iter()
            .enumerate()
            .map(|(i, cell)| {
                if i + 1 == row.len() {
                    cell.clone()
                } else {
                    format!("{cell:<w$}", w = widths[i])
                }
            })
            .collect();
        println!("{}", line.join("   ").trim_end());
    }
}

/// Runs a sandbox subcommand.
pub async fn run(client_args: ClientArgs, command: SandboxCommand) -> Result<ExitCode> {
    let client = client_args.connect()?;
    let ns = client_args.namespace.clone();
    match command {
        SandboxCommand::Create {
            name,
            image,
            runtime,
            template,
            pool,
            memory,
            cpu,
            timeout,
            command,
        } => {
            let mut req = match (template, pool) {
                (Some(t), _) => CreateSandbox::template(t),
                (None, Some(p)) => CreateSandbox::warm_pool(p),
                (None, None) => {
                    let mut r = CreateSandbox::image(image.unwrap_or_else(|| "host".to_owned()));
                    r.runtime = runtime;
                    if memory.is_some() || cpu.is_some() {
                        r.resources = Some(Resources { memory, cpu });
                    }
                    r.command = (!command.is_empty()).then_some(command);
                    r
                }
            };
            req.name = name;
            req.namespace = Some(ns);
            req.timeout_seconds = timeout;
            let info = client.create_sandbox(&req).await.map_err(explain)?;
            println!("{}", info.name);
        }
        SandboxCommand::Ls { all_namespaces } => {
            let items = client
                .sandboxes(if all_namespaces { None } else { Some(&ns) })
                .await
                .map_err(explain)?;
            if items.is_empty() {
                eprintln!(
                    "No sandboxes in {}.",
                    if all_namespaces {
                        "any namespace".to_owned()
                    } else {
                        format!("namespace {ns}")
                    }
                );
            } else {
                table(&items, all_namespaces);
            }
        }
        SandboxCommand::Get { name } => {
            let info = client.sandbox(&name, &ns).info().await.map_err(explain)?;
            table(std::slice::from_ref(&info), false);
            if let Some(m) = info.message.filter(|m| !m.is_empty()) {
                println!("\n{}: {m}", info.reason.unwrap_or_default());
            }
        }
        SandboxCommand::Logs { name, follow } => {
            let mut out = tokio::io::stdout();
            client
                .sandbox(&name, &ns)
                .logs(follow, &mut out)
                .await
                .map_err(explain)?;
        }
        SandboxCommand::Rm { names } => {
            for name in names {
                client.sandbox(&name, &ns).delete().await.map_err(explain)?;
                println!("{name} deleted");
            }
        }
        SandboxCommand::Pause { name } => {
            let info = client.sandbox(&name, &ns).pause().await.map_err(explain)?;
            println!("{} paused", info.name);
        }
        SandboxCommand::Resume { name } => {
            let info = client.sandbox(&name, &ns).resume().await.map_err(explain)?;
            println!("{} resumed", info.name);
        }
    }
    Ok(ExitCode::SUCCESS)
}
