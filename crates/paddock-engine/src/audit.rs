//! Each Sandbox's audit log on this host: `$PADDOCK_HOME/audit/<namespace>/<name>.jsonl`, one
//! hash-chained line per decision (`paddock_policy::audit`), and beside it `<name>.head` with
//! the newest line's number and hash, so that dropping the newest lines is noticed too.
//! `paddock audit verify` checks both. Lines are appended without an fsync each (decisions are
//! on the request path); the page cache writes them out.

use std::collections::HashMap;
use std::io::Write as _;
use std::path::PathBuf;
use std::sync::Mutex;

use paddock_policy::audit::{AuditEvent, GENESIS, line, tail};

#[derive(Debug)]
struct Open {
    file: std::fs::File,
    /// The head file, rewritten in place (fixed width) after each line.
    head: std::fs::File,
    seq: u64,
    prev: String,
}

/// The audit logs of the engine's Sandboxes.
#[derive(Debug)]
pub struct AuditLogs {
    dir: PathBuf,
    open: Mutex<HashMap<String, Open>>,
}

impl AuditLogs {
    /// Logs under `dir` (`$PADDOCK_HOME/audit`).
    pub fn new(dir: PathBuf) -> Self {
        Self {
            dir,
            open: Mutex::new(HashMap::new()),
        }
    }

    /// The log of `namespace/name`.
    pub fn path(&self, namespace: &str, name: &str) -> PathBuf {
        self.dir.join(namespace).join(format!("{name}.jsonl"))
    }

    fn open(&self, namespace: &str, name: &str) -> std::io::Result<Open> {
        let path = self.path(namespace, name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let existing = std::fs::read_to_string(&path).unwrap_or_default();
        let head = std::fs::read_to_string(path.with_extension("head")).ok();
        // The log must agree with its head, or lines were lost from its end (or it is gone).
        let checked = match &head {
            Some(h) => {
                paddock_policy::audit::verify_with_head(&existing, h).and_then(|_| tail(&existing))
            }
            None => tail(&existing),
        };
        let (seq, prev) = match checked {
            Ok(t) => t,
            Err(broken) => {
                // A log that no longer verifies is kept as evidence; a new chain starts.
                let kept = path.with_extension(format!(
                    "broken-{}.jsonl",
                    jiff::Timestamp::now().as_second()
                ));
                tracing::warn!(log = %path.display(), %broken, kept = %kept.display(), "an audit log does not verify; starting a new one");
                if path.exists() {
                    std::fs::rename(&path, &kept)?;
                }
                (0, GENESIS.to_owned())
            }
        };
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)?;
        let head = std::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(false)
            .open(path.with_extension("head"))?;
        Ok(Open {
            file,
            head,
            seq,
            prev,
        })
    }

    /// Appends a decision to its sandbox's log. A failure is logged, never raised: the
    /// decision itself has been made.
    pub fn record(&self, event: &AuditEvent) {
        let (namespace, name) = event
            .sandbox
            .split_once('/')
            .unwrap_or(("default", event.sandbox.as_str()));
        let mut open = self
            .open
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if !open.contains_key(&event.sandbox) {
            match self.open(namespace, name) {
                Ok(o) => {
                    open.insert(event.sandbox.clone(), o);
                }
                Err(e) => {
                    tracing::warn!(sandbox = %event.sandbox, error = %e, "cannot open the audit log");
                    return;
                }
            }
        }
        let Some(log) = open.get_mut(&event.sandbox) else {
            return;
        };
        let (text, hash) = line(log.seq + 1, &log.prev, event);
        let written = log
            .file
            .write_all(format!("{text}\n").as_bytes())
            .and_then(|()| {
                // Fixed width, so rewriting it in place never leaves a longer old tail.
                use std::os::unix::fs::FileExt as _;
                log.head
                    .write_all_at(format!("{:020} {hash}\n", log.seq + 1).as_bytes(), 0)
            });
        match written {
            Ok(()) => {
                log.seq += 1;
                log.prev = hash;
            }
            Err(e) => {
                tracing::warn!(sandbox = %event.sandbox, error = %e, "cannot append to the audit log")
            }
        }
    }

    /// Forgets an open log (its sandbox is gone); the file stays.
    pub fn close(&self, sandbox: &str) {
        self.open
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(sandbox);
    }
}

/// The audit event of an egress record.
pub fn egress_event(sandbox: &str, r: &paddock_backend::EgressRecord) -> AuditEvent {
    let decision = match (r.allowed, r.audited) {
        (true, false) => "allow",
        (true, true) => "allow-audited",
        (false, _) => "deny",
    };
    let kind = match r.kind {
        paddock_backend::EgressKind::Connect => "egress-connect",
        paddock_backend::EgressKind::Http => "egress-http",
        paddock_backend::EgressKind::Dns => "egress-dns",
    };
    let subject = match (&r.method, &r.path) {
        (Some(m), Some(p)) => format!("{m} {}:{}{p}", r.host, r.port),
        _ => format!("{}:{}", r.host, r.port),
    };
    let mut detail = r
        .rule
        .clone()
        .filter(|_| !r.audited)
        .or_else(|| r.reason.clone())
        .unwrap_or_default();
    if !r.credentials.is_empty() {
        detail.push_str(&format!(" (credentials: {})", r.credentials.join(", ")));
    }
    AuditEvent {
        time: r.time.clone(),
        sandbox: sandbox.to_owned(),
        decision: decision.to_owned(),
        kind: kind.to_owned(),
        subject,
        detail,
    }
}
