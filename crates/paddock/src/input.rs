//! Reading `-f` arguments: files, directories of manifests, and standard input.

use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

/// Input larger than this is refused rather than read into memory.
const MAX_INPUT_BYTES: u64 = 64 * 1024 * 1024;

/// One source of manifests: a display name and its text.
#[derive(Debug)]
pub struct Source {
    /// The path as given, or `<stdin>`.
    pub name: String,
    /// The whole text.
    pub text: String,
}

/// Expands `-f` arguments into sources, in order: a directory contributes its `*.yaml`,
/// `*.yml` and `*.json` files sorted by name.
pub fn read_sources(args: &[PathBuf]) -> Result<Vec<Source>> {
    let mut sources = Vec::new();
    for arg in args {
        if arg.as_os_str() == "-" {
            let mut text = String::new();
            std::io::stdin()
                .take(MAX_INPUT_BYTES + 1)
                .read_to_string(&mut text)
                .context("reading standard input (is it UTF-8 text?)")?;
            if text.len() as u64 > MAX_INPUT_BYTES {
                bail!(
                    "standard input is larger than {} MiB",
                    MAX_INPUT_BYTES / 1024 / 1024
                );
            }
            sources.push(Source {
                name: "<stdin>".to_owned(),
                text,
            });
        } else if arg.is_dir() {
            let mut files: Vec<PathBuf> = std::fs::read_dir(arg)
                .with_context(|| format!("reading directory {}", arg.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| {
                    p.is_file()
                        && matches!(
                            p.extension().and_then(|e| e.to_str()),
                            Some("yaml" | "yml" | "json")
                        )
                })
                .collect();
            files.sort();
            if files.is_empty() {
                bail!("{} holds no *.yaml, *.yml or *.json files", arg.display());
            }
            for file in files {
                sources.push(read_file(&file)?);
            }
        } else {
            sources.push(read_file(arg)?);
        }
    }
    Ok(sources)
}

fn read_file(path: &Path) -> Result<Source> {
    let meta =
        std::fs::metadata(path).with_context(|| format!("cannot read {}", path.display()))?;
    if meta.len() > MAX_INPUT_BYTES {
        bail!(
            "{} is larger than {} MiB",
            path.display(),
            MAX_INPUT_BYTES / 1024 / 1024
        );
    }
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read {} as UTF-8 text", path.display()))?;
    Ok(Source {
        name: path.display().to_string(),
        text,
    })
}
