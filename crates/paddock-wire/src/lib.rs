//! The wire types of paddock's REST API, defined once. The gateway parses requests into them and
//! answers with them, the in-sandbox agent speaks its process and file API with them, the Rust
//! SDK sends and reads them, and (with the `schema` feature) the OpenAPI document the gateway
//! serves is generated from them — which the Python SDK's tests check its models against.
//!
//! # Layout
//! - [`sandbox`]: creating and describing sandboxes (`/v1/sandboxes`), `apply` results.
//! - [`process`]: running commands (`/v1/exec`, `/v1/processes`).
//! - [`files`]: directory listings (`/v1/files`).
//! - [`egress`]: a sandbox's record of connections (`/v1/sandboxes/{name}/egress`).
//! - [`error`]: the error body and its stable codes.
//! - `schema` (feature `schema`): the JSON Schemas, by name.

pub mod egress;
pub mod error;
pub mod files;
pub mod process;
pub mod sandbox;
#[cfg(feature = "schema")]
pub mod schema;

pub use egress::{EgressKind, EgressLog, EgressRecord};
pub use error::{Code, ErrorBody};
pub use files::{DirectoryListing, FileEntry, FileEvent, FileStat};
pub use process::{ExecResult, ExitStatus, ProcessInfo, ProcessRequest, ProcessState, TermSize};
pub use sandbox::{
    Applied, ApplyResult, CreateSandbox, HostVolume, MintToken, MintedToken, Phase, Resources,
    SandboxInfo, SandboxList,
};
