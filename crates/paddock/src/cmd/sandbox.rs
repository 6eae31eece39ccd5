//! `paddock sandbox create|ls|get|logs|rm|pause|resume`.

use std::process::ExitCode;

use anyhow::Result;
use paddock_client::{CreateSandbox, Resources, SandboxInfo};

use crate::cmd::client::{ClientArgs, explain};
use crate::cmd::output::{Output, list_of, print_json};

/// `paddock sandbox` subcommands.
// Parsed once per process: the size of the biggest variant costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, clap::Subcommand)]
pub enum SandboxCommand {
    /// Create a sandbox and wait until it is ready; prints its name.
    #[command(
        after_help = "Examples:\n  paddock sandbox create --name dev --template python\n  paddock sandbox create web -- python3 -m http.server\n  paddock sandbox create --image 127.0.0.1:5000/busybox:latest --runtime bwrap"
    )]
    Create {
        /// Name (generated when absent); `--name NAME` works too.
        #[arg(value_name = "NAME")]
        name: Option<String>,
        /// Name, as a flag (the same as the positional NAME).
        #[arg(long = "name", value_name = "NAME", conflicts_with = "name")]
        name_flag: Option<String>,
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
        /// The SandboxPolicy that governs its network (`paddock apply -f` it first); without
        /// one the sandbox has no network. For --template/--pool it narrows the template's.
        #[arg(long, value_name = "NAME")]
        policy: Option<String>,
        /// The sandbox's main process (a server, say): the sandbox ends when it ends, and
        /// `paddock sandbox logs` shows its output. Without one the sandbox idles for exec.
        #[arg(last = true, value_name = "CMD", conflicts_with_all = ["template", "pool"])]
        command: Vec<String>,
    },
    /// List sandboxes.
    #[command(
        alias = "list",
        after_help = "Examples:\n  paddock sandbox ls -o wide\n  paddock sandbox ls -o name\n  paddock sandbox ls -o jsonpath='{.items[*].name}'\n  paddock sandbox ls --watch"
    )]
    Ls {
        /// Every namespace.
        #[arg(short = 'A', long)]
        all_namespaces: bool,
        /// Output format: table (default), wide, json, yaml, name or jsonpath=TEMPLATE.
        #[arg(short, long, value_name = "FORMAT", default_value = "table")]
        output: Output,
        /// After listing, print a row for each change until interrupted (Ctrl-C).
        #[arg(short, long)]
        watch: bool,
    },
    /// Show a sandbox.
    Get {
        /// Sandbox or claim name.
        name: String,
        /// Output format: table (default), wide, json, yaml, name or jsonpath=TEMPLATE.
        #[arg(short, long, value_name = "FORMAT", default_value = "table")]
        output: Output,
        /// After showing it, print a row for each change until interrupted (Ctrl-C).
        #[arg(short, long)]
        watch: bool,
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
    /// Show what a sandbox did with the network: every connection, request and DNS question
    /// its egress proxy answered, allowed or denied, with the rule or the reason.
    #[command(
        after_help = "Examples:\n  paddock sandbox egress dev\n  paddock sandbox egress dev -f\n  paddock sandbox egress dev -o json"
    )]
    Egress {
        /// Sandbox or claim name.
        name: String,
        /// Keep printing each connection as it ends (Ctrl-C to stop).
        #[arg(short, long)]
        follow: bool,
        /// Output format: table (default), json, yaml or jsonpath=TEMPLATE (with -f: one JSON
        /// record per line).
        #[arg(short, long, value_name = "FORMAT", default_value = "table")]
        output: Output,
    },
    /// Suspend a sandbox (`operatingMode: Suspended`; `suspend` is the same): its processes
    /// stop, its volumes stay.
    #[command(visible_alias = "suspend")]
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

fn header(with_ns: bool, wide: bool) -> Vec<String> {
    let mut h: Vec<&str> = vec![
        "NAME", "READY", "PHASE", "RUNTIME", "LAUNCH", "CLAIM", "AGE",
    ];
    if wide {
        h.extend(["IMAGE", "EXPIRES", "REASON", "MESSAGE"]);
    }
    if with_ns {
        h.insert(0, "NAMESPACE");
    }
    h.into_iter().map(str::to_owned).collect()
}

fn row(s: &SandboxInfo, with_ns: bool, wide: bool) -> Vec<String> {
    let or_none = |v: &Option<String>| {
        v.clone()
            .filter(|v| !v.is_empty())
            .unwrap_or_else(|| "<none>".to_owned())
    };
    let mut r = vec![
        s.name.clone(),
        if s.ready { "True" } else { "False" }.to_owned(),
        s.phase.to_string(),
        s.runtime.clone().unwrap_or_default(),
        s.launch_type.clone().unwrap_or_default(),
        s.claim.clone().unwrap_or_else(|| "-".to_owned()),
        age(s.created_at.as_deref()),
    ];
    if wide {
        r.push(or_none(&s.image));
        r.push(or_none(&s.expires_at));
        r.push(or_none(&s.reason));
        r.push(or_none(&s.message));
    }
    if with_ns {
        r.insert(0, s.namespace.clone());
    }
    r
}

fn to_json(s: &SandboxInfo) -> serde_json::Value {
    serde_json::to_value(s).unwrap_or_default()
}

/// Prints sandboxes in one `-o` format; `single` prints the object itself, not a `List`.
fn print_sandboxes(
    items: &[SandboxInfo],
    output: &Output,
    with_ns: bool,
    single: bool,
) -> Result<()> {
    let whole = || {
        if single && let Some(s) = items.first() {
            to_json(s)
        } else {
            list_of(items.iter().map(to_json).collect())
        }
    };
    match output {
        Output::Table | Output::Wide => {
            let wide = *output == Output::Wide;
            let mut rows = vec![header(with_ns, wide)];
            rows.extend(items.iter().map(|s| row(s, with_ns, wide)));
            print_table(&rows);
        }
        Output::Json => print_json(&whole())?,
        Output::Yaml => print!("{}", paddock_api::yaml::to_string(&whole())),
        Output::Name => {
            for s in items {
                println!("sandbox/{}", s.name);
            }
        }
        Output::JsonPath(t) => println!("{}", t.render(&whole())),
    }
    Ok(())
}

/// One change seen by `--watch`: a row without header, or the object in the chosen format.
fn print_change(s: &SandboxInfo, output: &Output, with_ns: bool) -> Result<()> {
    match output {
        Output::Table | Output::Wide => {
            println!("{}", row(s, with_ns, *output == Output::Wide).join("   "));
        }
        Output::Yaml => print!("---\n{}", paddock_api::yaml::to_string(&to_json(s))),
        other => print_sandboxes(std::slice::from_ref(s), other, with_ns, true)?,
    }
    Ok(())
}

/// `--watch`: follows the Sandbox objects and prints a sandbox each time it changes (its last
/// known state, once more, when it is deleted).
async fn watch_sandboxes(
    client: &paddock_client::Client,
    ns: Option<&str>,
    only: Option<&str>,
    output: &Output,
    mut last: std::collections::BTreeMap<(String, String), SandboxInfo>,
) -> Result<()> {
    let collection = match ns {
        Some(ns) => format!("/apis/agents.x-k8s.io/v1beta1/namespaces/{ns}/sandboxes"),
        None => "/apis/agents.x-k8s.io/v1beta1/sandboxes".to_owned(),
    };
    let mut watch = client
        .watch_objects(&collection, None)
        .await
        .map_err(explain)?;
    while let Some(event) = watch.next().await {
        let event = event.map_err(explain)?;
        let meta = |f: &str| {
            event
                .pointer(&format!("/object/metadata/{f}"))
                .and_then(serde_json::Value::as_str)
                .unwrap_or_default()
                .to_owned()
        };
        let key = (meta("namespace"), meta("name"));
        if only.is_some_and(|o| o != key.1) {
            continue;
        }
        let info = if event.get("type").and_then(serde_json::Value::as_str) == Some("DELETED") {
            last.remove(&key)
        } else {
            match client.sandbox(&key.1, &key.0).info().await {
                Ok(info) => Some(info),
                Err(_) => last.remove(&key),
            }
        };
        let Some(info) = info else { continue };
        if last.get(&key) != Some(&info) {
            print_change(&info, output, ns.is_none())?;
            use std::io::Write as _;
            std::io::stdout().flush()?;
        }
        last.insert(key, info);
    }
    Ok(())
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
            name_flag,
            image,
            runtime,
            template,
            pool,
            memory,
            cpu,
            timeout,
            policy,
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
            req.name = name.or(name_flag);
            req.namespace = Some(ns);
            req.timeout_seconds = timeout;
            req.policy = policy;
            let info = client.create_sandbox(&req).await.map_err(explain)?;
            println!("{}", info.name);
        }
        SandboxCommand::Ls {
            all_namespaces,
            output,
            watch,
        } => {
            let scope = if all_namespaces {
                None
            } else {
                Some(ns.as_str())
            };
            let items = client.sandboxes(scope).await.map_err(explain)?;
            let seen = items
                .iter()
                .map(|s| ((s.namespace.clone(), s.name.clone()), s.clone()))
                .collect();
            if !matches!(output, Output::Table | Output::Wide) || (watch && !items.is_empty()) {
                print_sandboxes(&items, &output, all_namespaces, false)?;
            } else if items.is_empty() {
                eprintln!(
                    "No sandboxes in {}.",
                    if all_namespaces {
                        "any namespace".to_owned()
                    } else {
                        format!("namespace {ns}")
                    }
                );
            } else {
                print_sandboxes(&items, &output, all_namespaces, false)?;
            }
            if watch {
                watch_sandboxes(&client, scope, None, &output, seen).await?;
            }
        }
        SandboxCommand::Get {
            name,
            output,
            watch,
        } => {
            let info = client.sandbox(&name, &ns).info().await.map_err(explain)?;
            print_sandboxes(std::slice::from_ref(&info), &output, false, true)?;
            if output == Output::Table
                && !watch
                && let Some(m) = info.message.as_ref().filter(|m| !m.is_empty())
            {
                println!("\n{}: {m}", info.reason.clone().unwrap_or_default());
            }
            if watch {
                let seen = [((info.namespace.clone(), info.name.clone()), info.clone())].into();
                watch_sandboxes(
                    &client,
                    Some(&info.namespace),
                    Some(&info.name),
                    &output,
                    seen,
                )
                .await?;
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
        SandboxCommand::Egress {
            name,
            follow,
            output,
        } => {
            crate::cmd::policy::egress(&client, &ns, &name, follow, &output).await?;
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
