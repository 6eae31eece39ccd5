//! The crates' layering (docs/architecture.md, "Crates and their direction"): each crate may
//! depend only on the paddock crates listed for it here. A new crate, or a new edge, fails this
//! test until the picture in the architecture document and this table agree.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

use serde_json::Value;

/// Each crate and the paddock crates it may depend on (normal dependencies; dev-dependencies
/// are free, as tests may wire anything together).
const ALLOWED: &[(&str, &[&str])] = &[
    // Pure: data and decisions, no IO.
    ("paddock-api", &[]),
    ("paddock-wire", &[]),
    ("paddock-plan", &["paddock-api"]),
    ("paddock-policy", &["paddock-api"]),
    ("paddock-control", &["paddock-api", "paddock-plan"]),
    // Ports and parts.
    (
        "paddock-backend",
        &["paddock-api", "paddock-wire", "paddock-policy"],
    ),
    ("paddock-store", &[]),
    ("paddock-runtime", &["paddock-api"]),
    (
        "paddock-egress",
        &["paddock-api", "paddock-policy", "paddock-wire"],
    ),
    ("paddock-agent", &["paddock-wire"]),
    ("paddock-client", &["paddock-wire"]),
    // The embedded tier: the core's ports on the store and the runtime.
    (
        "paddock-engine",
        &[
            "paddock-api",
            "paddock-plan",
            "paddock-control",
            "paddock-backend",
            "paddock-store",
            "paddock-runtime",
            "paddock-egress",
            "paddock-policy",
        ],
    ),
    // The Kubernetes tier.
    ("paddock-kube", &["paddock-plan"]),
    (
        "paddock-webhook",
        &["paddock-api", "paddock-plan", "paddock-kube"],
    ),
    (
        "paddock-controller",
        &[
            "paddock-api",
            "paddock-plan",
            "paddock-policy",
            "paddock-control",
            "paddock-kube",
            "paddock-webhook",
        ],
    ),
    (
        "paddock-kube-backend",
        &[
            "paddock-api",
            "paddock-backend",
            "paddock-kube",
            "paddock-policy",
        ],
    ),
    // The gateway serves the backend port; wiring crates put it together.
    (
        "paddock-gateway",
        &[
            "paddock-api",
            "paddock-backend",
            "paddock-wire",
            "paddock-policy",
        ],
    ),
    (
        "paddock-router",
        &["paddock-gateway", "paddock-kube", "paddock-kube-backend"],
    ),
    (
        "paddock-kube-egress",
        &[
            "paddock-api",
            "paddock-policy",
            "paddock-egress",
            "paddock-kube",
            "paddock-wire",
        ],
    ),
    // Binaries, benchmarks and test support may use anything.
    ("paddock", &["*"]),
    ("paddock-bench", &["*"]),
    ("paddock-testkit", &["*"]),
];

fn metadata() -> Value {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let out = Command::new(cargo)
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run cargo metadata");
    assert!(
        out.status.success(),
        "cargo metadata: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("metadata JSON")
}

/// Each workspace crate and the workspace crates it depends on (normal dependencies).
fn edges() -> BTreeMap<String, BTreeSet<String>> {
    let meta = metadata();
    let packages = meta["packages"].as_array().expect("packages");
    let ours: BTreeSet<String> = packages
        .iter()
        .map(|p| p["name"].as_str().unwrap().to_owned())
        .collect();
    packages
        .iter()
        .map(|p| {
            let deps = p["dependencies"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|d| d["kind"].is_null())
                .map(|d| d["name"].as_str().unwrap().to_owned())
                .filter(|d| ours.contains(d))
                .collect();
            (p["name"].as_str().unwrap().to_owned(), deps)
        })
        .collect()
}

#[test]
fn every_crate_depends_only_on_what_the_layering_allows() {
    let allowed: BTreeMap<&str, &[&str]> = ALLOWED.iter().copied().collect();
    let mut problems = Vec::new();
    for (krate, deps) in edges() {
        let Some(may) = allowed.get(krate.as_str()) else {
            problems.push(format!(
                "{krate} is not in the layering table: add it to docs/architecture.md and to ALLOWED in this test"
            ));
            continue;
        };
        if may.contains(&"*") {
            continue;
        }
        for dep in deps {
            if !may.contains(&dep.as_str()) {
                problems.push(format!("{krate} must not depend on {dep}"));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn only_tests_and_benchmarks_depend_on_the_test_kit() {
    for (krate, deps) in edges() {
        if deps.contains("paddock-testkit") {
            assert_eq!(krate, "paddock-bench", "{krate} depends on paddock-testkit");
        }
    }
}

#[test]
fn the_layering_test_fails_on_a_forbidden_edge() {
    // The rule itself, on a made-up edge: the engine may not reach the gateway.
    let allowed: BTreeMap<&str, &[&str]> = ALLOWED.iter().copied().collect();
    assert!(!allowed["paddock-engine"].contains(&"paddock-gateway"));
    assert!(!allowed["paddock-controller"].contains(&"paddock-gateway"));
    assert!(!allowed["paddock-kube-backend"].contains(&"paddock-gateway"));
}
