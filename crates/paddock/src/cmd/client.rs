//! What the client subcommands share: where the server is, how to authenticate, which
//! namespace, and how to explain a failure.

use anyhow::Result;
use paddock_client::{Client, ErrorCode};

/// Flags of every subcommand that talks to a server.
#[derive(Debug, Clone, clap::Args)]
pub struct ClientArgs {
    /// The paddock server (paddock serve, or a gateway).
    #[arg(long, env = "PADDOCK_URL", default_value = paddock_client::DEFAULT_URL, global = true)]
    pub url: String,
    /// Bearer token; by default the one paddock serve keeps in $PADDOCK_HOME/token.
    #[arg(long, env = "PADDOCK_TOKEN", hide_env_values = true, global = true)]
    pub token: Option<String>,
    /// Namespace of the objects.
    #[arg(short = 'n', long, default_value = "default", global = true)]
    pub namespace: String,
}

impl ClientArgs {
    /// The client for these flags.
    pub fn connect(&self) -> Result<Client> {
        let token = self.token.clone().or_else(|| {
            let path = paddock_client::client::default_home()?.join("token");
            std::fs::read_to_string(path)
                .ok()
                .map(|t| t.trim().to_owned())
                .filter(|t| !t.is_empty())
        });
        Ok(Client::new(&self.url, token)?)
    }
}

/// Turns an SDK error into a message that says what to do.
pub fn explain(e: paddock_client::Error) -> anyhow::Error {
    let hint = match e.code {
        ErrorCode::Unauthenticated => {
            "\nhint: paddock serve keeps its token in $PADDOCK_HOME/token (/var/lib/paddock/token as root); pass --token or set PADDOCK_TOKEN"
        }
        _ => "",
    };
    let mut message = format!("{}{hint}", e.message);
    if let Some(serde_json::Value::Array(details)) = &e.details {
        for d in details {
            if let Some(m) = d.get("message").and_then(serde_json::Value::as_str) {
                let path = d
                    .get("path")
                    .and_then(serde_json::Value::as_str)
                    .unwrap_or("");
                message.push_str(&format!("\n  {path}: {m}"));
            }
        }
    }
    anyhow::anyhow!(message)
}
