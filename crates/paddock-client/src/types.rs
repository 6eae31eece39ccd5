//! Requests and answers of the gateway API, as Rust values.

use std::collections::BTreeMap;

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// `POST /v1/sandboxes`. Build with [`CreateSandbox::image`], [`CreateSandbox::template`] or
/// [`CreateSandbox::warm_pool`], then set what you need.
#[derive(Clone, Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CreateSandbox {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub warm_pool: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub template: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub runtime: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub command: Option<Vec<String>>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resources: Option<Resources>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub volumes: Vec<HostVolume>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout_seconds: Option<u64>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wait: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wait_timeout_seconds: Option<f64>,
}

impl CreateSandbox {
    /// A sandbox running `image` (`host`, `oci:/path[:tag]` or a registry reference).
    pub fn image(image: impl Into<String>) -> Self {
        Self {
            image: Some(image.into()),
            ..Self::default()
        }
    }

    /// A sandbox from a SandboxTemplate (a pool of it when there is one).
    pub fn template(template: impl Into<String>) -> Self {
        Self {
            template: Some(template.into()),
            ..Self::default()
        }
    }

    /// A sandbox taken from a SandboxWarmPool.
    pub fn warm_pool(pool: impl Into<String>) -> Self {
        Self {
            warm_pool: Some(pool.into()),
            ..Self::default()
        }
    }
}

/// Limits of an image sandbox.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Resources {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu: Option<String>,
}

/// A host directory mounted into an image sandbox.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HostVolume {
    pub host_path: String,
    pub mount_path: String,
    pub read_only: bool,
}

/// A sandbox as the gateway describes it.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SandboxInfo {
    pub name: String,
    pub namespace: String,
    #[serde(default)]
    pub claim: Option<String>,
    pub ready: bool,
    #[serde(default)]
    pub reason: Option<String>,
    #[serde(default)]
    pub message: Option<String>,
    pub phase: String,
    #[serde(default)]
    pub launch_type: Option<String>,
    #[serde(default)]
    pub runtime: Option<String>,
    #[serde(default)]
    pub image: Option<String>,
    #[serde(default)]
    pub created_at: Option<String>,
    #[serde(default)]
    pub expires_at: Option<String>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

/// A process to run (the agent's `/v1/exec` and `/v1/processes` body).
#[derive(Clone, Debug, Default, Serialize)]
pub struct ProcessRequest {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub argv: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cwd: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stdin: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stdin_encoding: Option<String>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub keep_stdin_open: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pty: Option<TermSize>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub background: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
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

    /// Bytes to write to stdin.
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
pub struct TermSize {
    pub cols: u16,
    pub rows: u16,
}

fn decode(data: &str, encoding: Option<&str>) -> Vec<u8> {
    match encoding {
        Some("base64") => base64::engine::general_purpose::STANDARD
            .decode(data)
            .unwrap_or_default(),
        _ => data.as_bytes().to_vec(),
    }
}

/// The outcome of a buffered exec.
#[derive(Clone, Debug, Deserialize, PartialEq)]
pub struct ExecResult {
    pub exit_code: Option<i32>,
    #[serde(default)]
    pub signal: Option<i32>,
    #[serde(default)]
    pub timed_out: bool,
    #[serde(default)]
    pub duration_ms: Option<f64>,
    #[serde(default)]
    stdout: String,
    #[serde(default)]
    stdout_encoding: Option<String>,
    #[serde(default)]
    pub stdout_truncated: bool,
    #[serde(default)]
    stderr: String,
    #[serde(default)]
    stderr_encoding: Option<String>,
    #[serde(default)]
    pub stderr_truncated: bool,
}

impl ExecResult {
    /// Standard output bytes.
    pub fn stdout(&self) -> Vec<u8> {
        decode(&self.stdout, self.stdout_encoding.as_deref())
    }

    /// Standard error bytes.
    pub fn stderr(&self) -> Vec<u8> {
        decode(&self.stderr, self.stderr_encoding.as_deref())
    }

    /// Standard output as (lossy) text.
    pub fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&self.stdout()).into_owned()
    }
}

/// One event of a started process (NDJSON or WebSocket).
#[derive(Clone, Debug, PartialEq)]
pub enum ProcessEvent {
    /// The process started.
    Start { id: u64, pid: u32 },
    /// Output on stdout.
    Stdout { offset: u64, data: Vec<u8> },
    /// Output on stderr.
    Stderr { offset: u64, data: Vec<u8> },
    /// Output in `[from, to)` was evicted before this reader got it.
    Dropped { from: u64, to: u64 },
    /// The process exited.
    Exit(ExitStatus),
    /// The server reported an error.
    Error { code: String, message: String },
}

/// How a process ended.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
pub struct ExitStatus {
    pub exit_code: Option<i32>,
    #[serde(default)]
    pub signal: Option<i32>,
    #[serde(default)]
    pub timed_out: bool,
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

impl ProcessEvent {
    /// Parses one NDJSON line / WebSocket text frame; `None` for unknown event types.
    pub fn parse(v: &Value) -> Option<Self> {
        let s = |k: &str| v.get(k).and_then(Value::as_str);
        let u = |k: &str| v.get(k).and_then(Value::as_u64).unwrap_or(0);
        Some(match s("type")? {
            "start" => Self::Start {
                id: u("id"),
                pid: u32::try_from(u("pid")).unwrap_or(0),
            },
            "stdout" => Self::Stdout {
                offset: u("offset"),
                data: decode(s("data").unwrap_or(""), s("encoding")),
            },
            "stderr" => Self::Stderr {
                offset: u("offset"),
                data: decode(s("data").unwrap_or(""), s("encoding")),
            },
            "dropped" => Self::Dropped {
                from: u("from"),
                to: u("to"),
            },
            "exit" => Self::Exit(serde_json::from_value(v.clone()).ok()?),
            "error" => Self::Error {
                code: s("code").unwrap_or("").to_owned(),
                message: s("message").unwrap_or("").to_owned(),
            },
            _ => return None,
        })
    }
}

/// A started process as the agent reports it.
#[derive(Clone, Debug, Deserialize, PartialEq)]
pub struct ProcessInfo {
    pub id: u64,
    #[serde(default)]
    pub pid: u32,
    #[serde(default)]
    pub argv: Vec<String>,
    #[serde(default)]
    pub state: String,
    #[serde(default)]
    pub background: bool,
    #[serde(default)]
    pub exit_code: Option<i32>,
    #[serde(default)]
    pub signal: Option<i32>,
    #[serde(default)]
    pub output_start: u64,
    #[serde(default)]
    pub output_end: u64,
}

/// One directory entry.
#[derive(Clone, Debug, Deserialize, PartialEq)]
pub struct FileEntry {
    pub name: String,
    #[serde(rename = "type")]
    pub type_: String,
    #[serde(default)]
    pub size: u64,
    #[serde(default)]
    pub modified_at: Option<String>,
    #[serde(default)]
    pub mode: Option<String>,
}

/// What `apply` did with one object.
#[derive(Clone, Debug, Deserialize, PartialEq)]
pub struct Applied {
    pub kind: Option<String>,
    pub name: Option<String>,
    pub namespace: Option<String>,
    pub action: String,
}
