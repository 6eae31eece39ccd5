//! `paddock convert`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Result, bail};
use paddock_api::any::AnyObject;
use paddock_api::kinds::Version;
use paddock_api::validate::validate_text;
use serde_json::Value;

use crate::input::read_sources;

/// Annotation keys that carry conversion snapshots; dropped from the output unless lossless.
fn is_state_annotation(key: &str) -> bool {
    key.starts_with("api.agents.x-k8s.io/")
}

/// Converts every document; invalid input is reported and nothing is printed.
pub fn run(files: &[PathBuf], to: Version, lossless: bool, json: bool) -> Result<ExitCode> {
    let mut out: Vec<Value> = Vec::new();
    let mut failed = false;
    for source in read_sources(files)? {
        let reports = match validate_text(&source.text) {
            Ok(r) => r,
            Err(e) => bail!("{}: not valid YAML: {e}", source.name),
        };
        for report in reports {
            match report.result {
                Ok(valid) => {
                    let kind = valid.object.kind();
                    let from = valid.object.version();
                    // Convert what was written, not the defaulted object, so the output stays
                    // as terse as the input.
                    let written = AnyObject::from_value(kind, from, valid.value)?;
                    let mut value = written.convert(to).to_value();
                    if !lossless {
                        strip_state_annotations(&mut value);
                    }
                    out.push(value);
                }
                Err(problems) => {
                    failed = true;
                    eprintln!(
                        "{}: document {} cannot be converted:",
                        source.name, report.number
                    );
                    for p in problems {
                        eprintln!("  {p}");
                    }
                }
            }
        }
    }
    if failed {
        return Ok(ExitCode::from(1));
    }
    if json {
        let text = if out.len() == 1 {
            serde_json::to_string_pretty(&out[0])?
        } else {
            serde_json::to_string_pretty(
                &serde_json::json!({"apiVersion": "v1", "kind": "List", "items": out}),
            )?
        };
        println!("{text}");
    } else {
        print!("{}", paddock_api::yaml::to_string_multi(&out));
    }
    Ok(ExitCode::SUCCESS)
}

fn strip_state_annotations(value: &mut Value) {
    let Some(meta) = value.get_mut("metadata").and_then(Value::as_object_mut) else {
        return;
    };
    if let Some(Value::Object(annotations)) = meta.get_mut("annotations") {
        annotations.retain(|k, _| !is_state_annotation(k));
        if annotations.is_empty() {
            meta.shift_remove("annotations");
        }
    }
}
