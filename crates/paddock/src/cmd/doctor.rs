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
    Ok(if missing {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}
