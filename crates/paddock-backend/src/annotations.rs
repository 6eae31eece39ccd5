//! Annotations paddock defines for itself (upstream's registry is `paddock_api::names`).

/// Pod-template annotation asking the local engine to run no main process: the sandbox idles,
/// waiting for exec (the gateway sets it when an image sandbox is created without `command`).
pub const IDLE: &str = "paddock.dev/idle";
