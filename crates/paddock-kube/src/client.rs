//! The Kubernetes client: a kubeconfig (`--kubeconfig`, else `KUBECONFIG`, else
//! `~/.kube/config`) or the in-cluster service account, with client-go's client-side rate limit
//! (`--kube-api-qps` / `--kube-api-burst`, a token bucket every request waits on, watches
//! included).

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use std::path::PathBuf;

use kube::client::ClientBuilder;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};
use tower::{Layer, Service};

use crate::error::KubeError;

/// Which cluster to talk to, as every Kubernetes tool takes it.
#[derive(Clone, Debug, Default, clap::Args)]
pub struct ClusterArgs {
    /// Path to a kubeconfig file. Without it: `KUBECONFIG`, then `~/.kube/config`, then the
    /// in-cluster service account.
    #[arg(long, value_name = "FILE")]
    pub kubeconfig: Option<PathBuf>,
}

/// A token bucket: `rate` tokens per second, at most `burst` saved up.
#[derive(Debug)]
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket.
    pub fn new(rate: f64, burst: u32) -> Self {
        let burst = f64::from(burst.max(1));
        Self {
            rate,
            burst,
            tokens: burst,
            last: Instant::now(),
        }
    }

    /// Takes a token, or says how long until one is available.
    pub fn take(&mut self, now: Instant) -> Result<(), Duration> {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - self.tokens) / self.rate))
        }
    }
}

/// A tower layer that makes every request wait for a token.
#[derive(Clone, Debug)]
pub struct RateLimitLayer {
    bucket: Arc<Mutex<TokenBucket>>,
}

impl RateLimitLayer {
    /// `qps` requests per second with `burst`.
    pub fn new(qps: f64, burst: u32) -> Self {
        Self {
            bucket: Arc::new(Mutex::new(TokenBucket::new(qps, burst))),
        }
    }
}

impl<S> Layer<S> for RateLimitLayer {
    type Service = RateLimited<S>;
    fn layer(&self, inner: S) -> RateLimited<S> {
        RateLimited {
            inner,
            bucket: self.bucket.clone(),
            wait: None,
            has_token: false,
        }
    }
}

/// The rate-limited service.
pub struct RateLimited<S> {
    inner: S,
    bucket: Arc<Mutex<TokenBucket>>,
    wait: Option<Pin<Box<tokio::time::Sleep>>>,
    has_token: bool,
}

impl<S> std::fmt::Debug for RateLimited<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimited").finish_non_exhaustive()
    }
}

impl<S, R> Service<R> for RateLimited<S>
where
    S: Service<R>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        while !self.has_token {
            if let Some(wait) = self.wait.as_mut() {
                if wait.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                self.wait = None;
            }
            let taken = self
                .bucket
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .take(Instant::now());
            match taken {
                Ok(()) => self.has_token = true,
                Err(d) => self.wait = Some(Box::pin(tokio::time::sleep(d))),
            }
        }
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: R) -> S::Future {
        self.has_token = false;
        self.inner.call(req)
    }
}

/// The client configuration `cluster` names.
///
/// # Errors
/// [`KubeError::KubeConfig`] when the named kubeconfig cannot be read, or no configuration is
/// found at all.
pub async fn config(cluster: &ClusterArgs) -> Result<Config, KubeError> {
    match &cluster.kubeconfig {
        Some(path) => {
            let kubeconfig = Kubeconfig::read_from(path).map_err(|e| {
                KubeError::KubeConfig(format!("reading --kubeconfig {}: {e}", path.display()))
            })?;
            Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
                .await
                .map_err(|e| {
                    KubeError::KubeConfig(format!("using --kubeconfig {}: {e}", path.display()))
                })
        }
        None => Config::infer()
            .await
            .map_err(|e| KubeError::KubeConfig(e.to_string())),
    }
}

/// A client for `cluster`, rate limited when `qps` is set.
///
/// # Errors
/// [`KubeError::KubeConfig`] when no configuration is available or usable.
pub async fn connect(
    cluster: &ClusterArgs,
    qps: Option<f64>,
    burst: u32,
) -> Result<Client, KubeError> {
    let config = config(cluster).await?;
    let builder =
        ClientBuilder::try_from(config).map_err(|e| KubeError::KubeConfig(e.to_string()))?;
    Ok(match qps {
        Some(qps) => builder.with_layer(&RateLimitLayer::new(qps, burst)).build(),
        None => builder.build(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_allows_burst_then_paces() {
        let start = Instant::now();
        let mut b = TokenBucket::new(10.0, 3);
        b.last = start;
        for _ in 0..3 {
            assert_eq!(b.take(start), Ok(()));
        }
        let wait = b.take(start).expect_err("burst spent");
        assert!(
            wait > Duration::from_millis(90) && wait <= Duration::from_millis(100),
            "{wait:?}"
        );
        assert_eq!(b.take(start + Duration::from_millis(100)), Ok(()));
    }
}
