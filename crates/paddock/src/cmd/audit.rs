//! `paddock audit verify`: checks sandboxes' audit logs (`$PADDOCK_HOME/audit/<namespace>/
//! <name>.jsonl`) for changed, removed, reordered or inserted lines.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use paddock_policy::audit::{verify, verify_with_head};

/// `paddock audit` subcommands.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum AuditCommand {
    /// Check audit logs: every line must be as written, hash to what it says and chain to the
    /// line before, and the `.head` file beside the log must name its last line (so none was
    /// removed from its end). Exit code 1 names the first broken line.
    #[command(
        after_help = "Examples:\n  paddock audit verify /var/lib/paddock/audit/default/my-sandbox.jsonl\n  paddock audit verify $PADDOCK_HOME/audit/*/*.jsonl"
    )]
    Verify {
        /// Log files.
        #[arg(required = true, value_name = "FILE")]
        files: Vec<PathBuf>,
    },
}

/// Runs an audit subcommand.
pub fn run(command: &AuditCommand) -> Result<ExitCode> {
    let AuditCommand::Verify { files } = command;
    let mut broken = 0;
    for file in files {
        let text =
            std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
        let head = std::fs::read_to_string(file.with_extension("head")).ok();
        let outcome = match &head {
            Some(h) => verify_with_head(&text, h),
            // paddock writes a head beside every log: without it, lines removed from the end
            // cannot be told.
            None => verify(&text).and_then(|_| {
                Err(paddock_policy::audit::AuditBreak {
                    line: 0,
                    reason: "the chain holds, but the .head file beside it is missing, so lines removed from its end cannot be told".into(),
                })
            }),
        };
        match outcome {
            Ok(n) => println!("{}: {n} lines, chain intact, head matches", file.display()),
            Err(e) => {
                broken += 1;
                println!("{}: {e}", file.display());
            }
        }
    }
    Ok(if broken == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
