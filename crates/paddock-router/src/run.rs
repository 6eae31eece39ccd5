//! `paddock gateway`: flags → client, backend, auth and server; serves until SIGTERM/SIGINT,
//! then lets in-flight requests finish (long watches and streams get [`DRAIN_TIMEOUT`]).

use std::sync::Arc;
use std::time::Duration;

use kube::Client;
use paddock_gateway::router_contract::RouteOptions;
use paddock_gateway::{AppState, Auth, GatewayOptions};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use paddock_kube::KubeError;
use paddock_kube::signals::on_signals;
use paddock_kube_backend::{KubeBackend, TokenReviewVerifier};

use super::args::{AuthSettings, GatewayArgs, GatewayError, GatewaySettings};

/// How long requests still in flight at shutdown (watches, streamed exec) may keep the process.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(25);

/// Runs the gateway until SIGTERM/SIGINT.
///
/// # Errors
/// Bad flags or secrets, no cluster, the address in use, or the server failing.
pub async fn run(args: GatewayArgs) -> Result<(), GatewayError> {
    args.logging.init();
    let settings = args.validate()?;
    let client = paddock_kube::connect(&args.cluster, settings.qps, settings.burst).await?;
    let listener = TcpListener::bind(settings.listen)
        .await
        .map_err(|source| KubeError::Bind {
            what: "the gateway",
            addr: settings.listen,
            source,
        })?;
    let shutdown = CancellationToken::new();
    on_signals(shutdown.clone());
    run_with(client, &settings, listener, shutdown).await
}

fn auth_name(auth: &AuthSettings) -> &'static str {
    match auth {
        AuthSettings::None => "none",
        AuthSettings::Token(_) => "token",
        AuthSettings::TokenReview { .. } => "tokenreview",
        AuthSettings::Scoped { .. } => "scoped",
    }
}

/// The gateway's state for a client and settings: the Kubernetes backend (its cluster version
/// asked once) and the auth mode.
pub async fn app_state(client: Client, settings: &GatewaySettings) -> AppState {
    let mut backend =
        KubeBackend::new(client.clone(), settings.backend.clone()).with_sandbox_cache();
    backend.discover_cluster_version().await;
    let auth = match &settings.auth {
        AuthSettings::None => Auth::None,
        AuthSettings::Token(token) => Auth::Bearer(token.clone()),
        AuthSettings::TokenReview { audiences, cache } => Auth::External(Arc::new(
            TokenReviewVerifier::new(client, audiences.clone(), *cache),
        )),
        AuthSettings::Scoped { tokens, admin } => Auth::Scoped {
            tokens: tokens.clone(),
            admin: admin.clone(),
        },
    };
    let options = GatewayOptions {
        proxy_timeout: settings.proxy_timeout,
        route: RouteOptions {
            proxy_timeout: settings.proxy_timeout,
            allow_loopback_pod_ip: settings.backend.allow_loopback_pod_ip,
        },
        token_issuer: settings.token_issuer.clone(),
        path_routing_prefix: settings.path_routing_prefix.clone(),
        cookie_sessions: settings.cookie_sessions.clone(),
        tracing: settings.enable_tracing,
        ..GatewayOptions::default()
    };
    AppState::new(Arc::new(backend), auth, options)
}

/// Serves on `listener` with an existing client until `shutdown` (for embedding and tests).
///
/// # Errors
/// The server fails.
pub async fn run_with(
    client: Client,
    settings: &GatewaySettings,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> Result<(), GatewayError> {
    let tracing_export = if settings.enable_tracing {
        Some(
            paddock_kube::otel::Tracing::install(paddock_gateway::traces::TRACER)
                .map_err(|e| GatewayError::Tracing(e.to_string()))?,
        )
    } else {
        None
    };
    let state = app_state(client, settings).await;
    if matches!(settings.auth, AuthSettings::None) {
        tracing::warn!(
            listen = %settings.listen,
            "authentication is off (--auth none): anyone who can reach the gateway can run code in sandboxes"
        );
    }
    tracing::info!(
        listen = %listener.local_addr().map_err(GatewayError::Serve)?,
        auth = auth_name(&settings.auth),
        agent_port = settings.backend.agent_port,
        agent_image = settings.backend.agent_image.as_deref().unwrap_or(""),
        "paddock gateway is ready"
    );
    if let Some(https) = &settings.https {
        let cert = paddock_gateway::tls::ReloadingCert::load(&https.cert, &https.key).map_err(
            |reason| GatewayError::BadKeys {
                what: "the HTTPS certificate",
                path: https.cert.clone(),
                reason,
            },
        )?;
        let config = paddock_gateway::tls::server_config(
            cert.clone(),
            https.mtls,
            https.client_ca.as_deref(),
        )
        .map_err(|reason| GatewayError::BadKeys {
            what: "the HTTPS configuration",
            path: https.client_ca.clone().unwrap_or_default(),
            reason,
        })?;
        let listener = TcpListener::bind(https.addr)
            .await
            .map_err(|source| KubeError::Bind {
                what: "the HTTPS listener",
                addr: https.addr,
                source,
            })?;
        tracing::info!(listen = %https.addr, mtls = ?https.mtls, "serving HTTPS");
        tokio::spawn(cert.watch(state.metrics.clone(), shutdown.clone()));
        tokio::spawn(paddock_gateway::tls::serve_tls(
            listener,
            config,
            paddock_gateway::router(state.clone()),
            shutdown.clone(),
        ));
    }
    if let Some(addr) = settings.metrics {
        let metrics_listener = TcpListener::bind(addr)
            .await
            .map_err(|source| KubeError::Bind {
                what: "the metrics listener",
                addr,
                source,
            })?;
        tracing::info!(listen = %addr, "serving /metrics");
        let app = paddock_gateway::server::metrics_router(state.clone());
        let stop = shutdown.clone();
        tokio::spawn(async move {
            if let Err(e) = paddock_gateway::server::serve_router(metrics_listener, app, stop).await
            {
                tracing::warn!(error = %e, "the metrics listener stopped");
            }
        });
    }
    let drained = {
        let shutdown = shutdown.clone();
        async move {
            shutdown.cancelled().await;
            tokio::time::sleep(DRAIN_TIMEOUT).await;
        }
    };
    tokio::select! {
        served = paddock_gateway::serve(listener, state, shutdown) => served.map_err(GatewayError::Serve)?,
        () = drained => tracing::warn!("requests still open after {DRAIN_TIMEOUT:?}; stopping anyway"),
    }
    if let Some(t) = tracing_export {
        let _ = tokio::task::spawn_blocking(move || t.shutdown()).await;
    }
    tracing::info!("paddock gateway stopped");
    Ok(())
}
