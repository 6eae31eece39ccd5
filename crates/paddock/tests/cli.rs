//! The `paddock` command as a user runs it: real binary, real files, exit codes and output.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn paddock(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_paddock"))
        .args(args)
        .current_dir(repo())
        .output()
        .expect("paddock runs")
}

fn paddock_stdin(args: &[&str], input: &str) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_paddock"))
        .args(args)
        .current_dir(repo())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("paddock runs");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.as_bytes())
        .expect("write stdin");
    child.wait_with_output().expect("paddock exits")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn help_documents_every_subcommand() {
    let out = paddock(&["--help"]);
    assert!(out.status.success());
    let text = stdout(&out);
    for sub in [
        "serve",
        "run",
        "sandbox",
        "exec",
        "cp",
        "pull",
        "apply",
        "get",
        "delete",
        "doctor",
        "validate",
        "convert",
        "crds",
        "agent",
        "controller",
        "gateway",
    ] {
        assert!(text.contains(sub), "--help lists {sub}:\n{text}");
        let sub_help = paddock(&[sub, "--help"]);
        assert!(sub_help.status.success(), "{sub} --help");
        assert!(
            stdout(&sub_help).contains("Usage: paddock"),
            "{sub} --help has usage"
        );
    }
}

#[test]
fn validate_accepts_the_examples_of_both_versions() {
    let out = paddock(&[
        "validate",
        "-f",
        "examples/v1alpha1",
        "-f",
        "examples/v1beta1",
    ]);
    assert!(out.status.success(), "{}", stdout(&out));
    assert!(
        stdout(&out).ends_with("10 objects valid, 0 invalid\n"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn validate_explains_the_seed_manifests_that_follow_no_upstream_schema() {
    let out = paddock(&[
        "validate",
        "-f",
        "examples/invalid/warmpool-min-max-size.yaml",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let text = stdout(&out);
    assert!(text.contains("spec.minSize: unknown field; a SandboxWarmPool has no minimum or maximum size: set spec.replicas"), "{text}");
    assert!(text.contains("(line 18)"), "{text}");

    let out = paddock(&[
        "validate",
        "-f",
        "examples/invalid/template-and-claim-wrong-group.yaml",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let text = stdout(&out);
    assert!(text.contains("apiVersion: SandboxTemplate is in the extensions.agents.x-k8s.io group, not agents.x-k8s.io"), "{text}");
    assert!(
        text.contains(
            "spec.templateRef: unknown field; the field is spec.sandboxTemplateRef.name (line 26)"
        ),
        "{text}"
    );
    assert!(
        text.contains("spec.ttl: unknown field; a claim expires through spec.lifecycle"),
        "{text}"
    );
}

#[test]
fn validate_reports_malformed_yaml_with_line_and_column() {
    let out = paddock_stdin(
        &["validate", "-f", "-"],
        "apiVersion: agents.x-k8s.io/v1beta1\nkind: Sandbox\nmetadata:\n  name: [oops\n",
    );
    assert_eq!(out.status.code(), Some(1));
    let text = stdout(&out);
    assert!(text.starts_with("<stdin>: not valid YAML: "), "{text}");
    assert!(
        text.contains("(line 5, column 1)") || text.contains("(line 4"),
        "{text}"
    );
}

#[test]
fn validate_reads_standard_input_and_reports_the_line() {
    let manifest = "apiVersion: agents.x-k8s.io/v1alpha1\nkind: Sandbox\nmetadata:\n  name: s\nspec:\n  podTemplate:\n    spec:\n      containers: [{name: a, image: busybox}]\n  replicas: 2\n";
    let out = paddock_stdin(&["validate", "-f", "-"], manifest);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stdout(&out).contains("  spec.replicas: must be 0 or 1, got 2 (line 9)\n"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn validate_names_a_missing_file() {
    let out = paddock(&["validate", "-f", "no/such/file.yaml"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("cannot read no/such/file.yaml"),
        "{:?}",
        out
    );
}

#[test]
fn convert_turns_the_alpha_examples_into_the_beta_examples() {
    for entry in std::fs::read_dir(repo().join("examples/v1alpha1")).expect("examples") {
        let path = entry.expect("entry").path();
        let name = path
            .file_name()
            .expect("file name")
            .to_string_lossy()
            .into_owned();
        let out = paddock(&[
            "convert",
            "-f",
            &format!("examples/v1alpha1/{name}"),
            "--to",
            "v1beta1",
        ]);
        assert!(
            out.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let converted = paddock_api::yaml::parse_one(&stdout(&out))
            .expect("YAML")
            .value;
        let checked_in = std::fs::read_to_string(repo().join("examples/v1beta1").join(&name))
            .expect("beta example");
        let checked_in = paddock_api::yaml::parse_one(&checked_in)
            .expect("YAML")
            .value;
        assert_eq!(converted, checked_in, "{name}");
    }
}

#[test]
fn lossless_convert_round_trips_exactly() {
    let original = std::fs::read_to_string(repo().join("examples/v1alpha1/sandbox-gvisor.yaml"))
        .expect("example");
    let up = paddock(&[
        "convert",
        "--lossless",
        "-f",
        "examples/v1alpha1/sandbox-gvisor.yaml",
        "--to",
        "v1beta1",
    ]);
    assert!(
        stdout(&up).contains("api.agents.x-k8s.io/v1alpha1-sandbox-state"),
        "{}",
        stdout(&up)
    );
    let down = paddock_stdin(
        &["convert", "--lossless", "-f", "-", "--to", "v1alpha1"],
        &stdout(&up),
    );
    assert!(down.status.success());
    let back = paddock_api::yaml::parse_one(&stdout(&down))
        .expect("YAML")
        .value;
    assert_eq!(
        back,
        paddock_api::yaml::parse_one(&original).expect("YAML").value
    );
}

#[test]
fn convert_refuses_invalid_input() {
    let out = paddock(&[
        "convert",
        "-f",
        "examples/invalid/warmpool-min-max-size.yaml",
        "--to",
        "v1beta1",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stdout(&out).is_empty());
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot be converted"));
}

#[test]
fn crds_out_dir_writes_the_checked_in_files() {
    let dir = std::env::temp_dir().join(format!("paddock-crds-{}", std::process::id()));
    let out = paddock(&["crds", "--out-dir", dir.to_str().expect("utf-8 path")]);
    assert!(out.status.success());
    for entry in std::fs::read_dir(repo().join("deploy/crds")).expect("deploy/crds") {
        let path = entry.expect("entry").path();
        if path.extension().and_then(|e| e.to_str()) != Some("yaml") {
            continue;
        }
        let name = path.file_name().expect("name");
        let generated = std::fs::read_to_string(dir.join(name)).expect("generated file");
        assert_eq!(
            generated,
            std::fs::read_to_string(&path).expect("checked-in file"),
            "{}",
            path.display()
        );
    }
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn crds_print_the_four_kinds_and_sandboxpolicy_with_or_without_conversion() {
    let out = paddock(&["crds"]);
    let text = stdout(&out);
    assert_eq!(text.matches("kind: CustomResourceDefinition").count(), 5);
    assert_eq!(
        text.matches("strategy: Webhook").count(),
        4,
        "SandboxPolicy has one version"
    );
    assert!(text.contains("name: sandboxpolicies.paddock.dev"));
    let out = paddock(&["crds", "--no-conversion"]);
    assert!(!stdout(&out).contains("conversion:"));
}
