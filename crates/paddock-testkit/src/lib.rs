//! Shared helpers of paddock's scenario tests: the real static agent, and a real engine with its
//! gateway on a free loopback port, torn down (sandboxes included) when dropped.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::missing_panics_doc)]

pub mod cli;
pub mod kube;
pub mod net;
pub mod otlp;
pub mod registry;
pub mod serve;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, OnceLock};

use paddock_client::Client;
use paddock_engine::{Engine, EngineConfig};
use paddock_gateway::auth::Token;
use paddock_gateway::{AppState, Auth, GatewayOptions};
use tokio_util::sync::CancellationToken;

/// The static agent: `PADDOCK_AGENT_BIN`, or built once with `scripts/build-agent.sh` into a
/// target directory of its own (so it never waits on the test's cargo lock).
pub fn agent_binary() -> PathBuf {
    static AGENT: OnceLock<PathBuf> = OnceLock::new();
    AGENT
        .get_or_init(|| {
            if let Some(path) = std::env::var_os("PADDOCK_AGENT_BIN") {
                return PathBuf::from(path);
            }
            let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
            let target = workspace.join("target/agent-build");
            eprintln!(
                "building the agent with scripts/build-agent.sh into {} (once)",
                target.display()
            );
            let out = Command::new("bash")
                .arg(workspace.join("scripts/build-agent.sh"))
                .env("CARGO_TARGET_DIR", &target)
                .output()
                .expect("run scripts/build-agent.sh");
            assert!(
                out.status.success(),
                "building the agent failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
        })
        .clone()
}

/// A running engine and gateway in a temporary home.
#[derive(Debug)]
pub struct TestServer {
    /// A client with the server's token.
    pub client: Client,
    /// The server's home directory.
    pub home: PathBuf,
    /// The token.
    pub token: String,
    /// The base URL.
    pub url: String,
    engine: Option<Engine>,
    shutdown: CancellationToken,
    server: Option<tokio::task::JoinHandle<()>>,
    dir: Option<tempfile::TempDir>,
}

impl TestServer {
    /// Starts an engine (in-memory store) and its gateway.
    pub async fn start() -> Self {
        Self::start_in(None, true).await
    }

    /// Starts on a durable store in `home` (a fresh temporary one when `None`).
    pub async fn start_in(home: Option<PathBuf>, in_memory: bool) -> Self {
        Self::start_with(home, in_memory, |_| {}).await
    }

    /// As [`TestServer::start_in`], with the engine's configuration adjusted by `configure`
    /// (default pools on, say).
    pub async fn start_with(
        home: Option<PathBuf>,
        in_memory: bool,
        configure: impl FnOnce(&mut EngineConfig),
    ) -> Self {
        if let Ok(filter) = std::env::var("PADDOCK_TEST_LOG") {
            let _ = tracing_subscriber::fmt()
                .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
                .with_test_writer()
                .try_init();
        }
        let dir = if home.is_none() {
            Some(
                tempfile::Builder::new()
                    .prefix("paddock-test-")
                    .tempdir()
                    .unwrap(),
            )
        } else {
            None
        };
        let home = home.unwrap_or_else(|| dir.as_ref().unwrap().path().to_path_buf());
        let mut config = EngineConfig::new(&home, agent_binary());
        config.in_memory = in_memory;
        config.exit_check_interval = std::time::Duration::from_millis(300);
        configure(&mut config);
        let engine = Engine::start(config).await.expect("engine starts");
        let token = Token::load_or_create(&home.join("token")).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let state = AppState::new(
            engine.backend() as Arc<dyn paddock_gateway::Backend>,
            Auth::Bearer(token.clone()),
            GatewayOptions::default(),
        );
        let shutdown = CancellationToken::new();
        let server = tokio::spawn({
            let shutdown = shutdown.clone();
            async move {
                paddock_gateway::serve(listener, state, shutdown)
                    .await
                    .unwrap();
            }
        });
        let client = Client::new(&url, Some(token.expose().to_owned())).unwrap();
        Self {
            client,
            home,
            token: token.expose().to_owned(),
            url,
            engine: Some(engine),
            shutdown,
            server: Some(server),
            dir,
        }
    }

    /// The engine.
    pub fn engine(&self) -> &Engine {
        self.engine.as_ref().unwrap()
    }

    /// Stops the gateway and the controllers but leaves sandboxes running (a restart).
    pub async fn stop_keeping_sandboxes(mut self) -> PathBuf {
        self.shutdown.cancel();
        if let Some(s) = self.server.take() {
            let _ = s.await;
        }
        if let Some(e) = self.engine.take() {
            e.shutdown().await;
        }
        // The directory must outlive this value for a restart to find it.
        if let Some(d) = self.dir.take() {
            let _ = d.keep();
        }
        self.home.clone()
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.shutdown.cancel();
        let Some(engine) = self.engine.take() else {
            return;
        };
        let runtime = engine.workloads().runtime().clone();
        let dir = self.dir.take();
        // Drop may run inside the test's runtime: tear down from a thread with its own.
        let _ = std::thread::spawn(move || {
            let tokio = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            tokio.block_on(async move {
                engine.shutdown().await;
                if let Ok(all) = runtime.list().await {
                    for w in all {
                        let _ = runtime.teardown(&w.workload.id).await;
                    }
                }
            });
            drop(dir);
        })
        .join();
    }
}
