//! `paddock crds`.

use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, Result};
use paddock_api::crd::{ConversionWebhook, crd_yaml, file_name};
use paddock_api::kinds::Kind;
use paddock_api::policy::{POLICY_CRD_FILE, policy_crd_yaml};

/// Prints the CRDs (the four kinds and paddock's SandboxPolicy), or writes one file per CRD into `out_dir`.
pub fn run(
    no_conversion: bool,
    service: String,
    namespace: String,
    out_dir: Option<&Path>,
) -> Result<ExitCode> {
    let webhook = (!no_conversion).then(|| ConversionWebhook {
        service,
        namespace,
        ..ConversionWebhook::default()
    });
    match out_dir {
        None => {
            for kind in Kind::ALL {
                print!("{}", crd_yaml(kind, webhook.as_ref()));
            }
            print!("{}", policy_crd_yaml());
        }
        Some(dir) => {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
            for kind in Kind::ALL {
                let path = dir.join(file_name(kind));
                std::fs::write(&path, crd_yaml(kind, webhook.as_ref()))
                    .with_context(|| format!("writing {}", path.display()))?;
                eprintln!("wrote {}", path.display());
            }
            let path = dir.join(POLICY_CRD_FILE);
            std::fs::write(&path, policy_crd_yaml())
                .with_context(|| format!("writing {}", path.display()))?;
            eprintln!("wrote {}", path.display());
        }
    }
    Ok(ExitCode::SUCCESS)
}
