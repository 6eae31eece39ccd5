//! The whole controller (`run_with`: certificates, CRD CA injection, leader election,
//! reflectors, the four controllers, shutdown) against the in-memory API server, with the
//! test playing the kubelet; and the RBAC manifests checked against every request it made.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use paddock_api::kinds::Kind;
use paddock_api::names::name_hash;
use paddock_controller::ControllerArgs;
use paddock_testkit::kube::FakeApiServer;
use paddock_testkit::kube::rbac::Grants;
use paddock_testkit::kube::scripted::authz;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

const SANDBOXES: &str = "agents.x-k8s.io/sandboxes";
const PODS: &str = "/pods";

async fn wait_for<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn ready(obj: &Value) -> bool {
    obj.pointer("/status/conditions")
        .and_then(Value::as_array)
        .is_some_and(|cs| {
            cs.iter()
                .any(|c| c["type"] == "Ready" && c["status"] == "True")
        })
}

/// Plays the kubelet: the pod runs, is Ready and has an address.
fn start_pod(api: &FakeApiServer, name: &str, ip: &str) {
    let status = json!({"status": {"phase": "Running", "podIPs": [{"ip": ip}], "podIP": ip,
        "conditions": [{"type": "Ready", "status": "True"}, {"type": "PodScheduled", "status": "True"}]}});
    assert!(api.merge(PODS, "ns", name, &status, true).is_success());
}

fn settings() -> paddock_controller::args::Settings {
    let args = ControllerArgs {
        extensions: true,
        metrics_bind_address: "0".into(),
        health_probe_bind_address: "0".into(),
        leader_election_namespace: "agent-sandbox-system".into(),
        webhook_port: 1,
        egress_proxy: Some("paddock-egress.agent-sandbox-system:3128".into()),
        ..ControllerArgs::default()
    };
    let mut s = args.validate().expect("valid flags");
    if let Some(w) = s.webhook.as_mut() {
        w.addr = "127.0.0.1:0".parse().expect("addr");
    }
    s
}

/// What the deploy/ RBAC grants: (apiGroup, resource, verb), cluster-wide and in the
/// controller's namespace.
fn granted() -> (Grants, Grants) {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../../deploy/rbac");
    let files = paddock_testkit::kube::rbac::files_in(std::path::Path::new(root));
    let files: Vec<&std::path::Path> = files.iter().map(std::path::PathBuf::as_path).collect();
    paddock_testkit::kube::rbac::granted(&files)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn controller_runs_sandboxes_pools_and_claims_end_to_end_within_its_rbac() {
    let api = FakeApiServer::new().recording();
    for kind in Kind::ALL {
        api.insert(
            "apiextensions.k8s.io/customresourcedefinitions",
            json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
                   "metadata": {"name": kind.crd_name()}, "spec": {"group": kind.group()}}),
        );
    }
    let shutdown = CancellationToken::new();
    let controller = tokio::spawn(paddock_controller::run::run_with(
        api.client(),
        settings(),
        shutdown.clone(),
    ));

    // Certificates in the Secret, CA in every CRD, a Lease naming us.
    let secret = wait_for("the webhook Secret", || {
        api.get(
            "/secrets",
            "agent-sandbox-system",
            "agent-sandbox-webhook-certs",
        )
    })
    .await;
    assert!(secret["data"]["ca.crt"].is_string());
    for kind in Kind::ALL {
        let crd = wait_for("the CA bundle", || {
            api.get(
                "apiextensions.k8s.io/customresourcedefinitions",
                "",
                &kind.crd_name(),
            )
            .filter(|c| {
                c.pointer("/spec/conversion/webhook/clientConfig/caBundle")
                    .is_some()
            })
        })
        .await;
        assert_eq!(crd["spec"]["conversion"]["strategy"], "Webhook");
    }
    wait_for("the Lease", || {
        api.get(
            "coordination.k8s.io/leases",
            "agent-sandbox-system",
            "a3317529.agent-sandbox.x-k8s.io",
        )
        .filter(|l| l["spec"]["holderIdentity"].is_string())
    })
    .await;

    // A Sandbox gets its pod; once the pod runs, the Sandbox is Ready.
    api.insert(SANDBOXES, json!({
        "apiVersion": "agents.x-k8s.io/v1beta1", "kind": "Sandbox",
        "metadata": {"name": "sb1", "namespace": "ns"},
        "spec": {"podTemplate": {"spec": {"containers": [{"name": "main", "image": "busybox"}]}}}
    }));
    let pod = wait_for("pod sb1", || api.get(PODS, "ns", "sb1")).await;
    assert_eq!(
        pod["metadata"]["labels"]["agents.x-k8s.io/sandbox-name-hash"],
        name_hash("sb1")
    );
    start_pod(&api, "sb1", "10.1.0.1");
    wait_for("sb1 Ready", || {
        api.get(SANDBOXES, "ns", "sb1").filter(ready)
    })
    .await;

    // A pool of two fills from its template; the template gets its NetworkPolicy.
    api.insert("extensions.agents.x-k8s.io/sandboxtemplates", json!({
        "apiVersion": "extensions.agents.x-k8s.io/v1beta1", "kind": "SandboxTemplate",
        "metadata": {"name": "tpl", "namespace": "ns"},
        "spec": {"podTemplate": {"spec": {"containers": [{"name": "main", "image": "python:3.12"}]}}}
    }));
    api.insert(
        "extensions.agents.x-k8s.io/sandboxwarmpools",
        json!({
            "apiVersion": "extensions.agents.x-k8s.io/v1beta1", "kind": "SandboxWarmPool",
            "metadata": {"name": "pool", "namespace": "ns"},
            "spec": {"replicas": 2, "sandboxTemplateRef": {"name": "tpl"}}
        }),
    );
    wait_for("the NetworkPolicy", || {
        api.get(
            "networking.k8s.io/networkpolicies",
            "ns",
            "tpl-network-policy",
        )
    })
    .await;
    let members = |api: &FakeApiServer| -> Vec<String> {
        api.list(SANDBOXES)
            .into_iter()
            .filter(|s| {
                s.pointer("/metadata/labels/agents.x-k8s.io~1warm-pool-sandbox")
                    .is_some()
            })
            .filter_map(|s| s["metadata"]["name"].as_str().map(str::to_owned))
            .collect()
    };
    let first = wait_for("two members", || {
        Some(members(&api)).filter(|m| m.len() == 2)
    })
    .await;
    for (i, m) in first.iter().enumerate() {
        wait_for("member pod", || api.get(PODS, "ns", m)).await;
        start_pod(&api, m, &format!("10.1.1.{i}"));
    }
    wait_for("pool ready", || {
        api.get("extensions.agents.x-k8s.io/sandboxwarmpools", "ns", "pool")
            .filter(|p| p["status"]["readyReplicas"] == 2)
    })
    .await;

    // A claim adopts a Ready member; the pool replenishes.
    api.insert(
        "extensions.agents.x-k8s.io/sandboxclaims",
        json!({
            "apiVersion": "extensions.agents.x-k8s.io/v1beta1", "kind": "SandboxClaim",
            "metadata": {"name": "c1", "namespace": "ns"},
            "spec": {"warmPoolRef": {"name": "pool"}}
        }),
    );
    let claim = wait_for("claim bound and Ready", || {
        api.get("extensions.agents.x-k8s.io/sandboxclaims", "ns", "c1")
            .filter(ready)
    })
    .await;
    let bound = claim["status"]["sandbox"]["name"]
        .as_str()
        .expect("bound")
        .to_owned();
    assert!(
        first.contains(&bound),
        "{bound} is one of the warm members {first:?}"
    );
    let adopted = api.get(SANDBOXES, "ns", &bound).expect("adopted");
    assert_eq!(
        adopted["metadata"]["ownerReferences"][0]["kind"],
        "SandboxClaim"
    );
    wait_for("replenished pool", || {
        Some(members(&api)).filter(|m| m.len() == 2 && !m.contains(&bound))
    })
    .await;

    // A Sandbox that names a SandboxPolicy: its Pod goes through the egress proxy (the
    // Service's ClusterIP, no DNS), trusts the proxy's CA and holds placeholders only.
    api.insert(
        "/services",
        json!({"apiVersion": "v1", "kind": "Service",
               "metadata": {"name": "paddock-egress", "namespace": "agent-sandbox-system"},
               "spec": {"clusterIP": "10.96.0.9", "ports": [{"port": 3128}]}}),
    );
    api.insert(
        "paddock.dev/sandboxpolicies",
        json!({"apiVersion": "paddock.dev/v1alpha1", "kind": "SandboxPolicy",
               "metadata": {"name": "creds", "namespace": "ns"},
               "spec": {"egress": {"rules": [{"name": "api", "domains": ["api.example.com"],
                   "inject": [{"header": "Authorization", "env": "API_TOKEN",
                               "valueFrom": {"secretKeyRef": {"name": "t", "key": "k"}}}]}]}}}),
    );
    let governed = api.insert(SANDBOXES, json!({
        "apiVersion": "agents.x-k8s.io/v1beta1", "kind": "Sandbox",
        "metadata": {"name": "governed", "namespace": "ns", "annotations": {"paddock.dev/policy": "creds"}},
        "spec": {"podTemplate": {"spec": {"containers": [{"name": "main", "image": "busybox"}]}}}
    }));
    let uid = governed["metadata"]["uid"]
        .as_str()
        .expect("uid")
        .to_owned();
    let pod = wait_for("pod governed", || api.get(PODS, "ns", "governed")).await;
    let env = |name: &str| {
        pod["spec"]["containers"][0]["env"]
            .as_array()
            .and_then(|e| e.iter().find(|v| v["name"] == name))
            .and_then(|v| v["value"].as_str())
            .map(str::to_owned)
    };
    assert_eq!(env("HTTPS_PROXY").as_deref(), Some("http://10.96.0.9:3128"));
    assert_eq!(
        env("SSL_CERT_FILE").as_deref(),
        Some("/etc/ssl/certs/ca-certificates.crt")
    );
    assert_eq!(
        env("API_TOKEN"),
        Some(paddock_policy::placeholder::derived(
            &uid,
            "api",
            "Authorization"
        ))
    );
    assert_eq!(
        pod["spec"]["volumes"][0]["configMap"]["name"],
        "paddock-egress-ca"
    );
    let plain = api.get(PODS, "ns", "sb1").expect("sb1's pod");
    assert!(
        !plain.to_string().contains("HTTPS_PROXY"),
        "a Sandbox without a policy is left as planned"
    );
    // A template naming a policy: its NetworkPolicy lets Pods reach only the proxy.
    api.insert("extensions.agents.x-k8s.io/sandboxtemplates", json!({
        "apiVersion": "extensions.agents.x-k8s.io/v1beta1", "kind": "SandboxTemplate",
        "metadata": {"name": "gtpl", "namespace": "ns", "annotations": {"paddock.dev/policy": "creds"}},
        "spec": {"podTemplate": {"spec": {"containers": [{"name": "main", "image": "python:3.12"}]}}}
    }));
    let np = wait_for("the governed template's NetworkPolicy", || {
        api.get(
            "networking.k8s.io/networkpolicies",
            "ns",
            "gtpl-network-policy",
        )
    })
    .await;
    assert_eq!(
        np["spec"]["egress"][0]["to"][0]["podSelector"]["matchLabels"]["app"],
        "paddock-egress"
    );
    assert_eq!(np["spec"]["egress"][0]["ports"][0]["port"], 3128);

    // Shutdown releases the Lease.
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(10), controller)
        .await
        .expect("stops in time")
        .expect("join")
        .expect("clean exit");
    let lease = api
        .get(
            "coordination.k8s.io/leases",
            "agent-sandbox-system",
            "a3317529.agent-sandbox.x-k8s.io",
        )
        .expect("lease");
    assert!(
        lease["spec"]
            .get("holderIdentity")
            .is_none_or(Value::is_null),
        "released: {lease}"
    );

    // Every request the controller made is granted by deploy/rbac, in the right scope.
    let (cluster, namespaced) = granted();
    let mut used = BTreeSet::new();
    for r in api.requests() {
        let (group, resource, verb, ns) = authz(&r).expect("a resource request");
        let key = (group.clone(), resource.clone(), verb.clone());
        let allowed = cluster.contains(&key)
            || (ns.as_deref() == Some("agent-sandbox-system") && namespaced.contains(&key));
        assert!(
            allowed,
            "{r} needs {verb} on {resource} in group {group:?}, which deploy/rbac does not grant"
        );
        used.insert(key);
    }
    // And nothing is granted that the controller never calls.
    let declared: BTreeSet<_> = paddock_controller::writes::API_CALLS
        .iter()
        .flat_map(|(g, r, verbs)| {
            verbs
                .iter()
                .map(move |v| ((*g).to_owned(), (*r).to_owned(), (*v).to_owned()))
        })
        .collect();
    let all_granted: BTreeSet<_> = cluster.union(&namespaced).cloned().collect();
    assert_eq!(
        all_granted, declared,
        "deploy/rbac must grant exactly driver::API_CALLS"
    );
    assert!(
        used.is_subset(&declared),
        "used but undeclared: {:?}",
        used.difference(&declared).collect::<Vec<_>>()
    );
}
