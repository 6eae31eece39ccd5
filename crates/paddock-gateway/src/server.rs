//! The HTTP server: routes, authentication, the router contract, health, metrics and the
//! OpenAPI document. [`serve`] takes its listener and shutdown token as parameters, so tests
//! bind `127.0.0.1:0` and stop cleanly.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use axum::{Json, Router};
use http::{StatusCode, header};
use serde_json::json;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::agent_client::{AgentClient, new_client};
use crate::auth::{ScopedVerifier, Token, TokenVerifier, bearer};
use crate::error::{ApiError, ApiResult, Code, ErrorResponse, status_of};
use crate::metrics::{Metrics, UpstreamError};
use crate::proxy::{ForwardError, forward};
use crate::router_contract::{self, RouteOptions};
use crate::{objects, openapi, policies, sandboxes};
use paddock_backend::{Backend, Part};

/// How clients authenticate.
#[derive(Clone, Debug)]
pub enum Auth {
    /// Nobody is checked (explicit opt-in only).
    None,
    /// One shared bearer token.
    Bearer(Token),
    /// Upstream's scoped tokens for routed requests, and optionally a shared token for the rest.
    Scoped {
        /// Verifies scoped tokens (v1 and/or v2).
        tokens: ScopedVerifier,
        /// A token that may do everything.
        admin: Option<Token>,
    },
    /// Every bearer token is checked by a verifier (Kubernetes TokenReview on a cluster).
    External(Arc<dyn TokenVerifier>),
}

/// Tunables.
#[derive(Clone, Debug)]
pub struct GatewayOptions {
    /// Upper bound of a forwarded request's wait for response headers.
    pub proxy_timeout: Duration,
    /// Options of upstream's router contract.
    pub route: RouteOptions,
    /// Largest request body accepted by the object and sandbox APIs (forwarded bodies are streamed).
    pub max_body: usize,
    /// The key `POST /v1/sandboxes/{name}/tokens` mints v2 scoped tokens with, if any.
    pub token_issuer: Option<Arc<crate::scoped_v2::SigningKeyFile>>,
    /// Route `<prefix>/<namespace>/<id>/<port>/...` paths to sandboxes (upstream's
    /// `--path-routing-prefix`), if set.
    pub path_routing_prefix: Option<String>,
    /// Cookie sessions for path-routed requests (upstream's `--authz-cookie-*`), if set.
    pub cookie_sessions: Option<crate::browser::CookieSessions>,
    /// Make an OpenTelemetry span of every request (`--enable-tracing`).
    pub tracing: bool,
}

impl Default for GatewayOptions {
    fn default() -> Self {
        Self {
            proxy_timeout: Duration::from_secs(180),
            route: RouteOptions::default(),
            max_body: 8 * 1024 * 1024,
            token_issuer: None,
            path_routing_prefix: None,
            cookie_sessions: None,
            tracing: false,
        }
    }
}

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    /// Where objects live and sandboxes run.
    pub backend: Arc<dyn Backend>,
    /// Who may call.
    pub auth: Auth,
    /// Pooled connections to agents.
    pub client: AgentClient,
    /// Pooled h2c connections for gRPC to sandboxes.
    pub grpc_client: AgentClient,
    /// Tunables.
    pub options: GatewayOptions,
    /// Request metrics.
    pub metrics: Arc<Metrics>,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("backend", &self.backend.name())
            .field("auth", &self.auth)
            .finish()
    }
}

impl AppState {
    /// The state for a backend.
    pub fn new(backend: Arc<dyn Backend>, auth: Auth, options: GatewayOptions) -> Self {
        Self {
            backend,
            auth,
            client: new_client(),
            grpc_client: crate::agent_client::new_grpc_client(),
            options,
            metrics: Arc::new(Metrics::new()),
        }
    }
}

/// The whole API as an axum router.
pub fn router(state: AppState) -> Router {
    let object = "/apis/{group}/{version}/namespaces/{namespace}/{plural}/{name}";
    Router::new()
        .route(
            "/v1/sandboxes",
            post(sandboxes::create).get(sandboxes::list),
        )
        .route(
            "/v1/sandboxes/{name}",
            get(sandboxes::get).delete(sandboxes::delete),
        )
        .route("/v1/sandboxes/{name}/pause", post(sandboxes::pause))
        .route("/v1/sandboxes/{name}/resume", post(sandboxes::resume))
        .route("/v1/sandboxes/{name}/logs", get(sandboxes::logs))
        .route("/v1/sandboxes/{name}/egress", get(policies::egress))
        .route("/v1/sandboxes/{name}/tokens", post(crate::tokens::mint))
        .route(
            "/apis/paddock.dev/v1alpha1/sandboxpolicies",
            get(policies::list_all),
        )
        .route(
            "/apis/paddock.dev/v1alpha1/namespaces/{namespace}/sandboxpolicies",
            get(policies::list).post(policies::create),
        )
        .route(
            "/apis/paddock.dev/v1alpha1/namespaces/{namespace}/sandboxpolicies/{name}",
            get(policies::get).delete(policies::delete),
        )
        .route("/v1/sandboxes/{name}/{*rest}", any(sandboxes::inside))
        .route("/v1/apply", post(objects::apply))
        .route("/v1/info", get(info))
        .route("/v1/images/pull", post(pull_image))
        .route("/apis/{group}/{version}/{plural}", get(objects::list_all))
        .route(
            "/apis/{group}/{version}/namespaces/{namespace}/{plural}",
            get(objects::list_namespaced).post(objects::create),
        )
        .route(
            object,
            get(objects::get)
                .delete(objects::delete)
                .put(|State(s): State<AppState>, axum::extract::Path(p), h, b| {
                    objects::replace(s, p, Part::Main, h, b)
                })
                .patch(|State(s): State<AppState>, axum::extract::Path(p), h, b| {
                    objects::patch(s, p, Part::Main, h, b)
                }),
        )
        .route(
            &format!("{object}/status"),
            get(objects::get)
                .put(|State(s): State<AppState>, axum::extract::Path(p), h, b| {
                    objects::replace(s, p, Part::Status, h, b)
                })
                .patch(|State(s): State<AppState>, axum::extract::Path(p), h, b| {
                    objects::patch(s, p, Part::Status, h, b)
                }),
        )
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { Json(json!({"status": "ok"})) }))
        .route("/openapi.json", get(|| async { Json(openapi::document()) }))
        .fallback(|| async {
            ErrorResponse(ApiError::not_found(
                "no such endpoint; see GET /openapi.json",
            ))
        })
        .layer(axum::extract::DefaultBodyLimit::max(state.options.max_body))
        .layer(middleware::from_fn_with_state(state.clone(), authenticate))
        // The router contract comes before the API's own auth: a request carrying
        // X-Sandbox-ID is upstream's router traffic, whatever its path.
        .layer(middleware::from_fn_with_state(state.clone(), routed))
        .layer(middleware::from_fn_with_state(state.clone(), observe))
        .with_state(state)
}

async fn observe(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let start = Instant::now();
    let method = req.method().clone();
    let trace = state.options.tracing.then(|| {
        let cx = crate::traces::start(method.as_str(), req.uri().path(), req.headers());
        req.extensions_mut()
            .insert(crate::traces::RequestTrace(cx.clone()));
        cx
    });
    let response = next.run(req).await;
    if let Some(cx) = &trace {
        crate::traces::finish(cx, response.status().as_u16());
    }
    state
        .metrics
        .observe(method.as_str(), response.status().as_u16(), start.elapsed());
    response
}

fn presented_token(req: &Request) -> Option<&str> {
    req.headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(bearer)
}

async fn authenticate(State(state): State<AppState>, req: Request, next: Next) -> Response {
    if req.uri().path() == "/healthz" {
        return next.run(req).await;
    }
    let ok = match &state.auth {
        Auth::None => true,
        Auth::Bearer(token) => presented_token(&req).is_some_and(|t| token.matches(t)),
        Auth::Scoped { admin, .. } => admin
            .as_ref()
            .is_some_and(|a| presented_token(&req).is_some_and(|t| a.matches(t))),
        Auth::External(verifier) => match presented_token(&req) {
            None => false,
            Some(t) => match verifier.verify(t).await {
                Ok(verdict) => verdict.authenticated,
                Err(e) => return ErrorResponse(e).into_response(),
            },
        },
    };
    if ok {
        next.run(req).await
    } else if presented_token(&req).is_none() {
        let hint = match &state.auth {
            Auth::External(_) => {
                "missing Authorization: Bearer <token>; send a Kubernetes token the cluster accepts (e.g. from kubectl create token)"
            }
            _ => {
                "missing Authorization: Bearer <token>; paddock serve keeps its token in $PADDOCK_HOME/token"
            }
        };
        ErrorResponse(ApiError::new(Code::Unauthenticated, hint)).into_response()
    } else {
        ErrorResponse(ApiError::new(Code::Unauthenticated, "invalid token")).into_response()
    }
}

fn detail(status: StatusCode, detail: &str) -> Response {
    (status, Json(json!({ "detail": detail }))).into_response()
}

/// Upstream's sandbox-router contract: requests carrying `X-Sandbox-ID` go to the sandbox,
/// counted in upstream's `sandbox_router_*` metrics.
async fn routed(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let by_path = state
        .options
        .path_routing_prefix
        .as_deref()
        .is_some_and(|p| crate::browser::parse(req.uri().path(), p).is_some());
    if !by_path && (!router_contract::is_routed(req.headers()) || req.uri().path() == "/healthz") {
        return next.run(req).await;
    }
    let start = Instant::now();
    let method = req.method().clone();
    let _in_flight = state.metrics.routed_in_flight();
    let mut namespace = crate::metrics::UNRESOLVED_NAMESPACE.to_owned();
    let grpc = crate::proxy::is_grpc(&req) || crate::proxy::is_grpc_web(&req);
    let mut response = route_to_sandbox(&state, req, &mut namespace).await;
    if grpc && !response.status().is_success() {
        // A gRPC client reads a failure from the trailers, never from an HTTP status.
        let status = response.status().as_u16();
        let body = axum::body::to_bytes(response.into_body(), 64 * 1024)
            .await
            .unwrap_or_default();
        let message = serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v["detail"].as_str().map(str::to_owned))
            .unwrap_or_else(|| String::from_utf8_lossy(&body).into_owned());
        response = crate::proxy::grpc_failure(status, &message);
    }
    state.metrics.observe_routed(
        method.as_str(),
        response.status().as_u16(),
        &namespace,
        start.elapsed(),
    );
    response
}

/// Routes one request; sets `namespace` once the route names one.
async fn route_to_sandbox(state: &AppState, mut req: Request, namespace: &mut String) -> Response {
    use crate::browser::{self, Carrier};
    let refused = |e: router_contract::RouteError| {
        detail(
            StatusCode::from_u16(e.status).unwrap_or(StatusCode::BAD_REQUEST),
            &e.detail,
        )
    };
    let by_path = state
        .options
        .path_routing_prefix
        .as_deref()
        .and_then(|p| browser::parse(req.uri().path(), p));
    let (route, upstream_path, base) = match by_path {
        Some(Err(e)) => return refused(e),
        Some(Ok(p)) => (
            router_contract::RouteTarget {
                sandbox: p.sandbox,
                namespace: p.namespace,
                port: p.port,
                pod_ip: None,
                uid: None,
                timeout: state.options.route.proxy_timeout,
            },
            p.upstream_path,
            Some(p.base),
        ),
        None => match router_contract::parse(req.headers(), state.options.route) {
            Ok(r) => (r, req.uri().path().to_owned(), None),
            Err(e) => return refused(e),
        },
    };
    namespace.clone_from(&route.namespace);
    if let Some(crate::traces::RequestTrace(cx)) = req.extensions().get() {
        crate::traces::routed_to(cx, &route.namespace, &route.sandbox);
        let cx = cx.clone();
        crate::traces::inject(&cx, req.headers_mut());
    }

    // The credential: the Authorization header, else (path-routed, with cookie sessions) the
    // query parameter of a first visit, else the session cookie.
    let sessions = state
        .options
        .cookie_sessions
        .as_ref()
        .filter(|_| base.is_some());
    let mut query = req.uri().query().map(str::to_owned);
    let (credential, carrier) = match (presented_token(&req), sessions) {
        (Some(t), _) => (Some(t.to_owned()), Carrier::Header),
        (None, Some(s)) => {
            if let Some((token, rest)) = s.from_query(query.as_deref()) {
                query = rest;
                (Some(token), Carrier::Query)
            } else if let Some(token) = s.from_cookies(req.headers()) {
                (Some(token), Carrier::Cookie)
            } else {
                (None, Carrier::Header)
            }
        }
        (None, None) => (None, Carrier::Header),
    };
    if carrier == Carrier::Cookie
        && sessions.is_some_and(|s| {
            let tls = req.extensions().get::<crate::tls::ViaTls>().is_some();
            !s.origin_allowed(req.headers(), tls)
        })
    {
        state.metrics.authz_decision(&route.namespace, false);
        return detail(StatusCode::FORBIDDEN, "Origin not allowed.");
    }
    let denied = authorize_route(
        state,
        credential.as_deref(),
        &route,
        req.method().as_str(),
        &upstream_path,
    )
    .await;
    state
        .metrics
        .authz_decision(&route.namespace, denied.is_none());
    if let Some(response) = denied {
        return response;
    }
    if let (Some(s), Some(base), Some(token), Carrier::Query) =
        (sessions, base.as_deref(), credential.as_deref(), carrier)
        && matches!(*req.method(), http::Method::GET | http::Method::HEAD)
        && !req.headers().contains_key(header::UPGRADE)
        && browser::is_cookie_octets(token)
    {
        // A first visit: the token moves into a session cookie scoped to this sandbox's path,
        // and out of the URL.
        let location = match &query {
            Some(q) => format!("{}?{q}", req.uri().path()),
            None => req.uri().path().to_owned(),
        };
        return (
            StatusCode::FOUND,
            [
                (header::LOCATION, location),
                (header::CACHE_CONTROL, "no-store".to_owned()),
                (header::SET_COOKIE, s.set_cookie(token, base)),
            ],
        )
            .into_response();
    }
    if let Some(s) = sessions {
        s.strip_cookie(req.headers_mut());
    }
    let path_and_query = match &query {
        Some(q) => format!("{upstream_path}?{q}"),
        None => upstream_path,
    };
    forward_route(state, req, route, path_and_query).await
}

/// The route's authorization under the gateway's mode: `Some(answer)` when refused.
async fn authorize_route(
    state: &AppState,
    presented: Option<&str>,
    route: &router_contract::RouteTarget,
    method: &str,
    path: &str,
) -> Option<Response> {
    let missing = || {
        Some(detail(
            StatusCode::UNAUTHORIZED,
            "Missing or invalid Authorization header.",
        ))
    };
    let invalid = || Some(detail(StatusCode::UNAUTHORIZED, "Invalid token."));
    match &state.auth {
        Auth::None => None,
        Auth::Bearer(token) => match presented {
            None => missing(),
            Some(t) if !token.matches(t) => invalid(),
            Some(_) => None,
        },
        Auth::External(verifier) => {
            let Some(t) = presented else {
                return missing();
            };
            match verifier.verify(t).await {
                Ok(verdict) if verdict.authenticated => None,
                Ok(_) => invalid(),
                Err(e) => Some(detail(
                    status_of(e.code),
                    &format!("Could not verify the token: {}", e.message),
                )),
            }
        }
        Auth::Scoped { tokens, admin } => {
            let Some(t) = presented else {
                return missing();
            };
            if admin.as_ref().is_some_and(|a| a.matches(t)) {
                return None;
            }
            if t.starts_with("v2.") {
                return authorize_v2(state, tokens, t, route, method, path).await;
            }
            let Some(v1) = tokens.v1.as_ref().filter(|_| t.starts_with("v1.")) else {
                return invalid();
            };
            if route.pod_ip.is_some() || route.uid.is_some() {
                return Some(detail(
                    StatusCode::FORBIDDEN,
                    "X-Sandbox-Pod-IP and X-Sandbox-UID are not allowed with scoped tokens.",
                ));
            }
            match v1.verify(t, std::time::SystemTime::now()) {
                Err(_) => invalid(),
                Ok(scope) if scope.ns != route.namespace || scope.name != route.sandbox => {
                    Some(detail(
                        StatusCode::FORBIDDEN,
                        "Token is not valid for this sandbox.",
                    ))
                }
                Ok(_) => None,
            }
        }
    }
}

/// A v2 token (contract §11.1): signature and expiry (else 401), then no pod IP, and the
/// exact target — namespace, name, the Sandbox's current UID, port, method and path (else 403).
async fn authorize_v2(
    state: &AppState,
    tokens: &ScopedVerifier,
    token: &str,
    route: &router_contract::RouteTarget,
    method: &str,
    path: &str,
) -> Option<Response> {
    let unauthenticated = || Some(detail(StatusCode::UNAUTHORIZED, "unauthenticated"));
    let forbidden = || Some(detail(StatusCode::FORBIDDEN, "forbidden"));
    let Some(keys) = tokens.v2.as_ref() else {
        return unauthenticated();
    };
    let Ok(claims) = keys.verify(token, std::time::SystemTime::now()) else {
        return unauthenticated();
    };
    if route.pod_ip.is_some() {
        return forbidden();
    }
    // The Sandbox as it is now: a token for an earlier Sandbox of the same name (another
    // UID) fails, and an unknown Sandbox fails closed.
    let Ok(uid) = state
        .backend
        .sandbox_uid(&route.namespace, &route.sandbox)
        .await
    else {
        return forbidden();
    };
    if route.uid.as_deref().is_some_and(|u| u != uid) {
        return forbidden();
    }
    let target = crate::scoped_v2::RequestTarget {
        ns: &route.namespace,
        name: &route.sandbox,
        uid: &uid,
        port: route.port,
        method,
        path,
    };
    if claims.grants(&target) {
        None
    } else {
        forbidden()
    }
}

/// Forwards an authorized route to its sandbox.
async fn forward_route(
    state: &AppState,
    req: Request,
    route: router_contract::RouteTarget,
    path: String,
) -> Response {
    // Upstream's route reaches the agent (exec and files in its runtime API) or, through the
    // pod's network, any port: neither can be checked call by call, so it is closed for a
    // sandbox whose policy limits exec or files. A pod IP given for a sandbox that does not
    // exist could be any sandbox's: refused.
    match state
        .backend
        .permissions(&route.namespace, &route.sandbox)
        .await
    {
        Ok(rules) if rules.limits_agent() => {
            return detail(
                StatusCode::FORBIDDEN,
                "This sandbox's SandboxPolicy limits exec and files, which this route cannot check; use paddock's REST API (/v1/sandboxes/{name}/exec, /files).",
            );
        }
        Ok(_) => {}
        Err(e) if e.code == Code::NotFound && route.pod_ip.is_some() => {
            return detail(
                StatusCode::FORBIDDEN,
                "X-Sandbox-Pod-IP needs X-Sandbox-ID to name an existing sandbox.",
            );
        }
        // An unknown sandbox gets upstream's answer below.
        Err(e) if e.code == Code::NotFound => {}
        Err(e) => return detail(status_of(e.code), &e.message),
    }
    let port = (route.port != router_contract::DEFAULT_PORT).then_some(route.port);
    let target = match route.pod_ip {
        Some(ip) => paddock_backend::Target {
            endpoint: paddock_backend::Endpoint::Tcp(match ip {
                std::net::IpAddr::V4(v4) => format!("{v4}:{}", route.port),
                std::net::IpAddr::V6(v6) => format!("[{v6}]:{}", route.port),
            }),
            path_prefix: String::new(),
        },
        None => match state
            .backend
            .target(&route.namespace, &route.sandbox, port)
            .await
        {
            Ok(t) => t,
            Err(e) if e.code == Code::NotFound => {
                return detail(
                    StatusCode::BAD_GATEWAY,
                    &format!(
                        "Could not connect to the backend sandbox: {}",
                        route.sandbox
                    ),
                );
            }
            Err(e) => {
                return detail(
                    StatusCode::BAD_GATEWAY,
                    &format!(
                        "Could not connect to the backend sandbox: {} ({})",
                        route.sandbox, e.message
                    ),
                );
            }
        },
    };
    let metrics = &state.metrics;
    let (parts, body) = req.into_parts();
    let req = Request::from_parts(parts, metrics.count_request(&route.namespace, body));
    let result = if crate::proxy::is_grpc_web(&req) {
        let timeout = crate::proxy::grpc_timeout(req.headers())
            .map_or(route.timeout, |t| t.min(route.timeout));
        crate::proxy::forward_grpc_web(&state.grpc_client, &target, req, &path, timeout).await
    } else if crate::proxy::is_grpc(&req) {
        let timeout = crate::proxy::grpc_timeout(req.headers())
            .map_or(route.timeout, |t| t.min(route.timeout));
        crate::proxy::forward_grpc(&state.grpc_client, &target, req, &path, timeout).await
    } else {
        forward(&state.client, &target, req, &path, route.timeout).await
    };
    if let Err(e) = &result {
        metrics.upstream_error(
            &route.namespace,
            match e {
                ForwardError::Connect(_) => UpstreamError::Dial,
                ForwardError::Timeout(_) => UpstreamError::Timeout,
                ForwardError::BadRequest(_) => UpstreamError::Other,
            },
        );
    }
    match result {
        Ok(r) => {
            let (parts, body) = r.into_parts();
            Response::from_parts(parts, metrics.count_response(&route.namespace, body))
        }
        Err(ForwardError::Timeout(_)) => detail(
            StatusCode::GATEWAY_TIMEOUT,
            &format!(
                "Timed out waiting for the backend sandbox: {}",
                route.sandbox
            ),
        ),
        Err(ForwardError::Connect(_)) => detail(
            StatusCode::BAD_GATEWAY,
            &format!(
                "Could not connect to the backend sandbox: {}",
                route.sandbox
            ),
        ),
        Err(ForwardError::BadRequest(_)) => detail(
            StatusCode::INTERNAL_SERVER_ERROR,
            "An internal error occurred in the proxy.",
        ),
    }
}

async fn info(State(state): State<AppState>) -> Json<serde_json::Value> {
    Json(json!({
        "version": env!("CARGO_PKG_VERSION"),
        "backend": state.backend.name(),
        "details": state.backend.info(),
    }))
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct PullRequest {
    image: String,
}

/// `POST /v1/images/pull`: pulls an image into the engine's cache, streaming progress as NDJSON.
async fn pull_image(State(state): State<AppState>, body: axum::body::Bytes) -> ApiResult {
    let req: PullRequest = serde_json::from_slice(&body).map_err(|e| {
        ApiError::invalid(format!(
            "invalid request body: {e}; send {{\"image\": \"registry/name:tag\"}}"
        ))
    })?;
    let events = state.backend.pull_image(&req.image).await?;
    let lines = futures_util::StreamExt::map(events, |e| {
        Ok::<_, std::io::Error>(axum::body::Bytes::from(format!("{e}\n")))
    });
    Ok((
        [(header::CONTENT_TYPE, "application/x-ndjson")],
        axum::body::Body::from_stream(lines),
    )
        .into_response())
}

/// Only `GET /metrics`, unauthenticated, for a separate metrics listener.
pub fn metrics_router(state: AppState) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .with_state(state)
}

async fn metrics(State(state): State<AppState>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        {
            let mut text = state.metrics.render();
            let backend = state.backend.metrics_text();
            if !backend.is_empty() {
                if let Some(head) = text.strip_suffix("# EOF\n") {
                    text = head.to_owned();
                }
                text.push_str(&backend);
            }
            text
        },
    )
        .into_response()
}

/// Serves the API on `listener` until `shutdown` is cancelled, then finishes in-flight requests.
///
/// # Errors
/// The listener fails.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    serve_router(listener, router(state), shutdown).await
}

/// Serves `app` on `listener` until `shutdown` is cancelled, then finishes in-flight requests.
///
/// # Errors
/// The listener fails.
pub async fn serve_router(
    listener: TcpListener,
    app: Router,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    use axum::serve::ListenerExt as _;
    // Streamed events are small writes: without TCP_NODELAY, Nagle and delayed ACKs hold them
    // back ~40 ms.
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    axum::serve(listener, app)
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::Verdict;
    use paddock_api::kinds::Kind;
    use paddock_api::stored::Object;
    use paddock_backend::{BoxFuture, ObjectList, ObjectWatch, Propagation, Target};
    use serde_json::Value;
    use tower::ServiceExt as _;

    /// A backend with no objects: enough to reach `GET /v1/info` and the router contract.
    #[derive(Debug)]
    struct Empty;

    fn none<'a, T: Send + 'a>() -> BoxFuture<'a, Result<T, ApiError>> {
        Box::pin(async { Err(ApiError::not_found("nothing here")) })
    }

    impl Backend for Empty {
        fn name(&self) -> &'static str {
            "empty"
        }
        fn permissions(
            &self,
            _: &str,
            _: &str,
        ) -> BoxFuture<'_, Result<paddock_policy::PermissionRules, ApiError>> {
            none()
        }
        fn get(&self, _: Kind, _: &str, _: &str) -> BoxFuture<'_, Result<Object, ApiError>> {
            none()
        }
        fn list(
            &self,
            _: Kind,
            _: Option<&str>,
            _: &str,
        ) -> BoxFuture<'_, Result<ObjectList, ApiError>> {
            none()
        }
        fn create(&self, _: Object) -> BoxFuture<'_, Result<Object, ApiError>> {
            none()
        }
        fn update(&self, _: Object, _: Part) -> BoxFuture<'_, Result<Object, ApiError>> {
            none()
        }
        fn delete(
            &self,
            _: Kind,
            _: &str,
            _: &str,
            _: Propagation,
        ) -> BoxFuture<'_, Result<Object, ApiError>> {
            none()
        }
        fn watch(
            &self,
            _: Kind,
            _: Option<&str>,
            _: &str,
            _: Option<String>,
        ) -> BoxFuture<'_, Result<ObjectWatch, ApiError>> {
            none()
        }
        fn target(
            &self,
            _: &str,
            _: &str,
            _: Option<u16>,
        ) -> BoxFuture<'_, Result<Target, ApiError>> {
            none()
        }
        fn info(&self) -> Value {
            json!({})
        }
    }

    /// Accepts `good`, refuses others, and cannot decide about `down`.
    #[derive(Debug)]
    struct Verifier;

    impl TokenVerifier for Verifier {
        fn verify<'a>(&'a self, token: &'a str) -> BoxFuture<'a, Result<Verdict, ApiError>> {
            Box::pin(async move {
                match token {
                    "good" => Ok(Verdict::accepted("alice")),
                    "down" => Err(ApiError::unavailable("the verifier is down")),
                    _ => Ok(Verdict::refused()),
                }
            })
        }
    }

    async fn status_of(app: &Router, token: Option<&str>, routed: bool) -> (StatusCode, Value) {
        let mut req = http::Request::builder().uri("/v1/info");
        if let Some(t) = token {
            req = req.header(header::AUTHORIZATION, format!("Bearer {t}"));
        }
        if routed {
            req = req.header("x-sandbox-id", "sb");
        }
        let resp = app
            .clone()
            .oneshot(req.body(axum::body::Body::empty()).expect("request"))
            .await
            .expect("response");
        let status = resp.status();
        let bytes = http_body_util::BodyExt::collect(resp.into_body())
            .await
            .expect("body")
            .to_bytes();
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }

    #[tokio::test]
    async fn external_verifier_decides_every_call_and_fails_closed() {
        let state = AppState::new(
            Arc::new(Empty),
            Auth::External(Arc::new(Verifier)),
            GatewayOptions::default(),
        );
        let app = router(state);
        assert_eq!(status_of(&app, Some("good"), false).await.0, StatusCode::OK);
        let (status, body) = status_of(&app, Some("bad"), false).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_eq!(
            body,
            json!({"code": "UNAUTHENTICATED", "message": "invalid token"})
        );
        let (status, body) = status_of(&app, None, false).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert!(
            body["message"]
                .as_str()
                .is_some_and(|m| m.contains("kubectl create token")),
            "{body}"
        );
        let (status, body) = status_of(&app, Some("down"), false).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");

        // Routed requests: upstream's `detail` bodies.
        assert_eq!(
            status_of(&app, Some("bad"), true).await,
            (
                StatusCode::UNAUTHORIZED,
                json!({"detail": "Invalid token."})
            )
        );
        assert_eq!(
            status_of(&app, None, true).await,
            (
                StatusCode::UNAUTHORIZED,
                json!({"detail": "Missing or invalid Authorization header."})
            )
        );
        let (status, body) = status_of(&app, Some("down"), true).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(
            body["detail"]
                .as_str()
                .is_some_and(|d| d.starts_with("Could not verify the token")),
            "{body}"
        );
        // Accepted: on to the backend, which knows no such sandbox.
        assert_eq!(
            status_of(&app, Some("good"), true).await.0,
            StatusCode::BAD_GATEWAY
        );
    }
}
