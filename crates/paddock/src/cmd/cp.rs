//! `paddock cp`: copy files and directories between this host and a sandbox. Directories travel
//! as tar streams; nothing is held in memory whole.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use bytes::Bytes;

use crate::cmd::client::{ClientArgs, explain};

/// Flags of `paddock cp`.
#[derive(Debug, Clone, clap::Args)]
pub struct CpArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    /// Source: a host path, or SANDBOX:PATH.
    pub source: String,
    /// Destination: a host path, or SANDBOX:PATH.
    pub destination: String,
}

/// `SANDBOX:PATH` → (sandbox, path); a host path → None.
fn remote(spec: &str) -> Option<(&str, &str)> {
    if spec.starts_with('/') || spec.starts_with('.') {
        return None;
    }
    let (sandbox, path) = spec.split_once(':')?;
    (!sandbox.is_empty() && !sandbox.contains('/')).then_some((sandbox, path))
}

/// Copies.
pub async fn run(args: CpArgs) -> Result<ExitCode> {
    let client = args.client.connect()?;
    let ns = &args.client.namespace;
    match (remote(&args.source), remote(&args.destination)) {
        (Some(_), Some(_)) => {
            bail!("copy between two sandboxes is not supported; copy through this host")
        }
        (None, None) => bail!(
            "one side must be SANDBOX:PATH (e.g. paddock cp ./data my-sandbox:/workspace/data)"
        ),
        (None, Some((sandbox, path))) => {
            let sandbox = client.sandbox(sandbox, ns);
            let local = PathBuf::from(&args.source);
            let meta = std::fs::metadata(&local)
                .with_context(|| format!("{} does not exist", local.display()))?;
            if meta.is_dir() {
                let body = tar_stream(local.clone());
                sandbox.upload(path, true, body).await.map_err(explain)?;
            } else {
                let file = tokio::fs::File::open(&local)
                    .await
                    .with_context(|| format!("opening {}", local.display()))?;
                // Into a directory (`dev:/workspace/`, or one that exists), the file keeps its
                // name, as with cp.
                let into_dir = path.ends_with('/') || sandbox.list(path).await.is_ok();
                let target = match local.file_name() {
                    Some(file_name) if into_dir => format!(
                        "{}/{}",
                        path.trim_end_matches('/'),
                        file_name.to_string_lossy()
                    ),
                    _ => path.to_owned(),
                };
                let stream = tokio_util::io::ReaderStream::with_capacity(file, 256 * 1024);
                sandbox
                    .upload(&target, false, stream)
                    .await
                    .map_err(|e| explain(e).context(format!("copying to {target}")))?;
            }
        }
        (Some((name, path)), None) => {
            let sandbox = client.sandbox(name, ns);
            let local = PathBuf::from(&args.destination);
            let is_dir = sandbox.list(path).await.is_ok();
            let target = if !is_dir && local.is_dir() {
                local.join(Path::new(path).file_name().unwrap_or_default())
            } else {
                local.clone()
            };
            // Download beside the target first: a failed copy leaves what was there untouched.
            let parent = target
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or(Path::new("."));
            let partial = tempfile::Builder::new()
                .prefix(".paddock-cp-")
                .tempfile_in(parent)
                .with_context(|| format!("cannot write in {}", parent.display()))?;
            let mut file = tokio::fs::File::from_std(partial.reopen()?);
            sandbox
                .download(path, is_dir, &mut file)
                .await
                .map_err(|e| explain(e).context(format!("copying {name}:{path}")))?;
            file.sync_all().await?;
            drop(file);
            if is_dir {
                std::fs::create_dir_all(&target)
                    .with_context(|| format!("creating {}", target.display()))?;
                let mut archive = tar::Archive::new(std::fs::File::open(partial.path())?);
                archive.set_preserve_permissions(true);
                archive
                    .unpack(&target)
                    .with_context(|| format!("extracting into {}", target.display()))?;
            } else {
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(partial.path(), std::fs::Permissions::from_mode(0o644))?;
                partial
                    .persist(&target)
                    .with_context(|| format!("writing {}", target.display()))?;
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// A tar of `dir` (paths relative to it), produced on a blocking thread as it is read.
fn tar_stream(
    dir: PathBuf,
) -> impl futures_util::Stream<Item = std::io::Result<Bytes>> + Send + Sync + 'static {
    let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<Bytes>>(8);
    tokio::task::spawn_blocking(move || {
        struct ChannelWriter(tokio::sync::mpsc::Sender<std::io::Result<Bytes>>);
        impl std::io::Write for ChannelWriter {
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                self.0
                    .blocking_send(Ok(Bytes::copy_from_slice(buf)))
                    .map_err(|_| std::io::Error::other("upload cancelled"))?;
                Ok(buf.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let writer = std::io::BufWriter::with_capacity(256 * 1024, ChannelWriter(tx.clone()));
        let mut builder = tar::Builder::new(writer);
        builder.follow_symlinks(false);
        let result = builder
            .append_dir_all(".", &dir)
            .and_then(|()| builder.into_inner())
            .and_then(|mut w| std::io::Write::flush(&mut w));
        if let Err(e) = result {
            let _ = tx.blocking_send(Err(e));
        }
    });
    tokio_stream_from(rx)
}

fn tokio_stream_from<T: Send + 'static>(
    mut rx: tokio::sync::mpsc::Receiver<T>,
) -> impl futures_util::Stream<Item = T> + Send + Sync + 'static {
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sandbox_paths_are_told_from_host_paths() {
        assert_eq!(
            remote("sbx-1:/workspace/a"),
            Some(("sbx-1", "/workspace/a"))
        );
        assert_eq!(remote("./local:file"), None);
        assert_eq!(remote("/abs/path"), None);
        assert_eq!(remote("plainfile"), None);
    }
}
