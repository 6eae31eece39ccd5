//! `paddock policy ls|get|rm|suggest` and `paddock sandbox egress`: SandboxPolicies and what
//! sandboxes did with the network.

use std::process::ExitCode;

use anyhow::{Result, bail};
use http::Method;
use paddock_api::policy::{POLICY_API_VERSION, POLICY_KIND};
use paddock_client::Client;
use paddock_policy::{Observed, suggest_policy};
use paddock_wire::{EgressKind, EgressRecord};
use serde_json::{Value, json};

use crate::cmd::client::{ClientArgs, explain};
use crate::cmd::output::{Output, list_of, print_json};
use crate::cmd::sandbox::print_table;

/// `paddock policy` subcommands.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum PolicyCommand {
    /// List SandboxPolicies.
    Ls {
        /// Output format: table (default), json, yaml, name or jsonpath=TEMPLATE.
        #[arg(short, long, value_name = "FORMAT", default_value = "table")]
        output: Output,
    },
    /// Show a SandboxPolicy (YAML by default).
    Get {
        /// The policy's name.
        name: String,
        /// Output format: yaml (default), json or jsonpath=TEMPLATE.
        #[arg(short, long, value_name = "FORMAT", default_value = "yaml")]
        output: Output,
    },
    /// Delete SandboxPolicies. Sandboxes that name a deleted policy lose their egress at once.
    #[command(alias = "delete")]
    Rm {
        /// Policy names.
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Print the smallest enforce-mode policy that allows what a sandbox reached (run it under
    /// an audit-mode policy first): one rule per host, with the ports it used.
    #[command(
        after_help = "Example:\n  paddock run --policy learn --keep --name probe -- pip download requests\n  paddock policy suggest probe --name pip > pip-policy.yaml\n  paddock apply -f pip-policy.yaml"
    )]
    Suggest {
        /// The sandbox whose egress record to read.
        sandbox: String,
        /// The new policy's name (default: the sandbox's name).
        #[arg(long)]
        name: Option<String>,
    },
}

fn collection(ns: &str) -> String {
    format!("/apis/paddock.dev/v1alpha1/namespaces/{ns}/sandboxpolicies")
}

/// Runs a policy subcommand.
pub async fn run(client_args: ClientArgs, command: PolicyCommand) -> Result<ExitCode> {
    let client = client_args.connect()?;
    let ns = client_args.namespace.clone();
    match command {
        PolicyCommand::Ls { output } => {
            let list = client
                .object_call(Method::GET, &collection(&ns), None)
                .await
                .map_err(explain)?;
            let items = list
                .get("items")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            match output {
                Output::Table | Output::Wide => {
                    if items.is_empty() {
                        eprintln!("No SandboxPolicies in namespace {ns}.");
                        return Ok(ExitCode::SUCCESS);
                    }
                    let mut rows = vec![vec![
                        "NAME".to_owned(),
                        "MODE".into(),
                        "RULES".into(),
                        "LIMITS".into(),
                    ]];
                    for p in &items {
                        let egress = p.pointer("/spec/egress");
                        let rules = egress
                            .and_then(|e| e.get("rules"))
                            .and_then(Value::as_array)
                            .map_or(0, Vec::len);
                        let limits = egress.and_then(|e| e.get("limits")).map_or_else(
                            || "-".to_owned(),
                            |l| {
                                let mut parts = Vec::new();
                                if let Some(b) = l.get("bytes").and_then(Value::as_u64) {
                                    parts.push(format!("{b} bytes"));
                                }
                                if let Some(r) = l.get("requests").and_then(Value::as_u64) {
                                    parts.push(format!("{r} requests"));
                                }
                                parts.join(", ")
                            },
                        );
                        rows.push(vec![
                            p.pointer("/metadata/name")
                                .and_then(Value::as_str)
                                .unwrap_or("")
                                .to_owned(),
                            egress
                                .and_then(|e| e.get("mode"))
                                .and_then(Value::as_str)
                                .unwrap_or(if egress.is_some() {
                                    "enforce"
                                } else {
                                    "no egress"
                                })
                                .to_owned(),
                            rules.to_string(),
                            limits,
                        ]);
                    }
                    print_table(&rows);
                }
                Output::Json => print_json(&list_of(items))?,
                Output::Yaml => print!("{}", paddock_api::yaml::to_string(&list_of(items))),
                Output::Name => {
                    for p in &items {
                        println!(
                            "sandboxpolicy/{}",
                            p.pointer("/metadata/name")
                                .and_then(Value::as_str)
                                .unwrap_or("")
                        );
                    }
                }
                Output::JsonPath(t) => println!("{}", t.render(&list_of(items))),
            }
        }
        PolicyCommand::Get { name, output } => {
            let policy = client
                .object_call(Method::GET, &format!("{}/{name}", collection(&ns)), None)
                .await
                .map_err(explain)?;
            match output {
                Output::Json => print_json(&policy)?,
                Output::JsonPath(t) => println!("{}", t.render(&policy)),
                Output::Name => println!("sandboxpolicy/{name}"),
                _ => print!("{}", paddock_api::yaml::to_string(&policy)),
            }
        }
        PolicyCommand::Rm { names } => {
            for name in names {
                client
                    .object_call(Method::DELETE, &format!("{}/{name}", collection(&ns)), None)
                    .await
                    .map_err(explain)?;
                println!("sandboxpolicy/{name} deleted");
            }
        }
        PolicyCommand::Suggest { sandbox, name } => {
            let records = client
                .sandbox(&sandbox, &ns)
                .egress()
                .await
                .map_err(explain)?;
            let observed: Vec<Observed> = records
                .iter()
                .filter(|r| r.kind != EgressKind::Dns)
                .map(|r| Observed {
                    host: r.host.clone(),
                    port: r.port,
                })
                .collect();
            if observed.is_empty() {
                bail!(
                    "sandbox {sandbox} has no egress record to learn from: give it a SandboxPolicy with `mode: audit` (and rules that may be empty), let it run, then ask again"
                );
            }
            let egress = suggest_policy(&observed);
            let policy = json!({
                "apiVersion": POLICY_API_VERSION,
                "kind": POLICY_KIND,
                "metadata": {"name": name.unwrap_or(sandbox.clone())},
                "spec": {"egress": egress},
            });
            println!(
                "# Suggested from {} connections of sandbox {sandbox}.",
                observed.len()
            );
            print!("{}", paddock_api::yaml::to_string(&policy));
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn human_bytes(n: u64) -> String {
    match n {
        n if n < 10_000 => format!("{n}B"),
        n if n < 10_000_000 => format!("{}KB", n / 1000),
        n => format!("{}MB", n / 1_000_000),
    }
}

fn record_row(r: &EgressRecord) -> Vec<String> {
    let kind = match r.kind {
        EgressKind::Connect => "CONNECT".to_owned(),
        EgressKind::Http => r.method.clone().unwrap_or_else(|| "HTTP".into()),
        EgressKind::Dns => "DNS".to_owned(),
    };
    let verdict = match (r.allowed, r.audited) {
        (true, false) => "allowed",
        (true, true) => "audit-denied",
        (false, _) => "denied",
    };
    let time = r.time.get(11..23).unwrap_or(&r.time).to_owned();
    let target = match &r.path {
        Some(p) => format!("{}:{}{p}", r.host, r.port),
        None => format!("{}:{}", r.host, r.port),
    };
    vec![
        time,
        kind,
        target,
        verdict.to_owned(),
        r.rule
            .clone()
            .filter(|_| !r.audited)
            .or_else(|| r.reason.clone())
            .unwrap_or_default(),
        human_bytes(r.bytes_sent),
        human_bytes(r.bytes_received),
        format!("{}ms", r.duration_ms),
    ]
}

const RECORD_HEADER: [&str; 8] = [
    "TIME",
    "KIND",
    "DESTINATION",
    "VERDICT",
    "RULE/REASON",
    "SENT",
    "RECEIVED",
    "DURATION",
];

/// `paddock sandbox egress NAME [-f]`.
pub async fn egress(
    client: &Client,
    ns: &str,
    name: &str,
    follow: bool,
    output: &Output,
) -> Result<()> {
    let sandbox = client.sandbox(name, ns);
    let table = matches!(output, Output::Table | Output::Wide);
    if !follow {
        let records = sandbox.egress().await.map_err(explain)?;
        if table {
            if records.is_empty() {
                eprintln!(
                    "No egress from sandbox {name} yet (a sandbox without a SandboxPolicy has no network)."
                );
                return Ok(());
            }
            let mut rows = vec![RECORD_HEADER.iter().map(|s| (*s).to_owned()).collect()];
            rows.extend(records.iter().map(record_row));
            print_table(&rows);
            return Ok(());
        }
        let items: Vec<Value> = records
            .iter()
            .map(|r| serde_json::to_value(r).unwrap_or_default())
            .collect();
        match output {
            Output::Yaml => print!("{}", paddock_api::yaml::to_string(&list_of(items))),
            Output::JsonPath(t) => println!("{}", t.render(&list_of(items))),
            _ => print_json(&list_of(items))?,
        }
        return Ok(());
    }
    if table {
        println!("{}", RECORD_HEADER.join("   "));
    }
    let output = output.clone();
    sandbox
        .follow_egress(|r| {
            use std::io::Write as _;
            if matches!(output, Output::Table | Output::Wide) {
                println!("{}", record_row(r).join("   "));
            } else {
                println!("{}", serde_json::to_string(r).unwrap_or_default());
            }
            std::io::stdout().flush().is_ok()
        })
        .await
        .map_err(explain)?;
    Ok(())
}
