//! Kubernetes test support: an in-memory API server ([`api_server::FakeApiServer`]) for
//! scenario tests and benchmarks, and a scripted one ([`scripted`]) for tests that assert each
//! call.

pub mod api_server;
pub mod cluster;
pub mod rbac;
pub mod scripted;

pub use api_server::{ApiCosts, FakeApiServer, RequestRecord};
