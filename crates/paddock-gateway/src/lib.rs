//! The gateway: the one HTTP API for SDKs and the CLI (docs/gateway-api.md), plus upstream's
//! router contract, over a [`Backend`](backend::Backend) — the embedded engine of
//! `paddock serve`, or a Kubernetes cluster.
//!
//! # Layout
//! - [`server`]: routes, authentication, the router contract, health, metrics; [`server::serve`].
//! - [`sandboxes`]: `/v1/sandboxes` — create, describe, pause, resume, and forwarding to agents.
//! - [`objects`]: the four kinds on Kubernetes-shaped paths, and `/v1/apply`.
//! - [`proxy`], [`agent_client`]: forwarding requests to sandboxes over unix sockets or TCP.
//! - [`auth`]: bearer tokens and upstream's scoped tokens (v1 HMAC); [`scoped_v2`]: v2 Ed25519.
//! - [`router_contract`]: upstream's `X-Sandbox-*` request contract.
//! - [`error`]: errors as HTTP responses; [`metrics`]; [`openapi`].
//!
//! The [`Backend`] port, [`ApiError`] and [`Code`] live in `paddock-backend`, which both the
//! gateway and the backends depend on.

#![recursion_limit = "512"]

pub mod agent_client;
pub mod auth;
pub mod browser;
pub mod error;
pub mod metrics;
pub mod objects;
pub mod openapi;
pub mod permits;
pub mod policies;
pub mod proxy;
pub mod router_contract;
pub mod sandboxes;
pub mod scoped_v2;
pub mod server;
pub mod tls;
pub mod tokens;
pub mod traces;

pub use error::{ApiResult, ErrorResponse};
pub use paddock_backend::{ApiError, Backend, Code};
pub use server::{AppState, Auth, GatewayOptions, router, serve};
