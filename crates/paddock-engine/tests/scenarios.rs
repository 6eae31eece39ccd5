//! The engine end to end: real store, real runtime (bubblewrap for speed, gVisor where the
//! scenario is about it), real agent, driven through the gateway with the Rust SDK.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use http::Method;
use paddock_client::{CreateSandbox, ErrorCode, ProcessRequest};
use paddock_testkit::TestServer;
use serde_json::{Value, json};

async fn apply(server: &TestServer, manifest: &str) {
    server
        .client
        .apply(manifest, Some("default"))
        .await
        .unwrap_or_else(|e| panic!("apply failed: {} {:?}", e.message, e.details));
}

async fn get(server: &TestServer, path: &str) -> Option<Value> {
    match server.client.object_call(Method::GET, path, None).await {
        Ok(v) => Some(v),
        Err(e) if e.code == ErrorCode::NotFound => None,
        Err(e) => panic!("GET {path}: {}", e.message),
    }
}

fn sandbox_path(name: &str) -> String {
    format!("/apis/agents.x-k8s.io/v1beta1/namespaces/default/sandboxes/{name}")
}

fn claim_path(name: &str) -> String {
    format!("/apis/extensions.agents.x-k8s.io/v1beta1/namespaces/default/sandboxclaims/{name}")
}

fn ready(object: &Value) -> Option<(String, String)> {
    object
        .pointer("/status/conditions")?
        .as_array()?
        .iter()
        .find(|c| c["type"] == "Ready")
        .map(|c| {
            (
                c["status"].as_str().unwrap_or("").to_owned(),
                c["reason"].as_str().unwrap_or("").to_owned(),
            )
        })
}

/// Polls `check` until it returns `Some`, or fails after `secs`.
async fn eventually<T, F, Fut>(secs: u64, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn bwrap_image() -> CreateSandbox {
    let mut c = CreateSandbox::image("host");
    c.runtime = Some("bwrap".into());
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn image_sandbox_runs_commands_under_gvisor_and_bwrap() {
    let server = TestServer::start().await;
    for runtime in ["gvisor", "bwrap"] {
        let mut req = CreateSandbox::image("host");
        req.runtime = Some(runtime.into());
        req.name = Some(format!("img-{runtime}"));
        let info = server.client.create_sandbox(&req).await.unwrap();
        assert!(info.ready, "{info:?}");
        assert_eq!(info.runtime.as_deref(), Some(runtime));
        assert_eq!(info.launch_type.as_deref(), Some("direct"));
        let sandbox = server.client.sandbox(&info.name, "default");
        let out = sandbox
            .exec(&ProcessRequest::shell(
                "echo $((6*7)); python3 -c 'print(1)'",
            ))
            .await
            .unwrap();
        assert_eq!(out.exit_code, Some(0), "{out:?}");
        assert_eq!(out.stdout_text(), "42\n1\n");
        sandbox.delete().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_sandbox_tears_its_workload_down() {
    let server = TestServer::start().await;
    let mut req = bwrap_image();
    req.name = Some("short-lived".into());
    server.client.create_sandbox(&req).await.unwrap();
    let runtime = server.engine().workloads().runtime().clone();
    assert_eq!(runtime.list().await.unwrap().len(), 1);
    server
        .client
        .sandbox("short-lived", "default")
        .delete()
        .await
        .unwrap();
    eventually(20, "the workload to be gone", || {
        let runtime = runtime.clone();
        async move { runtime.list().await.unwrap().is_empty().then_some(()) }
    })
    .await;
    assert!(get(&server, &sandbox_path("short-lived")).await.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn suspend_and_resume_keep_the_volume() {
    let server = TestServer::start().await;
    apply(
        &server,
        r#"
apiVersion: agents.x-k8s.io/v1beta1
kind: Sandbox
metadata: {name: keeper}
spec:
  podTemplate:
    metadata: {annotations: {paddock.dev/idle: "true"}}
    spec:
      runtimeClassName: bwrap
      containers:
      - name: main
        image: host
        volumeMounts: [{name: data, mountPath: /data}]
  volumeClaimTemplates:
  - metadata: {name: data}
    spec: {accessModes: [ReadWriteOnce], resources: {requests: {storage: 1Gi}}}
"#,
    )
    .await;
    let sandbox = server.client.sandbox("keeper", "default");
    eventually(20, "keeper ready", || async {
        get(&server, &sandbox_path("keeper"))
            .await
            .and_then(|s| (ready(&s)?.0 == "True").then_some(()))
    })
    .await;
    sandbox
        .write_file("/data/note.txt", "kept", None)
        .await
        .unwrap();
    let paused = sandbox.pause().await.unwrap();
    assert_eq!(paused.phase, paddock_client::Phase::Suspended);
    let suspended = eventually(20, "SandboxSuspended", || async {
        let s = get(&server, &sandbox_path("keeper")).await?;
        (ready(&s)?.1 == "SandboxSuspended").then_some(s)
    })
    .await;
    let conds = suspended["status"]["conditions"].as_array().unwrap();
    assert!(conds.iter().any(|c| c["type"] == "Suspended"), "{conds:?}");
    assert!(
        sandbox.exec(&ProcessRequest::shell("true")).await.is_err(),
        "a suspended sandbox runs nothing"
    );
    let resumed = sandbox.resume().await.unwrap();
    assert!(resumed.ready);
    assert_eq!(
        &sandbox.read_file("/data/note.txt").await.unwrap()[..],
        b"kept"
    );
    assert!(
        server
            .home
            .join("volumes/default/data-keeper/note.txt")
            .exists()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expiry_deletes_or_retains_as_the_policy_says() {
    let server = TestServer::start().await;
    let soon = (jiff::Timestamp::now() + jiff::SignedDuration::from_secs(2))
        .round(jiff::Unit::Second)
        .unwrap();
    for (name, policy) in [("exp-delete", "Delete"), ("exp-retain", "Retain")] {
        apply(
            &server,
            &format!(
                "apiVersion: agents.x-k8s.io/v1beta1\nkind: Sandbox\nmetadata: {{name: {name}}}\nspec:\n  shutdownTime: \"{soon}\"\n  shutdownPolicy: {policy}\n  podTemplate:\n    metadata: {{annotations: {{paddock.dev/idle: \"true\"}}}}\n    spec:\n      runtimeClassName: bwrap\n      containers: [{{name: main, image: host}}]\n"
            ),
        )
        .await;
    }
    eventually(20, "the Delete sandbox to go", || async {
        get(&server, &sandbox_path("exp-delete"))
            .await
            .is_none()
            .then_some(())
    })
    .await;
    // First the Sandbox is marked expired, then its pod goes and its status is cleared.
    eventually(20, "SandboxExpired without pod IPs", || async {
        let s = get(&server, &sandbox_path("exp-retain")).await?;
        (ready(&s)? == ("False".to_owned(), "SandboxExpired".to_owned())
            && s["status"].get("podIPs").is_none())
        .then_some(s)
    })
    .await;
    let err = server
        .client
        .sandbox("exp-retain", "default")
        .exec(&ProcessRequest::shell("true"))
        .await
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::SandboxNotReady);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fields_the_host_cannot_honour_are_reported() {
    let server = TestServer::start().await;
    apply(
        &server,
        r#"
apiVersion: agents.x-k8s.io/v1alpha1
kind: Sandbox
metadata: {name: probed}
spec:
  podTemplate:
    metadata: {annotations: {paddock.dev/idle: "true"}}
    spec:
      runtimeClassName: bwrap
      nodeSelector: {disk: ssd}
      containers:
      - name: main
        image: host
        readinessProbe: {httpGet: {path: /, port: 8888}}
"#,
    )
    .await;
    let s = eventually(20, "FieldsHonoured", || async {
        let s = get(&server, &sandbox_path("probed")).await?;
        s["status"]["conditions"]
            .as_array()?
            .iter()
            .find(|c| c["type"] == "FieldsHonoured")
            .cloned()
    })
    .await;
    assert_eq!(s["status"], "False");
    let message = s["message"].as_str().unwrap();
    assert!(message.contains("readinessProbe"), "{message}");
    assert!(message.contains("nodeSelector"), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_runtime_class_is_refused_with_the_remedy() {
    let server = TestServer::start().await;
    apply(
        &server,
        "apiVersion: agents.x-k8s.io/v1beta1\nkind: Sandbox\nmetadata: {name: kata}\nspec:\n  podTemplate:\n    spec:\n      runtimeClassName: kata-fc\n      containers: [{name: main, image: host}]\n",
    )
    .await;
    let s = eventually(20, "a scheduling failure", || async {
        let s = get(&server, &sandbox_path("kata")).await?;
        s["status"]["conditions"]
            .as_array()?
            .iter()
            .find(|c| c["type"] == "PodScheduled" && c["status"] == "False")
            .cloned()
    })
    .await;
    let message = s["message"].as_str().unwrap();
    assert!(
        message.contains("kata-fc") && message.contains("gvisor"),
        "{message}"
    );
    assert!(
        server
            .engine()
            .workloads()
            .runtime()
            .list()
            .await
            .unwrap()
            .is_empty(),
        "nothing ran unsandboxed"
    );
}

const POOL: &str = r#"
apiVersion: extensions.agents.x-k8s.io/v1beta1
kind: SandboxTemplate
metadata: {name: py}
spec:
  podTemplate:
    spec:
      runtimeClassName: bwrap
      containers: [{name: main, image: host, command: [sleep, infinity]}]
---
apiVersion: extensions.agents.x-k8s.io/v1beta1
kind: SandboxWarmPool
metadata: {name: py-pool}
spec:
  replicas: 2
  sandboxTemplateRef: {name: py}
"#;

async fn ready_pool(server: &TestServer) {
    apply(server, POOL).await;
    eventually(30, "two ready members", || async {
        let p = get(
            server,
            "/apis/extensions.agents.x-k8s.io/v1beta1/namespaces/default/sandboxwarmpools/py-pool",
        )
        .await?;
        (p["status"]["readyReplicas"] == 2).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_adopts_a_ready_member_and_the_pool_refills() {
    let server = TestServer::start().await;
    ready_pool(&server).await;
    let members_before: Vec<String> = server
        .client
        .sandboxes(Some("default"))
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.name)
        .collect();
    let info = server
        .client
        .create_sandbox(&{
            let mut c = CreateSandbox::warm_pool("py-pool");
            c.name = Some("my-claim".into());
            c
        })
        .await
        .unwrap();
    assert!(info.ready);
    assert_eq!(info.launch_type.as_deref(), Some("warm"));
    assert_eq!(info.claim.as_deref(), Some("my-claim"));
    assert!(
        members_before.contains(&info.name),
        "{} should be one of {members_before:?}",
        info.name
    );
    let claim = get(&server, &claim_path("my-claim")).await.unwrap();
    assert_eq!(claim["status"]["sandbox"]["name"], info.name.as_str());
    assert_eq!(
        ready(&claim).unwrap(),
        ("True".to_owned(), "DependenciesReady".to_owned())
    );
    let sandbox = get(&server, &sandbox_path(&info.name)).await.unwrap();
    let owners = sandbox["metadata"]["ownerReferences"].as_array().unwrap();
    assert_eq!(owners.len(), 1);
    assert_eq!(owners[0]["kind"], "SandboxClaim");
    assert!(
        sandbox["metadata"]["labels"]
            .get("agents.x-k8s.io/warm-pool-sandbox")
            .is_none()
    );
    let out = server
        .client
        .sandbox("my-claim", "default")
        .exec(&ProcessRequest::shell("echo adopted"))
        .await
        .unwrap();
    assert_eq!(out.stdout_text(), "adopted\n");
    ready_pool(&server).await;
    // Deleting the claim deletes the adopted sandbox (it is owned by the claim).
    server
        .client
        .sandbox("my-claim", "default")
        .delete()
        .await
        .unwrap();
    eventually(20, "the adopted sandbox to go", || async {
        get(&server, &sandbox_path(&info.name))
            .await
            .is_none()
            .then_some(())
    })
    .await;
}

/// Ready, unclaimed members of `py-pool`, counted from the Sandboxes themselves.
async fn free_members(server: &TestServer) -> usize {
    server
        .client
        .sandboxes(Some("default"))
        .await
        .unwrap()
        .iter()
        .filter(|s| s.name.starts_with("py-pool-") && s.claim.is_none() && s.ready)
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pool_refills_after_claims_that_are_deleted_at_once() {
    let server = TestServer::start().await;
    ready_pool(&server).await;
    for i in 0..6 {
        eventually(30, "two free members", || async {
            (free_members(&server).await == 2).then_some(())
        })
        .await;
        let name = format!("quick-{i}");
        let info = server
            .client
            .create_sandbox(&{
                let mut c = CreateSandbox::warm_pool("py-pool");
                c.name = Some(name.clone());
                c
            })
            .await
            .unwrap();
        assert_eq!(info.launch_type.as_deref(), Some("warm"), "claim {i}");
        // Adopted and gone before the pool's next look: the pool must still notice it left.
        server
            .client
            .sandbox(&name, "default")
            .delete()
            .await
            .unwrap();
    }
    eventually(30, "the pool back to two free members", || async {
        (free_members(&server).await == 2).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claims_report_missing_templates_and_refused_env() {
    let server = TestServer::start().await;
    let err = server
        .client
        .create_sandbox(&CreateSandbox::template("no-such-template"))
        .await
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::NotFound);
    assert!(err.message.contains("no-such-template"), "{}", err.message);
    ready_pool(&server).await;
    let mut with_env = CreateSandbox::warm_pool("py-pool");
    with_env.env.insert("SECRET".into(), "x".into());
    let err = server.client.create_sandbox(&with_env).await.unwrap_err();
    assert!(
        err.message.contains("EnvVarsInjectionRejected"),
        "{}",
        err.message
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_v1alpha1_claim_without_a_pool_gets_a_cold_sandbox_named_after_it() {
    let server = TestServer::start().await;
    apply(&server, POOL.split("---").next().unwrap()).await;
    apply(
        &server,
        "apiVersion: extensions.agents.x-k8s.io/v1alpha1\nkind: SandboxClaim\nmetadata: {name: cold-one}\nspec:\n  sandboxTemplateRef: {name: py}\n  warmpool: none\n",
    )
    .await;
    let claim = eventually(30, "the cold claim to be Ready", || async {
        let c = get(&server, &claim_path("cold-one")).await?;
        (ready(&c)?.0 == "True").then_some(c)
    })
    .await;
    assert_eq!(claim["status"]["sandbox"]["name"], "cold-one");
    let sandbox = get(&server, &sandbox_path("cold-one")).await.unwrap();
    assert_eq!(
        sandbox["metadata"]["labels"]["agents.x-k8s.io/launch-type"],
        "cold"
    );
    let alpha = server
        .client
        .object_call(
            Method::GET,
            "/apis/extensions.agents.x-k8s.io/v1alpha1/namespaces/default/sandboxclaims/cold-one",
            None,
        )
        .await
        .unwrap();
    assert_eq!(alpha["spec"]["sandboxTemplateRef"]["name"], "py");
    assert_eq!(alpha["spec"]["warmpool"], "none");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_seed_guides_template_pool_and_claim_work_as_on_a_cluster() {
    let server = TestServer::start().await;
    let examples = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/v1alpha1");
    for file in [
        "sandboxtemplate-python-runtime.yaml",
        "sandboxwarmpool-python.yaml",
        "sandboxclaim-python.yaml",
    ] {
        let text = std::fs::read_to_string(examples.join(file)).unwrap();
        // The examples target a cluster with gVisor and a python-runtime image; here they run
        // on the host image under bubblewrap, in the default namespace.
        let text = text
            .replace("namespace: agent-sandbox-demo", "namespace: default")
            .replace(
                "image: python-runtime-sandbox:latest",
                "image: host\n        command: [sleep, infinity]",
            )
            .replace("runtimeClassName: gvisor", "runtimeClassName: bwrap");
        apply(&server, &text).await;
        if file.starts_with("sandboxwarmpool") {
            // As in the guide, the claim comes once the pool is warm (a claim that finds no
            // ready member within 2 s gets a cold sandbox, by design).
            eventually(30, "the seed pool to be warm", || async {
                let p = get(&server, "/apis/extensions.agents.x-k8s.io/v1beta1/namespaces/default/sandboxwarmpools/python-warmpool").await?;
                (p["status"]["readyReplicas"] == 2).then_some(())
            })
            .await;
        }
    }
    let claim = eventually(30, "the seed claim to be Ready", || async {
        let c = get(&server, &claim_path("my-session")).await?;
        (ready(&c)?.0 == "True").then_some(c)
    })
    .await;
    let name = claim["status"]["sandbox"]["name"].as_str().unwrap();
    assert!(
        name.starts_with("python-warmpool-"),
        "a warm member was adopted: {name}"
    );
    let pools = server
        .client
        .object_call(
            Method::GET,
            "/apis/extensions.agents.x-k8s.io/v1alpha1/namespaces/default/sandboxwarmpools",
            None,
        )
        .await
        .unwrap();
    assert_eq!(pools["items"][0]["spec"]["replicas"], 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_reattaches_running_sandboxes_instead_of_restarting_them() {
    let server = TestServer::start_in(None, false).await;
    let mut req = bwrap_image();
    req.name = Some("survivor".into());
    server.client.create_sandbox(&req).await.unwrap();
    let sandbox = server.client.sandbox("survivor", "default");
    let pid = sandbox
        .start(&ProcessRequest::shell("sleep 600"))
        .await
        .unwrap();
    let home = server.stop_keeping_sandboxes().await;
    let server = TestServer::start_in(Some(home.clone()), false).await;
    let sandbox = server.client.sandbox("survivor", "default");
    let info = eventually(20, "survivor Ready again", || async {
        sandbox.info().await.ok().filter(|i| i.ready)
    })
    .await;
    assert_eq!(info.name, "survivor");
    let procs = sandbox.processes().await.unwrap();
    assert!(
        procs
            .iter()
            .any(|p| p.pid == pid.pid && p.state == paddock_client::ProcessState::Running),
        "the background process survived: {procs:?}"
    );
    drop(server);
    let _ = std::fs::remove_dir_all(home);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_objects_are_refused_with_every_problem() {
    let server = TestServer::start().await;
    let err = server
        .client
        .apply("apiVersion: agents.x-k8s.io/v1alpha1\nkind: Sandbox\nmetadata: {name: bad}\nspec:\n  replicas: 3\n  podTemplate: {spec: {containers: []}}\n", None)
        .await
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::InvalidObject);
    let details = err.details.unwrap().to_string();
    assert!(details.contains("must be 0 or 1"), "{details}");
    assert!(details.contains("at least one container"), "{details}");
    assert!(
        get(&server, &sandbox_path("bad")).await.is_none(),
        "nothing was written"
    );
    let body = json!({"apiVersion": "agents.x-k8s.io/v1beta1", "kind": "Sandbox", "metadata": {"name": "x"}, "spec": {"podTemplate": {"spec": {"containers": [{"name": "a", "image": "host"}]}}, "operatingMode": "Paused"}});
    let err = server
        .client
        .object_call(
            Method::POST,
            "/apis/agents.x-k8s.io/v1beta1/namespaces/default/sandboxes",
            Some(&body),
        )
        .await
        .unwrap_err();
    assert_eq!(err.status, Some(422));
    assert!(
        err.message
            .contains("spec.operatingMode: must be one of Running, Suspended"),
        "{}",
        err.message
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_finished_main_process_finishes_the_sandbox_and_is_not_restarted() {
    let server = TestServer::start().await;
    for (name, runtime, exit, reason) in [
        ("job-ok", "bwrap", 0, "PodSucceeded"),
        ("job-fail", "bwrap", 3, "PodFailed"),
        ("job-gvisor", "gvisor", 0, "PodSucceeded"),
    ] {
        apply(
            &server,
            &format!(
                "apiVersion: agents.x-k8s.io/v1alpha1\nkind: Sandbox\nmetadata: {{name: {name}}}\nspec:\n  podTemplate:\n    spec:\n      runtimeClassName: {runtime}\n      containers: [{{name: main, image: host, command: [sh, -c, 'echo working; exit {exit}']}}]\n"
            ),
        )
        .await;
        let s = eventually(30, "Finished", || async {
            let s = get(&server, &sandbox_path(name)).await?;
            s["status"]["conditions"]
                .as_array()?
                .iter()
                .find(|c| c["type"] == "Finished" && c["status"] == "True")
                .map(|_| s.clone())
        })
        .await;
        assert_eq!(
            ready(&s).unwrap(),
            ("False".to_owned(), reason.to_owned()),
            "{name}: {s}"
        );
        let finished = s["status"]["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["type"] == "Finished")
            .unwrap()
            .clone();
        assert_eq!(finished["reason"], reason, "{name}");
        let info = server.client.sandbox(name, "default").info().await.unwrap();
        assert_eq!(
            info.phase,
            if exit == 0 {
                paddock_client::Phase::Succeeded
            } else {
                paddock_client::Phase::Failed
            }
        );
    }
    // Terminal sandboxes stay terminal: nothing is started again. The engine's exit check has
    // run several times since, and the runtime holds no running workload.
    let runtime = server.engine().workloads().runtime().clone();
    let checks_before = server.engine().workloads().exit_checks();
    eventually(10, "three more exit checks", || async {
        (server.engine().workloads().exit_checks() >= checks_before + 3).then_some(())
    })
    .await;
    let running = runtime
        .list()
        .await
        .unwrap()
        .into_iter()
        .filter(|w| w.state == paddock_runtime::WorkloadState::Running)
        .count();
    assert_eq!(running, 0, "a finished sandbox was started again");
    let s = get(&server, &sandbox_path("job-ok")).await.unwrap();
    assert_eq!(ready(&s).unwrap().1, "PodSucceeded");
}
