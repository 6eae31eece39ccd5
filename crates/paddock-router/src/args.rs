//! The `paddock gateway` command line, and its start-up validation into [`GatewaySettings`].
//! Names follow upstream's Go sandbox-router where there is one (`--cluster-domain`,
//! `--proxy-timeout`, `--allow-loopback-pod-ip`, `--authz-tokenreview-*`), with its spellings
//! `--http-bind-address` and `--authz-mode` accepted as aliases.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::ValueEnum;
use paddock_gateway::auth::{ScopedTokens, ScopedVerifier, Token};
use paddock_gateway::browser::{CookieSessions, SameSite};
use paddock_gateway::scoped_v2::{SigningKeyFile, VerificationKeys};

use paddock_kube::flags::parse_duration;
use paddock_kube::{ClusterArgs, LogArgs};
use paddock_kube_backend::tokenreview::CacheConfig;
use paddock_kube_backend::{BackendConfig, SandboxCacheScope};

/// Flags of `paddock gateway`.
#[derive(Clone, Debug, clap::Args)]
#[command(next_help_heading = "Gateway")]
pub struct GatewayArgs {
    /// Serve the API (and /healthz, /metrics) on this address. Loopback by default; in a pod,
    /// pass 0.0.0.0:8080 (deploy/ does).
    #[arg(
        long,
        alias = "http-bind-address",
        env = "PADDOCK_GATEWAY_LISTEN",
        value_name = "ADDR",
        default_value = "127.0.0.1:8080"
    )]
    pub listen: SocketAddr,

    /// Who may call: `token` (one shared bearer token), `tokenreview` (any token the cluster's
    /// TokenReview API accepts), `scoped` (upstream's HMAC tokens bound to one sandbox, plus an
    /// optional admin token) or `none` (nobody is checked; only with another guard in front).
    #[arg(long, alias = "authz-mode", value_enum, value_name = "MODE", default_value_t = AuthMode::Token)]
    pub auth: AuthMode,

    /// File holding the shared token (`--auth token`) or the admin token (`--auth scoped`).
    /// The token may instead be given in PADDOCK_GATEWAY_TOKEN. It is never logged.
    #[arg(long, value_name = "PATH")]
    pub token_file: Option<PathBuf>,

    /// File holding the HMAC secret of scoped tokens (at least 32 bytes), for `--auth scoped`.
    #[arg(long, alias = "authz-scoped-token-secret-file", value_name = "PATH")]
    pub scoped_token_secret_file: Option<PathBuf>,

    /// Upstream's v2 (Ed25519) scoped tokens, for `--auth scoped`: the public keys, as
    /// `{"keys":[{"kid":"…","publicKey":"<base64url>"}]}` (several while rotating; `paddock
    /// token keygen` writes one). With it, the v1 secret is optional.
    #[arg(long, value_name = "PATH")]
    pub authz_scoped_token_verification_keys_file: Option<PathBuf>,

    /// Mint v2 scoped tokens at `POST /v1/sandboxes/{name}/tokens` with this signing key
    /// (`paddock token keygen` writes one; keep it secret).
    #[arg(long, value_name = "PATH")]
    pub scoped_token_signing_key_file: Option<PathBuf>,

    /// With `--auth tokenreview`: tokens must be valid for one of these audiences
    /// (comma-separated; e.g. tokens from `kubectl create token SA --audience=sandbox-router`).
    /// Empty: the API server's own audiences.
    #[arg(long, value_name = "AUDIENCES", value_delimiter = ',')]
    pub authz_tokenreview_audiences: Vec<String>,

    /// With `--auth tokenreview`: how long a decision is reused (failed reviews: a third of it).
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = parse_duration)]
    pub authz_tokenreview_ttl: Duration,

    /// With `--auth tokenreview`: most decisions kept (least recently used go first).
    #[arg(long, value_name = "N", default_value_t = 2048)]
    pub authz_tokenreview_cache_size: usize,

    /// Cluster DNS domain, for reaching a sandbox through its headless Service when its
    /// status has no pod IP.
    #[arg(
        long,
        env = "CLUSTER_DOMAIN",
        value_name = "DOMAIN",
        default_value = "cluster.local"
    )]
    pub cluster_domain: String,

    /// Port the agent listens on inside every sandbox (upstream's runtime port).
    #[arg(long, value_name = "PORT", default_value_t = 8888)]
    pub agent_port: u16,

    /// Image holding the static agent at /paddock-agent and a `cp` (deploy/Dockerfile.agent).
    /// With it, `POST /v1/sandboxes` with `image` puts the agent into the pod (an init
    /// container copies it into an emptyDir); without it, only templates and warm pools whose
    /// image serves the agent API can be used.
    #[arg(long, value_name = "IMAGE")]
    pub agent_image: Option<String>,

    /// Upper bound of a forwarded request's wait for the sandbox (Go duration: 30s, 3m).
    #[arg(long, value_name = "DURATION", default_value = "180s", value_parser = parse_duration)]
    pub proxy_timeout: Duration,

    /// Accept loopback pod IPs (in X-Sandbox-Pod-IP and in Sandbox status); for tests and
    /// single-node setups only.
    #[arg(long)]
    pub allow_loopback_pod_ip: bool,

    /// The in-cluster egress proxy's API (`paddock egress --api-listen`), where
    /// `GET /v1/sandboxes/{name}/egress` reads a sandbox's record ("" = not served).
    #[arg(
        long,
        value_name = "URL",
        default_value = "http://paddock-egress.agent-sandbox-system:9090"
    )]
    pub egress_api: String,

    /// Keep Sandboxes in memory from one watch, so routing a request needs no API call
    /// (upstream's router flag; on by default here). `false`: GET the Sandbox per request.
    #[arg(long, value_name = "BOOL", default_value_t = true, action = clap::ArgAction::Set,
          num_args = 0..=1, default_missing_value = "true", require_equals = true)]
    pub cache_enabled: bool,

    /// With --cache-enabled: only this namespace's Sandboxes ("" = every namespace; the
    /// gateway then needs list and watch on Sandboxes cluster-wide).
    #[arg(long, value_name = "NS", default_value = "")]
    pub cache_namespace: String,

    /// Route `<prefix>/<namespace>/<id>/<port>/<rest>` paths to that port of that sandbox, so
    /// it opens in a browser (preview URLs); e.g. `/sandbox`. Must start with `/` and not end
    /// with one. Empty: off (upstream's router flag).
    #[arg(long, value_name = "PREFIX", default_value = "")]
    pub path_routing_prefix: String,

    /// Cookie sessions for path-routed requests: the session cookie's name. Needs
    /// --path-routing-prefix and an --auth other than none.
    #[arg(long, value_name = "NAME", default_value = "")]
    pub authz_cookie_name: String,

    /// The query parameter a first visit brings the token in (answered with a redirect that
    /// sets the cookie and drops the parameter). Needs --authz-cookie-name.
    #[arg(long, value_name = "NAME", default_value = "")]
    pub authz_cookie_query_param: String,

    /// The cookie's SameSite: lax, strict or none.
    #[arg(long, value_name = "MODE", default_value = "lax")]
    pub authz_cookie_samesite: String,

    /// Leave Secure off the cookie (plain-HTTP development only; not with SameSite none).
    #[arg(long)]
    pub authz_cookie_insecure: bool,

    /// Other origins (`scheme://host[:port]`, comma-separated) whose pages may send
    /// cookie-carried requests (WebSockets included). Needs --authz-cookie-name.
    #[arg(long, value_name = "ORIGINS", value_delimiter = ',')]
    pub authz_cookie_allowed_origins: Vec<String>,

    /// Take the scheme of the router's own origin from X-Forwarded-Proto (behind a TLS
    /// proxy). Needs --authz-cookie-name.
    #[arg(long)]
    pub authz_trust_forwarded_proto: bool,

    /// Also serve `/metrics` (upstream's `sandbox_router_*` families), without authentication,
    /// on this address: `HOST:PORT` or `:PORT` for every interface (upstream's router flag;
    /// its default is `:9090`). Empty: only on the API listener, behind its authentication.
    #[arg(long, value_name = "ADDR", default_value = "")]
    pub metrics_bind_address: String,

    /// Also serve HTTPS on this address (`HOST:PORT` or `:PORT`), with --tls-cert-file and
    /// --tls-key-file (reloaded when they change).
    #[arg(long, value_name = "ADDR", default_value = "")]
    pub https_bind_address: String,

    /// The HTTPS certificate chain (PEM).
    #[arg(long, value_name = "PATH")]
    pub tls_cert_file: Option<PathBuf>,

    /// The HTTPS private key (PEM).
    #[arg(long, value_name = "PATH")]
    pub tls_key_file: Option<PathBuf>,

    /// Client certificates on HTTPS: `off`, `optional` (checked when presented) or `required`;
    /// needs --https-bind-address and --tls-client-ca-file.
    #[arg(long, value_name = "MODE", default_value = "off")]
    pub mtls_mode: String,

    /// The CA (PEM) client certificates must chain to (read once at start).
    #[arg(long, value_name = "PATH")]
    pub tls_client_ca_file: Option<PathBuf>,

    /// Send an OpenTelemetry span of every request over OTLP/gRPC (configured by the standard
    /// `OTEL_EXPORTER_OTLP_*` environment), continuing the client's `traceparent` and carried
    /// on to the sandbox and into the claims the gateway creates.
    #[arg(long)]
    pub enable_tracing: bool,

    /// Client-side limit on Kubernetes API requests per second; negative = no limit.
    #[arg(long, value_name = "QPS", default_value_t = -1.0, allow_negative_numbers = true)]
    pub kube_api_qps: f64,

    /// Requests that may be sent at once above --kube-api-qps (must be > 0).
    #[arg(long, value_name = "N", default_value_t = 10)]
    pub kube_api_burst: u32,

    /// Logging.
    #[command(flatten)]
    pub logging: LogArgs,

    /// Which cluster.
    #[command(flatten)]
    pub cluster: ClusterArgs,
}

/// How clients authenticate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum AuthMode {
    /// One shared bearer token.
    Token,
    /// Tokens checked with the cluster's TokenReview API.
    Tokenreview,
    /// Upstream's HMAC scoped tokens (and an optional admin token).
    #[value(alias = "scoped-token")]
    Scoped,
    /// Nobody is checked.
    #[value(alias = "allow-all")]
    None,
}

impl Default for GatewayArgs {
    /// The defaults of every flag.
    fn default() -> Self {
        use clap::{Args, Command, FromArgMatches};
        let cmd = Self::augment_args(Command::new("gateway"));
        cmd.try_get_matches_from(["gateway"])
            .ok()
            .and_then(|m| Self::from_arg_matches(&m).ok())
            .unwrap_or_else(|| unreachable!("the flag defaults parse"))
    }
}

/// Why `paddock gateway` cannot start.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// A flag has a value that cannot work.
    #[error("invalid flag {flag}={value:?}: {rule}")]
    Flag {
        /// The flag.
        flag: &'static str,
        /// What was given.
        value: String,
        /// What is allowed.
        rule: &'static str,
    },
    /// The auth mode needs a secret that was not given.
    #[error("{0}")]
    MissingSecret(&'static str),
    /// A secret file cannot be read.
    #[error("cannot read {what} from {path}: {source}")]
    SecretFile {
        /// Which secret.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A key file is unusable.
    #[error("{what} in {path} is unusable: {reason}")]
    BadKeys {
        /// Which file.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A secret file is unusable.
    #[error("{what} in {path} is unusable: {rule}")]
    BadSecret {
        /// Which secret.
        what: &'static str,
        /// The file (or the environment variable).
        path: String,
        /// What is required.
        rule: &'static str,
    },
    /// The client or a listener could not be set up.
    #[error(transparent)]
    Setup(#[from] paddock_kube::KubeError),
    /// The server failed.
    #[error("the gateway server failed: {0}")]
    Serve(std::io::Error),
    /// `--enable-tracing` could not set up its exporter.
    #[error("{0}")]
    Tracing(String),
}

/// How the gateway authenticates, resolved from the flags (secrets read).
#[derive(Clone, Debug)]
pub enum AuthSettings {
    /// No check.
    None,
    /// One shared token.
    Token(Token),
    /// TokenReview with these audiences and cache.
    TokenReview {
        /// Audiences a token must be valid for (empty: the API server's).
        audiences: Vec<String>,
        /// Cache tunables.
        cache: CacheConfig,
    },
    /// Scoped tokens and an optional admin token.
    Scoped {
        /// Verifies scoped tokens (v1 and/or v2).
        tokens: ScopedVerifier,
        /// A token that may do everything.
        admin: Option<Token>,
    },
}

/// Reads v2 verification keys (upstream's file format; every problem is a start-up error).
fn verification_keys(path: &Path) -> Result<VerificationKeys, GatewayError> {
    let text = read_secret("the v2 verification keys", path)?;
    VerificationKeys::from_json(&text).map_err(|e| GatewayError::BadKeys {
        what: "the v2 verification keys",
        path: path.to_path_buf(),
        reason: e.to_string(),
    })
}

/// Reads a v2 signing key.
fn signing_key(path: &Path) -> Result<SigningKeyFile, GatewayError> {
    let text = read_secret("the v2 signing key", path)?;
    SigningKeyFile::from_json(&text).map_err(|e| GatewayError::BadKeys {
        what: "the v2 signing key",
        path: path.to_path_buf(),
        reason: e.to_string(),
    })
}

/// `HOST:PORT`, or `:PORT` for every interface; empty = none.
fn metrics_address(text: &str) -> Result<Option<SocketAddr>, &'static str> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(None);
    }
    let full = if text.starts_with(':') {
        format!("0.0.0.0{text}")
    } else {
        text.to_owned()
    };
    full.parse()
        .map(Some)
        .map_err(|_| "must be HOST:PORT or :PORT, e.g. :9090 or 127.0.0.1:9090")
}

/// Validated settings, derived from [`GatewayArgs`].
#[derive(Clone, Debug)]
pub struct GatewaySettings {
    /// Listener address.
    pub listen: SocketAddr,
    /// Authentication.
    pub auth: AuthSettings,
    /// Backend settings.
    pub backend: BackendConfig,
    /// Proxy timeout.
    pub proxy_timeout: Duration,
    /// Requests per second (None = unlimited).
    pub qps: Option<f64>,
    /// Burst above the rate.
    pub burst: u32,
    /// Where `/metrics` is also served, unauthenticated.
    pub metrics: Option<SocketAddr>,
    /// The key v2 scoped tokens are minted with, if any.
    pub token_issuer: Option<std::sync::Arc<SigningKeyFile>>,
    /// `--path-routing-prefix`, if set.
    pub path_routing_prefix: Option<String>,
    /// Cookie sessions, if set.
    pub cookie_sessions: Option<CookieSessions>,
    /// OpenTelemetry tracing.
    pub enable_tracing: bool,
    /// HTTPS, if asked for.
    pub https: Option<HttpsSettings>,
}

/// The HTTPS listener's settings.
#[derive(Clone, Debug)]
pub struct HttpsSettings {
    /// Where it listens.
    pub addr: SocketAddr,
    /// The certificate chain.
    pub cert: PathBuf,
    /// Its key.
    pub key: PathBuf,
    /// Client certificates.
    pub mtls: paddock_gateway::tls::MtlsMode,
    /// Their CA.
    pub client_ca: Option<PathBuf>,
}

const TOKEN_ENV: &str = "PADDOCK_GATEWAY_TOKEN";

fn read_secret(what: &'static str, path: &Path) -> Result<Vec<u8>, GatewayError> {
    std::fs::read(path).map_err(|source| GatewayError::SecretFile {
        what,
        path: path.to_path_buf(),
        source,
    })
}

type FlagError<'a> = &'a dyn Fn(&'static str, &dyn std::fmt::Display, &'static str) -> GatewayError;

impl GatewayArgs {
    /// The HTTPS flags, validated as a set (upstream's rules).
    fn https(&self, flag: FlagError<'_>) -> Result<Option<HttpsSettings>, GatewayError> {
        use paddock_gateway::tls::MtlsMode;
        let mtls = MtlsMode::parse(&self.mtls_mode)
            .ok_or_else(|| flag("--mtls-mode", &self.mtls_mode, "off, optional or required"))?;
        let Some(addr) = metrics_address(&self.https_bind_address)
            .map_err(|rule| flag("--https-bind-address", &self.https_bind_address, rule))?
        else {
            if mtls != MtlsMode::Off {
                return Err(flag(
                    "--mtls-mode",
                    &self.mtls_mode,
                    "needs --https-bind-address",
                ));
            }
            return Ok(None);
        };
        let (Some(cert), Some(key)) = (&self.tls_cert_file, &self.tls_key_file) else {
            return Err(flag(
                "--https-bind-address",
                &self.https_bind_address,
                "needs --tls-cert-file and --tls-key-file",
            ));
        };
        if mtls != MtlsMode::Off && self.tls_client_ca_file.is_none() {
            return Err(flag(
                "--mtls-mode",
                &self.mtls_mode,
                "needs --tls-client-ca-file",
            ));
        }
        Ok(Some(HttpsSettings {
            addr,
            cert: cert.clone(),
            key: key.clone(),
            mtls,
            client_ca: self.tls_client_ca_file.clone(),
        }))
    }

    fn path_routing(&self, flag: FlagError<'_>) -> Result<Option<String>, GatewayError> {
        let prefix = self.path_routing_prefix.as_str();
        if prefix.is_empty() {
            return Ok(None);
        }
        paddock_gateway::browser::check_prefix(prefix)
            .map_err(|rule| flag("--path-routing-prefix", &prefix, rule))?;
        Ok(Some(prefix.to_owned()))
    }

    /// The `--authz-cookie-*` flags, validated as a set (upstream's rules).
    fn cookie_sessions(&self, flag: FlagError<'_>) -> Result<Option<CookieSessions>, GatewayError> {
        let name = self.authz_cookie_name.as_str();
        if name.is_empty() {
            let needs_name: [(&'static str, bool); 4] = [
                (
                    "--authz-cookie-query-param",
                    !self.authz_cookie_query_param.is_empty(),
                ),
                (
                    "--authz-cookie-allowed-origins",
                    !self.authz_cookie_allowed_origins.is_empty(),
                ),
                (
                    "--authz-trust-forwarded-proto",
                    self.authz_trust_forwarded_proto,
                ),
                ("--authz-cookie-insecure", self.authz_cookie_insecure),
            ];
            if let Some((f, _)) = needs_name.iter().find(|(_, set)| *set) {
                return Err(flag(f, &"set", "needs --authz-cookie-name"));
            }
            return Ok(None);
        }
        if self.path_routing_prefix.is_empty() {
            return Err(flag(
                "--authz-cookie-name",
                &name,
                "needs --path-routing-prefix",
            ));
        }
        if self.auth == AuthMode::None {
            return Err(flag(
                "--authz-cookie-name",
                &name,
                "needs an --auth other than none",
            ));
        }
        let valid = paddock_gateway::browser::valid_name;
        if !valid(name) {
            return Err(flag(
                "--authz-cookie-name",
                &name,
                "only A-Z a-z 0-9 - _ . ~",
            ));
        }
        let param = self.authz_cookie_query_param.as_str();
        if !param.is_empty() && !valid(param) {
            return Err(flag(
                "--authz-cookie-query-param",
                &param,
                "only A-Z a-z 0-9 - _ . ~",
            ));
        }
        let same_site = SameSite::parse(&self.authz_cookie_samesite).ok_or_else(|| {
            flag(
                "--authz-cookie-samesite",
                &self.authz_cookie_samesite,
                "lax, strict or none",
            )
        })?;
        if same_site == SameSite::None && self.authz_cookie_insecure {
            return Err(flag(
                "--authz-cookie-insecure",
                &"true",
                "browsers drop SameSite=None cookies without Secure",
            ));
        }
        let mut allowed_origins = Vec::new();
        for origin in self
            .authz_cookie_allowed_origins
            .iter()
            .map(|o| o.trim())
            .filter(|o| !o.is_empty())
        {
            allowed_origins.push(
                paddock_gateway::browser::normalize_origin(origin).ok_or_else(|| {
                    flag(
                        "--authz-cookie-allowed-origins",
                        &origin,
                        "each must be scheme://host[:port], with no path, query, fragment or user",
                    )
                })?,
            );
        }
        Ok(Some(CookieSessions {
            name: name.to_owned(),
            query_param: (!param.is_empty()).then(|| param.to_owned()),
            same_site,
            insecure: self.authz_cookie_insecure,
            allowed_origins,
            trust_forwarded_proto: self.authz_trust_forwarded_proto,
        }))
    }

    /// The shared/admin token from --token-file or PADDOCK_GATEWAY_TOKEN, if any.
    fn token(&self, env_token: Option<String>) -> Result<Option<Token>, GatewayError> {
        let (text, source) = match (&self.token_file, env_token) {
            (Some(path), _) => {
                let bytes = read_secret("the token", path)?;
                let text = String::from_utf8(bytes).map_err(|_| GatewayError::BadSecret {
                    what: "the token",
                    path: path.display().to_string(),
                    rule: "it must be text",
                })?;
                (text, path.display().to_string())
            }
            (None, Some(t)) => (t, format!("${TOKEN_ENV}")),
            (None, None) => return Ok(None),
        };
        if text.trim().is_empty() {
            return Err(GatewayError::BadSecret {
                what: "the token",
                path: source,
                rule: "it is empty",
            });
        }
        Ok(Some(Token::new(&text)))
    }

    /// Checks the flags, reads the secrets, and derives the settings.
    ///
    /// # Errors
    /// A flag that cannot work, or a missing, unreadable or weak secret.
    pub fn validate(&self) -> Result<GatewaySettings, GatewayError> {
        self.validate_with_env(std::env::var(TOKEN_ENV).ok())
    }

    /// As [`GatewayArgs::validate`], with the token variable given (tests).
    ///
    /// # Errors
    /// As [`GatewayArgs::validate`].
    pub fn validate_with_env(
        &self,
        env_token: Option<String>,
    ) -> Result<GatewaySettings, GatewayError> {
        let flag = |flag, value: &dyn std::fmt::Display, rule| GatewayError::Flag {
            flag,
            value: value.to_string(),
            rule,
        };
        if self.cluster_domain.is_empty() {
            return Err(flag("--cluster-domain", &"", "must not be empty"));
        }
        if self.agent_port == 0 {
            return Err(flag("--agent-port", &0, "must be a port number 1-65535"));
        }
        if self.proxy_timeout.is_zero() {
            return Err(flag("--proxy-timeout", &"0", "must be greater than 0"));
        }
        let sandbox_cache = SandboxCacheScope::from_flags(self.cache_enabled, &self.cache_namespace)
            .ok_or_else(|| {
                flag(
                    "--cache-namespace",
                    &self.cache_namespace,
                    "must be a namespace name (lower-case letters, digits and '-', at most 63), or empty for every namespace",
                )
            })?;
        if self.kube_api_burst == 0 {
            return Err(flag("--kube-api-burst", &0, "must be greater than 0"));
        }
        if !self.kube_api_qps.is_finite() {
            return Err(flag(
                "--kube-api-qps",
                &self.kube_api_qps,
                "must be a finite number (negative = no limit)",
            ));
        }
        if self.agent_image.as_deref().is_some_and(str::is_empty) {
            return Err(flag("--agent-image", &"", "must name an image"));
        }
        let token = self.token(env_token)?;
        let auth = match self.auth {
            AuthMode::None => AuthSettings::None,
            AuthMode::Token => AuthSettings::Token(token.ok_or(GatewayError::MissingSecret(
                "--auth token needs the shared token: pass --token-file PATH or set PADDOCK_GATEWAY_TOKEN (or choose --auth tokenreview, scoped or none)",
            ))?),
            AuthMode::Tokenreview => {
                if self.authz_tokenreview_ttl.is_zero() {
                    return Err(flag(
                        "--authz-tokenreview-ttl",
                        &"0",
                        "must be greater than 0",
                    ));
                }
                AuthSettings::TokenReview {
                    audiences: self
                        .authz_tokenreview_audiences
                        .iter()
                        .map(|a| a.trim().to_owned())
                        .filter(|a| !a.is_empty())
                        .collect(),
                    cache: CacheConfig {
                        ttl: self.authz_tokenreview_ttl,
                        size: self.authz_tokenreview_cache_size,
                    },
                }
            }
            AuthMode::Scoped => {
                let v2 = self
                    .authz_scoped_token_verification_keys_file
                    .as_deref()
                    .map(verification_keys)
                    .transpose()?;
                let v1 = match self.scoped_token_secret_file.as_deref() {
                    None if v2.is_some() => None,
                    None => {
                        return Err(GatewayError::MissingSecret(
                            "--auth scoped needs the HMAC secret (--scoped-token-secret-file PATH, at least 32 bytes) or v2 public keys (--authz-scoped-token-verification-keys-file PATH)",
                        ));
                    }
                    Some(path) => {
                        let secret = read_secret("the scoped-token secret", path)?;
                        Some(ScopedTokens::new(&secret).map_err(|_| GatewayError::BadSecret {
                            what: "the scoped-token secret",
                            path: path.display().to_string(),
                            rule: "it must hold at least 32 bytes (surrounding whitespace is ignored)",
                        })?)
                    }
                };
                AuthSettings::Scoped {
                    tokens: ScopedVerifier { v1, v2 },
                    admin: token,
                }
            }
        };
        Ok(GatewaySettings {
            listen: self.listen,
            auth,
            backend: BackendConfig {
                cluster_domain: self.cluster_domain.clone(),
                agent_port: self.agent_port,
                agent_image: self.agent_image.clone(),
                allow_loopback_pod_ip: self.allow_loopback_pod_ip,
                sandbox_cache,
                egress_api: Some(self.egress_api.trim_end_matches('/').to_owned())
                    .filter(|u| !u.is_empty()),
            },
            proxy_timeout: self.proxy_timeout,
            metrics: metrics_address(&self.metrics_bind_address)
                .map_err(|rule| flag("--metrics-bind-address", &self.metrics_bind_address, rule))?,
            path_routing_prefix: self.path_routing(&flag)?,
            cookie_sessions: self.cookie_sessions(&flag)?,
            enable_tracing: self.enable_tracing,
            https: self.https(&flag)?,
            token_issuer: self
                .scoped_token_signing_key_file
                .as_deref()
                .map(|p| signing_key(p).map(std::sync::Arc::new))
                .transpose()?,
            qps: (self.kube_api_qps >= 0.0).then_some(self.kube_api_qps),
            burst: self.kube_api_burst,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{Args, Command, FromArgMatches};

    fn parse(args: &[&str]) -> GatewayArgs {
        let cmd = GatewayArgs::augment_args(Command::new("gateway"));
        let m = cmd
            .try_get_matches_from(std::iter::once("gateway").chain(args.iter().copied()))
            .expect("parses");
        GatewayArgs::from_arg_matches(&m).expect("args")
    }

    #[test]
    fn defaults_are_loopback_token_auth_and_upstreams_ports() {
        let a = GatewayArgs::default();
        assert_eq!(a.listen, "127.0.0.1:8080".parse().expect("addr"));
        assert_eq!(a.auth, AuthMode::Token);
        assert_eq!(a.agent_port, 8888);
        assert_eq!(a.proxy_timeout, Duration::from_secs(180));
        assert_eq!(a.cluster_domain, "cluster.local");
        assert_eq!(a.authz_tokenreview_ttl, Duration::from_secs(30));
        assert_eq!(a.authz_tokenreview_cache_size, 2048);
    }

    #[test]
    fn the_sandbox_cache_is_on_everywhere_by_default_and_a_bad_namespace_is_named() {
        let ok = |a: GatewayArgs| a.validate_with_env(Some("t".into())).expect("valid");
        assert_eq!(
            ok(GatewayArgs::default()).backend.sandbox_cache,
            SandboxCacheScope::AllNamespaces
        );
        let one = GatewayArgs {
            cache_namespace: "team-a".into(),
            ..GatewayArgs::default()
        };
        assert_eq!(
            ok(one).backend.sandbox_cache,
            SandboxCacheScope::Namespace("team-a".into())
        );
        let off = GatewayArgs {
            cache_enabled: false,
            ..GatewayArgs::default()
        };
        assert_eq!(ok(off).backend.sandbox_cache, SandboxCacheScope::Off);
        let err = GatewayArgs {
            cache_namespace: "Team_A".into(),
            ..GatewayArgs::default()
        }
        .validate_with_env(Some("t".into()))
        .expect_err("not a namespace")
        .to_string();
        assert!(
            err.contains("--cache-namespace") && err.contains("Team_A"),
            "{err}"
        );
    }

    #[test]
    fn token_auth_without_a_token_says_how_to_give_one() {
        let err = GatewayArgs::default()
            .validate_with_env(None)
            .expect_err("no token")
            .to_string();
        assert!(err.contains("--token-file"), "{err}");
        assert!(err.contains("PADDOCK_GATEWAY_TOKEN"), "{err}");
    }

    #[test]
    fn token_comes_from_the_file_or_the_environment() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("token");
        std::fs::write(&path, "from-file\n").expect("write");
        let a = GatewayArgs {
            token_file: Some(path),
            ..GatewayArgs::default()
        };
        match a
            .validate_with_env(Some("from-env".into()))
            .expect("valid")
            .auth
        {
            AuthSettings::Token(t) => assert_eq!(t.expose(), "from-file"),
            other => panic!("{other:?}"),
        }
        let a = GatewayArgs::default();
        match a
            .validate_with_env(Some("from-env".into()))
            .expect("valid")
            .auth
        {
            AuthSettings::Token(t) => assert_eq!(t.expose(), "from-env"),
            other => panic!("{other:?}"),
        }
        let err = a.validate_with_env(Some("  ".into())).expect_err("empty");
        assert!(err.to_string().contains("empty"), "{err}");
    }

    #[test]
    fn scoped_auth_requires_a_32_byte_secret() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("secret");
        std::fs::write(&path, "short").expect("write");
        let a = parse(&[
            "--auth=scoped",
            "--scoped-token-secret-file",
            path.to_str().expect("utf-8"),
        ]);
        let err = a.validate_with_env(None).expect_err("weak").to_string();
        assert!(err.contains("at least 32 bytes"), "{err}");
        std::fs::write(&path, "0123456789abcdef0123456789abcdef").expect("write");
        assert!(matches!(
            a.validate_with_env(None).expect("valid").auth,
            AuthSettings::Scoped { admin: None, .. }
        ));
        let missing = parse(&["--auth", "scoped"]).validate_with_env(None);
        assert!(
            missing
                .expect_err("no secret")
                .to_string()
                .contains("--scoped-token-secret-file")
        );
    }

    #[test]
    fn upstream_spellings_are_accepted() {
        let a = parse(&[
            "--http-bind-address",
            "0.0.0.0:8080",
            "--authz-mode",
            "allow-all",
            "--authz-tokenreview-audiences",
            "a,b",
        ]);
        assert_eq!(a.auth, AuthMode::None);
        assert_eq!(a.listen.port(), 8080);
        assert_eq!(a.authz_tokenreview_audiences, vec!["a", "b"]);
        let s = parse(&[
            "--auth",
            "tokenreview",
            "--authz-tokenreview-audiences",
            "sandbox-router",
        ])
        .validate_with_env(None)
        .expect("valid");
        assert!(
            matches!(s.auth, AuthSettings::TokenReview { ref audiences, .. } if audiences == &["sandbox-router"])
        );
    }

    #[test]
    fn impossible_values_are_refused_with_the_flag_name() {
        for (args, name) in [
            (vec!["--auth=none", "--agent-port", "0"], "--agent-port"),
            (
                vec!["--auth=none", "--proxy-timeout", "0"],
                "--proxy-timeout",
            ),
            (
                vec!["--auth=none", "--kube-api-burst", "0"],
                "--kube-api-burst",
            ),
            (
                vec!["--auth=none", "--cluster-domain", ""],
                "--cluster-domain",
            ),
        ] {
            let err = parse(&args)
                .validate_with_env(None)
                .expect_err("invalid")
                .to_string();
            assert!(err.contains(name), "{err}");
        }
    }
}
