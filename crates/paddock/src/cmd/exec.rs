//! `paddock exec`: run a command in an existing sandbox, streamed, or interactively on a
//! terminal (`-it`).

use std::io::Write;
use std::os::fd::AsFd;
use std::process::ExitCode;

use anyhow::{Result, bail};
use futures_util::{SinkExt, StreamExt};
use paddock_client::{ProcessEvent, ProcessRequest, TermSize};
use tokio::io::AsyncReadExt;
use tokio_tungstenite::tungstenite::Message;

use crate::cmd::client::{ClientArgs, explain};
use crate::cmd::run::parse_env;

/// Flags of `paddock exec`.
#[derive(Debug, Clone, clap::Args)]
pub struct ExecArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    /// Keep stdin open and send it to the command.
    #[arg(short, long)]
    pub interactive: bool,
    /// Run the command on a terminal (with -i: an interactive shell).
    #[arg(short, long)]
    pub tty: bool,
    /// Set an environment variable: KEY=VALUE. Repeatable.
    #[arg(short = 'e', long = "env", value_name = "KEY=VALUE")]
    pub env: Vec<String>,
    /// Working directory inside the sandbox.
    #[arg(short = 'w', long = "workdir", value_name = "DIR")]
    pub workdir: Option<String>,
    /// The sandbox (or claim) name.
    pub sandbox: String,
    /// The command and its arguments (no shell).
    #[arg(last = true, required = true, value_name = "CMD")]
    pub command: Vec<String>,
}

fn write_out(data: &[u8], stderr: bool) {
    if stderr {
        let mut e = std::io::stderr().lock();
        let _ = e.write_all(data);
        let _ = e.flush();
    } else {
        let mut o = std::io::stdout().lock();
        let _ = o.write_all(data);
        let _ = o.flush();
    }
}

fn code(status: &paddock_client::ExitStatus) -> ExitCode {
    ExitCode::from(u8::try_from(status.code().clamp(0, 255)).unwrap_or(1))
}

/// Runs the command.
pub async fn run(args: ExecArgs) -> Result<ExitCode> {
    let client = args.client.connect()?;
    let sandbox = client.sandbox(&args.sandbox, &args.client.namespace);
    let mut req = ProcessRequest::argv(args.command.clone());
    req.env = parse_env(&args.env)?;
    req.cwd.clone_from(&args.workdir);
    if !args.interactive && !args.tty {
        let status = sandbox
            .run_streaming(&req, |event| match event {
                ProcessEvent::Stdout { data, .. } => write_out(data, false),
                ProcessEvent::Stderr { data, .. } => write_out(data, true),
                _ => {}
            })
            .await
            .map_err(explain)?;
        return Ok(code(&status));
    }
    interactive(&sandbox, req, args.tty).await
}

/// The terminal in raw mode while the session lasts.
struct RawMode {
    saved: Option<rustix::termios::Termios>,
}

impl RawMode {
    fn enter() -> Self {
        let stdin = std::io::stdin();
        let Ok(saved) = rustix::termios::tcgetattr(stdin.as_fd()) else {
            return Self { saved: None };
        };
        let mut raw = saved.clone();
        raw.make_raw();
        let _ =
            rustix::termios::tcsetattr(stdin.as_fd(), rustix::termios::OptionalActions::Now, &raw);
        Self { saved: Some(saved) }
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        if let Some(saved) = &self.saved {
            let _ = rustix::termios::tcsetattr(
                std::io::stdin().as_fd(),
                rustix::termios::OptionalActions::Now,
                saved,
            );
        }
    }
}

fn terminal_size() -> Option<TermSize> {
    let ws = rustix::termios::tcgetwinsize(std::io::stdout().as_fd()).ok()?;
    (ws.ws_col > 0 && ws.ws_row > 0).then_some(TermSize {
        cols: ws.ws_col,
        rows: ws.ws_row,
    })
}

async fn interactive(
    sandbox: &paddock_client::Sandbox,
    mut req: ProcessRequest,
    tty: bool,
) -> Result<ExitCode> {
    if tty {
        if !rustix::termios::isatty(std::io::stdin().as_fd()) {
            bail!("-t needs a terminal on standard input; drop -t to pipe input");
        }
        req.pty = Some(terminal_size().unwrap_or(TermSize { cols: 80, rows: 24 }));
    }
    req.keep_stdin_open = true;
    let socket = sandbox.attach(&req).await.map_err(explain)?;
    let (mut tx, mut rx) = socket.split();
    let _raw = tty.then(RawMode::enter);
    let mut stdin = tokio::io::stdin();
    let mut buf = vec![0u8; 16 * 1024];
    let mut winch = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::window_change())?;
    let mut stdin_open = true;
    loop {
        tokio::select! {
            msg = rx.next() => {
                let Some(msg) = msg else { bail!("the sandbox closed the session without an exit status") };
                let Message::Text(text) = msg? else { continue };
                let Ok(value) = serde_json::from_str::<serde_json::Value>(text.as_str()) else { continue };
                match ProcessEvent::parse(&value) {
                    Some(ProcessEvent::Stdout { data, .. }) => write_out(&data, false),
                    Some(ProcessEvent::Stderr { data, .. }) => write_out(&data, true),
                    Some(ProcessEvent::Exit(status)) => return Ok(code(&status)),
                    Some(ProcessEvent::Error { code, message }) => bail!("{code}: {message}"),
                    _ => {}
                }
            }
            n = stdin.read(&mut buf), if stdin_open => {
                match n? {
                    0 => {
                        stdin_open = false;
                        tx.send(Message::text(r#"{"type":"eof"}"#)).await?;
                    }
                    n => tx.send(Message::binary(buf[..n].to_vec())).await?,
                }
            }
            _ = winch.recv(), if tty => {
                if let Some(size) = terminal_size() {
                    let msg = serde_json::json!({"type": "resize", "cols": size.cols, "rows": size.rows});
                    tx.send(Message::text(msg.to_string())).await?;
                }
            }
        }
    }
}
