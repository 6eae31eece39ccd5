//! Requests and answers of the gateway API, as Rust values: the wire types of `paddock-wire`
//! (the same the gateway and the agent use), and the events of a process stream.

use serde_json::Value;

pub use paddock_wire::process::decode;
pub use paddock_wire::{
    Applied, ApplyResult, CreateSandbox, DirectoryListing, ExecResult, ExitStatus, FileEntry,
    HostVolume, Phase, ProcessInfo, ProcessRequest, ProcessState, Resources, SandboxInfo,
    SandboxList, TermSize,
};

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
