//! A real `paddock serve` process, for tests of the CLI and of crashes.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use paddock_client::Client;

use crate::agent_binary;

/// A spawned `paddock serve` with its home directory. On drop its sandboxes are deleted and it
/// is stopped with SIGTERM, so a test leaves no sandbox or pooled process behind (sandboxes
/// outlive serve by design).
#[derive(Debug)]
pub struct ServeProcess {
    child: Child,
    /// The `paddock` binary it runs (tests pass `env!("CARGO_BIN_EXE_paddock")`).
    pub binary: PathBuf,
    /// `$PADDOCK_HOME`: store, token, workloads; its `serve.log` has the server's log.
    pub home: PathBuf,
    /// `http://127.0.0.1:<port>`.
    pub url: String,
    /// The bearer token serve wrote to `home/token`.
    pub token: String,
    /// A client for the server.
    pub client: Client,
}

impl ServeProcess {
    /// Starts `binary serve --home home --listen 127.0.0.1:port extra...` (with
    /// `--default-pool=0` unless `extra` sets it) and waits until it answers `/healthz` (30 s
    /// at most, then panics with its log).
    #[allow(clippy::zombie_processes)] // the returned ServeProcess reaps it on drop
    pub async fn start(binary: &Path, home: &Path, port: u16, extra: &[&str]) -> Self {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(home.join("serve.log"))
            .expect("serve.log");
        let child = Command::new(binary)
            .arg("serve")
            .arg("--home")
            .arg(home)
            .args(["--listen", &format!("127.0.0.1:{port}")])
            // Default pools only where a test asks for them: their members would show up in
            // what other tests count.
            .args(
                (!extra.iter().any(|a| a.starts_with("--default-pool")))
                    .then_some("--default-pool=0"),
            )
            .args(extra)
            .env("PADDOCK_AGENT_BIN", agent_binary())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn paddock serve");
        let url = format!("http://127.0.0.1:{port}");
        let start = Instant::now();
        loop {
            if let Ok(token) = std::fs::read_to_string(home.join("token")) {
                let token = token.trim().to_owned();
                let client = Client::new(&url, Some(token.clone())).expect("client");
                if client.health().await.is_ok() {
                    return Self {
                        child,
                        binary: binary.to_owned(),
                        home: home.to_owned(),
                        url,
                        token,
                        client,
                    };
                }
            }
            if start.elapsed() > Duration::from_secs(30) {
                let mut child = child;
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "serve did not start: {}",
                    std::fs::read_to_string(home.join("serve.log")).unwrap_or_default()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Kills the server without warning (SIGKILL) and reaps it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Stops the server with SIGTERM (a clean shutdown) and returns its exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        let sent = Command::new("kill").args(["-TERM", &pid]).status();
        assert!(sent.is_ok_and(|s| s.success()), "kill -TERM {pid}");
        self.child.wait().expect("wait for serve")
    }

    /// A `paddock` CLI command pointed at this server (`PADDOCK_URL`, `PADDOCK_TOKEN`).
    pub fn cli(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(&self.binary);
        cmd.args(args)
            .env("PADDOCK_URL", &self.url)
            .env("PADDOCK_TOKEN", &self.token)
            .env("PADDOCK_HOME", &self.home)
            .env_remove("RUST_LOG");
        cmd
    }

    /// Runs a CLI command to its end (off the async runtime's worker) and returns its output.
    pub async fn run(&self, args: &[&str]) -> Output {
        let mut cmd = self.cli(args);
        tokio::task::spawn_blocking(move || cmd.output().expect("run paddock"))
            .await
            .expect("join")
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.home.join("serve.log")).unwrap_or_default()
    }
}

impl Drop for ServeProcess {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let client = self.client.clone();
            // Drop may run on an async worker: clean up on a thread with a runtime of its own.
            let _ = std::thread::spawn(move || {
                let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                else {
                    return;
                };
                rt.block_on(delete_every_sandbox(&client));
            })
            .join();
            let pid = self.child.id().to_string();
            let _ = Command::new("kill").args(["-TERM", &pid]).status();
            let deadline = Instant::now() + Duration::from_secs(10);
            while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        self.kill();
    }
}

/// Deletes every sandbox the server has and waits (30 s at most) until they are gone.
async fn delete_every_sandbox(client: &Client) {
    use http::Method;
    // Pools first (default pools too), or they start new members behind the deletes.
    let names = |list: serde_json::Value| -> Vec<(String, String)> {
        list["items"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|o| {
                Some((
                    o.pointer("/metadata/namespace")?.as_str()?.to_owned(),
                    o.pointer("/metadata/name")?.as_str()?.to_owned(),
                ))
            })
            .collect()
    };
    let pools = "/apis/extensions.agents.x-k8s.io/v1beta1";
    if let Ok(list) = client
        .object_call(Method::GET, &format!("{pools}/sandboxwarmpools"), None)
        .await
    {
        for (ns, name) in names(list) {
            let path = format!("{pools}/namespaces/{ns}/sandboxwarmpools/{name}");
            let _ = client.object_call(Method::DELETE, &path, None).await;
        }
    }
    let sandboxes = "/apis/agents.x-k8s.io/v1beta1";
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        let Ok(list) = client
            .object_call(Method::GET, &format!("{sandboxes}/sandboxes"), None)
            .await
        else {
            return;
        };
        let left = names(list);
        if left.is_empty() {
            return;
        }
        for (ns, name) in left {
            let _ = client.sandbox(&name, &ns).delete().await;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
