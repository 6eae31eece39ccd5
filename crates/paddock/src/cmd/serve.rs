//! `paddock serve`: the embedded engine and the gateway on this machine.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use paddock_engine::{Engine, EngineConfig};
use paddock_gateway::auth::{ScopedTokens, ScopedVerifier, Token};
use paddock_gateway::scoped_v2::{SigningKeyFile, VerificationKeys};
use paddock_gateway::{AppState, Auth, GatewayOptions};
use tokio_util::sync::CancellationToken;

/// Flags of `paddock serve`.
#[derive(Debug, Clone, clap::Args)]
pub struct ServeArgs {
    /// Where objects, sandbox state and volumes live. Defaults to $PADDOCK_HOME, else
    /// /var/lib/paddock as root, else ~/.local/share/paddock.
    #[arg(long, env = "PADDOCK_HOME", value_name = "DIR")]
    pub home: Option<PathBuf>,
    /// Address of the REST API. Loopback by default; anything else exposes sandboxes to the
    /// network (the token still guards every call).
    #[arg(
        long,
        env = "PADDOCK_LISTEN",
        default_value = "127.0.0.1:7878",
        value_name = "ADDR"
    )]
    pub listen: SocketAddr,
    /// `token` (default): every call needs the bearer token kept in <home>/token (mode 0600).
    /// `none` turns authentication off; only for a machine you alone use.
    #[arg(long, value_enum, default_value_t = AuthMode::Token)]
    pub auth: AuthMode,
    /// A file holding the HMAC secret (at least 32 bytes) of upstream's scoped tokens: a token
    /// from `paddock token SANDBOX` then reaches that one sandbox through the router contract
    /// (X-Sandbox-ID), while the token in <home>/token still does everything.
    #[arg(long, env = "PADDOCK_SCOPED_TOKEN_SECRET_FILE", value_name = "PATH")]
    pub scoped_token_secret_file: Option<PathBuf>,
    /// Also accept upstream's v2 (Ed25519) scoped tokens signed by these public keys
    /// (`{"keys":[{"kid","publicKey"}]}`, as `paddock token keygen` writes).
    #[arg(long, value_name = "PATH")]
    pub authz_scoped_token_verification_keys_file: Option<PathBuf>,
    /// Mint v2 scoped tokens (`paddock token SANDBOX --server`, `POST
    /// /v1/sandboxes/{name}/tokens`) with this signing key; its public half is accepted too.
    #[arg(long, value_name = "PATH")]
    pub scoped_token_signing_key_file: Option<PathBuf>,
    /// The static paddock-agent binary mounted into every sandbox. Found next to this binary,
    /// or where scripts/build-agent.sh puts it, when not given.
    #[arg(long, env = "PADDOCK_AGENT_BIN", value_name = "PATH")]
    pub agent: Option<PathBuf>,
    /// A registry (`host:port`) to reach over plain HTTP instead of HTTPS; repeatable. Only for
    /// registries you trust on a network you trust.
    #[arg(long = "insecure-registry", value_name = "HOST:PORT")]
    pub insecure_registries: Vec<String>,
    /// Registry credentials in Docker's config.json format (`auths` with base64 user:password).
    /// Defaults to ~/.docker/config.json when it exists.
    #[arg(long, value_name = "PATH")]
    pub registry_config: Option<PathBuf>,
    /// Fresh sandboxes kept booted per runtime and image, so `paddock run` and creates without
    /// a template or name start at once (each is used once, then discarded). The host image on
    /// gVisor is pooled from the start, others from their first use; a pool grows while claims
    /// find it empty and shrinks back after 10 idle minutes. `0` turns this off.
    #[arg(
        long,
        env = "PADDOCK_DEFAULT_POOL",
        default_value_t = 2,
        value_name = "N"
    )]
    pub default_pool: u16,
    /// The most sandboxes one default pool grows to under demand.
    #[arg(long, default_value_t = 8, value_name = "N")]
    pub default_pool_max: u16,
    /// Keep objects in memory only: everything is forgotten when the server stops.
    #[arg(long)]
    pub in_memory: bool,
    /// The DNS server the egress proxy resolves sandboxes' destinations with (HOST:PORT; the
    /// host's resolver by default). Sandboxes never talk to it themselves.
    #[arg(long, value_name = "ADDR")]
    pub egress_dns: Option<SocketAddr>,
    /// A CA certificate file (PEM) the egress proxy trusts besides the host's roots, when it
    /// makes TLS itself (to destinations that receive injected credentials). Repeatable.
    #[arg(long = "egress-ca-file", value_name = "PATH")]
    pub egress_ca_files: Vec<PathBuf>,
    /// Give no sandbox a network, whatever its SandboxPolicy says.
    #[arg(long, conflicts_with = "egress_dns")]
    pub no_egress: bool,
    /// Log format.
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

/// How clients authenticate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum AuthMode {
    /// A bearer token.
    Token,
    /// No authentication.
    None,
}

/// Log format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// The home directory paddock uses by default.
pub fn default_home() -> Result<PathBuf> {
    paddock_store::default_home()
        .context("cannot tell where paddock keeps its data; set PADDOCK_HOME")
}

/// Finds the static agent binary.
pub fn find_agent(explicit: Option<&Path>) -> Result<PathBuf> {
    if let Some(path) = explicit {
        // A relative path is the caller's: resolve it here, before it reaches a sandbox bundle
        // (where it would name a file inside the sandbox's root).
        let absolute = std::fs::canonicalize(path).map_err(|e| {
            anyhow::anyhow!(
                "the agent binary {} cannot be used ({e}, from {}); build it with scripts/build-agent.sh and pass its path",
                path.display(),
                std::env::current_dir().map_or_else(|_| "?".to_owned(), |d| d.display().to_string())
            )
        })?;
        if !absolute.is_file() {
            bail!(
                "the agent binary {} is not a file; build it with scripts/build-agent.sh",
                absolute.display()
            );
        }
        let mut magic = [0u8; 4];
        let elf = std::fs::File::open(&absolute)
            .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut magic))
            .is_ok()
            && &magic == b"\x7fELF";
        if !elf {
            bail!(
                "the agent binary {} is not an executable (ELF) file; build it with scripts/build-agent.sh",
                absolute.display()
            );
        }
        return Ok(absolute);
    }
    let exe = std::env::current_exe().context("locating the paddock binary")?;
    let dir = exe.parent().unwrap_or(Path::new("."));
    let candidates = [
        dir.join("paddock-agent"),
        dir.join("../x86_64-unknown-linux-gnu/release-agent/paddock-agent"),
        PathBuf::from("/usr/local/lib/paddock/paddock-agent"),
        PathBuf::from("/usr/lib/paddock/paddock-agent"),
    ];
    candidates.into_iter().find(|p| p.is_file()).with_context(|| {
        "cannot find the static paddock-agent binary that runs inside every sandbox; build it with \
         scripts/build-agent.sh, or pass --agent PATH (or set PADDOCK_AGENT_BIN)"
            .to_owned()
    })
}

/// Reads registry credentials from a Docker config.json (`{"auths": {"host": {"auth": "base64(user:pass)"}}}`).
fn registry_credentials(
    path: Option<&Path>,
) -> Result<std::collections::BTreeMap<String, paddock_runtime::image::Credentials>> {
    use base64::Engine as _;
    let default = std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".docker/config.json"));
    let path = match (path, default) {
        (Some(p), _) => p.to_path_buf(),
        (None, Some(d)) if d.is_file() => d,
        _ => return Ok(Default::default()),
    };
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("reading registry credentials from {}", path.display()))?;
    let config: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("{} is not JSON", path.display()))?;
    let mut out = std::collections::BTreeMap::new();
    for (registry, entry) in config
        .get("auths")
        .and_then(serde_json::Value::as_object)
        .into_iter()
        .flatten()
    {
        let (username, password) =
            if let Some(auth) = entry.get("auth").and_then(serde_json::Value::as_str) {
                let decoded = base64::engine::general_purpose::STANDARD
                    .decode(auth)
                    .with_context(|| {
                        format!("{}: auths.{registry}.auth is not base64", path.display())
                    })?;
                let decoded = String::from_utf8(decoded).with_context(|| {
                    format!("{}: auths.{registry}.auth is not text", path.display())
                })?;
                match decoded.split_once(':') {
                    Some((u, p)) => (u.to_owned(), p.to_owned()),
                    None => bail!(
                        "{}: auths.{registry}.auth must encode user:password",
                        path.display()
                    ),
                }
            } else {
                let field = |k: &str| {
                    entry
                        .get(k)
                        .and_then(serde_json::Value::as_str)
                        .unwrap_or_default()
                        .to_owned()
                };
                (field("username"), field("password"))
            };
        let host = registry
            .trim_start_matches("https://")
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .split('/')
            .next()
            .unwrap_or_default()
            .to_owned();
        out.insert(
            host,
            paddock_runtime::image::Credentials { username, password },
        );
    }
    Ok(out)
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("PADDOCK_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

/// Runs the server until SIGINT or SIGTERM.
pub async fn run(args: ServeArgs) -> Result<ExitCode> {
    init_logging(args.log_format);
    let home = match args.home {
        Some(h) => h,
        None => default_home()?,
    };
    std::fs::create_dir_all(&home).with_context(|| format!("creating {}", home.display()))?;
    let agent = find_agent(args.agent.as_deref())?;
    let issuer = args
        .scoped_token_signing_key_file
        .as_deref()
        .map(|path| {
            let text = std::fs::read(path)
                .with_context(|| format!("reading the v2 signing key {}", path.display()))?;
            SigningKeyFile::from_json(&text)
                .with_context(|| format!("the v2 signing key in {}", path.display()))
        })
        .transpose()?;
    let mut v2 = args
        .authz_scoped_token_verification_keys_file
        .as_deref()
        .map(|path| {
            let text = std::fs::read(path)
                .with_context(|| format!("reading the v2 verification keys {}", path.display()))?;
            VerificationKeys::from_json(&text)
                .with_context(|| format!("the v2 verification keys in {}", path.display()))
        })
        .transpose()?;
    if let Some(key) = &issuer {
        // What the gateway mints, it accepts.
        let own = VerificationKeys::from_json(key.verification_json().as_bytes())?;
        v2 = Some(match v2 {
            Some(keys) => keys.merged(own)?,
            None => own,
        });
    }
    let scoped = args.scoped_token_secret_file.is_some() || v2.is_some();
    let auth = match (args.auth, scoped) {
        (AuthMode::Token, false) => Auth::Bearer(Token::load_or_create(&home.join("token"))?),
        (AuthMode::Token, true) => {
            let v1 = args
                .scoped_token_secret_file
                .as_deref()
                .map(|path| {
                    let secret = std::fs::read(path).with_context(|| {
                        format!("reading the scoped-token secret {}", path.display())
                    })?;
                    ScopedTokens::new(&secret)
                        .with_context(|| format!("the scoped-token secret in {}", path.display()))
                })
                .transpose()?;
            Auth::Scoped {
                tokens: ScopedVerifier { v1, v2 },
                admin: Some(Token::load_or_create(&home.join("token"))?),
            }
        }
        (AuthMode::None, true) => bail!(
            "scoped tokens (--scoped-token-secret-file, --authz-scoped-token-verification-keys-file, --scoped-token-signing-key-file) need --auth token: they narrow what a token may do, and --auth none checks none"
        ),
        (AuthMode::None, false) => {
            tracing::warn!(
                "authentication is off (--auth none): anyone who can reach {} can run code",
                args.listen
            );
            Auth::None
        }
    };
    let listener = tokio::net::TcpListener::bind(args.listen).await.with_context(|| {
        format!("cannot listen on {}; is another paddock serve running? (choose another with --listen)", args.listen)
    })?;
    let mut config = EngineConfig::new(&home, &agent);
    config.in_memory = args.in_memory;
    config.default_pools = paddock_engine::DefaultPoolSettings {
        size: i32::from(args.default_pool),
        max: i32::from(args.default_pool_max.max(args.default_pool)),
        ..paddock_engine::DefaultPoolSettings::default()
    };
    let upstream_roots = args
        .egress_ca_files
        .iter()
        .map(|p| {
            std::fs::read_to_string(p)
                .with_context(|| format!("reading --egress-ca-file {}", p.display()))
        })
        .collect::<Result<Vec<_>>>()?;
    config.egress = (!args.no_egress).then(|| paddock_engine::egress::EgressSettings {
        resolver: args.egress_dns.map_or(
            paddock_egress::Resolver::System,
            paddock_egress::Resolver::Server,
        ),
        upstream_roots,
    });
    let mut runtime = paddock_runtime::RuntimeConfig::new(home.join("runtime"), &agent);
    runtime
        .registry
        .insecure
        .clone_from(&args.insecure_registries);
    runtime.registry.credentials = registry_credentials(args.registry_config.as_deref())?;
    config.runtime = Some(runtime);
    let engine = Engine::start(config).await?;
    let state = AppState::new(
        engine.backend() as Arc<dyn paddock_gateway::Backend>,
        auth,
        GatewayOptions {
            token_issuer: issuer.map(Arc::new),
            ..GatewayOptions::default()
        },
    );
    let shutdown = CancellationToken::new();
    {
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                () = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending().await } } => {}
            }
            shutdown.cancel();
        });
    }
    tracing::info!(listen = %args.listen, home = %home.display(), agent = %agent.display(), "paddock serve is ready");
    paddock_gateway::serve(listener, state, shutdown).await?;
    engine.shutdown().await;
    tracing::info!("stopped; running sandboxes keep running and are re-attached on the next start");
    Ok(ExitCode::SUCCESS)
}
