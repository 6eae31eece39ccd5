//! What a `SandboxPolicy` decides, with no IO: the egress proxy asks [`EgressRules`] about each
//! connection and request, the same way on both tiers.
//!
//! - [`audit`]: the hash chain of a sandbox's audit log, and its verification;
//! - [`address`]: CIDR ranges and which addresses are public;
//! - [`egress`]: compiled rules, verdicts with reasons, audit mode, the meet of two policies;
//! - [`permissions`]: permissions as a lattice (never < ask < always), met pointwise;
//! - [`governs`]: which policies govern a Sandbox (its own, its template's, its claim's);
//! - [`suggest`]: a minimal policy from what a sandbox was seen to reach.

pub mod address;
pub mod audit;
pub mod egress;
pub mod governs;
pub mod permissions;
pub mod placeholder;
pub mod sandbox_env;
pub mod suggest;

pub use address::{Cidr, is_public};
pub use egress::{CompileError, Decision, DenyReason, Destination, EgressRules, Verdict};
pub use governs::{
    GoverningError, PolicyRef, governing_permissions, governing_policies, governing_rules,
};
pub use permissions::{ApiOp, Capability, PermissionRules};
pub use suggest::{Observed, suggest_policy};

#[cfg(test)]
mod laws {
    use paddock_api::policy::{EgressMode, EgressPolicy, EgressRule};
    use proptest::prelude::*;

    use super::*;

    const NAMES: [&str; 6] = [
        "a.test", "b.a.test", "c.test", "*.a.test", "*.test", "d.c.test",
    ];
    const CIDRS: [&str; 4] = [
        "203.0.113.0/24",
        "203.0.113.8/30",
        "10.0.0.0/8",
        "198.51.100.1",
    ];

    fn arb_rule() -> impl Strategy<Value = EgressRule> {
        (
            proptest::sample::subsequence(NAMES.to_vec(), 0..3),
            proptest::sample::subsequence(CIDRS.to_vec(), 0..2),
            proptest::sample::subsequence(vec![80u16, 443, 8080], 0..2),
        )
            .prop_map(|(d, c, p)| EgressRule {
                domains: d.into_iter().map(String::from).collect(),
                cidrs: c.into_iter().map(String::from).collect(),
                ports: p,
                ..EgressRule::default()
            })
    }

    fn arb_rules() -> impl Strategy<Value = EgressRules> {
        (proptest::collection::vec(arb_rule(), 0..4), any::<bool>()).prop_map(|(rules, audit)| {
            EgressRules::compile(&EgressPolicy {
                mode: Some(if audit {
                    EgressMode::Audit
                } else {
                    EgressMode::Enforce
                }),
                rules,
                limits: None,
            })
            .expect("compiles")
        })
    }

    fn arb_dest() -> impl Strategy<Value = (String, u16)> {
        (
            proptest::sample::select(vec![
                "a.test",
                "b.a.test",
                "x.a.test",
                "c.test",
                "d.c.test",
                "e.test",
                "203.0.113.9",
                "203.0.113.200",
                "10.1.1.1",
                "198.51.100.1",
            ]),
            proptest::sample::select(vec![80u16, 443, 8080, 22]),
        )
            .prop_map(|(h, p)| (h.to_owned(), p))
    }

    proptest! {
        /// Stacking a claim's policy on a template's never allows what either denies.
        #[test]
        fn the_meet_never_widens(a in arb_rules(), b in arb_rules(), (host, port) in arb_dest()) {
            let dest = Destination::parse(&host);
            let both = a.clone().meet(b.clone());
            if both.connect(dest, port, true).allowed() {
                prop_assert!(a.connect(dest, port, true).allowed());
                prop_assert!(b.connect(dest, port, true).allowed());
            }
        }

        /// The meet is commutative in what it allows.
        #[test]
        fn the_meet_is_commutative(a in arb_rules(), b in arb_rules(), (host, port) in arb_dest()) {
            let dest = Destination::parse(&host);
            prop_assert_eq!(
                a.clone().meet(b.clone()).connect(dest, port, true).allowed(),
                b.meet(a).connect(dest, port, true).allowed()
            );
        }
    }
}
