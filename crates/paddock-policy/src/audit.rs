//! A tamper-evident record of decisions: each line of a sandbox's audit log is a JSON object
//! carrying the SHA-256 of the line before it, so changing, removing, reordering or inserting a
//! line breaks the chain at that line ([`verify`]). Pure: the writer lives with each tier.

use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

/// The hash the first line of a log chains to.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// One decision to record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditEvent {
    /// When (RFC 3339).
    pub time: String,
    /// `namespace/name` of the sandbox.
    pub sandbox: String,
    /// `allow`, `deny`, `hold`, `approve`, `budget`, ...
    pub decision: String,
    /// What was decided about (`egress`, `exec`, `files`, `api`).
    pub kind: String,
    /// The subject (a host and port, a program, a path, an operation).
    pub subject: String,
    /// The rule or the reason.
    pub detail: String,
}

fn hash_of(body: &Map<String, Value>) -> String {
    // serde_json's map keeps insertion order (preserve_order): the body is always built in
    // the same order, so its text is canonical.
    let text = serde_json::to_string(body).unwrap_or_default();
    Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn body(seq: u64, prev: &str, event: &AuditEvent) -> Map<String, Value> {
    let Value::Object(map) = json!({
        "seq": seq,
        "time": event.time,
        "sandbox": event.sandbox,
        "decision": event.decision,
        "kind": event.kind,
        "subject": event.subject,
        "detail": event.detail,
        "prev": prev,
    }) else {
        unreachable!("a JSON object literal is an object")
    };
    map
}

/// The line recording `event` after a line whose hash is `prev` (`GENESIS` for the first), as
/// number `seq` (from 1), and its own hash (what the next line chains to).
pub fn line(seq: u64, prev: &str, event: &AuditEvent) -> (String, String) {
    let mut map = body(seq, prev, event);
    let hash = hash_of(&map);
    map.insert("hash".into(), Value::String(hash.clone()));
    (Value::Object(map).to_string(), hash)
}

/// Where a log stops being what was written.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("line {line}: {reason}")]
pub struct AuditBreak {
    /// The line (from 1) where the chain breaks.
    pub line: usize,
    /// What is wrong there.
    pub reason: String,
}

/// Checks a whole log; the number of lines when the chain holds.
///
/// # Errors
/// The first line that is not JSON, does not hash to its `hash`, does not chain to the line
/// before, or is out of sequence (a line removed or inserted).
pub fn verify(text: &str) -> Result<usize, AuditBreak> {
    let mut prev = GENESIS.to_owned();
    let mut count = 0usize;
    for (i, raw) in text.lines().enumerate() {
        let n = i + 1;
        let broken = |reason: String| AuditBreak { line: n, reason };
        let Ok(Value::Object(mut map)) = serde_json::from_str::<Value>(raw) else {
            return Err(broken("not a JSON object".into()));
        };
        // Exactly as written: a duplicated key, an added field or other spacing would let two
        // readers see two different lines under one hash.
        if serde_json::to_string(&map).ok().as_deref() != Some(raw) {
            return Err(broken(
                "is not as the log writes it (duplicate or extra fields?)".into(),
            ));
        }
        let Some(Value::String(hash)) = map.remove("hash") else {
            return Err(broken("no hash".into()));
        };
        if map.get("prev").and_then(Value::as_str) != Some(prev.as_str()) {
            return Err(broken(
                "does not chain to the line before it (a line was removed, inserted or reordered)"
                    .into(),
            ));
        }
        if map.get("seq").and_then(Value::as_u64) != Some(u64::try_from(n).unwrap_or(u64::MAX)) {
            return Err(broken(format!("is out of sequence (expected seq {n})")));
        }
        if hash_of(&map) != hash {
            return Err(broken(
                "was changed after it was written (its hash does not match)".into(),
            ));
        }
        prev = hash;
        count = n;
    }
    Ok(count)
}

/// Checks a log and its head (`"<lines> <hash>"`, what the writer last appended): a log that
/// verifies but ends before its head lost its newest lines.
///
/// # Errors
/// As [`verify`], or the log and its head disagree.
pub fn verify_with_head(text: &str, head: &str) -> Result<usize, AuditBreak> {
    let (count, last) = tail(text)?;
    let mut parts = head.split_whitespace();
    let (Some(lines), Some(hash)) = (
        parts.next().and_then(|n| n.parse::<u64>().ok()),
        parts.next(),
    ) else {
        return Err(AuditBreak {
            line: 0,
            reason: "the head file is not \"<lines> <hash>\"".into(),
        });
    };
    if lines != count || hash != last {
        return Err(AuditBreak {
            line: usize::try_from(count.min(lines)).unwrap_or(usize::MAX) + 1,
            reason: format!(
                "the log has {count} lines but its head says {lines}: lines were removed from its end (or the head was changed)"
            ),
        });
    }
    Ok(usize::try_from(count).unwrap_or(usize::MAX))
}

/// The hash and number of the last line of a log that verifies, to append after it.
///
/// # Errors
/// The log does not verify.
pub fn tail(text: &str) -> Result<(u64, String), AuditBreak> {
    let count = verify(text)?;
    let last = text
        .lines()
        .last()
        .and_then(|l| serde_json::from_str::<Value>(l).ok())
        .and_then(|v| v.get("hash").and_then(Value::as_str).map(str::to_owned))
        .unwrap_or_else(|| GENESIS.to_owned());
    Ok((u64::try_from(count).unwrap_or(u64::MAX), last))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(subject: &str) -> AuditEvent {
        AuditEvent {
            time: "2026-12-08T00:00:00Z".into(),
            sandbox: "default/sb".into(),
            decision: "deny".into(),
            kind: "exec".into(),
            subject: subject.into(),
            detail: "no rule".into(),
        }
    }

    fn log(n: usize) -> Vec<String> {
        let mut prev = GENESIS.to_owned();
        (1..=n)
            .map(|i| {
                let (l, h) = line(i as u64, &prev, &event(&format!("prog{i}")));
                prev = h;
                l
            })
            .collect()
    }

    #[test]
    fn an_untouched_log_verifies_and_its_tail_continues_it() {
        let lines = log(4);
        let text = lines.join("\n") + "\n";
        assert_eq!(verify(&text), Ok(4));
        let (seq, prev) = tail(&text).expect("tail");
        let (next, _) = line(seq + 1, &prev, &event("more"));
        assert_eq!(verify(&format!("{text}{next}\n")), Ok(5));
        assert_eq!(verify(""), Ok(0));
    }

    #[test]
    fn a_changed_removed_reordered_or_forged_line_is_found() {
        let lines = log(4);
        let changed = lines.join("\n").replacen("prog2", "progX", 1);
        assert_eq!(verify(&changed).expect_err("changed").line, 2);
        let mut removed = lines.clone();
        removed.remove(1);
        assert_eq!(verify(&removed.join("\n")).expect_err("removed").line, 2);
        let mut swapped = lines.clone();
        swapped.swap(1, 2);
        assert_eq!(verify(&swapped.join("\n")).expect_err("reordered").line, 2);
        let mut truncated_tail = lines.clone();
        truncated_tail.truncate(3);
        assert_eq!(
            verify(&truncated_tail.join("\n")),
            Ok(3),
            "dropping the newest lines is not detectable from the log alone"
        );
        let forged = lines[..3].join("\n") + "\n" + &line(4, GENESIS, &event("forged")).0;
        assert_eq!(verify(&forged).expect_err("forged").line, 4);
        assert_eq!(verify("{oops").expect_err("not json").line, 1);
        let duplicated = lines[0].replacen(
            r#""decision":"deny""#,
            r#""decision":"allow","decision":"deny""#,
            1,
        );
        assert_eq!(verify(&duplicated).expect_err("duplicate key").line, 1);
    }

    #[test]
    fn the_head_catches_lines_removed_from_the_end() {
        let lines = log(4);
        let text = lines.join("\n");
        let (n, last) = tail(&text).expect("tail");
        let head = format!("{n} {last}");
        assert_eq!(verify_with_head(&text, &head), Ok(4));
        let truncated = lines[..3].join("\n");
        let err = verify_with_head(&truncated, &head).expect_err("truncated");
        assert!(
            err.reason.contains("lines were removed from its end"),
            "{err}"
        );
    }
}
