//! The gateway's side of a sandbox's permissions (`spec.permissions` of its SandboxPolicies,
//! `docs/safety.md`): before an API call reaches the sandbox's agent, what it would do is
//! checked — the API operation, the program an exec runs, the path a file call reads or
//! writes. `never` refuses; `ask` refuses too, saying an approval is needed (approvals are
//! not built yet).

use paddock_api::policy::Level;
use paddock_backend::{ApiError, Code};
use paddock_policy::{Capability, PermissionRules};

/// As [`require`], recording each decision in the sandbox's audit log (through the backend)
/// when a policy governs the sandbox's permissions.
///
/// # Errors
/// As [`require`].
pub fn decide(
    backend: &dyn paddock_backend::Backend,
    sandbox: (&str, &str),
    rules: &PermissionRules,
    caps: &[Capability<'_>],
) -> Result<(), ApiError> {
    let outcome = require(rules, caps);
    if !rules.is_unrestricted() {
        for cap in caps {
            let level = rules.level(*cap);
            let decision = match level {
                Level::Always => "allow",
                Level::Ask => "hold",
                Level::Never => "deny",
            };
            let (kind, subject) = match cap {
                Capability::Exec { program, .. } => ("exec", (*program).to_owned()),
                Capability::Read(p) => ("files-read", (*p).to_owned()),
                Capability::Write(p) => ("files-write", (*p).to_owned()),
                Capability::Api(op) => ("api", format!("{op:?}").to_lowercase()),
            };
            backend.audit(paddock_policy::audit::AuditEvent {
                time: jiff::Timestamp::now().to_string(),
                sandbox: format!("{}/{}", sandbox.0, sandbox.1),
                decision: decision.to_owned(),
                kind: kind.to_owned(),
                subject,
                detail: format!("permission level {level:?}").to_lowercase(),
            });
            if level != Level::Always {
                break;
            }
        }
    }
    outcome
}

/// Refuses unless every capability is granted `always`.
///
/// # Errors
/// `PERMISSION_DENIED` naming the capability and the level.
pub fn require(rules: &PermissionRules, caps: &[Capability<'_>]) -> Result<(), ApiError> {
    for cap in caps {
        match rules.level(*cap) {
            Level::Always => {}
            Level::Never => {
                return Err(ApiError::new(
                    Code::PermissionDenied,
                    format!("the sandbox's SandboxPolicy does not allow {cap}"),
                ));
            }
            Level::Ask => {
                return Err(ApiError::new(
                    Code::PermissionDenied,
                    format!(
                        "the sandbox's SandboxPolicy holds {cap} for a person's approval (level ask), and approvals are not built yet: grant it always, or never"
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// The program a process request runs: its argv[0], or the shell for a command string; asked
/// only when the policy limits programs.
pub fn program_of(body: &[u8]) -> Result<String, ApiError> {
    let req: paddock_wire::ProcessRequest = serde_json::from_slice(body)
        .map_err(|e| ApiError::invalid(format!("invalid process request: {e}")))?;
    // A PATH of the request's own would decide which file a program name runs.
    if req.env.contains_key("PATH") {
        return Err(ApiError::new(
            Code::PermissionDenied,
            "the sandbox's SandboxPolicy limits which programs run, so a request may not set PATH: name the program by its absolute path",
        ));
    }
    match (req.argv.as_deref(), req.command.as_deref()) {
        (Some([first, ..]), _) => Ok(first.clone()),
        (_, Some(_)) => Ok("sh".to_owned()),
        _ => Err(ApiError::invalid("a process request needs argv or command")),
    }
}
