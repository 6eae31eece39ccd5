//! What a sandbox cannot do, checked from inside real sandboxes on both backends with the
//! default spec: read host secrets, see host processes, reach the network, write outside its
//! volumes; and a fork bomb or memory bomb in one sandbox leaves the others and this process
//! responsive, because the limits are enforced.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers fail loudly

mod common;

use std::time::{Duration, Instant};

use common::{exec, sh};
use paddock_runtime::spec::{ResourceLimits, VolumeMount, VolumeSource};
use paddock_runtime::{
    ImageRef, LocalRuntime, Runtime, RuntimeClass, Workload, WorkloadId, WorkloadSpec,
};

async fn start(rt: &LocalRuntime, name: &str, spec: &WorkloadSpec) -> Workload {
    rt.create(&WorkloadId::new(name).unwrap(), spec)
        .await
        .unwrap()
}

async fn cannot_reach_host_secrets_processes_or_network(class: RuntimeClass) {
    let (rt, tmp) = common::runtime();
    let w = start(
        &rt,
        &format!("iso-{class}"),
        &WorkloadSpec::new(class, ImageRef::Host),
    )
    .await;
    let s = &w.agent_socket;

    let shadow = sh(s, "cat /etc/shadow; cat /etc/gshadow").await;
    assert!(
        !shadow.stdout.contains("root:"),
        "host /etc/shadow readable: {shadow:?}"
    );
    assert_ne!(
        sh(s, "test -e /root || test -e /home").await.exit_code,
        Some(0),
        "/root or /home is visible"
    );

    // Host processes: the sandbox sees only its own few, never this test process.
    let procs = sh(
        s,
        "python3 -c \"import os; print(len([p for p in os.listdir('/proc') if p.isdigit()]))\"",
    )
    .await;
    let count: usize = procs
        .stdout
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("{procs:?}"));
    assert!(count < 10, "sandbox sees {count} processes");
    let me = std::process::id();
    assert_ne!(
        sh(
            s,
            &format!("test -e /proc/{me}/cmdline && grep -q isolation /proc/{me}/cmdline")
        )
        .await
        .exit_code,
        Some(0)
    );

    // No network: a listener on the host's loopback is unreachable, and there is no interface
    // but loopback.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let connect = sh(s, &format!("python3 -c \"import socket; socket.create_connection(('127.0.0.1', {port}), timeout=2)\"")).await;
    assert_ne!(
        connect.exit_code,
        Some(0),
        "reached the host's loopback: {connect:?}"
    );
    let outside = sh(
        s,
        "python3 -c \"import socket; socket.create_connection(('192.0.2.1', 80), timeout=2)\"",
    )
    .await;
    assert_ne!(
        outside.exit_code,
        Some(0),
        "reached a routed address: {outside:?}"
    );
    let ifaces = sh(
        s,
        "python3 -c \"import socket; print(sorted(n for _, n in socket.if_nameindex()))\"",
    )
    .await;
    assert!(
        ifaces.stdout.trim() == "['lo']" || ifaces.stdout.trim() == "[]",
        "interfaces: {ifaces:?}"
    );

    // Nothing outside the volumes is writable, and host files stay untouched.
    let canary = tmp.path().join("canary");
    std::fs::write(&canary, "host").unwrap();
    let marker = format!("paddock-iso-{}-{class}", std::process::id());
    for target in [
        format!("/usr/{marker}"),
        format!("/etc/{marker}"),
        format!("/{marker}"),
    ] {
        let w = sh(s, &format!("echo x > {target}")).await;
        assert_ne!(w.exit_code, Some(0), "wrote {target}");
        assert!(
            !std::path::Path::new(&target).exists(),
            "{target} appeared on the host"
        );
    }
    assert_eq!(
        sh(s, &format!("echo x > /tmp/{marker}")).await.exit_code,
        Some(0),
        "/tmp is writable scratch"
    );
    assert!(
        !std::path::Path::new("/tmp").join(&marker).exists(),
        "sandbox /tmp is not the host's"
    );
    assert_ne!(
        sh(s, &format!("echo x > {}", canary.display()))
            .await
            .exit_code,
        Some(0)
    );
    assert_eq!(std::fs::read_to_string(&canary).unwrap(), "host");
    rt.teardown(&w.id).await.unwrap();
}

#[tokio::test]
async fn gvisor_sandbox_cannot_reach_host_secrets_processes_or_network() {
    cannot_reach_host_secrets_processes_or_network(RuntimeClass::Gvisor).await;
}

#[tokio::test]
async fn bwrap_sandbox_cannot_reach_host_secrets_processes_or_network() {
    cannot_reach_host_secrets_processes_or_network(RuntimeClass::Bwrap).await;
}

#[tokio::test]
async fn bwrap_sandbox_has_no_capabilities_and_seccomp_blocks_escapes() {
    let (rt, _tmp) = common::runtime();
    let w = start(
        &rt,
        "caps",
        &WorkloadSpec::new(RuntimeClass::Bwrap, ImageRef::Host),
    )
    .await;
    let s = &w.agent_socket;
    let status = exec(s, &["cat", "/proc/self/status"]).await.stdout;
    let cap_eff = status.lines().find(|l| l.starts_with("CapEff:")).unwrap();
    assert!(cap_eff.ends_with("0000000000000000"), "{cap_eff}");
    assert!(
        status
            .lines()
            .any(|l| l.starts_with("Seccomp:") && l.ends_with('2')),
        "no seccomp filter: {status}"
    );
    assert!(
        status
            .lines()
            .any(|l| l.starts_with("NoNewPrivs:") && l.ends_with('1'))
    );
    for (what, command) in [
        ("a new user namespace", "unshare -U true"),
        ("a new mount namespace", "unshare -m true"),
        ("mount", "mount -t tmpfs none /tmp"),
        (
            "ptrace",
            "python3 -c \"import ctypes,sys; sys.exit(0 if ctypes.CDLL(None).ptrace(0,0,0,0)==0 else 1)\"",
        ),
        (
            "bpf",
            "python3 -c \"import ctypes,sys; sys.exit(0 if ctypes.CDLL(None).syscall(321,0,0,0)>=0 else 1)\"",
        ),
        (
            "keyctl",
            "python3 -c \"import ctypes,sys; sys.exit(0 if ctypes.CDLL(None).syscall(250,0,0,0)>=0 else 1)\"",
        ),
    ] {
        let out = sh(s, command).await;
        assert_ne!(out.exit_code, Some(0), "{what} was allowed: {out:?}");
    }
    // clone3 fails with ENOSYS, so threads and processes still start through clone.
    assert_eq!(
        sh(
            s,
            "python3 -c \"import threading; t=threading.Thread(target=print); t.start(); t.join()\""
        )
        .await
        .exit_code,
        Some(0)
    );
    rt.teardown(&w.id).await.unwrap();
}

/// A sandbox that stays quiet while its neighbour misbehaves; returns the agent round trip.
async fn neighbour_round_trip(w: &Workload) -> Duration {
    let started = Instant::now();
    let out = exec(&w.agent_socket, &["true"]).await;
    assert_eq!(out.exit_code, Some(0));
    started.elapsed()
}

async fn bombs_are_contained(class: RuntimeClass) {
    let (rt, _tmp) = common::runtime();
    let mut limited = WorkloadSpec::new(class, ImageRef::Host);
    limited.limits = ResourceLimits {
        memory_bytes: Some(256 << 20),
        cpu_millis: Some(500),
        pids: Some(128),
    };
    let quiet = start(
        &rt,
        &format!("quiet-{class}"),
        &WorkloadSpec::new(class, ImageRef::Host),
    )
    .await;
    let bomber = start(&rt, &format!("bomber-{class}"), &limited).await;

    // Memory bomb: grows until the sandbox's memory limit stops it.
    let socket = bomber.agent_socket.clone();
    let memory = tokio::spawn(async move {
        paddock_runtime::agent::agent_request(
            &socket,
            "POST",
            "/v1/exec",
            Some(serde_json::json!({"command": "python3 -c \"x=[]\nwhile True: x.append(bytearray(16<<20))\"", "timeout_ms": 20_000}).to_string().into()),
        )
        .await
    });
    // The neighbour answers quickly all along, until the bomb is stopped.
    let mut memory = memory;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(40);
    let outcome = loop {
        let rtt = neighbour_round_trip(&quiet).await;
        assert!(
            rtt < Duration::from_secs(2),
            "neighbour stalled for {rtt:?} during the memory bomb"
        );
        assert!(
            tokio::time::Instant::now() < deadline,
            "the memory bomb was not stopped"
        );
        if let Ok(done) = tokio::time::timeout(Duration::from_millis(200), &mut memory).await {
            break done.unwrap();
        }
    };
    eprintln!(
        "{class} memory bomb: {:?}",
        outcome.as_ref().map(|r| String::from_utf8_lossy(&r.body)
            .chars()
            .take(300)
            .collect::<String>())
    );
    if let Ok(response) = outcome {
        let v: serde_json::Value = serde_json::from_slice(&response.body).unwrap_or_default();
        assert_ne!(v["exit_code"], 0, "the memory bomb succeeded: {v}");
        assert_ne!(v["timed_out"], true, "nothing stopped the memory bomb: {v}");
    } // else: the whole sandbox was killed by the OOM killer, which also contains it.

    // Fork bomb in a fresh limited sandbox.
    let forker = start(&rt, &format!("forker-{class}"), &limited).await;
    let socket = forker.agent_socket.clone();
    let fork = tokio::spawn(async move {
        paddock_runtime::agent::agent_request(
            &socket,
            "POST",
            "/v1/exec",
            Some(
                serde_json::json!({"command": "b(){ b|b& }; b; sleep 5", "timeout_ms": 8_000})
                    .to_string()
                    .into(),
            ),
        )
        .await
    });
    let mut fork = fork;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let fork_outcome = loop {
        let rtt = neighbour_round_trip(&quiet).await;
        assert!(
            rtt < Duration::from_secs(2),
            "neighbour stalled for {rtt:?} during the fork bomb"
        );
        if tokio::time::Instant::now() > deadline {
            break Err(());
        }
        if let Ok(done) = tokio::time::timeout(Duration::from_millis(300), &mut fork).await {
            break Ok(done);
        }
    };
    eprintln!(
        "{class} fork bomb: {:?}",
        fork_outcome.map(|r| r.map(|r| r.map(|r| String::from_utf8_lossy(&r.body)
            .chars()
            .take(300)
            .collect::<String>())))
    );
    let started = Instant::now();
    std::hint::black_box((0..1000).sum::<u64>());
    assert!(
        started.elapsed() < Duration::from_millis(100),
        "the test process itself stalled"
    );
    for w in [&bomber, &forker] {
        rt.teardown(&w.id).await.unwrap();
        assert!(
            rt.host_processes(&w.id).is_empty(),
            "bomb processes survive teardown"
        );
    }
    assert!(neighbour_round_trip(&quiet).await < Duration::from_secs(1));
    rt.teardown(&quiet.id).await.unwrap();
}

#[tokio::test]
async fn gvisor_fork_and_memory_bombs_leave_neighbours_responsive() {
    bombs_are_contained(RuntimeClass::Gvisor).await;
}

#[tokio::test]
async fn bwrap_fork_and_memory_bombs_leave_neighbours_responsive() {
    bombs_are_contained(RuntimeClass::Bwrap).await;
}

#[tokio::test]
async fn volumes_are_the_only_writable_host_paths() {
    let (rt, tmp) = common::runtime();
    for class in [RuntimeClass::Gvisor, RuntimeClass::Bwrap] {
        let vol = tmp.path().join(format!("vol-{class}"));
        let ro = tmp.path().join(format!("ro-{class}"));
        std::fs::create_dir_all(&ro).unwrap();
        std::fs::write(ro.join("f"), "orig").unwrap();
        let mut spec = WorkloadSpec::new(class, ImageRef::Host);
        spec.mounts.push(VolumeMount {
            name: "rw".into(),
            container_path: "/work".into(),
            read_only: false,
            sub_path: None,
            source: VolumeSource::HostDir { path: vol.clone() },
        });
        spec.mounts.push(VolumeMount {
            name: "ro".into(),
            container_path: "/ro".into(),
            read_only: true,
            sub_path: None,
            source: VolumeSource::HostDir { path: ro.clone() },
        });
        spec.mounts.push(VolumeMount {
            name: "scratch".into(),
            container_path: "/scratch".into(),
            read_only: false,
            sub_path: None,
            source: VolumeSource::EmptyDir,
        });
        let w = start(&rt, &format!("vols-{class}"), &spec).await;
        let s = &w.agent_socket;
        assert_eq!(
            sh(
                s,
                "echo a > /work/a && echo b > /scratch/b && cat /scratch/b"
            )
            .await
            .stdout,
            "b\n"
        );
        assert_eq!(std::fs::read_to_string(vol.join("a")).unwrap(), "a\n");
        assert_ne!(
            sh(s, "echo x > /ro/f").await.exit_code,
            Some(0),
            "{class}: read-only volume written"
        );
        assert_eq!(std::fs::read_to_string(ro.join("f")).unwrap(), "orig");
        assert_ne!(
            sh(s, "ln -s / /work/up && echo x > /work/up/escaped")
                .await
                .exit_code,
            Some(0)
        );
        assert!(!std::path::Path::new("/escaped").exists());
        rt.teardown(&w.id).await.unwrap();
    }
}
