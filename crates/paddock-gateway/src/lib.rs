//! The gateway: the one HTTP API for SDKs and the CLI, plus upstream's router contract.
//!
//! # Layout
//! - [`auth`]: bearer tokens (generated on first start, kept with mode 0600) and upstream's HMAC
//!   scoped tokens.
//! - [`router_contract`]: the `X-Sandbox-*` request contract of upstream's sandbox-router.

pub mod auth;
pub mod router_contract;
