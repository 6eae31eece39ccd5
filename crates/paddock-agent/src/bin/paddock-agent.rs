//! `paddock-agent`: the standalone, statically linked agent that runs inside every sandbox
//! (often as its PID 1). Same flags as `paddock agent`.

use clap::Parser;
use paddock_agent::AgentArgs;

/// The in-sandbox agent of paddock.
#[derive(Debug, Parser)]
#[command(name = "paddock-agent", version, about)]
struct Cli {
    #[command(flatten)]
    agent: AgentArgs,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get().min(4));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .max_blocking_threads(64)
        .enable_all()
        .build()?;
    runtime.block_on(paddock_agent::run(cli.agent))?;
    Ok(())
}
