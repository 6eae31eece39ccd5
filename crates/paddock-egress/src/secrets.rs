//! Where injected credentials come from: files on this host (`paddock serve`), and for the
//! in-cluster proxy also Kubernetes Secrets (its own implementation of [`SecretStore`]).

use std::future::Future;
use std::pin::Pin;

use paddock_api::policy::SecretSource;

/// A boxed future, so stores can be `dyn`.
pub type SecretFuture<'a> = Pin<Box<dyn Future<Output = Result<String, String>> + Send + 'a>>;

/// Reads secrets for injection; read at each use, so rotating the source rotates the secret.
pub trait SecretStore: Send + Sync + std::fmt::Debug {
    /// The secret's value, for a sandbox in `namespace`. The error says what to fix.
    fn read<'a>(&'a self, namespace: &'a str, source: &'a SecretSource) -> SecretFuture<'a>;
}

/// Secrets from files on this host; a Kubernetes Secret is refused with the reason.
#[derive(Debug, Default, Clone, Copy)]
pub struct FileSecrets;

/// Reads a secret file, without its trailing newline.
///
/// # Errors
/// The file cannot be read.
pub fn read_file_secret(path: &str) -> Result<String, String> {
    std::fs::read_to_string(path)
        .map(|s| s.trim_end_matches(['\n', '\r']).to_owned())
        .map_err(|e| format!("cannot read the secret file {path}: {e}"))
}

impl SecretStore for FileSecrets {
    fn read<'a>(&'a self, _namespace: &'a str, source: &'a SecretSource) -> SecretFuture<'a> {
        Box::pin(async move {
            match (&source.file, &source.secret_key_ref) {
                (Some(path), _) => read_file_secret(path),
                (None, Some(r)) => Err(format!(
                    "secret {}/{} is a Kubernetes Secret, which only the in-cluster egress proxy (paddock egress) reads",
                    r.name, r.key
                )),
                (None, None) => Err("the injection names no secret".into()),
            }
        })
    }
}
