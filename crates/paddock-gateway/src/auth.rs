//! Who may call the gateway: a shared bearer token (the default; `paddock serve` generates one
//! on first start), upstream's HMAC scoped tokens bound to one sandbox, a [`TokenVerifier`] the
//! embedder supplies (Kubernetes TokenReview lives with the Kubernetes backend), or nobody
//! checked (only when explicitly asked).

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

/// A bearer token. Its `Debug` never shows the secret.
#[derive(Clone, PartialEq, Eq)]
pub struct Token(String);

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

/// Errors loading or creating a token file.
#[derive(Debug, thiserror::Error)]
pub enum TokenFileError {
    /// The file could not be read or written.
    #[error("token file {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The file exists but holds no usable token.
    #[error("token file {path} is empty or not text; delete it to have a new token generated")]
    Empty {
        /// The file.
        path: String,
    },
    /// The system's random source failed.
    #[error("cannot generate a token: {0}")]
    Random(String),
}

impl Token {
    /// Wraps a token string (surrounding whitespace removed).
    pub fn new(s: &str) -> Self {
        Self(s.trim().to_owned())
    }

    /// A fresh token: 32 random bytes, URL-safe base64.
    ///
    /// # Errors
    /// The system's random source failed.
    pub fn generate() -> Result<Self, TokenFileError> {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes).map_err(|e| TokenFileError::Random(e.to_string()))?;
        Ok(Self(URL_SAFE_NO_PAD.encode(bytes)))
    }

    /// Reads the token at `path`, creating it (mode 0600, parent directories 0700) when absent.
    ///
    /// # Errors
    /// The file cannot be read or written, or holds no token.
    pub fn load_or_create(path: &Path) -> Result<Self, TokenFileError> {
        let io = |source| TokenFileError::Io {
            path: path.display().to_string(),
            source,
        };
        match std::fs::read_to_string(path) {
            Ok(text) if !text.trim().is_empty() => return Ok(Self::new(&text)),
            Ok(_) => {
                return Err(TokenFileError::Empty {
                    path: path.display().to_string(),
                });
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(e)),
        }
        if let Some(parent) = path.parent() {
            create_private_dir(parent).map_err(io)?;
        }
        let token = Self::generate()?;
        write_private(path, token.0.as_bytes()).map_err(io)?;
        Ok(token)
    }

    /// The secret, for a client to send.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Compares with a presented token in constant time.
    pub fn matches(&self, presented: &str) -> bool {
        self.0.as_bytes().ct_eq(presented.as_bytes()).into()
    }
}

fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

fn write_private(path: &Path, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(data)?;
    file.sync_all()
}

/// The bearer token of an `Authorization: Bearer <token>` header value.
pub fn bearer(header_value: &str) -> Option<&str> {
    let (scheme, token) = header_value.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

pub use paddock_backend::{TokenVerifier, Verdict};

/// The MAC context of upstream's scoped tokens.
const SCOPED_TOKEN_CONTEXT: &str = "agent-sandbox/scoped-token/v1.";

/// The sandbox a scoped token grants.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Scope {
    /// Namespace.
    pub ns: String,
    /// Sandbox name.
    pub name: String,
    /// Expiry, Unix seconds (exclusive).
    pub exp: i64,
}

/// Why a scoped token was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ScopedTokenError {
    /// Not `v1.<payload>.<signature>`.
    #[error("malformed scoped token")]
    Malformed,
    /// The signature does not verify.
    #[error("invalid scoped token signature")]
    BadSignature,
    /// Past its `exp`.
    #[error("scoped token expired")]
    Expired,
    /// The secret is shorter than 32 bytes.
    #[error("the scoped-token secret must be at least 32 bytes")]
    WeakSecret,
}

/// Upstream's HMAC-SHA256 scoped tokens: `v1.<base64url(payload)>.<base64url(mac)>`, payload
/// `{"ns","name","exp"}`, MAC over `agent-sandbox/scoped-token/v1.` + the encoded payload.
#[derive(Clone)]
pub struct ScopedTokens {
    secret: Vec<u8>,
}

impl std::fmt::Debug for ScopedTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ScopedTokens(<secret redacted>)")
    }
}

impl ScopedTokens {
    /// Uses `secret` (surrounding whitespace trimmed, as upstream reads its secret file).
    ///
    /// # Errors
    /// The trimmed secret is shorter than 32 bytes.
    pub fn new(secret: &[u8]) -> Result<Self, ScopedTokenError> {
        let trimmed = secret.trim_ascii();
        if trimmed.len() < 32 {
            return Err(ScopedTokenError::WeakSecret);
        }
        Ok(Self {
            secret: trimmed.to_vec(),
        })
    }

    fn mac(&self, encoded_payload: &str) -> Hmac<Sha256> {
        // HMAC accepts keys of any length; new_from_slice cannot fail for it.
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&self.secret)
            .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
        mac.update(SCOPED_TOKEN_CONTEXT.as_bytes());
        mac.update(encoded_payload.as_bytes());
        mac
    }

    /// Mints a token for a sandbox (the router never mints; `paddock` does for its clients).
    pub fn mint(&self, scope: &Scope) -> String {
        let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(scope).unwrap_or_default());
        let sig = URL_SAFE_NO_PAD.encode(self.mac(&payload).finalize().into_bytes());
        format!("v1.{payload}.{sig}")
    }

    /// Verifies a token and returns its scope.
    ///
    /// # Errors
    /// Malformed, bad signature, or expired at `now`.
    pub fn verify(&self, token: &str, now: SystemTime) -> Result<Scope, ScopedTokenError> {
        let mut parts = token.split('.');
        let (Some("v1"), Some(payload), Some(sig), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(ScopedTokenError::Malformed);
        };
        let sig = URL_SAFE_NO_PAD
            .decode(sig)
            .map_err(|_| ScopedTokenError::Malformed)?;
        self.mac(payload)
            .verify_slice(&sig)
            .map_err(|_| ScopedTokenError::BadSignature)?;
        let bytes = URL_SAFE_NO_PAD
            .decode(payload)
            .map_err(|_| ScopedTokenError::Malformed)?;
        let scope: Scope =
            serde_json::from_slice(&bytes).map_err(|_| ScopedTokenError::Malformed)?;
        if expired(now, scope.exp) {
            return Err(ScopedTokenError::Expired);
        }
        Ok(scope)
    }
}

/// Whether a token with expiry `exp` (Unix seconds, exclusive) is expired at `now`.
pub(crate) fn expired(now: SystemTime, exp: i64) -> bool {
    let now = now
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
    now >= exp
}

/// Verifies upstream's scoped tokens of either version: `v1.` (HMAC, a shared secret) and
/// `v2.` (Ed25519, public keys). Either may be absent; a token of an absent version is refused.
#[derive(Clone, Debug, Default)]
pub struct ScopedVerifier {
    /// v1 HMAC tokens.
    pub v1: Option<ScopedTokens>,
    /// v2 Ed25519 tokens.
    pub v2: Option<crate::scoped_v2::VerificationKeys>,
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn token_file_is_created_private_and_reused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/token");
        let first = Token::load_or_create(&path).unwrap();
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(
            std::fs::metadata(path.parent().unwrap())
                .unwrap()
                .permissions()
                .mode()
                & 0o777,
            0o700
        );
        let second = Token::load_or_create(&path).unwrap();
        assert_eq!(first, second);
        assert!(first.matches(first.expose()));
        assert!(!first.matches("nope"));
        assert_eq!(format!("{first:?}"), "Token(<redacted>)");
    }

    #[test]
    fn empty_token_file_is_an_error_that_says_what_to_do() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "\n").unwrap();
        let err = Token::load_or_create(&path).unwrap_err().to_string();
        assert!(
            err.contains("delete it to have a new token generated"),
            "{err}"
        );
    }

    #[test]
    fn bearer_header_parsing() {
        assert_eq!(bearer("Bearer abc"), Some("abc"));
        assert_eq!(bearer("bearer  abc "), Some("abc"));
        assert_eq!(bearer("Basic abc"), None);
        assert_eq!(bearer("Bearer "), None);
    }

    #[test]
    fn scoped_tokens_round_trip_and_reject_tampering() {
        let tokens = ScopedTokens::new(&[7u8; 40]).unwrap();
        let scope = Scope {
            ns: "default".into(),
            name: "sb-1".into(),
            exp: 2_000_000_000,
        };
        let token = tokens.mint(&scope);
        assert!(token.starts_with("v1."));
        let now = UNIX_EPOCH + Duration::from_secs(1_900_000_000);
        assert_eq!(tokens.verify(&token, now).unwrap(), scope);
        assert_eq!(
            tokens.verify(&token, UNIX_EPOCH + Duration::from_secs(2_000_000_000)),
            Err(ScopedTokenError::Expired)
        );
        let other = ScopedTokens::new(&[8u8; 40]).unwrap();
        assert_eq!(
            other.verify(&token, now),
            Err(ScopedTokenError::BadSignature)
        );
        let mut parts: Vec<&str> = token.split('.').collect();
        let forged = URL_SAFE_NO_PAD.encode(br#"{"ns":"default","name":"other","exp":2000000000}"#);
        parts[1] = &forged;
        assert_eq!(
            tokens.verify(&parts.join("."), now),
            Err(ScopedTokenError::BadSignature)
        );
        assert_eq!(
            tokens.verify("v2.a.b", now),
            Err(ScopedTokenError::Malformed)
        );
        assert_eq!(
            ScopedTokens::new(b"  short  ").unwrap_err(),
            ScopedTokenError::WeakSecret
        );
    }

    #[test]
    fn scoped_token_mac_matches_the_wire_format() {
        // The MAC covers the context string and the encoded payload, nothing else.
        let tokens = ScopedTokens::new(b"0123456789abcdef0123456789abcdef").unwrap();
        let token = tokens.mint(&Scope {
            ns: "a".into(),
            name: "b".into(),
            exp: 1,
        });
        let (prefix, sig) = token.rsplit_once('.').unwrap();
        let payload = prefix.strip_prefix("v1.").unwrap();
        let mut mac =
            <Hmac<Sha256> as KeyInit>::new_from_slice(b"0123456789abcdef0123456789abcdef").unwrap();
        mac.update(format!("agent-sandbox/scoped-token/v1.{payload}").as_bytes());
        assert_eq!(URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes()), sig);
        assert_eq!(
            URL_SAFE_NO_PAD.decode(payload).unwrap(),
            br#"{"ns":"a","name":"b","exp":1}"#
        );
    }
}
