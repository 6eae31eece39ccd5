//! `paddock-agent`: the standalone, statically linked agent that runs inside every sandbox
//! (often as its PID 1). Same flags as `paddock agent`. It prepares (binds its unix sockets,
//! applies Landlock) while it still has one thread, then starts its runtime, and exits with the
//! main process's code when it has one.

use std::time::Duration;

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
    // Before any other thread exists: a Landlock restriction binds only later threads.
    let prepared = cli.agent.prepare()?;
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get().min(4));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .max_blocking_threads(64)
        .enable_all()
        .build()?;
    let code = runtime.block_on(prepared.run())?;
    runtime.shutdown_timeout(Duration::from_millis(200));
    std::process::exit(code);
}
