//! Test harness: a real agent served in-process on real sockets (127.0.0.1:0 and a unix
//! socket in a temp dir), and a small HTTP/1.1 client for both.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use paddock_agent::{AgentConfig, Listener};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

/// A running in-process agent; stopped on drop.
pub struct TestAgent {
    pub dir: tempfile::TempDir,
    pub tcp: SocketAddr,
    pub unix: PathBuf,
    pub root: PathBuf,
    pub legacy_root: PathBuf,
    pub token: Option<String>,
    shutdown: CancellationToken,
    task: Option<tokio::task::JoinHandle<()>>,
}

/// Which socket a request goes over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    Tcp,
    Unix,
}

/// A response: status, headers and the whole body.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|err| {
            panic!(
                "body is not JSON ({err}): {}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// NDJSON lines as JSON values.
    pub fn lines(&self) -> Vec<Value> {
        self.text()
            .lines()
            .map(|l| serde_json::from_str(l).expect("NDJSON line"))
            .collect()
    }
}

impl TestAgent {
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    pub async fn start_with(adjust: impl FnOnce(&mut AgentConfig)) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().join("workspace");
        let legacy_root = dir.path().join("app");
        let mut config = AgentConfig::new(&root);
        config.legacy_root = legacy_root.clone();
        config.shutdown_grace = Duration::from_millis(500);
        adjust(&mut config);
        let token = config.token.clone();
        let tcp_listener = Listener::tcp("127.0.0.1:0".parse().expect("addr"))
            .await
            .expect("bind tcp");
        let Listener::Tcp(inner) = &tcp_listener else {
            unreachable!()
        };
        let tcp = inner.local_addr().expect("local addr");
        let unix = dir.path().join("agent.sock");
        let unix_listener = Listener::unix(&unix).expect("bind unix");
        let shutdown = CancellationToken::new();
        let token_clone = shutdown.clone();
        let task = tokio::spawn(async move {
            paddock_agent::serve(vec![tcp_listener, unix_listener], config, token_clone)
                .await
                .expect("serve");
        });
        // Roots are created by serve; wait until it answers.
        let agent = Self {
            root: root.clone(),
            legacy_root,
            dir,
            tcp,
            unix,
            token,
            shutdown,
            task: Some(task),
        };
        for _ in 0..200 {
            if agent
                .try_request(Via::Tcp, Method::GET, "/", &[], Bytes::new())
                .await
                .is_ok()
                && root.exists()
            {
                return agent;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        panic!("agent did not start");
    }

    /// Stops the agent and waits for its shutdown to finish.
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(task) = self.task.take() {
            task.await.expect("serve task");
        }
    }

    pub fn root_path(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }

    async fn try_request(
        &self,
        via: Via,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Bytes,
    ) -> Result<Reply, Box<dyn std::error::Error + Send + Sync>> {
        let mut sender = self.connect(via).await?;
        let mut builder = http::Request::builder()
            .method(method)
            .uri(path)
            .header("host", "agent");
        if let Some(token) = &self.token {
            builder = builder.header("authorization", format!("Bearer {token}"));
        }
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        let response = sender.send_request(builder.body(Full::new(body))?).await?;
        let (parts, body) = response.into_parts();
        let body = body.collect().await?.to_bytes();
        Ok(Reply {
            status: parts.status,
            headers: parts.headers,
            body,
        })
    }

    /// A fresh HTTP/1.1 connection.
    pub async fn connect(
        &self,
        via: Via,
    ) -> Result<http1::SendRequest<Full<Bytes>>, Box<dyn std::error::Error + Send + Sync>> {
        Ok(match via {
            Via::Tcp => {
                let stream = tokio::net::TcpStream::connect(self.tcp).await?;
                let (sender, conn) = http1::handshake(TokioIo::new(stream)).await?;
                tokio::spawn(conn.with_upgrades());
                sender
            }
            Via::Unix => {
                let stream = tokio::net::UnixStream::connect(&self.unix).await?;
                let (sender, conn) = http1::handshake(TokioIo::new(stream)).await?;
                tokio::spawn(conn.with_upgrades());
                sender
            }
        })
    }

    pub async fn request(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: impl Into<Bytes>,
    ) -> Reply {
        self.request_via(Via::Tcp, method, path, headers, body)
            .await
    }

    pub async fn request_via(
        &self,
        via: Via,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: impl Into<Bytes>,
    ) -> Reply {
        self.try_request(via, method, path, headers, body.into())
            .await
            .expect("request")
    }

    pub async fn get(&self, path: &str) -> Reply {
        self.request(Method::GET, path, &[], Bytes::new()).await
    }

    pub async fn post_json(&self, path: &str, body: Value) -> Reply {
        self.request(
            Method::POST,
            path,
            &[("content-type", "application/json")],
            body.to_string(),
        )
        .await
    }

    pub async fn post_raw(&self, path: &str, body: &str) -> Reply {
        self.request(
            Method::POST,
            path,
            &[("content-type", "application/json")],
            body.to_owned(),
        )
        .await
    }

    pub async fn put(&self, path: &str, body: impl Into<Bytes>) -> Reply {
        self.request(Method::PUT, path, &[], body).await
    }

    pub async fn delete(&self, path: &str) -> Reply {
        self.request(Method::DELETE, path, &[], Bytes::new()).await
    }

    /// Runs a command with `POST /v1/exec` and returns the JSON reply.
    pub async fn exec(&self, body: Value) -> Value {
        let reply = self.post_json("/v1/exec", body).await;
        assert_eq!(
            reply.status,
            StatusCode::OK,
            "exec failed: {}",
            reply.text()
        );
        reply.json()
    }
}

impl Drop for TestAgent {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// A multipart/form-data body with one file part; returns (content type, body).
pub fn multipart(field: &str, filename: Option<&str>, content: &[u8]) -> (String, Vec<u8>) {
    let boundary = "paddock-test-boundary-7MA4YWxkTrZu0gW";
    let mut body = Vec::new();
    body.extend_from_slice(format!("--{boundary}\r\n").as_bytes());
    match filename {
        Some(name) => body.extend_from_slice(
            format!("Content-Disposition: form-data; name=\"{field}\"; filename=\"{name}\"\r\n")
                .as_bytes(),
        ),
        None => body.extend_from_slice(
            format!("Content-Disposition: form-data; name=\"{field}\"\r\n").as_bytes(),
        ),
    }
    body.extend_from_slice(b"Content-Type: application/octet-stream\r\n\r\n");
    body.extend_from_slice(content);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

/// Whether a process with this pid exists (and is not a zombie).
pub fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            let state = stat
                .rsplit(')')
                .next()
                .and_then(|rest| rest.split_whitespace().next());
            state != Some("Z") && state != Some("X")
        }
        Err(_) => false,
    }
}

/// Polls `condition` every 10 ms for up to `timeout`.
pub async fn eventually(timeout: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + timeout;
    while tokio::time::Instant::now() < deadline {
        if condition() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    condition()
}

/// Reads a pid that a command wrote to `path` (waiting for it to appear).
pub async fn read_pid(path: &Path) -> i32 {
    for _ in 0..300 {
        if let Ok(text) = std::fs::read_to_string(path)
            && let Ok(pid) = text.trim().parse()
        {
            return pid;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("no pid in {}", path.display());
}

/// One request over a fresh connection to a unix socket (for agents run as separate processes).
pub async fn unix_request(
    socket: &Path,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Option<Reply> {
    let stream = tokio::net::UnixStream::connect(socket).await.ok()?;
    let (mut sender, conn) = http1::handshake(TokioIo::new(stream)).await.ok()?;
    tokio::spawn(conn);
    let mut builder = http::Request::builder()
        .method(method)
        .uri(path)
        .header("host", "agent");
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    let response = sender
        .send_request(builder.body(Full::new(Bytes::from(body.to_owned()))).ok()?)
        .await
        .ok()?;
    let (parts, body) = response.into_parts();
    let body = body.collect().await.ok()?.to_bytes();
    Some(Reply {
        status: parts.status,
        headers: parts.headers,
        body,
    })
}

/// A pid from a JSON field.
pub fn pid(value: &Value) -> i32 {
    value
        .as_i64()
        .and_then(|p| i32::try_from(p).ok())
        .expect("pid field")
}
