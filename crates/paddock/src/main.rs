//! The `paddock` command; the command line and its dispatch live in the library (`lib.rs`).

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    paddock_cli::run(paddock_cli::Cli::parse())
}
