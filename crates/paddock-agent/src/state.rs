//! Shared server state and small HTTP helpers (bounded body reading, streamed bodies).

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::task::{Context, Poll};
use std::time::Instant;

use axum::body::Body;
use bytes::Bytes;
use http_body::Frame;
use http_body_util::BodyExt;
use tokio::sync::mpsc;

use crate::config::AgentConfig;
use crate::confine::Root;
use crate::main_process::MainProcess;
use crate::process::ProcessTable;

/// Everything handlers share.
#[derive(Debug)]
pub struct AppState {
    pub config: AgentConfig,
    /// Root of `/v1/files` and process working directories.
    pub root: Root,
    /// Where processes that name no working directory run (`--workdir`, or the root).
    pub workdir: std::path::PathBuf,
    /// Root of the legacy endpoints, or why it is unusable.
    pub legacy_root: Result<Root, String>,
    pub processes: Arc<ProcessTable>,
    /// The sandbox's main process, when the agent was given one.
    pub main: Option<Arc<MainProcess>>,
    pub started: Instant,
    /// Set when shutdown begins: health turns 503.
    pub shutting_down: AtomicBool,
}

pub type SharedState = Arc<AppState>;

/// Why a request body could not be read.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error("request body is larger than the limit of {limit} bytes")]
    TooLarge { limit: usize },
    #[error("cannot read request body: {0}")]
    Read(String),
}

/// Reads a whole body of at most `limit` bytes.
pub async fn read_body(body: Body, limit: usize) -> Result<Bytes, BodyError> {
    let limited = http_body_util::Limited::new(body, limit);
    match limited.collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(err) if err.is::<http_body_util::LengthLimitError>() => {
            Err(BodyError::TooLarge { limit })
        }
        Err(err) => Err(BodyError::Read(err.to_string())),
    }
}

/// Parses JSON, describing what is wrong (serde names the field, line and column).
pub fn parse_json<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err("request body is empty: send a JSON object".to_owned());
    }
    serde_json::from_slice(bytes).map_err(|err| format!("invalid JSON body: {err}"))
}

/// A response body fed by a channel; the producer sees `closed()` when the client goes away.
#[derive(Debug)]
pub struct ChannelBody {
    rx: mpsc::Receiver<Bytes>,
}

impl ChannelBody {
    /// A body and its sender holding at most `depth` chunks in flight.
    pub fn channel(depth: usize) -> (mpsc::Sender<Bytes>, Body) {
        let (tx, rx) = mpsc::channel(depth);
        (tx, Body::new(Self { rx }))
    }
}

impl http_body::Body for ChannelBody {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        self.rx
            .poll_recv(cx)
            .map(|chunk| chunk.map(|data| Ok(Frame::data(data))))
    }
}

/// A response body fed by a channel whose producer can fail: an error aborts the response (the
/// client sees a broken transfer rather than a body that merely looks complete).
#[derive(Debug)]
pub struct FallibleChannelBody {
    rx: mpsc::Receiver<io::Result<Bytes>>,
}

impl FallibleChannelBody {
    /// A body and its sender holding at most `depth` chunks in flight.
    pub fn channel(depth: usize) -> (mpsc::Sender<io::Result<Bytes>>, Body) {
        let (tx, rx) = mpsc::channel(depth);
        (tx, Body::new(Self { rx }))
    }
}

impl http_body::Body for FallibleChannelBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        self.rx
            .poll_recv(cx)
            .map(|chunk| chunk.map(|data| data.map(Frame::data)))
    }
}
