//! `paddock token`: mints upstream's scoped tokens, which let their holder reach one sandbox
//! through the router contract and nothing else: v1 (HMAC over a shared secret, bound to the
//! sandbox) or v2 (Ed25519, bound to the sandbox's UID, one port, method and path), and makes
//! v2 key pairs (`paddock token keygen`).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use paddock_gateway::auth::{Scope, ScopedTokens};
use paddock_gateway::scoped_v2::{SigningKeyFile, TargetClaims};

use crate::cmd::client::{ClientArgs, explain};

/// Flags of `paddock token`.
#[derive(Debug, Clone, clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct TokenArgs {
    /// `keygen`: make a v2 key pair.
    #[command(subcommand)]
    pub command: Option<TokenCommand>,
    /// The sandbox the token is for (its Sandbox name, as in X-Sandbox-ID).
    pub sandbox: Option<String>,
    /// How long the token is valid: seconds, or a number with s, m, h or d (30m, 12h, 7d).
    #[arg(long, default_value = "1h", value_parser = parse_ttl)]
    pub ttl: u64,
    /// v1: the HMAC secret (at least 32 bytes) that `paddock serve` or `paddock gateway` was
    /// given with --scoped-token-secret-file.
    #[arg(long, env = "PADDOCK_SCOPED_TOKEN_SECRET_FILE", value_name = "PATH")]
    pub secret_file: Option<PathBuf>,
    /// v2: mint here with this signing key (from `paddock token keygen`); needs --uid.
    #[arg(long, value_name = "PATH", conflicts_with = "secret_file")]
    pub signing_key_file: Option<PathBuf>,
    /// v2: ask the server (`paddock serve` or a gateway started with
    /// --scoped-token-signing-key-file) to mint it; it looks the sandbox's UID up.
    #[arg(long, conflicts_with_all = ["secret_file", "signing_key_file"])]
    pub server: bool,
    /// v2: the Sandbox's UID (`kubectl get sandbox NAME -o jsonpath={.metadata.uid}`).
    #[arg(long, requires = "signing_key_file")]
    pub uid: Option<String>,
    /// v2: the port inside the sandbox (as X-Sandbox-Port).
    #[arg(long, default_value_t = 8888)]
    pub port: u16,
    /// v2: the HTTP method the token allows.
    #[arg(long, default_value = "GET")]
    pub method: String,
    /// v2: the exact path the token allows (no prefixes or wildcards).
    #[arg(long, default_value = "/")]
    pub path: String,
    /// Server, token and namespace (`-n`).
    #[command(flatten)]
    pub client: ClientArgs,
}

/// `paddock token` subcommands.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum TokenCommand {
    /// Make a v2 key pair: a signing key for the issuer (secret, mode 0600) and the
    /// verification-keys JSON routers read (`--authz-scoped-token-verification-keys-file`).
    Keygen {
        /// The key id (1-128 of A-Z a-z 0-9 _ -); a new one per rotation.
        #[arg(long, default_value = "k1")]
        kid: String,
        /// Where the signing key goes (refused if it exists).
        #[arg(long, value_name = "PATH")]
        signing_key_file: PathBuf,
        /// Where the public verification keys go.
        #[arg(long, value_name = "PATH")]
        verification_keys_file: PathBuf,
    },
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

fn expiry(ttl: u64) -> Result<i64> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .context("the clock is before 1970")?
        .as_secs();
    i64::try_from(now.saturating_add(ttl)).context("--ttl is too long")
}

fn keygen(kid: &str, signing: &std::path::Path, verification: &std::path::Path) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let key = SigningKeyFile::generate(kid)?;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(signing)
        .with_context(|| format!("creating {} (it must not exist)", signing.display()))?;
    file.write_all(key.to_json().as_bytes())?;
    std::fs::write(verification, key.verification_json())
        .with_context(|| format!("writing {}", verification.display()))?;
    eprintln!(
        "signing key {kid:?} in {} (keep it secret); public keys in {}",
        signing.display(),
        verification.display()
    );
    Ok(())
}

/// Prints a token for the sandbox, or makes a key pair.
pub async fn run(args: &TokenArgs) -> Result<ExitCode> {
    if let Some(TokenCommand::Keygen {
        kid,
        signing_key_file,
        verification_keys_file,
    }) = &args.command
    {
        keygen(kid, signing_key_file, verification_keys_file)?;
        return Ok(ExitCode::SUCCESS);
    }
    let Some(sandbox) = args.sandbox.as_deref().filter(|s| !s.is_empty()) else {
        bail!("name the sandbox: paddock token SANDBOX (or paddock token keygen)");
    };
    let namespace = args.client.namespace.as_str();
    if namespace.is_empty() {
        bail!("the namespace must not be empty");
    }
    let token = if args.server {
        let client = args.client.connect()?;
        let minted = client
            .sandbox(sandbox, namespace)
            .mint_token(&paddock_wire::MintToken {
                port: Some(args.port),
                method: Some(args.method.clone()),
                path: Some(args.path.clone()),
                ttl_seconds: Some(args.ttl),
            })
            .await
            .map_err(explain)?;
        minted.token
    } else if let Some(path) = &args.signing_key_file {
        let Some(uid) = args.uid.clone() else {
            bail!(
                "a v2 token is bound to the Sandbox's UID: pass --uid (kubectl get sandbox {sandbox} -o jsonpath={{.metadata.uid}}), or --server to have the server look it up"
            );
        };
        let text = std::fs::read(path)
            .with_context(|| format!("reading the signing key {}", path.display()))?;
        let key = SigningKeyFile::from_json(&text)
            .with_context(|| format!("the signing key in {}", path.display()))?;
        key.mint(&TargetClaims {
            ns: namespace.to_owned(),
            name: sandbox.to_owned(),
            uid,
            port: args.port,
            method: args.method.clone(),
            path: args.path.clone(),
            exp: expiry(args.ttl)?,
        })?
    } else if let Some(path) = &args.secret_file {
        let secret = std::fs::read(path)
            .with_context(|| format!("reading the secret {}", path.display()))?;
        let tokens = ScopedTokens::new(&secret)
            .with_context(|| format!("the secret in {}", path.display()))?;
        tokens.mint(&Scope {
            ns: namespace.to_owned(),
            name: sandbox.to_owned(),
            exp: expiry(args.ttl)?,
        })
    } else {
        bail!(
            "say how to mint: --secret-file (v1, HMAC), --signing-key-file with --uid (v2, here) or --server (v2, by the server)"
        );
    };
    println!("{token}");
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
