//! The controller's servers over real sockets (metrics, probes) and leader election against a
//! scripted API server.

mod common;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::{expect, expect_no_more};
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use kube::Client;
use kube::client::Body;
use paddock_control::cache::Cache;
use paddock_control::metrics::Metrics;
use paddock_controller::leader::{LEASE_NAME, LeaderElector, Timings};
use paddock_controller::probes::{Endpoints, Readiness, serve_plain};
use serde_json::{Value, json};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

async fn send<S>(io: S, req: Request<Full<Bytes>>) -> (u16, Bytes)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .expect("handshake");
    tokio::spawn(conn);
    let resp = sender.send_request(req).await.expect("response");
    let status = resp.status().as_u16();
    (
        status,
        resp.into_body().collect().await.expect("body").to_bytes(),
    )
}

#[tokio::test]
async fn metrics_and_probes_are_served_over_http() {
    let metrics = Arc::new(Metrics::new(Arc::new(Cache::new())));
    metrics.record_reconcile("sandbox", Duration::from_millis(1), "success");
    let shutdown = CancellationToken::new();
    let ml = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let maddr = ml.local_addr().expect("addr");
    let hl = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let haddr = hl.local_addr().expect("addr");
    let readiness = Readiness::default();
    let m = tokio::spawn(serve_plain(
        ml,
        Endpoints::Metrics(metrics),
        shutdown.clone(),
    ));
    let h = tokio::spawn(serve_plain(
        hl,
        Endpoints::Health(readiness.clone()),
        shutdown.clone(),
    ));
    let get = |path: &str| {
        Request::get(path)
            .header("host", "x")
            .body(Full::new(Bytes::new()))
            .expect("req")
    };

    let (status, body) = send(TcpStream::connect(maddr).await.expect("c"), get("/metrics")).await;
    assert_eq!(status, 200);
    let text = String::from_utf8(body.to_vec()).expect("utf8");
    assert!(
        text.contains(
            "controller_runtime_reconcile_total{controller=\"sandbox\",result=\"success\"} 1"
        ),
        "{text}"
    );
    assert!(text.contains("agent_sandbox_build_info{"), "{text}");
    assert!(text.ends_with("# EOF\n"));

    let (status, _) = send(TcpStream::connect(haddr).await.expect("c"), get("/healthz")).await;
    assert_eq!(status, 200);
    let (status, _) = send(TcpStream::connect(haddr).await.expect("c"), get("/readyz")).await;
    assert_eq!(status, 503, "not ready before start-up finishes");
    readiness.set_ready();
    let (status, _) = send(TcpStream::connect(haddr).await.expect("c"), get("/readyz")).await;
    assert_eq!(status, 200);

    shutdown.cancel();
    m.await.expect("join");
    h.await.expect("join");
}

const LEASES: &str = "/apis/coordination.k8s.io/v1/namespaces/agent-sandbox-system/leases";

fn lease(holder: Option<&str>, rv: &str, transitions: i32) -> Value {
    json!({
        "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": LEASE_NAME, "namespace": "agent-sandbox-system", "resourceVersion": rv},
        "spec": {"holderIdentity": holder, "leaseDurationSeconds": 15, "leaseTransitions": transitions,
                 "acquireTime": "2026-09-01T11:00:00.000000Z", "renewTime": "2026-09-01T11:00:00.000000Z"}
    })
}

fn elector(timings: Timings) -> (LeaderElector, common::ApiHandle) {
    let (service, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let client = Client::new(service, "default");
    (
        LeaderElector::new(client, "agent-sandbox-system", "me_1".to_owned(), timings),
        handle,
    )
}

#[tokio::test]
async fn leader_election_acquires_renews_and_releases_the_lease() {
    let (e, mut api) = elector(Timings::default());
    let path = format!("{LEASES}/{LEASE_NAME}");
    let e = Arc::new(e);

    // Acquire: no Lease yet, so create one naming us.
    let t = tokio::spawn({
        let e = e.clone();
        async move { e.try_acquire_or_renew().await }
    });
    expect(&mut api, "GET", &path).await.fail(404, "NotFound");
    let create = expect(&mut api, "POST", LEASES).await;
    assert_eq!(create.body["metadata"]["name"], LEASE_NAME);
    assert_eq!(create.body["spec"]["holderIdentity"], "me_1");
    assert_eq!(create.body["spec"]["leaseDurationSeconds"], 15);
    assert_eq!(create.body["spec"]["leaseTransitions"], 0);
    create.respond(201, &lease(Some("me_1"), "1", 0));
    assert!(t.await.expect("join").expect("api"), "acquired");

    // Renew: an optimistic-lock update that keeps the transition count.
    let t = tokio::spawn({
        let e = e.clone();
        async move { e.try_acquire_or_renew().await }
    });
    expect(&mut api, "GET", &path)
        .await
        .ok(&lease(Some("me_1"), "1", 0));
    let renew = expect(&mut api, "PUT", &path).await;
    assert_eq!(renew.body["metadata"]["resourceVersion"], "1");
    assert_eq!(renew.body["spec"]["holderIdentity"], "me_1");
    assert_eq!(renew.body["spec"]["leaseTransitions"], 0);
    assert_ne!(
        renew.body["spec"]["renewTime"],
        "2026-09-01T11:00:00.000000Z"
    );
    renew.ok(&lease(Some("me_1"), "2", 0));
    assert!(t.await.expect("join").expect("api"), "renewed");

    // Release: holder cleared, duration 1 s, so a successor takes over at once.
    let t = tokio::spawn({
        let e = e.clone();
        async move { e.release().await }
    });
    expect(&mut api, "GET", &path)
        .await
        .ok(&lease(Some("me_1"), "2", 0));
    let release = expect(&mut api, "PUT", &path).await;
    assert_eq!(release.body["spec"].get("holderIdentity"), None);
    assert_eq!(release.body["spec"]["leaseDurationSeconds"], 1);
    assert_eq!(release.body["metadata"]["resourceVersion"], "2");
    release.ok(&lease(None, "3", 0));
    t.await.expect("join");
    expect_no_more(&mut api).await;
}

#[tokio::test]
async fn leader_election_waits_for_a_live_holder_and_takes_over_an_expired_one() {
    let timings = Timings {
        lease_duration: Duration::from_millis(200),
        renew_deadline: Duration::from_millis(150),
        retry_period: Duration::from_millis(50),
    };
    let (e, mut api) = elector(timings);
    let e = Arc::new(e);
    let path = format!("{LEASES}/{LEASE_NAME}");

    // Held by another replica that keeps renewing: no write, not acquired.
    let t = tokio::spawn({
        let e = e.clone();
        async move { e.try_acquire_or_renew().await }
    });
    let mut live = lease(Some("other_2"), "7", 3);
    live["spec"]["leaseDurationSeconds"] = json!(15);
    expect(&mut api, "GET", &path).await.ok(&live);
    assert!(!t.await.expect("join").expect("api"));
    expect_no_more(&mut api).await;

    // The holder stops renewing (same record seen for longer than its duration): take over.
    let mut stale = live.clone();
    stale["spec"]["leaseDurationSeconds"] = json!(0);
    let t = tokio::spawn({
        let e = e.clone();
        async move { e.try_acquire_or_renew().await }
    });
    expect(&mut api, "GET", &path).await.ok(&stale);
    let take = expect(&mut api, "PUT", &path).await;
    assert_eq!(take.body["spec"]["holderIdentity"], "me_1");
    assert_eq!(
        take.body["spec"]["leaseTransitions"], 4,
        "a change of holder counts"
    );
    take.ok(&lease(Some("me_1"), "8", 4));
    assert!(t.await.expect("join").expect("api"));

    // Someone else wins the race on the next renewal: leadership is lost.
    let shutdown = CancellationToken::new();
    let t = tokio::spawn({
        let e = e.clone();
        async move { e.hold(&shutdown).await }
    });
    expect(&mut api, "GET", &path)
        .await
        .ok(&lease(Some("me_1"), "8", 4));
    expect(&mut api, "PUT", &path).await.fail(409, "Conflict");
    let lost = t.await.expect("join");
    assert!(lost.is_err(), "losing the lease stops the controllers");
}
