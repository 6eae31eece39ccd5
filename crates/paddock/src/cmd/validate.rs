//! `paddock validate`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use paddock_api::validate::{DocumentReport, Validated, validate_any_text};

use crate::input::read_sources;

/// Validates every document of every source; exit code 1 when anything is invalid.
pub fn run(files: &[PathBuf], quiet: bool) -> Result<ExitCode> {
    let mut valid = 0usize;
    let mut invalid = 0usize;
    for source in read_sources(files)? {
        let reports = match validate_any_text(&source.text) {
            Ok(r) => r,
            Err(e) => {
                println!("{}: not valid YAML: {e}", source.name);
                invalid += 1;
                continue;
            }
        };
        if reports.is_empty() {
            println!("{}: no objects found", source.name);
            invalid += 1;
            continue;
        }
        for report in &reports {
            match &report.result {
                Ok(_) => {
                    valid += 1;
                    if !quiet {
                        println!(
                            "{}: {}: valid",
                            source.name,
                            describe(report, reports.len())
                        );
                    }
                }
                Err(problems) => {
                    invalid += 1;
                    let count = if problems.len() == 1 {
                        "1 problem".to_owned()
                    } else {
                        format!("{} problems", problems.len())
                    };
                    println!(
                        "{}: {}: {count}",
                        source.name,
                        describe(report, reports.len())
                    );
                    for p in problems {
                        println!("  {p}");
                    }
                }
            }
        }
    }
    if !quiet || invalid > 0 {
        let plural = |n: usize| if n == 1 { "" } else { "s" };
        println!("{valid} object{} valid, {invalid} invalid", plural(valid));
    }
    Ok(if invalid == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn describe(report: &DocumentReport<Validated>, documents: usize) -> String {
    let what = match (&report.kind, &report.name) {
        (Some(k), Some(n)) => format!("{k} {n}"),
        (Some(k), None) => k.clone(),
        (None, Some(n)) => format!("object {n}"),
        (None, None) => "object".to_owned(),
    };
    if documents > 1 {
        let line = report
            .line
            .map(|l| format!(", line {l}"))
            .unwrap_or_default();
        format!("{what} (document {}{line})", report.number)
    } else {
        what
    }
}
