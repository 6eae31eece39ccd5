//! The SandboxPolicy parser against arbitrary input, as a bounded fuzz run in every test
//! suite: random YAML text and random policy-shaped documents never panic the validator, and
//! whatever it refuses comes with a field path or a line.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use paddock_api::validate::{Validated, validate_any_text};
use proptest::prelude::*;
use serde_json::{Value, json};

/// Values from the corners the validator must handle: wrong types, huge numbers, odd strings.
fn arb_leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<u16>().prop_map(|n| json!(n)),
        proptest::sample::select(vec![
            "",
            "*",
            "*.",
            "**",
            "/",
            "..",
            "/a/../b",
            "pypi.org",
            "*.example.com",
            "10.0.0.0/8",
            "::/0",
            "300.1.1.1",
            "https://x",
            "a:1",
            "GET",
            "get",
            "/repos/",
            "{secret}",
            "enforce",
            "audit",
            "never",
            "ask",
            "always",
            "python3",
            "/usr/bin/git",
            "bin/git",
            "a b",
            "\u{0}",
            "\u{202e}",
            "é.test",
        ])
        .prop_map(|s| json!(s)),
        "[ -~]{0,40}".prop_map(Value::String),
    ]
}

fn arb_value() -> impl Strategy<Value = Value> {
    arb_leaf().prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            proptest::collection::btree_map(
                proptest::sample::select(vec![
                    "egress",
                    "permissions",
                    "rules",
                    "mode",
                    "limits",
                    "domains",
                    "cidrs",
                    "ports",
                    "http",
                    "methods",
                    "paths",
                    "inject",
                    "header",
                    "format",
                    "env",
                    "valueFrom",
                    "file",
                    "secretKeyRef",
                    "name",
                    "key",
                    "bytes",
                    "requests",
                    "exec",
                    "allow",
                    "deny",
                    "level",
                    "files",
                    "read",
                    "write",
                    "api",
                    "delete",
                    "unknown",
                ])
                .prop_map(str::to_owned),
                inner,
                0..5,
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn policy_shaped_documents_never_panic_and_problems_say_where(spec in arb_value()) {
        let doc = json!({
            "apiVersion": "paddock.dev/v1alpha1", "kind": "SandboxPolicy",
            "metadata": {"name": "p"}, "spec": spec,
        });
        let text = serde_json::to_string(&doc).expect("json");
        let reports = validate_any_text(&text).expect("JSON is YAML");
        for report in reports {
            match report.result {
                Ok(Validated::Policy(_)) => {}
                Ok(other) => prop_assert!(false, "not a policy: {other:?}"),
                Err(problems) => {
                    prop_assert!(!problems.is_empty());
                    for p in problems {
                        prop_assert!(!p.path.is_empty() || p.line.is_some(), "{p}");
                    }
                }
            }
        }
    }

    #[test]
    fn arbitrary_text_never_panics(text in "[ -~\\n\\t]{0,200}") {
        let with_kind = format!("kind: SandboxPolicy\napiVersion: paddock.dev/v1alpha1\n{text}");
        let _ = validate_any_text(&text);
        let _ = validate_any_text(&with_kind);
    }
}
