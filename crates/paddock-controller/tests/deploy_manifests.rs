//! The manifests under `deploy/`: the Deployments' hardening, the Services' ports, the
//! kustomization's completeness, the router's RBAC against the calls `paddock gateway` makes,
//! and the Helm chart's copies of the CRDs and RBAC.

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
    for dir in ["rbac", "router", "egress"] {
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
    let chart = std::fs::read_to_string(deploy().join("helm/paddock/templates/router-rbac.yaml"))
        .expect("chart router rbac")
        .replace(
            "{{ include \"paddock.namespace\" . }}",
            "agent-sandbox-system",
        );
    let text = std::fs::read_to_string(deploy().join("router/rbac.yaml")).expect("rbac");
    assert!(
        chart.contains(text.trim_end()),
        "the chart's router RBAC drifted from deploy/router/rbac.yaml"
    );
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

fn router_doc(kind: &str) -> Value {
    [
        "router/deployment.yaml",
        "router/service.yaml",
        "router/rbac.yaml",
    ]
    .iter()
    .flat_map(|f| docs(f))
    .find(|d| d["kind"] == kind)
    .unwrap_or_else(|| panic!("no {kind} under deploy/router"))
}

#[test]
fn router_deploys_as_upstreams_sandbox_router_and_is_hardened() {
    let d = router_doc("Deployment");
    assert_eq!(d["metadata"]["name"], "sandbox-router-deployment");
    assert_eq!(d["metadata"]["namespace"], "agent-sandbox-system");
    assert_eq!(d["spec"]["replicas"], 2);
    assert_eq!(
        d["spec"]["selector"]["matchLabels"]["app"],
        "sandbox-router"
    );
    assert_eq!(
        d["spec"]["template"]["metadata"]["labels"]["app"],
        "sandbox-router"
    );
    let pod = &d["spec"]["template"]["spec"];
    assert_eq!(
        pod["serviceAccountName"],
        router_doc("ServiceAccount")["metadata"]["name"]
    );
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_eq!(pod["securityContext"]["runAsUser"], 65532);
    assert_eq!(
        pod["securityContext"]["seccompProfile"]["type"],
        "RuntimeDefault"
    );
    let c = &pod["containers"][0];
    assert_eq!(c["securityContext"]["readOnlyRootFilesystem"], true);
    assert_eq!(c["securityContext"]["allowPrivilegeEscalation"], false);
    assert_eq!(c["securityContext"]["capabilities"]["drop"][0], "ALL");
    assert!(c["resources"]["requests"]["cpu"].is_string());
    assert!(c["resources"]["limits"]["memory"].is_string());
    assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(c["ports"][0]["containerPort"], 8080);
    let args: Vec<&str> = c["args"]
        .as_array()
        .expect("args")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(
        args.first(),
        Some(&"gateway"),
        "the controller image's gateway mode"
    );
    assert!(args.contains(&"--listen=0.0.0.0:8080"));
    assert!(
        args.contains(&"--auth=tokenreview"),
        "fails closed: {args:?}"
    );
    // The flags parse as `paddock gateway` reads them.
    use clap::{Args, Command, FromArgMatches};
    let m = paddock_router::GatewayArgs::augment_args(Command::new("gateway"))
        .try_get_matches_from(args.iter().copied())
        .expect("the manifest's flags parse");
    let parsed = paddock_router::GatewayArgs::from_arg_matches(&m).expect("args");
    assert!(parsed.validate_with_env(None).is_ok());

    let svc = router_doc("Service");
    assert_eq!(svc["metadata"]["name"], "sandbox-router-svc");
    assert_eq!(svc["metadata"]["namespace"], "agent-sandbox-system");
    assert_eq!(svc["spec"]["selector"]["app"], "sandbox-router");
    assert_eq!(svc["spec"]["ports"][0]["port"], 8080);
}

#[test]
fn template_network_policies_admit_the_router_pods() {
    let d = router_doc("Deployment");
    let labels = &d["spec"]["template"]["metadata"]["labels"];
    let spec = serde_json::to_value(paddock_plan::template::secure_default_network_policy_spec(
        "t",
    ))
    .expect("json");
    let from = &spec["ingress"][0]["from"][0];
    for (k, v) in from["podSelector"]["matchLabels"]
        .as_object()
        .expect("labels")
    {
        assert_eq!(&labels[k], v, "router pods carry {k}={v}");
    }
    assert_eq!(
        from["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"],
        d["metadata"]["namespace"]
    );
}

#[test]
fn router_rbac_grants_exactly_what_the_gateway_calls() {
    let role = router_doc("ClusterRole");
    let mut granted = std::collections::BTreeSet::new();
    for rule in role["rules"].as_array().expect("rules") {
        for g in rule["apiGroups"].as_array().expect("groups") {
            for r in rule["resources"].as_array().expect("resources") {
                for v in rule["verbs"].as_array().expect("verbs") {
                    granted.insert((
                        g.as_str().unwrap_or_default().to_owned(),
                        r.as_str().unwrap_or_default().to_owned(),
                        v.as_str().unwrap_or_default().to_owned(),
                    ));
                }
            }
        }
    }
    let declared: std::collections::BTreeSet<_> = paddock_kube_backend::API_CALLS
        .iter()
        .flat_map(|(g, r, verbs)| {
            verbs
                .iter()
                .map(move |v| ((*g).to_owned(), (*r).to_owned(), (*v).to_owned()))
        })
        .collect();
    assert_eq!(
        granted, declared,
        "deploy/router/rbac.yaml must grant exactly gateway::API_CALLS"
    );
    let binding = router_doc("ClusterRoleBinding");
    assert_eq!(binding["roleRef"]["name"], role["metadata"]["name"]);
    let sa = router_doc("ServiceAccount");
    assert_eq!(binding["subjects"][0]["name"], sa["metadata"]["name"]);
    assert_eq!(
        binding["subjects"][0]["namespace"],
        sa["metadata"]["namespace"]
    );
}

#[test]
fn helm_chart_deploys_the_router_like_the_manifests() {
    let chart = std::fs::read_to_string(deploy().join("helm/paddock/templates/router.yaml"))
        .expect("chart");
    for needle in [
        "name: sandbox-router-deployment",
        "name: sandbox-router-svc",
        "app: sandbox-router",
        "port: 8080",
        "- gateway",
        "- --listen=0.0.0.0:8080",
        "serviceAccountName: sandbox-router",
        "path: /healthz",
    ] {
        assert!(
            chart.contains(needle),
            "templates/router.yaml lacks {needle:?}"
        );
    }
    let values =
        std::fs::read_to_string(deploy().join("helm/paddock/values.yaml")).expect("values");
    assert!(values.contains("router:\n  enabled: true"), "{values}");
    assert!(values.contains("auth: tokenreview"));
}

#[test]
fn agent_image_holds_the_static_agent_and_cp() {
    let text =
        std::fs::read_to_string(deploy().join("Dockerfile.agent")).expect("Dockerfile.agent");
    assert!(text.contains("+crt-static"));
    assert!(text.contains("--bin paddock-agent"));
    assert!(text.contains(&format!(
        "COPY --from=build /paddock-agent {}",
        paddock_kube_backend::backend::AGENT_IN_IMAGE
    )));
    let last_from = text
        .lines()
        .rfind(|l| l.starts_with("FROM "))
        .expect("FROM");
    assert!(
        last_from.starts_with("FROM busybox"),
        "the init container runs its cp: {last_from}"
    );
}
