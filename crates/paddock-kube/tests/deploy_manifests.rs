//! The manifests under `deploy/`: the Deployment's hardening, the Services' ports, the
//! kustomization's completeness, and the Helm chart's copies of the CRDs and RBAC.

use std::path::{Path, PathBuf};

use serde_json::Value;

fn deploy() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy")
}

fn docs(file: &str) -> Vec<Value> {
    let text = std::fs::read_to_string(deploy().join(file)).expect("read");
    paddock_api::yaml::parse_documents(&text)
        .expect("yaml")
        .into_iter()
        .map(|d| d.value)
        .collect()
}

#[test]
fn deployment_is_hardened_and_probed() {
    let d = docs("controller.yaml")
        .into_iter()
        .next()
        .expect("deployment");
    assert_eq!(d["metadata"]["name"], "agent-sandbox-controller");
    assert_eq!(d["metadata"]["namespace"], "agent-sandbox-system");
    let pod = &d["spec"]["template"]["spec"];
    assert_eq!(pod["serviceAccountName"], "agent-sandbox-controller");
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_eq!(
        pod["securityContext"]["seccompProfile"]["type"],
        "RuntimeDefault"
    );
    let c = &pod["containers"][0];
    assert_eq!(c["securityContext"]["readOnlyRootFilesystem"], true);
    assert_eq!(c["securityContext"]["allowPrivilegeEscalation"], false);
    assert_eq!(c["securityContext"]["capabilities"]["drop"][0], "ALL");
    assert!(c["resources"]["requests"]["memory"].is_string());
    assert!(c["resources"]["limits"]["memory"].is_string());
    assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/readyz");
    let ports: Vec<i64> = c["ports"]
        .as_array()
        .expect("ports")
        .iter()
        .filter_map(|p| p["containerPort"].as_i64())
        .collect();
    assert_eq!(ports, vec![8080, 8081, 9443]);
    let args: Vec<&str> = c["args"]
        .as_array()
        .expect("args")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(args.contains(&"--leader-elect=true"));
}

#[test]
fn webhook_service_maps_443_to_9443() {
    let svcs = docs("services.yaml");
    let webhook = svcs
        .iter()
        .find(|s| s["metadata"]["name"] == "agent-sandbox-webhook-service")
        .expect("webhook");
    assert_eq!(webhook["spec"]["ports"][0]["port"], 443);
    assert_eq!(webhook["spec"]["ports"][0]["targetPort"], 9443);
    assert_eq!(webhook["metadata"]["namespace"], "agent-sandbox-system");
    let metrics = svcs
        .iter()
        .find(|s| s["metadata"]["name"] == "agent-sandbox-controller")
        .expect("metrics");
    assert_eq!(metrics["spec"]["ports"][0]["port"], 8080);
}

#[test]
fn kustomization_includes_every_crd_and_manifest() {
    let k = docs("kustomization.yaml")
        .into_iter()
        .next()
        .expect("kustomization");
    let listed: Vec<&str> = k["resources"]
        .as_array()
        .expect("resources")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    for kind in paddock_api::kinds::Kind::ALL {
        let f = format!("crds/{}", paddock_api::crd::file_name(kind));
        assert!(listed.contains(&f.as_str()), "{f} missing");
    }
    for dir in ["rbac"] {
        for e in std::fs::read_dir(deploy().join(dir)).expect("dir") {
            let name = format!("{dir}/{}", e.expect("entry").file_name().to_string_lossy());
            assert!(listed.contains(&name.as_str()), "{name} missing");
        }
    }
    for f in &listed {
        assert!(deploy().join(f).is_file(), "{f} listed but absent");
    }
}

#[test]
fn helm_chart_carries_the_same_crds_and_rbac() {
    for kind in paddock_api::kinds::Kind::ALL {
        let f = paddock_api::crd::file_name(kind);
        let a = std::fs::read_to_string(deploy().join("crds").join(&f)).expect("crd");
        let b = std::fs::read_to_string(deploy().join("helm/paddock/crds").join(&f))
            .expect("chart crd");
        assert_eq!(
            a, b,
            "deploy/helm/paddock/crds/{f} drifted from deploy/crds (copy it again)"
        );
    }
    let chart = std::fs::read_to_string(deploy().join("helm/paddock/templates/rbac.yaml"))
        .expect("chart rbac")
        .replace(
            "{{ include \"paddock.namespace\" . }}",
            "agent-sandbox-system",
        );
    for f in [
        "rbac/role.yaml",
        "rbac/role_binding.yaml",
        "rbac/namespace_role.yaml",
    ] {
        let text = std::fs::read_to_string(deploy().join(f)).expect("rbac");
        assert!(
            chart.contains(text.trim_end()),
            "the chart's RBAC drifted from deploy/{f}"
        );
    }
}

#[test]
fn dockerfile_builds_a_static_binary_into_an_empty_non_root_image() {
    let text = std::fs::read_to_string(deploy().join("Dockerfile")).expect("Dockerfile");
    assert!(text.contains("+crt-static"));
    assert!(text.contains("--bin paddock-controller"));
    let last_from = text
        .lines()
        .rfind(|l| l.starts_with("FROM "))
        .expect("FROM");
    assert_eq!(last_from, "FROM scratch");
    assert!(text.contains("USER 65532:65532"));
    assert!(text.contains("ENTRYPOINT [\"/paddock-controller\"]"));
}
