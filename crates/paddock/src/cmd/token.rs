//! `paddock token`: mints upstream's scoped tokens, which let their holder reach one sandbox
//! through the router contract and nothing else.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use paddock_gateway::auth::{Scope, ScopedTokens};

/// Flags of `paddock token`.
#[derive(Debug, Clone, clap::Args)]
pub struct TokenArgs {
    /// The sandbox the token is for (its Sandbox name, as in X-Sandbox-ID).
    pub sandbox: String,
    /// The sandbox's namespace.
    #[arg(short, long, default_value = "default")]
    pub namespace: String,
    /// How long the token is valid: seconds, or a number with s, m, h or d (30m, 12h, 7d).
    #[arg(long, default_value = "1h", value_parser = parse_ttl)]
    pub ttl: u64,
    /// The HMAC secret (at least 32 bytes) that `paddock serve` or `paddock gateway` was given
    /// with --scoped-token-secret-file.
    #[arg(long, env = "PADDOCK_SCOPED_TOKEN_SECRET_FILE", value_name = "PATH")]
    pub secret_file: PathBuf,
}

/// Parses `90`, `90s`, `30m`, `12h` or `7d` into seconds.
fn parse_ttl(s: &str) -> Result<u64, String> {
    let (digits, unit) = match s.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("{s:?} is not a duration: use seconds or 30m, 12h, 7d"))?;
    let unit = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        other => return Err(format!("unknown unit {other:?} in {s:?}: use s, m, h or d")),
    };
    match n.checked_mul(unit) {
        Some(0) => Err("a token valid for 0 seconds is never valid".to_owned()),
        Some(secs) => Ok(secs),
        None => Err(format!("{s:?} is too long")),
    }
}

/// Prints a token for the sandbox.
pub fn run(args: &TokenArgs) -> Result<ExitCode> {
    if args.sandbox.is_empty() || args.namespace.is_empty() {
        bail!("the sandbox and namespace must not be empty");
    }
    let secret = std::fs::read(&args.secret_file)
        .with_context(|| format!("reading the secret {}", args.secret_file.display()))?;
    let tokens = ScopedTokens::new(&secret)
        .with_context(|| format!("the secret in {}", args.secret_file.display()))?;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .context("the clock is before 1970")?
        .as_secs();
    let exp = i64::try_from(now.saturating_add(args.ttl)).context("--ttl is too long")?;
    println!(
        "{}",
        tokens.mint(&Scope {
            ns: args.namespace.clone(),
            name: args.sandbox.clone(),
            exp,
        })
    );
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::parse_ttl;

    #[test]
    fn ttl_takes_seconds_or_a_unit_and_names_what_is_wrong() {
        assert_eq!(parse_ttl("90"), Ok(90));
        assert_eq!(parse_ttl("30m"), Ok(1800));
        assert_eq!(parse_ttl("12h"), Ok(43_200));
        assert_eq!(parse_ttl("7d"), Ok(604_800));
        assert!(parse_ttl("1w").unwrap_err().contains("unknown unit \"w\""));
        assert!(parse_ttl("soon").unwrap_err().contains("not a duration"));
        assert!(parse_ttl("0").is_err());
    }
}
