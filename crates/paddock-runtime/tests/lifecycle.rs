//! Real sandboxes through their whole life on both backends: create until the agent answers,
//! exec, state, list, re-attach from a second runtime on the same root (as after a restart of
//! `paddock serve`), a fast stop, and a teardown that leaves no process, mount, cgroup or
//! directory behind.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers fail loudly

mod common;

use std::time::{Duration, Instant};

use common::{exec, sh};
use paddock_runtime::spec::{VolumeMount, VolumeSource};
use paddock_runtime::{
    ImageRef, LocalRuntime, Runtime, RuntimeClass, RuntimeConfig, RuntimeError, WorkloadId,
    WorkloadSpec, WorkloadState,
};

async fn whole_life(class: RuntimeClass) {
    let (rt, tmp) = common::runtime();
    let id = WorkloadId::new(format!("life-{class}")).unwrap();
    let claim = tmp.path().join("claims/data");
    let mut spec = WorkloadSpec::new(class, ImageRef::Host);
    spec.env.push(paddock_runtime::spec::EnvVar {
        name: "GREETING".into(),
        value: "hello".into(),
    });
    spec.mounts.push(VolumeMount {
        name: "data".into(),
        container_path: "/data".into(),
        read_only: false,
        sub_path: None,
        source: VolumeSource::HostDir {
            path: claim.clone(),
        },
    });
    let workload = rt.create(&id, &spec).await.unwrap();
    assert_eq!(workload.runtime_class, class);

    let out = sh(
        &workload.agent_socket,
        "echo $GREETING; python3 -c 'print(6*7)'; echo kept > /data/file",
    )
    .await;
    assert_eq!(out.exit_code, Some(0), "{out:?}");
    assert_eq!(out.stdout, "hello\n42\n");
    assert_eq!(
        std::fs::read_to_string(claim.join("file")).unwrap(),
        "kept\n"
    );
    assert_eq!(rt.state(&id).await.unwrap(), WorkloadState::Running);
    assert!(
        !rt.host_processes(&id).is_empty(),
        "the sandbox's host processes are found"
    );

    // A second runtime on the same root sees the running sandbox and reaches its agent.
    let again = LocalRuntime::open(RuntimeConfig::new(
        tmp.path().join("runtime"),
        common::agent_binary(),
    ))
    .unwrap();
    let listed = again.list().await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].workload.id, id);
    assert_eq!(listed[0].state, WorkloadState::Running);
    assert_eq!(
        exec(&listed[0].workload.agent_socket, &["echo", "reattached"])
            .await
            .stdout,
        "reattached\n"
    );

    let started = Instant::now();
    again.stop(&id).await.unwrap();
    assert!(
        started.elapsed() < Duration::from_millis(200),
        "stop blocked for {:?}",
        started.elapsed()
    );
    assert_eq!(again.state(&id).await.unwrap(), WorkloadState::Stopping);
    again.teardown(&id).await.unwrap();
    assert_eq!(rt.state(&id).await.unwrap(), WorkloadState::Missing);
    assert!(
        rt.host_processes(&id).is_empty(),
        "processes left: {:?}",
        rt.host_processes(&id)
    );
    assert!(!rt.cgroup_exists(&id), "cgroup left");
    assert!(!rt.workload_path(&id).exists(), "directory left");
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!mounts.contains(tmp.path().to_str().unwrap()), "mount left");
    assert_eq!(
        std::fs::read_to_string(claim.join("file")).unwrap(),
        "kept\n",
        "claims outlive the workload"
    );
    assert!(rt.list().await.unwrap().is_empty());
}

#[tokio::test]
async fn gvisor_sandbox_lives_is_reattached_and_leaves_nothing_behind() {
    whole_life(RuntimeClass::Gvisor).await;
}

#[tokio::test]
async fn bwrap_sandbox_lives_is_reattached_and_leaves_nothing_behind() {
    whole_life(RuntimeClass::Bwrap).await;
}

#[tokio::test]
async fn creating_an_existing_workload_is_refused() {
    let (rt, _tmp) = common::runtime();
    let id = WorkloadId::new("dup").unwrap();
    let spec = WorkloadSpec::new(RuntimeClass::Bwrap, ImageRef::Host);
    rt.create(&id, &spec).await.unwrap();
    let err = rt.create(&id, &spec).await.unwrap_err();
    assert!(matches!(err, RuntimeError::AlreadyExists { .. }), "{err}");
    rt.teardown(&id).await.unwrap();
}

#[tokio::test]
async fn a_missing_runtime_is_an_error_with_the_remedy_never_a_fallback() {
    let tmp = tempfile::tempdir().unwrap();
    let mut config = RuntimeConfig::new(tmp.path().join("runtime"), common::agent_binary());
    config.runsc = Some(tmp.path().join("no-such-runsc"));
    config.bwrap = Some(tmp.path().join("no-such-bwrap"));
    let rt = LocalRuntime::open(config).unwrap();
    for (class, remedy) in [
        (RuntimeClass::Gvisor, "apt-get install runsc"),
        (RuntimeClass::Bwrap, "apt-get install bubblewrap"),
    ] {
        let id = WorkloadId::new(format!("none-{class}")).unwrap();
        let err = rt
            .create(&id, &WorkloadSpec::new(class, ImageRef::Host))
            .await
            .unwrap_err();
        assert!(matches!(err, RuntimeError::Unavailable { .. }), "{err}");
        assert!(err.to_string().contains(remedy), "{err}");
        assert_eq!(
            rt.state(&id).await.unwrap(),
            WorkloadState::Missing,
            "nothing was started"
        );
    }
}

#[tokio::test]
async fn stopping_a_missing_workload_is_not_an_error() {
    let (rt, _tmp) = common::runtime();
    let id = WorkloadId::new("ghost").unwrap();
    rt.stop(&id).await.unwrap();
    rt.teardown(&id).await.unwrap();
    assert_eq!(rt.state(&id).await.unwrap(), WorkloadState::Missing);
}
