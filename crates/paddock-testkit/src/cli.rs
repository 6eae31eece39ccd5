//! What tests of the `paddock` command read from a finished run, and waits on the server.

use std::process::Output;
use std::time::{Duration, Instant};

use paddock_client::Client;

/// Standard output, as text.
pub fn out(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Standard error, as text.
pub fn err(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Fails the test with the exit code and both outputs unless the run succeeded.
pub fn assert_ok(o: &Output, what: &str) {
    assert!(
        o.status.success(),
        "{what}: exit {:?}\nstdout: {}\nstderr: {}",
        o.status.code(),
        out(o),
        err(o)
    );
}

/// Waits (60 s at most, then panics) until the warm pool `pool` in `default` has all its
/// replicas ready.
pub async fn wait_pool_full(client: &Client, pool: &str) {
    let path = format!(
        "/apis/extensions.agents.x-k8s.io/v1beta1/namespaces/default/sandboxwarmpools/{pool}"
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(p) = client.object_call(http::Method::GET, &path, None).await {
            let want = p
                .pointer("/spec/replicas")
                .and_then(serde_json::Value::as_i64);
            let ready = p
                .pointer("/status/readyReplicas")
                .and_then(serde_json::Value::as_i64);
            if want.is_some() && want == ready {
                return;
            }
        }
        assert!(Instant::now() < deadline, "the pool {pool} did not fill");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
