//! Permissions as a lattice: every policy maps each capability (run a program, read or write a
//! path, an API operation) to a [`Level`] — `never` < `ask` < `always`. Policies that apply
//! together grant the pointwise minimum (their meet), so adding a policy (a claim's, a
//! delegated token's) can only narrow. The laws are property-tested below.

use std::fmt;

use paddock_api::policy::{ApiPermissions, Level, PathPermission, Permissions};

/// An operation on a sandbox through the API.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ApiOp {
    /// Creating it.
    Create,
    /// Running commands.
    Exec,
    /// The files API.
    Files,
    /// Deleting it.
    Delete,
    /// Snapshotting it.
    Snapshot,
}

/// Something a policy grants or not.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Capability<'a> {
    /// Running a program: as asked for (`python3`, `/usr/bin/git`) and, when known, the
    /// absolute path it resolved to.
    Exec {
        /// The program as given.
        program: &'a str,
        /// Its resolved absolute path.
        resolved: Option<&'a str>,
    },
    /// Reading an absolute path.
    Read(&'a str),
    /// Writing an absolute path.
    Write(&'a str),
    /// An API operation.
    Api(ApiOp),
}

impl fmt::Display for Capability<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Capability::Exec { program, .. } => write!(f, "running {program}"),
            Capability::Read(p) => write!(f, "reading {p}"),
            Capability::Write(p) => write!(f, "writing {p}"),
            Capability::Api(op) => write!(f, "the {} operation", format!("{op:?}").to_lowercase()),
        }
    }
}

/// A path glob: `*` matches within one segment, `**` any number of whole segments.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Glob(Vec<String>);

impl Glob {
    fn parse(pattern: &str) -> Self {
        Glob(segments(pattern).map(str::to_owned).collect())
    }

    fn matches(&self, path: &str) -> bool {
        let path: Vec<&str> = segments(path).collect();
        match_segments(&self.0, &path)
    }
}

fn segments(path: &str) -> impl Iterator<Item = &str> {
    path.split('/').filter(|s| !s.is_empty() && *s != ".")
}

fn match_segments(pattern: &[String], path: &[&str]) -> bool {
    match pattern.split_first() {
        None => path.is_empty(),
        Some((first, rest)) if first == "**" => {
            (0..=path.len()).any(|skip| match_segments(rest, &path[skip..]))
        }
        Some((first, rest)) => match path.split_first() {
            Some((segment, path_rest)) => {
                match_segment(first.as_bytes(), segment.as_bytes())
                    && match_segments(rest, path_rest)
            }
            None => false,
        },
    }
}

fn match_segment(pattern: &[u8], text: &[u8]) -> bool {
    match pattern.split_first() {
        None => text.is_empty(),
        Some((b'*', rest)) => (0..=text.len()).any(|skip| match_segment(rest, &text[skip..])),
        Some((c, rest)) => text
            .split_first()
            .is_some_and(|(t, tr)| t == c && match_segment(rest, tr)),
    }
}

#[derive(Clone, Debug, PartialEq)]
struct PathRule {
    level: Level,
    globs: Vec<Glob>,
}

impl PathRule {
    fn compile(rule: Option<&PathPermission>) -> Self {
        let Some(rule) = rule else {
            return Self {
                level: Level::Always,
                globs: Vec::new(),
            };
        };
        Self {
            level: rule.level.unwrap_or(Level::Always),
            globs: rule.paths.iter().map(|p| Glob::parse(p)).collect(),
        }
    }

    fn level(&self, path: &str) -> Level {
        if path.split('/').any(|s| s == "..") {
            return Level::Never;
        }
        if self.globs.is_empty() || self.globs.iter().any(|g| g.matches(path)) {
            self.level
        } else {
            Level::Never
        }
    }
}

/// One policy's permissions, compiled.
#[derive(Clone, Debug, PartialEq)]
struct Layer {
    exec_level: Level,
    exec_allow: Vec<String>,
    exec_deny: Vec<String>,
    read: PathRule,
    write: PathRule,
    api: ApiPermissions,
}

/// A name entry matches a program asked for by that bare name (found on the sandbox's
/// PATH); an absolute entry matches that path. A program asked for by another path matches no
/// name entry, so `/tmp/x/python3` is not `python3`.
fn program_matches(entry: &str, program: &str, resolved: Option<&str>) -> bool {
    if entry.starts_with('/') {
        resolved == Some(entry) || program == entry
    } else {
        program == entry
    }
}

impl Layer {
    fn compile(p: &Permissions) -> Self {
        let exec = p.exec.clone().unwrap_or_default();
        let files = p.files.clone().unwrap_or_default();
        Self {
            exec_level: exec.level.unwrap_or(Level::Always),
            exec_allow: exec.allow,
            exec_deny: exec.deny,
            read: PathRule::compile(files.read.as_ref()),
            write: PathRule::compile(files.write.as_ref()),
            api: p.api.clone().unwrap_or_default(),
        }
    }

    fn level(&self, cap: Capability<'_>) -> Level {
        match cap {
            Capability::Exec { program, resolved } => {
                let named =
                    |list: &[String]| list.iter().any(|e| program_matches(e, program, resolved));
                let allowed = self.exec_allow.is_empty() || named(&self.exec_allow);
                if allowed && !named(&self.exec_deny) {
                    self.exec_level
                } else {
                    Level::Never
                }
            }
            Capability::Read(path) => self.read.level(path),
            // Writing needs what reading needs: a path one may not read may not be written.
            Capability::Write(path) => self.write.level(path).min(self.read.level(path)),
            Capability::Api(op) => match op {
                ApiOp::Create => self.api.create,
                ApiOp::Exec => self.api.exec,
                ApiOp::Files => self.api.files,
                ApiOp::Delete => self.api.delete,
                ApiOp::Snapshot => self.api.snapshot,
            }
            .unwrap_or(Level::Always),
        }
    }
}

/// The permissions a sandbox runs under: the meet of every policy that governs it.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct PermissionRules {
    layers: Vec<Layer>,
}

impl PermissionRules {
    /// No limit at all (the top of the lattice).
    pub fn unrestricted() -> Self {
        Self::default()
    }

    /// One policy's permissions.
    pub fn compile(p: &Permissions) -> Self {
        Self {
            layers: vec![Layer::compile(p)],
        }
    }

    /// What both grant (pointwise minimum).
    pub fn meet(mut self, other: PermissionRules) -> Self {
        self.layers.extend(other.layers);
        self
    }

    /// Whether any policy limits exec, files or the agent's API at all: requests that reach the
    /// agent by another way than paddock's REST API (upstream's router contract) cannot be
    /// checked one by one, so they are refused for such a sandbox.
    pub fn limits_agent(&self) -> bool {
        self.layers.iter().any(|l| {
            l.exec_level != Level::Always
                || !l.exec_allow.is_empty()
                || !l.exec_deny.is_empty()
                || l.read != PathRule::compile(None)
                || l.write != PathRule::compile(None)
                || l.api.exec.is_some_and(|v| v != Level::Always)
                || l.api.files.is_some_and(|v| v != Level::Always)
        })
    }

    /// Whether any policy limits which programs may run (a WebSocket start, whose program
    /// the gateway does not see, is then refused).
    pub fn limits_programs(&self) -> bool {
        self.layers.iter().any(|l| {
            l.exec_level != Level::Always || !l.exec_allow.is_empty() || !l.exec_deny.is_empty()
        })
    }

    /// Whether no policy contributes permissions (nothing is limited, nothing to record).
    pub fn is_unrestricted(&self) -> bool {
        self.layers.is_empty()
    }

    /// The level granted for `cap`.
    pub fn level(&self, cap: Capability<'_>) -> Level {
        self.layers
            .iter()
            .map(|l| l.level(cap))
            .min()
            .unwrap_or(Level::Always)
    }
}

#[cfg(test)]
mod tests {
    use paddock_api::policy::{ExecPermission, FilePermissions};
    use proptest::prelude::*;

    use super::*;

    fn exec(program: &str) -> Capability<'_> {
        Capability::Exec {
            program,
            resolved: None,
        }
    }

    #[test]
    fn globs_match_within_and_across_segments() {
        let g = Glob::parse("/workspace/**");
        assert!(g.matches("/workspace"));
        assert!(g.matches("/workspace/a/b.txt"));
        assert!(!g.matches("/workspaces/a"));
        let g = Glob::parse("/tmp/*.log");
        assert!(g.matches("/tmp/x.log"));
        assert!(!g.matches("/tmp/a/x.log"));
        assert!(Glob::parse("/**/secret").matches("/a/b/secret"));
    }

    #[test]
    fn programs_match_by_name_or_by_path_and_deny_wins() {
        let p = PermissionRules::compile(&Permissions {
            exec: Some(ExecPermission {
                level: None,
                allow: vec!["python3".into(), "/usr/bin/git".into(), "curl".into()],
                deny: vec!["curl".into()],
            }),
            ..Permissions::default()
        });
        assert_eq!(p.level(exec("python3")), Level::Always);
        assert_eq!(
            p.level(exec("/tmp/x/python3")),
            Level::Never,
            "a name entry is not any path ending in it"
        );
        assert_eq!(
            p.level(exec("/usr/bin/git")),
            Level::Always,
            "an absolute entry"
        );
        assert_eq!(
            p.level(Capability::Exec {
                program: "git",
                resolved: Some("/usr/bin/git")
            }),
            Level::Always
        );
        assert_eq!(
            p.level(Capability::Exec {
                program: "git",
                resolved: Some("/tmp/git")
            }),
            Level::Never
        );
        assert_eq!(p.level(exec("curl")), Level::Never, "deny wins over allow");
        assert_eq!(p.level(exec("bash")), Level::Never, "not allowed");
    }

    #[test]
    fn paths_outside_the_globs_and_dot_dot_are_never_and_writing_needs_reading() {
        let p = PermissionRules::compile(&Permissions {
            files: Some(FilePermissions {
                read: Some(PathPermission {
                    level: None,
                    paths: vec!["/workspace/**".into(), "/etc/**".into()],
                }),
                write: Some(PathPermission {
                    level: Some(Level::Ask),
                    paths: vec!["/workspace/**".into(), "/var/**".into()],
                }),
            }),
            ..Permissions::default()
        });
        assert_eq!(p.level(Capability::Read("/workspace/a")), Level::Always);
        assert_eq!(p.level(Capability::Read("/root/.ssh/id_rsa")), Level::Never);
        assert_eq!(
            p.level(Capability::Read("/workspace/../root/x")),
            Level::Never
        );
        assert_eq!(p.level(Capability::Write("/workspace/a")), Level::Ask);
        assert_eq!(p.level(Capability::Write("/etc/passwd")), Level::Never);
        assert_eq!(
            p.level(Capability::Write("/var/x")),
            Level::Never,
            "/var may not be read"
        );
    }

    fn arb_level() -> impl Strategy<Value = Option<Level>> {
        proptest::option::of(prop_oneof![
            Just(Level::Never),
            Just(Level::Ask),
            Just(Level::Always)
        ])
    }

    fn arb_permissions() -> impl Strategy<Value = PermissionRules> {
        let programs = vec!["python3", "/usr/bin/git", "curl", "sh"];
        let globs = vec!["/workspace/**", "/tmp/*", "/etc/**", "/**"];
        (
            arb_level(),
            proptest::sample::subsequence(programs.clone(), 0..3),
            proptest::sample::subsequence(programs, 0..2),
            arb_level(),
            proptest::sample::subsequence(globs.clone(), 0..3),
            arb_level(),
            proptest::sample::subsequence(globs, 0..3),
            (arb_level(), arb_level(), arb_level()),
            any::<bool>(),
        )
            .prop_map(|(el, allow, deny, rl, rp, wl, wp, (ae, af, ad), top)| {
                if top {
                    return PermissionRules::unrestricted();
                }
                let strings = |v: Vec<&str>| v.into_iter().map(String::from).collect();
                PermissionRules::compile(&Permissions {
                    exec: Some(ExecPermission {
                        level: el,
                        allow: strings(allow),
                        deny: strings(deny),
                    }),
                    files: Some(FilePermissions {
                        read: Some(PathPermission {
                            level: rl,
                            paths: strings(rp),
                        }),
                        write: Some(PathPermission {
                            level: wl,
                            paths: strings(wp),
                        }),
                    }),
                    api: Some(ApiPermissions {
                        exec: ae,
                        files: af,
                        delete: ad,
                        ..ApiPermissions::default()
                    }),
                })
            })
    }

    fn arb_capability() -> impl Strategy<Value = (u8, &'static str)> {
        (
            0u8..6,
            proptest::sample::select(vec![
                "python3",
                "/usr/bin/git",
                "curl",
                "bash",
                "/workspace/a/b",
                "/tmp/x",
                "/etc/passwd",
                "/root/k",
            ]),
        )
    }

    fn capability(kind: u8, s: &str) -> Capability<'_> {
        match kind {
            0 => exec(s),
            1 => Capability::Read(s),
            2 => Capability::Write(s),
            3 => Capability::Api(ApiOp::Exec),
            4 => Capability::Api(ApiOp::Files),
            _ => Capability::Api(ApiOp::Delete),
        }
    }

    proptest! {
        #[test]
        fn meet_is_the_pointwise_minimum_and_never_widens(a in arb_permissions(), b in arb_permissions(), (k, s) in arb_capability()) {
            let cap = capability(k, s);
            let both = a.clone().meet(b.clone()).level(cap);
            prop_assert_eq!(both, a.level(cap).min(b.level(cap)));
            prop_assert!(both <= a.level(cap) && both <= b.level(cap));
        }

        #[test]
        fn meet_is_commutative_associative_and_idempotent(a in arb_permissions(), b in arb_permissions(), c in arb_permissions(), (k, s) in arb_capability()) {
            let cap = capability(k, s);
            prop_assert_eq!(a.clone().meet(b.clone()).level(cap), b.clone().meet(a.clone()).level(cap));
            prop_assert_eq!(
                a.clone().meet(b.clone()).meet(c.clone()).level(cap),
                a.clone().meet(b.clone().meet(c)).level(cap)
            );
            prop_assert_eq!(a.clone().meet(a.clone()).level(cap), a.level(cap));
        }

        #[test]
        fn unrestricted_is_the_top(a in arb_permissions(), (k, s) in arb_capability()) {
            let cap = capability(k, s);
            prop_assert_eq!(a.clone().meet(PermissionRules::unrestricted()).level(cap), a.level(cap));
            prop_assert_eq!(PermissionRules::unrestricted().level(cap), Level::Always);
        }
    }
}
