//! Running commands in a sandbox: the agent's `POST /v1/exec` (buffered) and
//! `POST /v1/processes` (streamed or in the background), as the gateway forwards them.

use std::collections::BTreeMap;

use base64::Engine as _;
use serde::{Deserialize, Serialize};

/// A process to run: exactly one of `argv` and `command`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct ProcessRequest {
    /// Program and arguments, run without a shell.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub argv: Option<Vec<String>>,
    /// A shell command line, run as `/bin/sh -c COMMAND`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
    /// Environment variables added to the sandbox's.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// Working directory, confined to the sandbox's root (default: the root).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cwd: Option<String>,
    /// Kill the process group after this many milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    /// Initial stdin (text, or base64 with `stdin_encoding`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stdin: Option<String>,
    /// `base64` when `stdin` is base64-encoded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stdin_encoding: Option<String>,
    /// Keep stdin open after the initial data (start only; always open with a PTY).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub keep_stdin_open: bool,
    /// Run on a terminal of this size (start only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pty: Option<TermSize>,
    /// Keep running after the client goes away (start only).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub background: bool,
    /// Cap per captured stream, in bytes (exec only; at most the server's cap).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_output_bytes: Option<usize>,
}

impl ProcessRequest {
    /// A program and its arguments, run without a shell.
    pub fn argv<I: IntoIterator<Item = S>, S: Into<String>>(argv: I) -> Self {
        Self {
            argv: Some(argv.into_iter().map(Into::into).collect()),
            ..Self::default()
        }
    }

    /// A shell command line (`/bin/sh -c`).
    pub fn shell(command: impl Into<String>) -> Self {
        Self {
            command: Some(command.into()),
            ..Self::default()
        }
    }

    /// Bytes to write to stdin (sent as text when they are UTF-8, else as base64).
    pub fn with_stdin(mut self, data: &[u8]) -> Self {
        match std::str::from_utf8(data) {
            Ok(text) => self.stdin = Some(text.to_owned()),
            Err(_) => {
                self.stdin = Some(base64::engine::general_purpose::STANDARD.encode(data));
                self.stdin_encoding = Some("base64".to_owned());
            }
        }
        self
    }
}

/// A terminal size.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct TermSize {
    /// Columns.
    pub cols: u16,
    /// Rows.
    pub rows: u16,
}

impl Default for TermSize {
    /// 80 × 24.
    fn default() -> Self {
        Self { cols: 80, rows: 24 }
    }
}

/// Decodes output sent as text, or as base64 when `encoding` says so.
pub fn decode(data: &str, encoding: Option<&str>) -> Vec<u8> {
    match encoding {
        Some("base64") => base64::engine::general_purpose::STANDARD
            .decode(data)
            .unwrap_or_default(),
        _ => data.as_bytes().to_vec(),
    }
}

/// The outcome of a buffered exec.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct ExecResult {
    /// The exit code; none when a signal ended the process.
    pub exit_code: Option<i32>,
    /// The signal that ended the process.
    #[serde(default)]
    pub signal: Option<i32>,
    /// The timeout killed it.
    #[serde(default)]
    pub timed_out: bool,
    /// How long it ran, in milliseconds.
    #[serde(default)]
    pub duration_ms: Option<f64>,
    /// Standard output (text, or base64 with `stdout_encoding`).
    #[serde(default)]
    pub stdout: String,
    /// `base64` when `stdout` is not UTF-8.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stdout_encoding: Option<String>,
    /// More output than `max_output_bytes` was produced; the rest was dropped.
    #[serde(default)]
    pub stdout_truncated: bool,
    /// Standard error (text, or base64 with `stderr_encoding`).
    #[serde(default)]
    pub stderr: String,
    /// `base64` when `stderr` is not UTF-8.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stderr_encoding: Option<String>,
    /// See `stdout_truncated`.
    #[serde(default)]
    pub stderr_truncated: bool,
}

impl ExecResult {
    /// Standard output bytes.
    pub fn stdout_bytes(&self) -> Vec<u8> {
        decode(&self.stdout, self.stdout_encoding.as_deref())
    }

    /// Standard error bytes.
    pub fn stderr_bytes(&self) -> Vec<u8> {
        decode(&self.stderr, self.stderr_encoding.as_deref())
    }

    /// Standard output as (lossy) text.
    pub fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&self.stdout_bytes()).into_owned()
    }
}

/// How a process ended (the `exit` event of a stream, the answer of `wait`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct ExitStatus {
    /// The exit code; none when a signal ended the process.
    pub exit_code: Option<i32>,
    /// The signal that ended the process.
    #[serde(default)]
    pub signal: Option<i32>,
    /// The timeout killed it.
    #[serde(default)]
    pub timed_out: bool,
    /// How long it ran, in milliseconds.
    #[serde(default)]
    pub duration_ms: Option<f64>,
}

impl ExitStatus {
    /// The shell-style code: the exit code, or 128 + signal.
    pub fn code(&self) -> i32 {
        self.exit_code
            .unwrap_or_else(|| 128 + self.signal.unwrap_or(0))
    }
}

/// Whether a process still runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "lowercase")]
pub enum ProcessState {
    /// It runs.
    Running,
    /// It ended.
    Exited,
}

/// A started process as the agent reports it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct ProcessInfo {
    /// The agent's id of the process.
    pub id: u64,
    /// Its pid inside the sandbox.
    pub pid: i32,
    /// Program and arguments.
    pub argv: Vec<String>,
    /// Working directory.
    pub cwd: String,
    /// Whether it runs on a terminal.
    pub pty: bool,
    /// Whether it outlives its clients.
    pub background: bool,
    /// Whether it still runs.
    pub state: ProcessState,
    /// When it started, RFC 3339.
    pub started_at: String,
    /// The exit code, once it exited normally.
    pub exit_code: Option<i32>,
    /// The signal that ended it.
    pub signal: Option<i32>,
    /// The timeout killed it.
    pub timed_out: bool,
    /// How long it ran, in milliseconds, once it ended.
    pub duration_ms: Option<f64>,
    /// Offset of the oldest output byte still available for replay.
    pub output_start: u64,
    /// Offset after the newest output byte.
    pub output_end: u64,
}
