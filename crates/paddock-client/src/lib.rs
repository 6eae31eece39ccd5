//! The Rust SDK of paddock: a client of the gateway (`paddock serve` on one machine, or the
//! gateway on a cluster), with the same surface as the Python SDK.
//!
//! ```no_run
//! # async fn demo() -> paddock_client::Result<()> {
//! use paddock_client::{Client, CreateSandbox, ProcessRequest};
//! let client = Client::from_env()?;
//! let info = client.create_sandbox(&CreateSandbox::image("host")).await?;
//! let sandbox = client.sandbox(&info.name, &info.namespace);
//! let out = sandbox.exec(&ProcessRequest::shell("python3 -c 'print(6*7)'")).await?;
//! assert_eq!(out.stdout_text(), "42\n");
//! sandbox.delete().await?;
//! # Ok(()) }
//! ```
//!
//! # Layout
//! - [`Client`]: sandboxes, objects, apply; [`Sandbox`]: exec, processes, files.
//! - [`types`]: requests and answers; [`error`]: errors mirroring the gateway's codes.

pub mod client;
pub mod error;
pub mod sandbox;
pub mod types;

pub use client::{Client, DEFAULT_URL, ObjectWatch};
pub use error::{Error, ErrorCode, Result};
pub use sandbox::{ProcessSocket, Sandbox};
pub use types::*;
