//! `paddock pull`: fetch an image into the server's cache, with a progress bar.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::process::ExitCode;

use anyhow::Result;
use paddock_client::{Client, ErrorCode};
use serde_json::Value;

use crate::cmd::client::{ClientArgs, explain};

const MIB: f64 = 1024.0 * 1024.0;

/// Draws one progress line on stderr (only when it is a terminal).
struct Bar {
    image: String,
    layers: BTreeMap<String, (u64, u64)>,
    tty: bool,
    drawn: bool,
}

impl Bar {
    fn update(&mut self, event: &Value) {
        let digest = event
            .get("digest")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned();
        let done = event.get("done").and_then(Value::as_u64).unwrap_or(0);
        let total = event.get("total").and_then(Value::as_u64).unwrap_or(0);
        self.layers.insert(digest, (done, total));
        if !self.tty {
            return;
        }
        let (done, total) = self
            .layers
            .values()
            .fold((0u64, 0u64), |(d, t), (ld, lt)| (d + ld, t + lt));
        let width = 30usize;
        let filled = if total == 0 {
            0
        } else {
            usize::try_from(
                (u128::from(done) * width as u128 / u128::from(total)).min(width as u128),
            )
            .unwrap_or(width)
        };
        let bar: String = "=".repeat(filled)
            + if filled < width { ">" } else { "" }
            + &" ".repeat(width.saturating_sub(filled + 1));
        #[allow(clippy::cast_precision_loss)]
        let (d, t) = (done as f64 / MIB, total as f64 / MIB);
        eprint!(
            "\r\x1b[2Kpulling {} [{bar}] {d:.1}/{t:.1} MiB, {} layers",
            self.image,
            self.layers.len()
        );
        let _ = std::io::stderr().flush();
        self.drawn = true;
    }

    fn finish(&self, ok: bool) {
        if self.drawn {
            eprintln!();
        }
        if ok && !self.layers.is_empty() {
            eprintln!("pulled {}", self.image);
        }
    }
}

/// Pulls `image` unless it is the built-in `host` image, drawing progress; a server that cannot
/// pull (a cluster) is left to pull on its own.
pub async fn pull_with_progress(client: &Client, image: &str) -> Result<()> {
    if image == "host" {
        return Ok(());
    }
    let mut bar = Bar {
        image: image.to_owned(),
        layers: BTreeMap::new(),
        tty: std::io::stderr().is_terminal(),
        drawn: false,
    };
    match client.pull_image(image, |e| bar.update(e)).await {
        Ok(_) => {
            bar.finish(true);
            Ok(())
        }
        Err(e) if e.code == ErrorCode::NotImplemented => Ok(()),
        Err(e) => {
            bar.finish(false);
            Err(explain(e))
        }
    }
}

/// `paddock pull IMAGE`.
pub async fn run(client_args: ClientArgs, image: String) -> Result<ExitCode> {
    let client = client_args.connect()?;
    pull_with_progress(&client, &image).await?;
    Ok(ExitCode::SUCCESS)
}
