//! The generated files checked into the repository must match the generator, and the examples
//! must stay valid: these tests fail on drift and say how to regenerate.

use std::path::PathBuf;

use paddock_api::crd::{ConversionWebhook, crd_yaml, file_name};
use paddock_api::kinds::Kind;
use paddock_api::policy::{POLICY_CRD_FILE, policy_crd_yaml};
use paddock_api::validate::{Validated, validate_any_text, validate_text};

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

#[test]
fn deploy_crds_match_the_generator() {
    for kind in Kind::ALL {
        let path = repo_root().join("deploy/crds").join(file_name(kind));
        let on_disk =
            std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let generated = crd_yaml(kind, Some(&ConversionWebhook::default()));
        assert!(
            on_disk == generated,
            "{} is out of date with the API types; regenerate with: cargo run -p paddock --bin paddock -- crds --out-dir deploy/crds",
            path.display()
        );
    }
}

#[test]
fn deploy_policy_crd_matches_the_generator() {
    for dir in ["deploy/crds", "deploy/helm/paddock/crds"] {
        let path = repo_root().join(dir).join(POLICY_CRD_FILE);
        let on_disk =
            std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert!(
            on_disk == policy_crd_yaml(),
            "{} is out of date; regenerate with: cargo run -p paddock --bin paddock -- crds --out-dir {dir}",
            path.display()
        );
    }
}

#[test]
fn every_example_is_valid_in_both_versions() {
    for dir in ["examples/v1alpha1", "examples/v1beta1"] {
        let mut count = 0;
        for entry in std::fs::read_dir(repo_root().join(dir)).expect("examples directory") {
            let path = entry.expect("entry").path();
            let text = std::fs::read_to_string(&path).expect("readable");
            for report in validate_text(&text).expect("YAML") {
                assert!(
                    report.result.is_ok(),
                    "{}: {:?}",
                    path.display(),
                    report.result
                );
                count += 1;
            }
        }
        assert_eq!(
            count, 5,
            "{dir}: a gVisor Sandbox, a kata-fc Sandbox, a template, a pool and a claim"
        );
    }
}

#[test]
fn policy_examples_are_valid() {
    let mut count = 0;
    for entry in std::fs::read_dir(repo_root().join("examples/policy")).expect("examples/policy") {
        let path = entry.expect("entry").path();
        let text = std::fs::read_to_string(&path).expect("readable");
        for report in validate_any_text(&text).expect("YAML") {
            assert!(
                matches!(report.result, Ok(Validated::Policy(_))),
                "{}: {:?}",
                path.display(),
                report.result
            );
            count += 1;
        }
    }
    assert!(count >= 1, "at least one policy example");
}

#[test]
fn invalid_examples_stay_invalid() {
    for entry in std::fs::read_dir(repo_root().join("examples/invalid")).expect("examples/invalid")
    {
        let path = entry.expect("entry").path();
        let text = std::fs::read_to_string(&path).expect("readable");
        let reports = validate_text(&text).expect("YAML");
        assert!(
            reports.iter().all(|r| r.result.is_err()),
            "{} should not validate",
            path.display()
        );
    }
}
