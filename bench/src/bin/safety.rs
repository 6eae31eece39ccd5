//! The safety layer's costs: a permission decision (the meet of a template's and a claim's
//! policy, globs and program lists included) and an audit-log append, p50/p99 over many.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::time::Instant;

use paddock_api::policy::{
    ApiPermissions, ExecPermission, FilePermissions, Level, PathPermission, Permissions,
};
use paddock_bench::Percentiles;
use paddock_engine::audit::AuditLogs;
use paddock_policy::audit::AuditEvent;
use paddock_policy::{ApiOp, Capability, PermissionRules};

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| (*s).to_owned()).collect()
}

fn main() {
    let template = PermissionRules::compile(&Permissions {
        exec: Some(ExecPermission {
            level: None,
            allow: strings(&[
                "python3",
                "/usr/bin/git",
                "node",
                "npm",
                "pip",
                "ls",
                "cat",
                "grep",
            ]),
            deny: strings(&["curl", "wget", "nc"]),
        }),
        files: Some(FilePermissions {
            read: Some(PathPermission {
                level: None,
                paths: strings(&["/workspace/**", "/tmp/**", "/usr/**", "/etc/*.conf"]),
            }),
            write: Some(PathPermission {
                level: Some(Level::Ask),
                paths: strings(&["/workspace/out/**", "/tmp/**"]),
            }),
        }),
        api: Some(ApiPermissions {
            delete: Some(Level::Never),
            ..ApiPermissions::default()
        }),
    });
    let claim = PermissionRules::compile(&Permissions {
        files: Some(FilePermissions {
            read: Some(PathPermission {
                level: None,
                paths: strings(&["/workspace/**", "/tmp/**"]),
            }),
            write: None,
        }),
        ..Permissions::default()
    });
    let rules = template.meet(claim);
    let caps = [
        Capability::Exec {
            program: "python3",
            resolved: Some("/usr/bin/python3"),
        },
        Capability::Exec {
            program: "curl",
            resolved: None,
        },
        Capability::Read("/workspace/src/deep/path/module.py"),
        Capability::Write("/workspace/out/report.json"),
        Capability::Read("/root/.ssh/id_ed25519"),
        Capability::Api(ApiOp::Delete),
    ];
    let mut samples = Vec::with_capacity(120_000);
    for round in 0..120_000usize {
        let cap = caps[round % caps.len()];
        let start = Instant::now();
        std::hint::black_box(rules.level(std::hint::black_box(cap)));
        let ns = start.elapsed().as_nanos() as f64 / 1000.0;
        if round >= 20_000 {
            samples.push(ns);
        }
    }
    let p = Percentiles::of(&mut samples).unwrap();
    println!(
        "safety: permission decision (two policies met, globs and program lists), 100,000: p50 {:.2} µs, p99 {:.2} µs, max {:.1} µs",
        p.p50, p.p99, p.max
    );

    let dir = tempfile::tempdir().unwrap();
    let logs = AuditLogs::new(dir.path().to_owned());
    let mut samples = Vec::with_capacity(20_000);
    for i in 0..21_000usize {
        let event = AuditEvent {
            time: "2026-12-08T00:00:00.000Z".into(),
            sandbox: format!("default/sb{}", i % 10),
            decision: "deny".into(),
            kind: "exec".into(),
            subject: "curl".into(),
            detail: "permission level never".into(),
        };
        let start = Instant::now();
        logs.record(&event);
        let us = start.elapsed().as_nanos() as f64 / 1000.0;
        if i >= 1_000 {
            samples.push(us);
        }
    }
    let p = Percentiles::of(&mut samples).unwrap();
    println!(
        "safety: audit-log append (hash chain, head file, 10 sandboxes), 20,000: p50 {:.1} µs, p99 {:.1} µs, max {:.0} µs",
        p.p50, p.p99, p.max
    );
    let text = std::fs::read_to_string(dir.path().join("default/sb3.jsonl")).unwrap();
    assert_eq!(
        paddock_policy::audit::verify(&text),
        Ok(2_100),
        "the benchmark's logs verify"
    );
}
