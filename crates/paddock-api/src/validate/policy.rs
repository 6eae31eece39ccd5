//! Validation of `SandboxPolicy`: the CRD's schema, then the rules it cannot state (domain
//! patterns, CIDRs, header and env names, one secret source per injection), each problem at its
//! field path.

use std::collections::HashSet;
use std::net::IpAddr;
use std::sync::OnceLock;

use serde_json::{Map, Value};

use super::Problem;
use super::checker::{Checker, describe};
use super::semantics::check_metadata;
use crate::policy::{POLICY_API_VERSION, POLICY_KIND, SandboxPolicy, parse_cidr, policy_schema};
use crate::yaml::Document;

fn schema() -> &'static Value {
    static SCHEMA: OnceLock<Value> = OnceLock::new();
    SCHEMA.get_or_init(policy_schema)
}

/// Validates a SandboxPolicy; `doc` gives lines for YAML input.
pub(super) fn validate_policy(
    value: &Value,
    doc: Option<&Document>,
) -> Result<SandboxPolicy, Vec<Problem>> {
    let mut c = Checker::new(doc);
    let Value::Object(obj) = value else {
        c.report(format!(
            "a SandboxPolicy must be a mapping with apiVersion, kind, metadata and spec, got {}",
            describe(value)
        ));
        return Err(c.problems);
    };
    match obj.get("apiVersion").and_then(Value::as_str) {
        Some(POLICY_API_VERSION) => {}
        Some(other) => c.at_field("apiVersion", |c| {
            c.report(format!(
                "{other:?} is not served: SandboxPolicy is {POLICY_API_VERSION}"
            ))
        }),
        None => c.at_field("apiVersion", |c| {
            c.report(format!(
                "required field is missing: use {POLICY_API_VERSION}"
            ))
        }),
    }
    check_metadata(&mut c, obj.get("metadata"));
    let mut body = obj.clone();
    body.remove("metadata");
    c.check(schema(), &Value::Object(body));
    if let Some(Value::Object(spec)) = obj.get("spec") {
        c.at_field("spec", |c| check_spec(c, spec));
    }
    if !c.problems.is_empty() {
        return Err(c.problems);
    }
    let mut defaulted = value.clone();
    crate::schema::apply_defaults(schema(), &mut defaulted);
    serde_json::from_value(defaulted).map_err(|e| {
        c.report(format!("does not fit the {POLICY_KIND} type: {e}"));
        c.problems
    })
}

fn check_spec(c: &mut Checker<'_>, spec: &Map<String, Value>) {
    if let Some(Value::Object(permissions)) = spec.get("permissions") {
        c.at_field("permissions", |c| check_permissions(c, permissions));
    }
    let Some(Value::Object(egress)) = spec.get("egress") else {
        return;
    };
    c.enter_field("egress");
    if let Some(Value::Array(rules)) = egress.get("rules") {
        c.enter_field("rules");
        let mut names = HashSet::new();
        for (i, rule) in rules.iter().enumerate() {
            if let Value::Object(rule) = rule {
                c.enter_index(i);
                if let Some(name) = rule.get("name").and_then(Value::as_str)
                    && !names.insert(name.to_owned())
                {
                    c.at_field("name", |c| {
                        c.report(format!(
                            "{name:?} names another rule too: names must be unique"
                        ))
                    });
                }
                check_rule(c, rule);
                c.leave();
            }
        }
        c.leave();
    }
    if let Some(Value::Object(limits)) = egress.get("limits") {
        c.enter_field("limits");
        for field in ["bytes", "requests"] {
            if limits.get(field).and_then(Value::as_u64) == Some(0) {
                c.at_field(field, |c| {
                    c.report("must be at least 1 (leave it out for no limit)")
                });
            }
        }
        c.leave();
    }
    c.leave();
}

fn check_permissions(c: &mut Checker<'_>, permissions: &Map<String, Value>) {
    if let Some(Value::Object(exec)) = permissions.get("exec") {
        c.enter_field("exec");
        for list in ["allow", "deny"] {
            each(c, list, &strings(exec, list), |p| {
                if p.is_empty() || p.contains(char::is_whitespace) {
                    Some(format!(
                        "{p:?} is not a program: give a name (python3) or an absolute path (/usr/bin/git)"
                    ))
                } else if p.contains('/') && !p.starts_with('/') {
                    Some(format!(
                        "{p:?}: give a program's name, or its absolute path"
                    ))
                } else if p.ends_with('/') {
                    Some(format!("{p:?} is a directory, not a program"))
                } else {
                    None
                }
            });
        }
        c.leave();
    }
    if let Some(Value::Object(files)) = permissions.get("files") {
        c.enter_field("files");
        for op in ["read", "write"] {
            if let Some(Value::Object(rule)) = files.get(op) {
                c.enter_field(op);
                each(c, "paths", &strings(rule, "paths"), |p| {
                    if !p.starts_with('/') {
                        Some(format!(
                            "{p:?} must be an absolute path glob (like /workspace/**)"
                        ))
                    } else if p.split('/').any(|s| s == "..") {
                        Some(format!("{p:?} must not contain '..'"))
                    } else if p.split('/').any(|s| s.contains("**") && s != "**") {
                        Some(format!(
                            "{p:?}: ** must be a whole segment (/a/**/b), not part of one"
                        ))
                    } else {
                        None
                    }
                });
                c.leave();
            }
        }
        c.leave();
    }
}

fn strings<'v>(rule: &'v Map<String, Value>, field: &str) -> Vec<(usize, &'v str)> {
    match rule.get(field) {
        Some(Value::Array(items)) => items
            .iter()
            .enumerate()
            .filter_map(|(i, v)| v.as_str().map(|s| (i, s)))
            .collect(),
        _ => Vec::new(),
    }
}

fn each(
    c: &mut Checker<'_>,
    field: &str,
    items: &[(usize, &str)],
    f: impl Fn(&str) -> Option<String>,
) {
    if items.is_empty() {
        return;
    }
    c.enter_field(field);
    for (i, item) in items {
        if let Some(problem) = f(item) {
            c.enter_index(*i);
            c.report(problem);
            c.leave();
        }
    }
    c.leave();
}

fn check_rule(c: &mut Checker<'_>, rule: &Map<String, Value>) {
    let domains = strings(rule, "domains");
    let cidrs = strings(rule, "cidrs");
    if domains.is_empty() && cidrs.is_empty() {
        c.report("a rule must name its destinations: set domains, cidrs or both");
    }
    each(c, "domains", &domains, domain_problem);
    each(c, "cidrs", &cidrs, |s| parse_cidr(s).err());
    if let Some(Value::Array(ports)) = rule.get("ports") {
        c.enter_field("ports");
        for (i, p) in ports.iter().enumerate() {
            if p.as_u64() == Some(0) {
                c.enter_index(i);
                c.report("port 0 is not a destination port: use 1 to 65535");
                c.leave();
            }
        }
        c.leave();
    }
    if let Some(Value::Object(http)) = rule.get("http") {
        c.enter_field("http");
        each(c, "methods", &strings(http, "methods"), |m| {
            if m.is_empty() || !m.bytes().all(|b| b.is_ascii_uppercase()) {
                Some(format!(
                    "{m:?} is not an HTTP method: write it in upper case, like {:?}",
                    m.to_ascii_uppercase()
                ))
            } else {
                None
            }
        });
        each(c, "paths", &strings(http, "paths"), |p| {
            (!p.starts_with('/')).then(|| format!("{p:?} must start with '/'"))
        });
        c.leave();
    }
    if let Some(Value::Array(injections)) = rule.get("inject") {
        c.enter_field("inject");
        let exact = domains.iter().any(|(_, d)| !d.starts_with("*."));
        for (i, injection) in injections.iter().enumerate() {
            let Value::Object(injection) = injection else {
                continue;
            };
            c.enter_index(i);
            if !exact {
                c.report(
                    "credentials are sent only to exact host names: list one in this rule's domains (a wildcard or a CIDR is not a pinned destination)",
                );
            }
            check_injection(c, injection);
            c.leave();
        }
        c.leave();
    }
}

fn check_injection(c: &mut Checker<'_>, injection: &Map<String, Value>) {
    if let Some(header) = injection.get("header").and_then(Value::as_str)
        && (header.is_empty() || !header.bytes().all(is_token_byte))
    {
        c.at_field("header", |c| {
            c.report(format!("{header:?} is not an HTTP header name"))
        });
    }
    if let Some(format) = injection.get("format").and_then(Value::as_str)
        && !format.contains("{secret}")
    {
        c.at_field("format", |c| {
            c.report(
                "must contain {secret}, where the secret's value goes (e.g. \"Bearer {secret}\")",
            )
        });
    }
    if let Some(env) = injection.get("env").and_then(Value::as_str) {
        let valid = !env.is_empty()
            && !env.as_bytes()[0].is_ascii_digit()
            && env.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
        if !valid {
            c.at_field("env", |c| {
                c.report(format!(
                    "{env:?} is not an environment variable name: letters, digits and '_', not starting with a digit"
                ))
            });
        }
    }
    if let Some(Value::Object(from)) = injection.get("valueFrom") {
        let set = ["file", "secretKeyRef"]
            .into_iter()
            .filter(|f| from.get(*f).is_some_and(|v| !v.is_null()))
            .count();
        if set != 1 {
            c.at_field("valueFrom", |c| {
                c.report("set exactly one of file (a file on the proxy's host) or secretKeyRef (a Kubernetes Secret)")
            });
        }
        if let Some(file) = from.get("file").and_then(Value::as_str)
            && !file.starts_with('/')
        {
            c.at_field("valueFrom", |c| {
                c.at_field("file", |c| {
                    c.report(format!("{file:?} must be an absolute path"))
                })
            });
        }
    }
}

fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// What is wrong with a domain pattern, if anything.
fn domain_problem(d: &str) -> Option<String> {
    if let Some((scheme, rest)) = d.split_once("://") {
        let host = rest.split(['/', ':']).next().unwrap_or(rest);
        return Some(format!(
            "{d:?} is a URL: write the host name alone ({host:?}); the {scheme} port goes in ports"
        ));
    }
    if d.parse::<IpAddr>().is_ok() {
        return Some(format!("{d:?} is an address: list it in cidrs"));
    }
    if let Some((host, port)) = d.rsplit_once(':')
        && port.parse::<u16>().is_ok()
    {
        return Some(format!(
            "{d:?} has a port: write {host:?} here and {port} in ports"
        ));
    }
    let name = d.strip_prefix("*.").unwrap_or(d);
    if name.contains('*') {
        return Some(format!(
            "{d:?}: a wildcard may only be the whole first label (\"*.example.com\")"
        ));
    }
    let name = name.strip_suffix('.').unwrap_or(name);
    if name.is_empty() || name.len() > 253 {
        return Some(format!("{d:?} is not a host name"));
    }
    for label in name.split('.') {
        let ok = !label.is_empty()
            && label.len() <= 63
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !ok {
            return Some(format!(
                "{d:?} is not a host name: label {label:?} must be 1-63 letters, digits or '-'"
            ));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use crate::validate::{Validated, validate_any_text};

    fn problems(text: &str) -> Vec<String> {
        let reports = validate_any_text(text).expect("valid YAML");
        match &reports[0].result {
            Ok(_) => Vec::new(),
            Err(p) => p.iter().map(ToString::to_string).collect(),
        }
    }

    const HEAD: &str = "apiVersion: paddock.dev/v1alpha1\nkind: SandboxPolicy\nmetadata:\n  name: p\nspec:\n  egress:\n";

    #[test]
    fn a_good_policy_is_valid_and_typed_with_defaults() {
        let text = format!(
            "{HEAD}    rules:\n    - domains: [pypi.org, '*.pythonhosted.org']\n      ports: [443]\n    - cidrs: [10.1.0.0/16]\n"
        );
        let reports = validate_any_text(&text).expect("yaml");
        let Ok(Validated::Policy(policy)) = &reports[0].result else {
            panic!("expected a valid policy: {:?}", reports[0].result)
        };
        let egress = policy.spec.egress.as_ref().expect("egress");
        assert_eq!(
            egress.mode,
            Some(crate::policy::EgressMode::Enforce),
            "default applied"
        );
        assert_eq!(egress.rules.len(), 2);
        assert_eq!(reports[0].kind.as_deref(), Some("SandboxPolicy"));
    }

    #[test]
    fn malformed_policies_name_each_field_and_what_to_write() {
        let text = format!(
            "{HEAD}    mode: block\n    rules:\n    - domains: ['https://pypi.org/simple', 'a.*.com', 'x.org:443']\n      cidrs: [10.1.2.3/8, 300.1.1.1]\n      ports: [0]\n      http:\n        methods: [get]\n        paths: [api]\n      inject:\n      - header: 'bad header'\n        format: Bearer\n        valueFrom: {{}}\n    - ports: [80]\n      prots: [1]\n"
        );
        let found = problems(&text);
        let expect = [
            "spec.egress.mode: ",
            "spec.egress.rules[0].domains[0]: \"https://pypi.org/simple\" is a URL: write the host name alone (\"pypi.org\")",
            "spec.egress.rules[0].domains[1]: \"a.*.com\": a wildcard may only be the whole first label",
            "spec.egress.rules[0].domains[2]: \"x.org:443\" has a port: write \"x.org\" here and 443 in ports",
            "spec.egress.rules[0].cidrs[0]: \"10.1.2.3/8\" has host bits set: did you mean 10.0.0.0/8?",
            "spec.egress.rules[0].cidrs[1]: \"300.1.1.1\" is not an address range",
            "spec.egress.rules[0].ports[0]: port 0",
            "spec.egress.rules[0].http.methods[0]: \"get\" is not an HTTP method: write it in upper case, like \"GET\"",
            "spec.egress.rules[0].http.paths[0]: \"api\" must start with '/'",
            "spec.egress.rules[0].inject[0].header: \"bad header\" is not an HTTP header name",
            "spec.egress.rules[0].inject[0].format: must contain {secret}",
            "spec.egress.rules[0].inject[0].valueFrom: set exactly one of file",
            "spec.egress.rules[1]: a rule must name its destinations",
            "spec.egress.rules[1].prots: ",
        ];
        for e in expect {
            assert!(
                found.iter().any(|p| p.starts_with(e)),
                "expected a problem starting {e:?} in {found:#?}"
            );
        }
        assert!(
            found.iter().all(|p| p.contains("(line ")),
            "YAML input gets lines: {found:#?}"
        );
    }

    #[test]
    fn credentials_need_an_exact_destination_and_wrong_api_version_is_named() {
        let text = "apiVersion: agents.x-k8s.io/v1beta1\nkind: SandboxPolicy\nmetadata:\n  name: p\nspec:\n  egress:\n    rules:\n    - domains: ['*.example.com']\n      inject:\n      - header: Authorization\n        valueFrom: {file: /run/secret}\n";
        let found = problems(text);
        assert!(found.iter().any(|p| p.starts_with("apiVersion: \"agents.x-k8s.io/v1beta1\" is not served: SandboxPolicy is paddock.dev/v1alpha1")), "{found:#?}");
        assert!(
            found.iter().any(|p| p.starts_with(
                "spec.egress.rules[0].inject[0]: credentials are sent only to exact host names"
            )),
            "{found:#?}"
        );
    }

    #[test]
    fn permissions_are_checked_with_field_paths() {
        let text = "apiVersion: paddock.dev/v1alpha1\nkind: SandboxPolicy\nmetadata:\n  name: p\nspec:\n  permissions:\n    exec:\n      level: sometimes\n      allow: [python3, bin/git, 'rm -rf']\n    files:\n      write:\n        paths: [workspace, /a/../b, /a/x**]\n    api: {delete: never, fly: always}\n";
        let found = problems(text);
        for e in [
            "spec.permissions.exec.level: ",
            "spec.permissions.exec.allow[1]: \"bin/git\": give a program's name, or its absolute path",
            "spec.permissions.exec.allow[2]: \"rm -rf\" is not a program",
            "spec.permissions.files.write.paths[0]: \"workspace\" must be an absolute path glob",
            "spec.permissions.files.write.paths[1]: \"/a/../b\" must not contain '..'",
            "spec.permissions.files.write.paths[2]: \"/a/x**\": ** must be a whole segment",
            "spec.permissions.api.fly: ",
        ] {
            assert!(
                found.iter().any(|p| p.starts_with(e)),
                "expected {e:?} in {found:#?}"
            );
        }
        let good = "apiVersion: paddock.dev/v1alpha1\nkind: SandboxPolicy\nmetadata:\n  name: p\nspec:\n  permissions:\n    exec: {level: ask, allow: [python3, /usr/bin/git], deny: [curl]}\n    files:\n      read: {paths: ['/workspace/**', /tmp/*]}\n    api: {delete: never}\n";
        assert!(problems(good).is_empty(), "{:#?}", problems(good));
    }

    #[test]
    fn duplicate_rule_names_and_zero_limits_are_rejected() {
        let text = format!(
            "{HEAD}    rules:\n    - {{name: a, domains: [a.org]}}\n    - {{name: a, domains: [b.org]}}\n    limits: {{bytes: 0}}\n"
        );
        let found = problems(&text);
        assert!(
            found
                .iter()
                .any(|p| p.starts_with("spec.egress.rules[1].name: \"a\" names another rule too")),
            "{found:#?}"
        );
        assert!(
            found
                .iter()
                .any(|p| p.starts_with("spec.egress.limits.bytes: must be at least 1")),
            "{found:#?}"
        );
    }
}
