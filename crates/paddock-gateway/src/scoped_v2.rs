//! Upstream's v2 scoped tokens (contract §11.1): `v2.<kid>.<payload>.<sig>`, Ed25519 over
//! `agent-sandbox/scoped-token/v2.` + kid + `.` + payload, bound to one Sandbox (namespace,
//! name and UID), one port, one method and one exact path. A token minted here verifies on
//! upstream's router and the other way round; the router needs only public keys, so it checks
//! a token with no API call and no shared secret.

use std::collections::BTreeMap;
use std::time::SystemTime;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::{Signature, Signer as _, SigningKey, Verifier as _, VerifyingKey};

/// The signing context: the kid and payload follow it, so neither can be swapped.
const CONTEXT: &str = "agent-sandbox/scoped-token/v2.";

/// What a v2 token grants: exactly one request target (contract §11.1's claims, in order).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetClaims {
    /// Namespace.
    pub ns: String,
    /// Sandbox name.
    pub name: String,
    /// Sandbox UID: a Sandbox recreated under the same name is another Sandbox.
    pub uid: String,
    /// Port inside the sandbox.
    pub port: u16,
    /// HTTP method, upper case.
    pub method: String,
    /// The exact path the sandbox receives, normalised by [`normalize_path`].
    pub path: String,
    /// Expiry, Unix seconds (invalid from `exp` on).
    pub exp: i64,
}

/// Why a v2 token or key was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum V2Error {
    /// Not `v2.<kid>.<payload>.<sig>` with valid parts.
    #[error("malformed v2 scoped token")]
    Malformed,
    /// No verification key has this kid.
    #[error("unknown key id {0:?}")]
    UnknownKid(String),
    /// The signature does not verify.
    #[error("invalid v2 scoped token signature")]
    BadSignature,
    /// Past its `exp`.
    #[error("v2 scoped token expired")]
    Expired,
    /// The token names no Sandbox UID.
    #[error("v2 scoped token has no uid")]
    NoUid,
    /// A path that is not a request path.
    #[error("invalid path {path:?}: {why}")]
    BadPath {
        /// The path.
        path: String,
        /// What is wrong.
        why: &'static str,
    },
    /// A method that is not an HTTP token.
    #[error("invalid method {0:?}")]
    BadMethod(String),
    /// A key id outside 1–128 of `[A-Za-z0-9_-]`.
    #[error("invalid key id {0:?}: 1 to 128 of A-Z a-z 0-9 _ -")]
    BadKid(String),
    /// A verification-keys or signing-key file that cannot be used.
    #[error("{0}")]
    BadKeys(String),
}

fn valid_kid(kid: &str) -> bool {
    (1..=128).contains(&kid.len())
        && kid
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Upper-cases and trims a method; refuses one that is not an HTTP token.
///
/// # Errors
/// [`V2Error::BadMethod`].
pub fn normalize_method(method: &str) -> Result<String, V2Error> {
    let m = method.trim().to_ascii_uppercase();
    let tchar = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
    if m.is_empty() || !m.bytes().all(tchar) {
        return Err(V2Error::BadMethod(method.to_owned()));
    }
    Ok(m)
}

/// Upstream's `NormalizeAuthorizationTarget` for a path: empty → `/`; must start with `/`;
/// every `%xx` must be a valid escape, and its hex digits are upper-cased; other bytes stay.
///
/// # Errors
/// [`V2Error::BadPath`].
pub fn normalize_path(path: &str) -> Result<String, V2Error> {
    let bad = |why| V2Error::BadPath {
        path: path.to_owned(),
        why,
    };
    if path.is_empty() {
        return Ok("/".to_owned());
    }
    if !path.starts_with('/') {
        return Err(bad("it must start with /"));
    }
    let bytes = path.as_bytes();
    let mut out = String::with_capacity(path.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = bytes
                    .get(i + 1..i + 3)
                    .filter(|h| h.iter().all(u8::is_ascii_hexdigit))
                    .ok_or_else(|| bad("a % that is not followed by two hex digits"))?;
                out.push('%');
                for h in hex {
                    out.push(char::from(h.to_ascii_uppercase()));
                }
                i += 3;
            }
            b if b.is_ascii_control() || b == b' ' || b == b'?' || b == b'#' => {
                return Err(bad("a space, control character, ? or # in the path"));
            }
            _ => {
                let ch = path[i..].chars().next().unwrap_or_default();
                out.push(ch);
                i += ch.len_utf8();
            }
        }
    }
    Ok(out)
}

fn signed_input(kid: &str, payload: &str) -> Vec<u8> {
    format!("{CONTEXT}{kid}.{payload}").into_bytes()
}

/// Mints a token with `key` (named `kid`) for `claims`.
///
/// # Errors
/// A bad kid, method or path, or claims without a UID.
pub fn mint(key: &SigningKey, kid: &str, claims: &TargetClaims) -> Result<String, V2Error> {
    if !valid_kid(kid) {
        return Err(V2Error::BadKid(kid.to_owned()));
    }
    if claims.uid.is_empty() {
        return Err(V2Error::NoUid);
    }
    let claims = TargetClaims {
        method: normalize_method(&claims.method)?,
        path: normalize_path(&claims.path)?,
        ..claims.clone()
    };
    let json = serde_json::to_vec(&claims).map_err(|_| V2Error::Malformed)?;
    let payload = URL_SAFE_NO_PAD.encode(json);
    let sig = key.sign(&signed_input(kid, &payload));
    Ok(format!(
        "v2.{kid}.{payload}.{}",
        URL_SAFE_NO_PAD.encode(sig.to_bytes())
    ))
}

/// The public keys a router accepts, by key id (several at once while rotating).
#[derive(Clone, Debug, Default)]
pub struct VerificationKeys {
    keys: BTreeMap<String, VerifyingKey>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct KeysFile {
    keys: Vec<KeyEntry>,
}

#[derive(serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct KeyEntry {
    kid: String,
    public_key: String,
}

impl VerificationKeys {
    /// Reads upstream's verification-keys JSON:
    /// `{"keys":[{"kid":"…","publicKey":"<unpadded base64url 32-byte key>"}]}`.
    ///
    /// # Errors
    /// Unknown fields, trailing data, no keys, a duplicate or invalid kid, or a key that is not
    /// 32 bytes of unpadded base64url — each named.
    pub fn from_json(text: &[u8]) -> Result<Self, V2Error> {
        let file: KeysFile = serde_json::from_slice(text)
            .map_err(|e| V2Error::BadKeys(format!("not a verification-keys file: {e}")))?;
        if file.keys.is_empty() {
            return Err(V2Error::BadKeys("it holds no keys".to_owned()));
        }
        let mut keys = BTreeMap::new();
        for entry in file.keys {
            if !valid_kid(&entry.kid) {
                return Err(V2Error::BadKid(entry.kid));
            }
            let raw = URL_SAFE_NO_PAD.decode(&entry.public_key).map_err(|_| {
                V2Error::BadKeys(format!(
                    "key {:?}: publicKey is not unpadded base64url",
                    entry.kid
                ))
            })?;
            let raw: [u8; 32] = raw.try_into().map_err(|_| {
                V2Error::BadKeys(format!("key {:?}: publicKey must be 32 bytes", entry.kid))
            })?;
            let key = VerifyingKey::from_bytes(&raw).map_err(|_| {
                V2Error::BadKeys(format!("key {:?}: not an Ed25519 public key", entry.kid))
            })?;
            if keys.insert(entry.kid.clone(), key).is_some() {
                return Err(V2Error::BadKeys(format!("duplicate kid {:?}", entry.kid)));
            }
        }
        Ok(Self { keys })
    }

    /// These keys and `other`'s together.
    ///
    /// # Errors
    /// A kid in both.
    pub fn merged(mut self, other: Self) -> Result<Self, V2Error> {
        for (kid, key) in other.keys {
            if self.keys.insert(kid.clone(), key).is_some() {
                return Err(V2Error::BadKeys(format!("duplicate kid {kid:?}")));
            }
        }
        Ok(self)
    }

    /// The key ids.
    pub fn kids(&self) -> impl Iterator<Item = &str> {
        self.keys.keys().map(String::as_str)
    }

    /// Verifies a `v2.` token's signature and expiry and returns what it grants; whether
    /// that matches the request is the caller's check ([`TargetClaims::grants`]).
    ///
    /// # Errors
    /// Malformed, unknown kid, bad signature, no UID, or expired at `now`.
    pub fn verify(&self, token: &str, now: SystemTime) -> Result<TargetClaims, V2Error> {
        let mut parts = token.split('.');
        let (Some("v2"), Some(kid), Some(payload), Some(sig), None) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) else {
            return Err(V2Error::Malformed);
        };
        if !valid_kid(kid) {
            return Err(V2Error::Malformed);
        }
        let key = self
            .keys
            .get(kid)
            .ok_or_else(|| V2Error::UnknownKid(kid.to_owned()))?;
        let sig = URL_SAFE_NO_PAD
            .decode(sig)
            .ok()
            .and_then(|s| <[u8; 64]>::try_from(s).ok())
            .ok_or(V2Error::Malformed)?;
        key.verify(&signed_input(kid, payload), &Signature::from_bytes(&sig))
            .map_err(|_| V2Error::BadSignature)?;
        let bytes = URL_SAFE_NO_PAD
            .decode(payload)
            .map_err(|_| V2Error::Malformed)?;
        let claims: TargetClaims =
            serde_json::from_slice(&bytes).map_err(|_| V2Error::Malformed)?;
        if claims.uid.is_empty() {
            return Err(V2Error::NoUid);
        }
        if crate::auth::expired(now, claims.exp) {
            return Err(V2Error::Expired);
        }
        Ok(claims)
    }
}

/// The request a v2 token is checked against, built after routing (and after any
/// path-routing prefix is removed): what the sandbox receives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestTarget<'a> {
    /// Namespace.
    pub ns: &'a str,
    /// Sandbox name.
    pub name: &'a str,
    /// The Sandbox's current UID (empty when unknown: then nothing matches).
    pub uid: &'a str,
    /// Port.
    pub port: u16,
    /// Method.
    pub method: &'a str,
    /// Path without the query.
    pub path: &'a str,
}

impl TargetClaims {
    /// Whether these claims grant exactly `target` (every field equal; the query string and
    /// body are not bound).
    pub fn grants(&self, target: &RequestTarget<'_>) -> bool {
        let (Ok(method), Ok(path)) = (normalize_method(target.method), normalize_path(target.path))
        else {
            return false;
        };
        !target.uid.is_empty()
            && self.ns == target.ns
            && self.name == target.name
            && self.uid == target.uid
            && self.port == target.port
            && self.method == method
            && self.path == path
    }
}

/// A signing key and its id, as `paddock token keygen` writes them:
/// `{"kid":"…","privateKey":"<unpadded base64url 32-byte seed>"}`.
#[derive(Clone)]
pub struct SigningKeyFile {
    /// Key id.
    pub kid: String,
    /// The key.
    pub key: SigningKey,
}

impl std::fmt::Debug for SigningKeyFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKeyFile")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

#[derive(serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct PrivateKeyEntry {
    kid: String,
    private_key: String,
}

impl SigningKeyFile {
    /// A new random key named `kid`.
    ///
    /// # Errors
    /// A bad kid, or the system's random source failed.
    pub fn generate(kid: &str) -> Result<Self, V2Error> {
        if !valid_kid(kid) {
            return Err(V2Error::BadKid(kid.to_owned()));
        }
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).map_err(|e| V2Error::BadKeys(format!("randomness: {e}")))?;
        Ok(Self {
            kid: kid.to_owned(),
            key: SigningKey::from_bytes(&seed),
        })
    }

    /// Reads a signing-key file.
    ///
    /// # Errors
    /// Not the JSON above, a bad kid, or a key that is not 32 bytes.
    pub fn from_json(text: &[u8]) -> Result<Self, V2Error> {
        let entry: PrivateKeyEntry = serde_json::from_slice(text)
            .map_err(|e| V2Error::BadKeys(format!("not a signing-key file: {e}")))?;
        if !valid_kid(&entry.kid) {
            return Err(V2Error::BadKid(entry.kid));
        }
        let seed: [u8; 32] = URL_SAFE_NO_PAD
            .decode(entry.private_key.trim())
            .ok()
            .and_then(|s| s.try_into().ok())
            .ok_or_else(|| {
                V2Error::BadKeys("privateKey must be 32 bytes of unpadded base64url".to_owned())
            })?;
        Ok(Self {
            kid: entry.kid,
            key: SigningKey::from_bytes(&seed),
        })
    }

    /// The signing-key file's JSON (secret: write it only where the issuer reads it).
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(&PrivateKeyEntry {
            kid: self.kid.clone(),
            private_key: URL_SAFE_NO_PAD.encode(self.key.to_bytes()),
        })
        .unwrap_or_default()
    }

    /// The verification-keys JSON routers read for this key (public; merge several files'
    /// `keys` to rotate).
    pub fn verification_json(&self) -> String {
        serde_json::to_string_pretty(&serde_json::json!({"keys": [KeyEntry {
            kid: self.kid.clone(),
            public_key: URL_SAFE_NO_PAD.encode(self.key.verifying_key().to_bytes()),
        }]}))
        .unwrap_or_default()
    }

    /// Mints a token for `claims`.
    ///
    /// # Errors
    /// As [`mint`].
    pub fn mint(&self, claims: &TargetClaims) -> Result<String, V2Error> {
        mint(&self.key, &self.kid, claims)
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;

    fn claims() -> TargetClaims {
        TargetClaims {
            ns: "team".into(),
            name: "sb".into(),
            uid: "uid-1".into(),
            port: 8888,
            method: "post".into(),
            path: "/execute".into(),
            exp: 2_000_000_000,
        }
    }

    fn target<'a>() -> RequestTarget<'a> {
        RequestTarget {
            ns: "team",
            name: "sb",
            uid: "uid-1",
            port: 8888,
            method: "POST",
            path: "/execute",
        }
    }

    const NOW: u64 = 1_900_000_000;

    fn now() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(NOW)
    }

    #[test]
    fn a_minted_token_verifies_and_grants_exactly_its_target() {
        let key = SigningKeyFile::generate("k1").unwrap();
        let keys = VerificationKeys::from_json(key.verification_json().as_bytes()).unwrap();
        let token = key.mint(&claims()).unwrap();
        assert!(token.starts_with("v2.k1."));
        assert_eq!(token.split('.').count(), 4);
        assert!(!token.contains('='), "unpadded");
        let granted = keys.verify(&token, now()).unwrap();
        assert_eq!(granted.method, "POST");
        assert!(granted.grants(&target()));
        for other in [
            RequestTarget {
                ns: "x",
                ..target()
            },
            RequestTarget {
                name: "x",
                ..target()
            },
            RequestTarget {
                uid: "uid-2",
                ..target()
            },
            RequestTarget {
                uid: "",
                ..target()
            },
            RequestTarget {
                port: 80,
                ..target()
            },
            RequestTarget {
                method: "GET",
                ..target()
            },
            RequestTarget {
                path: "/execute/x",
                ..target()
            },
            RequestTarget {
                path: "/",
                ..target()
            },
        ] {
            assert!(!granted.grants(&other), "{other:?}");
        }
    }

    #[test]
    fn the_wire_format_is_upstreams() {
        // The signature covers the context, the kid and the encoded payload; claims in order.
        let key = SigningKeyFile::generate("rot-2026_a").unwrap();
        let token = key.mint(&claims()).unwrap();
        let parts: Vec<&str> = token.split('.').collect();
        let payload = URL_SAFE_NO_PAD.decode(parts[2]).unwrap();
        assert_eq!(
            String::from_utf8(payload).unwrap(),
            r#"{"ns":"team","name":"sb","uid":"uid-1","port":8888,"method":"POST","path":"/execute","exp":2000000000}"#
        );
        let sig: [u8; 64] = URL_SAFE_NO_PAD
            .decode(parts[3])
            .unwrap()
            .try_into()
            .unwrap();
        let input = format!("agent-sandbox/scoped-token/v2.rot-2026_a.{}", parts[2]);
        key.key
            .verifying_key()
            .verify(input.as_bytes(), &Signature::from_bytes(&sig))
            .unwrap();
    }

    #[test]
    fn forged_expired_swapped_and_unknown_tokens_are_refused() {
        let key = SigningKeyFile::generate("k1").unwrap();
        let keys = VerificationKeys::from_json(key.verification_json().as_bytes()).unwrap();
        let token = key.mint(&claims()).unwrap();
        let at_exp = UNIX_EPOCH + Duration::from_secs(2_000_000_000);
        assert_eq!(keys.verify(&token, at_exp), Err(V2Error::Expired));
        // Another payload under the same signature.
        let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
        let mut forged = claims();
        forged.name = "other".into();
        forged.method = "POST".into();
        parts[2] = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&forged).unwrap());
        assert_eq!(
            keys.verify(&parts.join("."), now()),
            Err(V2Error::BadSignature)
        );
        // The kid is signed: renaming it breaks the signature even with both keys known.
        let other = SigningKeyFile::generate("k2").unwrap();
        let both = format!(
            r#"{{"keys":[{},{}]}}"#,
            &key.verification_json()[key.verification_json().find('[').unwrap() + 1
                ..key.verification_json().rfind(']').unwrap()],
            &other.verification_json()[other.verification_json().find('[').unwrap() + 1
                ..other.verification_json().rfind(']').unwrap()]
        );
        let both = VerificationKeys::from_json(both.as_bytes()).unwrap();
        assert_eq!(both.kids().collect::<Vec<_>>(), ["k1", "k2"]);
        let swapped = token.replacen("v2.k1.", "v2.k2.", 1);
        assert_eq!(both.verify(&swapped, now()), Err(V2Error::BadSignature));
        assert_eq!(
            VerificationKeys::from_json(other.verification_json().as_bytes())
                .unwrap()
                .verify(&token, now()),
            Err(V2Error::UnknownKid("k1".into()))
        );
        for bad in ["v2.k1.a", "v2..a.b", "v1.a.b", "v2.k1.!!.b", "v2.k1.a.b.c"] {
            assert!(keys.verify(bad, now()).is_err(), "{bad}");
        }
        let mut no_uid = claims();
        no_uid.uid.clear();
        assert_eq!(key.mint(&no_uid), Err(V2Error::NoUid));
    }

    #[test]
    fn verification_key_files_are_checked_strictly() {
        let good = SigningKeyFile::generate("k1").unwrap().verification_json();
        VerificationKeys::from_json(good.as_bytes()).unwrap();
        let pk = URL_SAFE_NO_PAD.encode([9u8; 32]);
        for (text, needle) in [
            (r#"{"keys":[]}"#.to_owned(), "no keys"),
            (
                format!(r#"{{"keys":[{{"kid":"a","publicKey":"{pk}"}}],"x":1}}"#),
                "unknown field",
            ),
            (
                format!(r#"{{"keys":[{{"kid":"a","publicKey":"{pk}"}}]}} {{}}"#),
                "trailing",
            ),
            (
                format!(r#"{{"keys":[{{"kid":"a b","publicKey":"{pk}"}}]}}"#),
                "invalid key id",
            ),
            (
                r#"{"keys":[{"kid":"a","publicKey":"AAAA"}]}"#.to_owned(),
                "32 bytes",
            ),
            (
                format!(r#"{{"keys":[{{"kid":"a","publicKey":"{pk}="}}]}}"#),
                "unpadded",
            ),
        ] {
            let err = VerificationKeys::from_json(text.as_bytes())
                .unwrap_err()
                .to_string();
            assert!(err.contains(needle), "{text}: {err}");
        }
        let dup = SigningKeyFile::generate("a").unwrap().verification_json();
        let entry = &dup[dup.find('[').unwrap() + 1..dup.rfind(']').unwrap()];
        let err =
            VerificationKeys::from_json(format!(r#"{{"keys":[{entry},{entry}]}}"#).as_bytes())
                .unwrap_err()
                .to_string();
        assert!(err.contains("duplicate kid"), "{err}");
    }

    #[test]
    fn paths_are_normalised_as_upstream_does() {
        assert_eq!(normalize_path("").unwrap(), "/");
        assert_eq!(normalize_path("/a%2fb").unwrap(), "/a%2Fb");
        assert_eq!(normalize_path("/files/é").unwrap(), "/files/é");
        for bad in ["relative", "/a%zz", "/a%2", "/a b", "/a?b"] {
            assert!(normalize_path(bad).is_err(), "{bad}");
        }
        assert!(normalize_method("get").is_ok_and(|m| m == "GET"));
        assert!(normalize_method("GE T").is_err());
    }

    #[test]
    fn signing_key_files_round_trip() {
        let key = SigningKeyFile::generate("k1").unwrap();
        let back = SigningKeyFile::from_json(key.to_json().as_bytes()).unwrap();
        assert_eq!(back.key.to_bytes(), key.key.to_bytes());
        assert_eq!(format!("{back:?}"), "SigningKeyFile { kid: \"k1\", .. }");
        assert!(SigningKeyFile::from_json(br#"{"kid":"k","privateKey":"AA"}"#).is_err());
    }
}
