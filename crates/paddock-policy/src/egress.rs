//! Egress decisions: which hosts, addresses, ports and HTTP requests a sandbox may reach.
//!
//! A connection is judged in steps, as the proxy learns more: the host and port (CONNECT or the
//! Host header), then the addresses the host resolved to, then for plain HTTP the method and
//! path. Every step gives a [`Verdict`] naming the rule that allowed it or why it was denied.
//! [`EgressRules`] may stack several policies (a template's and a claim's): a connection must be
//! allowed by every layer, so adding a layer can only narrow what is allowed.

use std::fmt;
use std::net::IpAddr;

use paddock_api::policy::{
    CredentialInjection, EgressLimits, EgressMode, EgressPolicy, EgressRule,
};

use crate::address::{Cidr, canonical, is_public};

/// Where a connection goes: a host name or an address literal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Destination<'a> {
    /// A host name (any case, trailing dot allowed).
    Name(&'a str),
    /// An IP address literal.
    Ip(IpAddr),
}

impl<'a> Destination<'a> {
    /// A name, or an address if `host` is an IP literal (IPv6 with or without brackets).
    pub fn parse(host: &'a str) -> Self {
        let bare = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        match bare.parse::<IpAddr>() {
            Ok(ip) => Destination::Ip(ip),
            Err(_) => Destination::Name(host),
        }
    }
}

impl fmt::Display for Destination<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Destination::Name(n) => f.write_str(n),
            Destination::Ip(ip) => write!(f, "{ip}"),
        }
    }
}

/// Why a connection or request was denied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DenyReason {
    /// No rule names this host (or address) with this port.
    NoRule {
        /// The destination as asked for.
        host: String,
        /// The port.
        port: u16,
    },
    /// Rules name the host, but only for some HTTP requests, and this is a TLS tunnel whose
    /// requests the proxy cannot see.
    TunnelNeedsHttpCheck {
        /// The rule that would allow some requests.
        rule: String,
    },
    /// The host is allowed, but this request's method or path is not.
    HttpRequest {
        /// The method.
        method: String,
        /// The path.
        path: String,
    },
    /// The name resolved only to addresses that are not public, and no CIDR rule names them.
    NonPublicAddress {
        /// The host.
        host: String,
        /// The first address it resolved to.
        address: IpAddr,
    },
    /// The TLS server name sent in the tunnel is not the host the tunnel was opened to.
    ServerNameMismatch {
        /// The CONNECT host.
        host: String,
        /// The SNI in the ClientHello.
        server_name: String,
    },
    /// A TLS handshake began but showed no server name in time.
    IncompleteHandshake {
        /// The tunnel's host.
        host: String,
    },
    /// An HTTP path that could mean another one once the server normalises it.
    UnnormalisedPath {
        /// The path.
        path: String,
    },
    /// A limit of the policy is spent.
    LimitSpent {
        /// `bytes` or `requests`.
        limit: &'static str,
        /// The limit.
        value: u64,
    },
}

impl fmt::Display for DenyReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DenyReason::NoRule { host, port } => write!(
                f,
                "no egress rule allows {host} port {port} (add it to the sandbox's SandboxPolicy)"
            ),
            DenyReason::TunnelNeedsHttpCheck { rule } => write!(
                f,
                "rule {rule} allows only some HTTP requests, and a TLS tunnel cannot be checked against it"
            ),
            DenyReason::HttpRequest { method, path } => {
                write!(f, "no egress rule allows {method} {path} on this host")
            }
            DenyReason::NonPublicAddress { host, address } => write!(
                f,
                "{host} resolves to {address}, which is not a public address: allow it with a cidrs rule"
            ),
            DenyReason::ServerNameMismatch { host, server_name } => write!(
                f,
                "the TLS server name {server_name} does not match the tunnel's host {host}"
            ),
            DenyReason::IncompleteHandshake { host } => write!(
                f,
                "the TLS handshake in the tunnel to {host} did not show its server name in time"
            ),
            DenyReason::UnnormalisedPath { path } => write!(
                f,
                "the path {path} is not normalised ('..', '//', '\\\\' or an encoded '.' or '/'), so path rules cannot judge it"
            ),
            DenyReason::LimitSpent { limit, value } => {
                write!(f, "the sandbox's egress {limit} limit ({value}) is spent")
            }
        }
    }
}

/// The answer to one question about a connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Allowed by the named rule.
    Allow {
        /// The rule's name (or `rules[i]`).
        rule: String,
    },
    /// Denied.
    Deny(DenyReason),
}

impl Verdict {
    /// Whether the verdict allows.
    pub fn is_allow(&self) -> bool {
        matches!(self, Verdict::Allow { .. })
    }
}

#[derive(Clone, Debug)]
enum DomainPattern {
    Exact(String),
    /// `*.suffix`: matches names ending in `.suffix`.
    Below(String),
}

impl DomainPattern {
    fn parse(p: &str) -> Self {
        let p = normalize(p);
        match p.strip_prefix("*.") {
            Some(suffix) => DomainPattern::Below(suffix.to_owned()),
            None => DomainPattern::Exact(p),
        }
    }

    fn matches(&self, name: &str) -> bool {
        match self {
            DomainPattern::Exact(e) => name == e,
            DomainPattern::Below(suffix) => name
                .strip_suffix(suffix.as_str())
                .is_some_and(|rest| rest.len() > 1 && rest.ends_with('.')),
        }
    }
}

/// Whether a path means only itself: no `..` or `.` segments, no empty segment, no
/// backslash, no percent-encoded `.`, `/` or `\`.
fn normalised(path: &str) -> bool {
    let lower = path.to_ascii_lowercase();
    if path.contains('\\') || ["%2e", "%2f", "%5c"].iter().any(|e| lower.contains(e)) {
        return false;
    }
    let segments: Vec<&str> = path.split('/').skip(1).collect();
    let last = segments.len().saturating_sub(1);
    !segments
        .iter()
        .enumerate()
        .any(|(i, s)| *s == ".." || *s == "." || (s.is_empty() && i != last))
}

fn normalize(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

#[derive(Clone, Debug)]
struct CompiledRule {
    name: String,
    domains: Vec<DomainPattern>,
    cidrs: Vec<Cidr>,
    ports: Vec<u16>,
    methods: Vec<String>,
    paths: Vec<String>,
    has_http: bool,
    injects: Vec<CredentialInjection>,
}

impl CompiledRule {
    fn port_ok(&self, port: u16) -> bool {
        self.ports.is_empty() || self.ports.contains(&port)
    }

    fn names(&self, name: &str) -> bool {
        self.domains.iter().any(|d| d.matches(name))
    }

    fn http_ok(&self, method: &str, path: &str) -> bool {
        if !self.paths.is_empty() && !normalised(path) {
            return false;
        }
        (self.methods.is_empty() || self.methods.iter().any(|m| m == method))
            && (self.paths.is_empty() || self.paths.iter().any(|p| path.starts_with(p.as_str())))
    }
}

/// An invalid policy reached the decider (validation should have caught it).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("spec.egress.rules[{index}].cidrs: {message}")]
pub struct CompileError {
    /// The rule's index.
    pub index: usize,
    /// What is wrong.
    pub message: String,
}

/// One policy's rules, compiled for matching.
#[derive(Clone, Debug)]
struct Layer {
    mode: EgressMode,
    rules: Vec<CompiledRule>,
    limits: EgressLimits,
}

impl Layer {
    fn compile(policy: &EgressPolicy) -> Result<Self, CompileError> {
        let rules = policy
            .rules
            .iter()
            .enumerate()
            .map(|(i, r)| compile_rule(i, r))
            .collect::<Result<_, _>>()?;
        Ok(Self {
            mode: policy.effective_mode(),
            rules,
            limits: policy.limits.clone().unwrap_or_default(),
        })
    }

    fn host(&self, dest: Destination<'_>, port: u16, tunnel: bool) -> Verdict {
        let mut partial: Option<&CompiledRule> = None;
        for rule in self.rules.iter().filter(|r| r.port_ok(port)) {
            let named = match dest {
                Destination::Name(n) => rule.names(&normalize(n)),
                Destination::Ip(ip) => rule.cidrs.iter().any(|c| c.contains(ip)),
            };
            if !named {
                continue;
            }
            if tunnel && rule.has_http {
                partial.get_or_insert(rule);
                continue;
            }
            return Verdict::Allow {
                rule: rule.name.clone(),
            };
        }
        Verdict::Deny(match partial {
            Some(rule) => DenyReason::TunnelNeedsHttpCheck {
                rule: rule.name.clone(),
            },
            None => DenyReason::NoRule {
                host: dest.to_string(),
                port,
            },
        })
    }

    fn address_ok(&self, ip: IpAddr, port: u16) -> bool {
        is_public(ip)
            || self
                .rules
                .iter()
                .any(|r| r.port_ok(port) && r.cidrs.iter().any(|c| c.contains(ip)))
    }

    fn request(&self, host: &str, port: u16, method: &str, path: &str) -> Verdict {
        let name = normalize(host);
        let ip = match Destination::parse(host) {
            Destination::Ip(ip) => Some(ip),
            Destination::Name(_) => None,
        };
        let mut host_named = false;
        for rule in self.rules.iter().filter(|r| r.port_ok(port)) {
            let named = match ip {
                Some(ip) => rule.cidrs.iter().any(|c| c.contains(ip)),
                None => rule.names(&name),
            };
            if !named {
                continue;
            }
            host_named = true;
            if rule.http_ok(method, path) {
                return Verdict::Allow {
                    rule: rule.name.clone(),
                };
            }
        }
        Verdict::Deny(if host_named {
            DenyReason::HttpRequest {
                method: method.to_owned(),
                path: path.to_owned(),
            }
        } else {
            DenyReason::NoRule {
                host: host.to_owned(),
                port,
            }
        })
    }
}

fn compile_rule(index: usize, rule: &EgressRule) -> Result<CompiledRule, CompileError> {
    let cidrs = rule
        .cidrs
        .iter()
        .map(|c| Cidr::parse(c).map_err(|message| CompileError { index, message }))
        .collect::<Result<_, _>>()?;
    let http = rule.http.clone().unwrap_or_default();
    Ok(CompiledRule {
        name: rule
            .name
            .clone()
            .unwrap_or_else(|| format!("rules[{index}]")),
        domains: rule
            .domains
            .iter()
            .map(|d| DomainPattern::parse(d))
            .collect(),
        cidrs,
        ports: rule.ports.clone(),
        has_http: !http.methods.is_empty() || !http.paths.is_empty(),
        methods: http.methods,
        paths: http.paths,
        injects: rule.inject.clone(),
    })
}

/// The egress rules a sandbox runs under: one or more policies, all of which must allow.
#[derive(Clone, Debug)]
pub struct EgressRules {
    layers: Vec<Layer>,
}

/// What happened when a question was asked of the rules: the verdict to enforce, and in audit
/// mode the verdict enforce would have given.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    /// What to do.
    pub verdict: Verdict,
    /// In audit mode, the denial that was let through.
    pub audited: Option<DenyReason>,
}

impl Decision {
    /// Whether the connection goes ahead.
    pub fn allowed(&self) -> bool {
        self.verdict.is_allow()
    }
}

impl EgressRules {
    /// Compiles a policy's egress part.
    ///
    /// # Errors
    /// A CIDR that does not parse (validation reports it first).
    pub fn compile(policy: &EgressPolicy) -> Result<Self, CompileError> {
        Ok(Self {
            layers: vec![Layer::compile(policy)?],
        })
    }

    /// Rules that allow nothing (what a sandbox gets when its policy goes missing).
    pub fn deny_all() -> Self {
        Self {
            layers: vec![Layer {
                mode: EgressMode::Enforce,
                rules: Vec::new(),
                limits: EgressLimits::default(),
            }],
        }
    }

    /// The meet: what both allow. Use it to put a claim's policy on its template's.
    pub fn meet(mut self, other: EgressRules) -> Self {
        self.layers.extend(other.layers);
        self
    }

    /// Enforce when any layer enforces; audit only when every layer audits.
    pub fn mode(&self) -> EgressMode {
        if self.layers.iter().all(|l| l.mode == EgressMode::Audit) {
            EgressMode::Audit
        } else {
            EgressMode::Enforce
        }
    }

    /// The tightest of the layers' limits.
    pub fn limits(&self) -> EgressLimits {
        let min = |f: fn(&EgressLimits) -> Option<u64>| {
            self.layers.iter().filter_map(|l| f(&l.limits)).min()
        };
        EgressLimits {
            bytes: min(|l| l.bytes),
            requests: min(|l| l.requests),
        }
    }

    fn decide(&self, ask: impl Fn(&Layer) -> Verdict) -> Decision {
        let mut allowed_by = None;
        for layer in &self.layers {
            match ask(layer) {
                Verdict::Allow { rule } => {
                    allowed_by.get_or_insert(rule);
                }
                Verdict::Deny(reason) => {
                    return if self.mode() == EgressMode::Audit {
                        Decision {
                            verdict: Verdict::Allow {
                                rule: "audit".to_owned(),
                            },
                            audited: Some(reason),
                        }
                    } else {
                        Decision {
                            verdict: Verdict::Deny(reason),
                            audited: None,
                        }
                    };
                }
            }
        }
        Decision {
            verdict: Verdict::Allow {
                rule: allowed_by.unwrap_or_else(|| "audit".to_owned()),
            },
            audited: None,
        }
    }

    /// May a connection to `dest:port` be opened? `tunnel` is true for an opaque (TLS) tunnel,
    /// which rules restricted to some HTTP requests do not allow.
    pub fn connect(&self, dest: Destination<'_>, port: u16, tunnel: bool) -> Decision {
        self.decide(|l| l.host(dest, port, tunnel))
    }

    /// May this plain-HTTP request go to `host:port`?
    pub fn request(&self, host: &str, port: u16, method: &str, path: &str) -> Decision {
        self.decide(|l| l.request(host, port, method, path))
    }

    /// Of the addresses `host` resolved to, those the connection may use: public ones, and the
    /// ones a CIDR rule names. Denied (in enforce mode) when none is left.
    pub fn addresses(&self, host: &str, port: u16, resolved: &[IpAddr]) -> (Vec<IpAddr>, Decision) {
        let usable: Vec<IpAddr> = resolved
            .iter()
            .copied()
            .map(canonical)
            .filter(|ip| self.layers.iter().all(|l| l.address_ok(*ip, port)))
            .collect();
        if !usable.is_empty() || resolved.is_empty() {
            let verdict = Verdict::Allow {
                rule: "addresses".to_owned(),
            };
            return (
                usable,
                Decision {
                    verdict,
                    audited: None,
                },
            );
        }
        let reason = DenyReason::NonPublicAddress {
            host: host.to_owned(),
            address: resolved[0],
        };
        if self.mode() == EgressMode::Audit {
            let verdict = Verdict::Allow {
                rule: "audit".to_owned(),
            };
            (
                resolved.to_vec(),
                Decision {
                    verdict,
                    audited: Some(reason),
                },
            )
        } else {
            (
                Vec::new(),
                Decision {
                    verdict: Verdict::Deny(reason),
                    audited: None,
                },
            )
        }
    }

    /// Whether DNS may hand `ip` to the sandbox for an allowed name: it is public, or some
    /// CIDR rule (on any port) names it. Connections are checked again with their port.
    pub fn answerable(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.mode() == EgressMode::Audit
            || self.layers.iter().all(|l| {
                is_public(ip)
                    || l.rules
                        .iter()
                        .any(|r| r.cidrs.iter().any(|c| c.contains(ip)))
            })
    }

    /// Whether DNS inside the sandbox should answer for `name`: some rule of every layer names
    /// it (on any port), or the rules only audit.
    pub fn resolves(&self, name: &str) -> bool {
        let name = normalize(name);
        self.mode() == EgressMode::Audit
            || self
                .layers
                .iter()
                .all(|l| l.rules.iter().any(|r| r.names(&name)))
    }

    /// The credentials to add to requests to `host` (on `port`), with the rule each comes
    /// from. Only exact domain names carry credentials (validation refuses the rest), so a
    /// wildcard or CIDR match never does.
    pub fn injections_for(&self, host: &str, port: u16) -> Vec<(&str, &CredentialInjection)> {
        let name = normalize(host);
        self.layers
            .iter()
            .flat_map(|l| l.rules.iter())
            .filter(|r| {
                r.port_ok(port)
                    && r.domains
                        .iter()
                        .any(|d| matches!(d, DomainPattern::Exact(e) if *e == name))
            })
            .flat_map(|r| r.injects.iter().map(move |i| (r.name.as_str(), i)))
            .collect()
    }

    /// Every credential the rules can inject, with its rule (for placeholders at start).
    pub fn injections(&self) -> Vec<(&str, &CredentialInjection)> {
        self.layers
            .iter()
            .flat_map(|l| l.rules.iter())
            .flat_map(|r| r.injects.iter().map(move |i| (r.name.as_str(), i)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use paddock_api::policy::HttpMatch;

    fn rule(domains: &[&str], cidrs: &[&str], ports: &[u16]) -> EgressRule {
        EgressRule {
            domains: domains.iter().map(|s| s.to_string()).collect(),
            cidrs: cidrs.iter().map(|s| s.to_string()).collect(),
            ports: ports.to_vec(),
            ..EgressRule::default()
        }
    }

    fn rules(mode: EgressMode, rules: Vec<EgressRule>) -> EgressRules {
        EgressRules::compile(&EgressPolicy {
            mode: Some(mode),
            rules,
            limits: None,
        })
        .expect("compiles")
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    #[test]
    fn exact_and_wildcard_domains_allow_their_names_and_ports_only() {
        let r = rules(
            EgressMode::Enforce,
            vec![rule(&["pypi.org", "*.pythonhosted.org"], &[], &[443])],
        );
        let name = Destination::Name;
        assert!(r.connect(name("pypi.org"), 443, true).allowed());
        assert!(
            r.connect(name("PyPI.org."), 443, true).allowed(),
            "case and root dot"
        );
        assert!(
            r.connect(name("files.pythonhosted.org"), 443, true)
                .allowed()
        );
        assert!(r.connect(name("a.b.pythonhosted.org"), 443, true).allowed());
        assert!(
            !r.connect(name("pythonhosted.org"), 443, true).allowed(),
            "wildcard needs a label"
        );
        assert!(!r.connect(name("evilpythonhosted.org"), 443, true).allowed());
        assert!(!r.connect(name("pypi.org.evil.com"), 443, true).allowed());
        let denied = r.connect(name("pypi.org"), 80, true);
        assert_eq!(
            denied.verdict,
            Verdict::Deny(DenyReason::NoRule {
                host: "pypi.org".into(),
                port: 80
            })
        );
    }

    #[test]
    fn ip_literals_need_a_cidr_rule() {
        let r = rules(
            EgressMode::Enforce,
            vec![rule(&["example.com"], &["203.0.113.0/24"], &[])],
        );
        assert!(
            r.connect(Destination::parse("203.0.113.7"), 80, true)
                .allowed()
        );
        assert!(
            !r.connect(Destination::parse("198.51.100.1"), 80, true)
                .allowed()
        );
        assert!(
            !r.connect(Destination::parse("[2001:db8::1]"), 80, true)
                .allowed()
        );
    }

    #[test]
    fn names_resolving_to_private_addresses_are_denied_unless_a_cidr_names_them() {
        let r = rules(
            EgressMode::Enforce,
            vec![rule(&["internal.test", "rebind.test"], &[], &[])],
        );
        let (usable, d) = r.addresses("rebind.test", 80, &[ip("127.0.0.1")]);
        assert!(usable.is_empty());
        assert!(matches!(
            d.verdict,
            Verdict::Deny(DenyReason::NonPublicAddress { .. })
        ));
        let (usable, d) = r.addresses("mixed.test", 80, &[ip("10.0.0.1"), ip("1.2.3.4")]);
        assert_eq!(
            usable,
            vec![ip("1.2.3.4")],
            "the private address is dropped"
        );
        assert!(d.allowed());
        let r = rules(
            EgressMode::Enforce,
            vec![
                rule(&["internal.test"], &[], &[]),
                rule(&[], &["10.9.0.0/16"], &[8080]),
            ],
        );
        let (usable, _) = r.addresses("internal.test", 8080, &[ip("10.9.1.1")]);
        assert_eq!(usable, vec![ip("10.9.1.1")]);
        let (usable, _) = r.addresses("internal.test", 80, &[ip("10.9.1.1")]);
        assert!(usable.is_empty(), "the CIDR rule is for port 8080 only");
    }

    #[test]
    fn http_rules_check_method_and_path_and_refuse_opaque_tunnels() {
        let mut r = rule(&["api.example.com"], &[], &[]);
        r.name = Some("read-repos".into());
        r.http = Some(HttpMatch {
            methods: vec!["GET".into()],
            paths: vec!["/repos/".into()],
        });
        let r = rules(EgressMode::Enforce, vec![r]);
        assert!(
            r.request("api.example.com", 80, "GET", "/repos/a")
                .allowed()
        );
        assert_eq!(
            r.request("api.example.com", 80, "POST", "/repos/a").verdict,
            Verdict::Deny(DenyReason::HttpRequest {
                method: "POST".into(),
                path: "/repos/a".into()
            })
        );
        assert!(!r.request("api.example.com", 80, "GET", "/user").allowed());
        for sneaky in [
            "/repos/../admin",
            "/repos/%2e%2e/admin",
            "/repos/a%2Fb",
            "/repos//x",
            "/repos/.\\x",
        ] {
            assert!(
                !r.request("api.example.com", 80, "GET", sneaky).allowed(),
                "{sneaky}"
            );
        }
        assert!(
            r.request("api.example.com", 80, "GET", "/repos/").allowed(),
            "a trailing slash is fine"
        );
        assert_eq!(
            r.connect(Destination::Name("api.example.com"), 443, true)
                .verdict,
            Verdict::Deny(DenyReason::TunnelNeedsHttpCheck {
                rule: "read-repos".into()
            })
        );
        assert!(
            r.connect(Destination::Name("api.example.com"), 443, false)
                .allowed()
        );
    }

    #[test]
    fn audit_mode_allows_and_records_what_enforce_would_deny() {
        let r = rules(EgressMode::Audit, vec![rule(&["a.test"], &[], &[])]);
        let d = r.connect(Destination::Name("b.test"), 443, true);
        assert!(d.allowed());
        assert!(matches!(d.audited, Some(DenyReason::NoRule { .. })));
        assert!(r.resolves("b.test"));
        let d = r.connect(Destination::Name("a.test"), 443, true);
        assert_eq!(d.audited, None);
    }

    #[test]
    fn the_meet_allows_only_what_both_allow_and_takes_the_tighter_limits() {
        let template = EgressRules::compile(&EgressPolicy {
            mode: Some(EgressMode::Audit),
            rules: vec![rule(&["*.example.com"], &[], &[])],
            limits: Some(EgressLimits {
                bytes: Some(100),
                requests: None,
            }),
        })
        .expect("template");
        let claim = EgressRules::compile(&EgressPolicy {
            mode: None,
            rules: vec![rule(&["api.example.com", "other.test"], &[], &[443])],
            limits: Some(EgressLimits {
                bytes: Some(500),
                requests: Some(3),
            }),
        })
        .expect("claim");
        let both = template.meet(claim);
        assert!(
            both.connect(Destination::Name("api.example.com"), 443, true)
                .allowed()
        );
        assert!(
            !both
                .connect(Destination::Name("www.example.com"), 443, true)
                .allowed()
        );
        assert!(
            !both
                .connect(Destination::Name("other.test"), 443, true)
                .allowed()
        );
        assert_eq!(both.mode(), EgressMode::Enforce);
        assert_eq!(
            both.limits(),
            EgressLimits {
                bytes: Some(100),
                requests: Some(3)
            }
        );
        assert!(both.resolves("api.example.com"));
        assert!(!both.resolves("other.test"));
    }
}
