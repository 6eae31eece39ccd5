//! `paddock egress`: the egress proxy on a Kubernetes cluster.
//!
//! Sandbox Pods whose Sandbox (or template, or claim) names a SandboxPolicy get
//! `HTTP_PROXY`/`HTTPS_PROXY` pointing here (the controller's `--egress-proxy`), and the
//! template-managed NetworkPolicy lets them reach nothing else. The proxy tells sandboxes apart
//! by their Pod's address, judges each connection by that Sandbox's policies exactly as
//! `paddock serve` does (`paddock-policy`, `paddock-egress`), reads injected secrets from
//! Kubernetes Secrets (`valueFrom.secretKeyRef`), and publishes the CA sandboxes trust for
//! intercepted destinations as the ConfigMap `paddock-egress-ca` in each of their namespaces.
//!
//! - [`cluster`]: the watches and which address is which sandbox;
//! - [`api`]: the records and metrics, for `paddock gateway` and Prometheus;
//! - [`run`](mod@run): flags, the CA, secrets, serving.

pub mod api;
pub mod cluster;
pub mod run;

pub use run::{EgressArgs, EgressError, run};
