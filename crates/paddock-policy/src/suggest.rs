//! `paddock policy suggest`: the smallest enforce-mode policy that allows what a sandbox was seen
//! to reach (typically under an audit-mode policy): one rule per host, with the ports used.

use std::collections::BTreeMap;

use paddock_api::policy::{EgressMode, EgressPolicy, EgressRule};

use crate::address::{Cidr, canonical};
use crate::egress::Destination;

/// One connection seen: the host asked for and the port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Observed {
    /// The host (name or address literal) as the sandbox asked for it.
    pub host: String,
    /// The destination port.
    pub port: u16,
}

/// A policy that allows exactly the hosts and ports observed, in enforce mode. Names become
/// exact domains; address literals become single-address CIDRs. Rules are named after their host.
pub fn suggest_policy(observed: &[Observed]) -> EgressPolicy {
    let mut hosts: BTreeMap<String, Vec<u16>> = BTreeMap::new();
    for o in observed {
        let key = match Destination::parse(&o.host) {
            Destination::Name(n) => n.trim_end_matches('.').to_ascii_lowercase(),
            Destination::Ip(ip) => Cidr::host(canonical(ip)).to_string(),
        };
        let ports = hosts.entry(key).or_default();
        if !ports.contains(&o.port) {
            ports.push(o.port);
        }
    }
    let rules = hosts
        .into_iter()
        .map(|(host, mut ports)| {
            ports.sort_unstable();
            let is_cidr = host.contains('/');
            let name = host
                .chars()
                .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
                .take(63)
                .collect::<String>();
            EgressRule {
                name: Some(name),
                domains: if is_cidr {
                    Vec::new()
                } else {
                    vec![host.clone()]
                },
                cidrs: if is_cidr { vec![host] } else { Vec::new() },
                ports,
                ..EgressRule::default()
            }
        })
        .collect();
    EgressPolicy {
        mode: Some(EgressMode::Enforce),
        rules,
        limits: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::egress::EgressRules;

    fn seen(host: &str, port: u16) -> Observed {
        Observed {
            host: host.into(),
            port,
        }
    }

    #[test]
    fn suggestion_allows_what_was_seen_and_nothing_else() {
        let observed = [
            seen("pypi.org", 443),
            seen("PyPI.org.", 443),
            seen("files.pythonhosted.org", 443),
            seen("pypi.org", 80),
            seen("203.0.113.9", 22),
        ];
        let policy = suggest_policy(&observed);
        assert_eq!(policy.rules.len(), 3);
        let rules = EgressRules::compile(&policy).expect("the suggestion compiles");
        for o in &observed {
            assert!(
                rules
                    .connect(Destination::parse(&o.host), o.port, true)
                    .allowed(),
                "{o:?}"
            );
        }
        assert!(
            !rules
                .connect(Destination::Name("pypi.org"), 22, true)
                .allowed()
        );
        assert!(
            !rules
                .connect(Destination::Name("evil.org"), 443, true)
                .allowed()
        );
        assert!(
            !rules
                .connect(Destination::parse("203.0.113.10"), 22, true)
                .allowed()
        );
        let value = serde_json::to_value(&policy).expect("encodes");
        assert_eq!(value["rules"][0]["cidrs"][0], "203.0.113.9/32");
        assert_eq!(value["rules"][2]["domains"][0], "pypi.org");
        assert_eq!(value["rules"][2]["ports"], serde_json::json!([80, 443]));
    }
}
