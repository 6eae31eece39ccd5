//! `paddock doctor`: which isolation this host offers, and why not the rest.

use std::process::ExitCode;

use anyhow::Result;
use paddock_runtime::doctor::{CheckStatus, doctor};

use crate::cmd::serve::find_agent;

/// Probes this host (starts a real gVisor and bwrap sandbox when it can).
pub async fn run(agent: Option<std::path::PathBuf>) -> Result<ExitCode> {
    let agent = find_agent(agent.as_deref()).ok();
    if agent.is_none() {
        println!(
            "note: no static paddock-agent found (scripts/build-agent.sh); sandboxes are checked without it\n"
        );
    }
    let report = doctor(agent.as_deref()).await;
    let mut missing = false;
    for check in &report.checks {
        let mark = match check.status {
            CheckStatus::Ok => "ok     ",
            CheckStatus::Warning => "warning",
            CheckStatus::Missing => {
                missing = true;
                "missing"
            }
        };
        println!("{mark}  {:<22} {}", check.name, check.detail);
        if let Some(remedy) = &check.remedy {
            println!("         {:<22} fix: {remedy}", "");
        }
    }
    default_pools().await;
    Ok(if missing {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// The running server's default pools and the memory their spare sandboxes take, when a
/// `paddock serve` answers (`PADDOCK_URL`, `PADDOCK_TOKEN`).
async fn default_pools() {
    let Ok(client) = paddock_client::Client::from_env() else {
        return;
    };
    let Ok(info) = client.info().await else {
        println!(
            "note     default-pools          no paddock serve answers at {}; start it to see its pools",
            client.url()
        );
        return;
    };
    let Some(pools) = info
        .pointer("/details/defaultPools/pools")
        .and_then(|p| p.as_array())
    else {
        return;
    };
    let size = info
        .pointer("/details/defaultPools/size")
        .and_then(serde_json::Value::as_i64)
        .unwrap_or(0);
    if size == 0 {
        println!("ok       default-pools          off (paddock serve --default-pool 0)");
        return;
    }
    if pools.is_empty() {
        println!("ok       default-pools          {size} per runtime and image; none filled yet");
    }
    let mib = |b: u64| b as f64 / f64::from(1u32 << 20);
    for pool in pools {
        let field = |k: &str| pool.get(k).and_then(serde_json::Value::as_u64).unwrap_or(0);
        let (members, ready, memory) = (field("members"), field("ready"), field("memoryBytes"));
        println!(
            "ok       default-pools          {}/{}: {ready} of {members} ready, {:.0} MiB ({:.0} MiB each)",
            pool.get("namespace")
                .and_then(serde_json::Value::as_str)
                .unwrap_or(""),
            pool.get("name")
                .and_then(serde_json::Value::as_str)
                .unwrap_or(""),
            mib(memory),
            mib(memory / members.max(1)),
        );
    }
}
