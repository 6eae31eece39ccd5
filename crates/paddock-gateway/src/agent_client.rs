//! An HTTP client for sandbox agents, over unix sockets (the embedded engine) and TCP (pods),
//! with pooled keep-alive connections: the gateway's exec path adds one loopback hop, not a
//! connection setup.

use std::future::Future;
use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use std::os::unix::ffi::OsStrExt;

use http::Uri;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::{Connected, Connection};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpStream, UnixStream};

use paddock_backend::Endpoint;

/// The body type the client sends.
pub type ClientBody = axum::body::Body;

/// A pooled client for agents.
pub type AgentClient = Client<AgentConnector, ClientBody>;

/// Builds the client (idle connections kept 90 s; HTTP/1.1 so upgrades work).
pub fn new_client() -> AgentClient {
    Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(90))
        .pool_max_idle_per_host(32)
        .build(AgentConnector)
}

/// A client speaking cleartext HTTP/2 with prior knowledge (h2c), for gRPC to a sandbox.
pub fn new_grpc_client() -> AgentClient {
    Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(90))
        .http2_only(true)
        .build(AgentConnector)
}

const UNIX_SCHEME: &str = "unix";

/// The URI of `path_and_query` at an endpoint. Unix sockets are addressed with the scheme
/// `unix` and the socket path hex-encoded as the host, so the pool keys connections by socket.
///
/// # Errors
/// The resulting URI does not parse (a path with characters a URI cannot hold).
pub fn uri(endpoint: &Endpoint, path_and_query: &str) -> Result<Uri, http::Error> {
    let uri = match endpoint {
        Endpoint::Unix(socket) => {
            let hex: String = socket
                .as_os_str()
                .as_encoded_bytes()
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            format!("{UNIX_SCHEME}://{hex}{path_and_query}")
        }
        Endpoint::Tcp(addr) => format!("http://{addr}{path_and_query}"),
    };
    Ok(Uri::try_from(uri)?)
}

fn socket_path(host: &str) -> Option<PathBuf> {
    if !host.len().is_multiple_of(2) {
        return None;
    }
    let bytes: Option<Vec<u8>> = (0..host.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&host[i..i + 2], 16).ok())
        .collect();
    bytes.map(|b| Path::new(std::ffi::OsStr::from_bytes(&b)).to_path_buf())
}

/// Connects to unix-socket or TCP endpoints.
#[derive(Clone, Copy, Debug, Default)]
pub struct AgentConnector;

impl tower::Service<Uri> for AgentConnector {
    type Response = TokioIo<AgentStream>;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<Self::Response>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        Box::pin(async move {
            let host = uri.host().unwrap_or_default().to_owned();
            if uri.scheme_str() == Some(UNIX_SCHEME) {
                let path = socket_path(&host).ok_or_else(|| {
                    io::Error::new(io::ErrorKind::InvalidInput, "bad unix socket address")
                })?;
                Ok(TokioIo::new(AgentStream::Unix(
                    UnixStream::connect(path).await?,
                )))
            } else {
                let port = uri.port_u16().unwrap_or(80);
                let host = host.trim_start_matches('[').trim_end_matches(']');
                let stream = TcpStream::connect((host, port)).await?;
                stream.set_nodelay(true)?;
                Ok(TokioIo::new(AgentStream::Tcp(stream)))
            }
        })
    }
}

/// A connection to an agent.
#[derive(Debug)]
pub enum AgentStream {
    /// Over a unix socket.
    Unix(UnixStream),
    /// Over TCP.
    Tcp(TcpStream),
}

impl Connection for AgentStream {
    fn connected(&self) -> Connected {
        Connected::new()
    }
}

impl AsyncRead for AgentStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            AgentStream::Unix(s) => Pin::new(s).poll_read(cx, buf),
            AgentStream::Tcp(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for AgentStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            AgentStream::Unix(s) => Pin::new(s).poll_write(cx, buf),
            AgentStream::Tcp(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            AgentStream::Unix(s) => Pin::new(s).poll_flush(cx),
            AgentStream::Tcp(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            AgentStream::Unix(s) => Pin::new(s).poll_shutdown(cx),
            AgentStream::Tcp(s) => Pin::new(s).poll_shutdown(cx),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            AgentStream::Unix(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            AgentStream::Tcp(s) => Pin::new(s).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unix_socket_paths_round_trip_through_the_uri() {
        let endpoint = Endpoint::Unix(PathBuf::from("/var/lib/paddock/run/sb-1/agent.sock"));
        let uri = uri(&endpoint, "/v1/exec?x=1").unwrap();
        assert_eq!(uri.scheme_str(), Some("unix"));
        assert_eq!(uri.path_and_query().unwrap().as_str(), "/v1/exec?x=1");
        assert_eq!(
            socket_path(uri.host().unwrap()).unwrap(),
            PathBuf::from("/var/lib/paddock/run/sb-1/agent.sock")
        );
    }

    #[test]
    fn tcp_endpoints_keep_host_and_port() {
        let uri = uri(&Endpoint::Tcp("10.0.0.5:8888".into()), "/execute").unwrap();
        assert_eq!(uri.to_string(), "http://10.0.0.5:8888/execute");
    }
}
