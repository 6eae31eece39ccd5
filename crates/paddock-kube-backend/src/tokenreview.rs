//! `--auth tokenreview`: bearer tokens checked by the cluster (`authentication.k8s.io/v1`
//! TokenReview), as upstream's Go router does: authentication only, optional audiences, and
//! decisions cached by the SHA-256 of the token (never the token) for a TTL — errors for a
//! third of it, at least a second — in a bounded cache that forgets the least recently used.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use kube::Client;
use kube::core::Request;
use kube::core::params::PostParams;
use paddock_backend::ApiError;
use paddock_backend::BoxFuture;
use paddock_backend::{TokenVerifier, Verdict};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::time::Instant;

use super::backend::api_error;

/// Cache tunables (upstream's `--authz-tokenreview-ttl` and `--authz-tokenreview-cache-size`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CacheConfig {
    /// How long a decision is reused.
    pub ttl: Duration,
    /// Most decisions kept.
    pub size: usize,
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            ttl: Duration::from_secs(30),
            size: 2048,
        }
    }
}

impl CacheConfig {
    /// How long a failed review is reused: a third of the TTL, at least a second.
    pub fn error_ttl(&self) -> Duration {
        (self.ttl / 3).max(Duration::from_secs(1))
    }
}

struct Entry {
    decision: Result<Verdict, ApiError>,
    expires: Instant,
    last_used: u64,
}

/// Decisions by token hash, bounded; evicts the least recently used when full.
struct Decisions {
    entries: HashMap<[u8; 32], Entry>,
    tick: u64,
    size: usize,
}

impl Decisions {
    fn get(&mut self, key: &[u8; 32], now: Instant) -> Option<Result<Verdict, ApiError>> {
        self.tick += 1;
        let tick = self.tick;
        match self.entries.get_mut(key) {
            Some(e) if e.expires > now => {
                e.last_used = tick;
                Some(e.decision.clone())
            }
            Some(_) => {
                self.entries.remove(key);
                None
            }
            None => None,
        }
    }

    fn put(
        &mut self,
        key: [u8; 32],
        decision: Result<Verdict, ApiError>,
        expires: Instant,
        now: Instant,
    ) {
        if self.size == 0 {
            return;
        }
        if self.entries.len() >= self.size && !self.entries.contains_key(&key) {
            self.entries.retain(|_, e| e.expires > now);
            if self.entries.len() >= self.size
                && let Some(oldest) = self
                    .entries
                    .iter()
                    .min_by_key(|(_, e)| e.last_used)
                    .map(|(k, _)| *k)
            {
                self.entries.remove(&oldest);
            }
        }
        self.tick += 1;
        self.entries.insert(
            key,
            Entry {
                decision,
                expires,
                last_used: self.tick,
            },
        );
    }
}

/// Checks bearer tokens with the cluster's TokenReview API.
pub struct TokenReviewVerifier {
    client: Client,
    audiences: Vec<String>,
    cache: CacheConfig,
    decisions: Mutex<Decisions>,
}

impl std::fmt::Debug for TokenReviewVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenReviewVerifier")
            .field("audiences", &self.audiences)
            .field("cache", &self.cache)
            .finish_non_exhaustive()
    }
}

fn hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

impl TokenReviewVerifier {
    /// A verifier asking the API server behind `client`; a token must be valid for one of
    /// `audiences` when any are given (else for the API server's own).
    pub fn new(client: Client, audiences: Vec<String>, cache: CacheConfig) -> Self {
        Self {
            client,
            audiences,
            cache,
            decisions: Mutex::new(Decisions {
                entries: HashMap::new(),
                tick: 0,
                size: cache.size,
            }),
        }
    }

    fn decisions(&self) -> std::sync::MutexGuard<'_, Decisions> {
        self.decisions
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Decisions cached right now (expired ones included until they are looked at).
    pub fn cached(&self) -> usize {
        self.decisions().entries.len()
    }

    async fn review(&self, token: &str) -> Result<Verdict, ApiError> {
        let mut spec = json!({"token": token});
        if !self.audiences.is_empty() {
            spec["audiences"] = json!(self.audiences);
        }
        let review = json!({
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenReview",
            "spec": spec,
        });
        let body = serde_json::to_vec(&review)
            .map_err(|e| ApiError::internal(format!("cannot encode the TokenReview: {e}")))?;
        let req = Request::new("/apis/authentication.k8s.io/v1/tokenreviews")
            .create(&PostParams::default(), body)
            .map_err(|e| ApiError::internal(format!("cannot build the TokenReview: {e}")))?;
        let answer: Value = self.client.request(req).await.map_err(|e| {
            let e = api_error(e);
            ApiError::new(e.code, format!("TokenReview failed: {}", e.message))
        })?;
        let status = answer.get("status").cloned().unwrap_or(Value::Null);
        if status.get("authenticated").and_then(Value::as_bool) != Some(true) {
            if let Some(why) = status.get("error").and_then(Value::as_str) {
                tracing::debug!(reason = why, "token refused by TokenReview");
            }
            return Ok(Verdict::refused());
        }
        if !self.audiences.is_empty() {
            let granted: Vec<&str> = status
                .get("audiences")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            if !self.audiences.iter().any(|a| granted.contains(&a.as_str())) {
                tracing::debug!("token refused: none of the requested audiences was granted");
                return Ok(Verdict::refused());
            }
        }
        let user = status
            .pointer("/user/username")
            .and_then(Value::as_str)
            .unwrap_or_default();
        Ok(Verdict::accepted(user))
    }
}

impl TokenVerifier for TokenReviewVerifier {
    fn verify<'a>(&'a self, token: &'a str) -> BoxFuture<'a, Result<Verdict, ApiError>> {
        Box::pin(async move {
            let key = hash(token);
            let now = Instant::now();
            if let Some(decision) = self.decisions().get(&key, now) {
                return decision;
            }
            let decision = self.review(token).await;
            let ttl = if decision.is_ok() {
                self.cache.ttl
            } else {
                self.cache.error_ttl()
            };
            let now = Instant::now();
            self.decisions().put(key, decision.clone(), now + ttl, now);
            decision
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decisions(size: usize) -> Decisions {
        Decisions {
            entries: HashMap::new(),
            tick: 0,
            size,
        }
    }

    #[test]
    fn error_ttl_is_a_third_of_the_ttl_and_at_least_a_second() {
        let c = CacheConfig {
            ttl: Duration::from_secs(30),
            size: 1,
        };
        assert_eq!(c.error_ttl(), Duration::from_secs(10));
        let c = CacheConfig {
            ttl: Duration::from_secs(2),
            size: 1,
        };
        assert_eq!(c.error_ttl(), Duration::from_secs(1));
    }

    #[test]
    fn cache_is_bounded_and_evicts_the_least_recently_used() {
        let now = Instant::now();
        let later = now + Duration::from_secs(60);
        let mut d = decisions(2);
        d.put(hash("a"), Ok(Verdict::accepted("a")), later, now);
        d.put(hash("b"), Ok(Verdict::accepted("b")), later, now);
        assert!(d.get(&hash("a"), now).is_some(), "a is now the most recent");
        d.put(hash("c"), Ok(Verdict::refused()), later, now);
        assert_eq!(d.entries.len(), 2);
        assert!(
            d.get(&hash("b"), now).is_none(),
            "b was least recently used"
        );
        assert!(d.get(&hash("a"), now).is_some());
        assert!(d.get(&hash("c"), now).is_some());
    }

    #[test]
    fn expired_decisions_are_not_reused() {
        let now = Instant::now();
        let mut d = decisions(4);
        d.put(
            hash("a"),
            Ok(Verdict::accepted("a")),
            now + Duration::from_secs(1),
            now,
        );
        assert!(d.get(&hash("a"), now + Duration::from_secs(2)).is_none());
        assert!(d.entries.is_empty());
    }

    #[test]
    fn keys_are_token_hashes_not_tokens() {
        let key = hash("secret-token");
        assert_ne!(&key[..], b"secret-token".as_slice());
        assert_eq!(key, hash("secret-token"));
    }
}
