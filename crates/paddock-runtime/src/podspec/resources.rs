//! `resources.limits` (cpu and memory) and the Kubernetes quantities they are written in.

use k8s_openapi::api::core::v1::Container;

use super::{PodMappingError, UnhonouredField};
use crate::spec::ResourceLimits;

pub(super) fn map_limits(
    container: &Container,
    unhonoured: &mut Vec<UnhonouredField>,
) -> Result<ResourceLimits, PodMappingError> {
    let mut limits = ResourceLimits::default();
    let Some(resources) = &container.resources else {
        return Ok(limits);
    };
    for (name, quantity) in resources.limits.iter().flatten() {
        let path = format!("containers[0].resources.limits.{name}");
        match name.as_str() {
            "memory" => {
                let bytes = parse_quantity(&quantity.0, &path)?;
                limits.memory_bytes = Some(round_up(bytes, &path, &quantity.0)?);
            }
            "cpu" => {
                let cores = parse_quantity(&quantity.0, &path)?;
                limits.cpu_millis = Some(round_up(cores * 1000.0, &path, &quantity.0)?.max(1));
            }
            other => unhonoured.push(UnhonouredField {
                path,
                reason: format!(
                    "the local runtime enforces cpu and memory limits only, not {other}"
                ),
            }),
        }
    }
    if resources.requests.as_ref().is_some_and(|r| !r.is_empty()) {
        unhonoured.push(UnhonouredField {
            path: "containers[0].resources.requests".to_owned(),
            reason: "requests only guide scheduling; locally, limits are what is enforced"
                .to_owned(),
        });
    }
    if resources.claims.as_ref().is_some_and(|c| !c.is_empty()) {
        unhonoured.push(UnhonouredField {
            path: "containers[0].resources.claims".to_owned(),
            reason: "dynamic resource claims are not supported locally".to_owned(),
        });
    }
    Ok(limits)
}

pub(super) fn round_up(value: f64, path: &str, raw: &str) -> Result<u64, PodMappingError> {
    let rounded = value.ceil();
    if !(0.0..=1.8e19).contains(&rounded) {
        return Err(PodMappingError::InvalidQuantity {
            path: path.to_owned(),
            value: raw.to_owned(),
            reason: "out of range",
        });
    }
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)] // range checked above
    Ok(rounded as u64)
}

/// Parses a Kubernetes quantity (`128Mi`, `1.5G`, `500m`, `1e9`) into its value.
///
/// # Errors
/// Anything that is not a non-negative number with a known suffix.
pub fn parse_quantity(raw: &str, path: &str) -> Result<f64, PodMappingError> {
    let bad = |reason| PodMappingError::InvalidQuantity {
        path: path.to_owned(),
        value: raw.to_owned(),
        reason,
    };
    let s = raw.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+'))
        .unwrap_or(s.len());
    let (number, suffix) = s.split_at(split);
    if number.is_empty() || number.starts_with('.') && number.len() == 1 {
        return Err(bad("expected a number such as 512Mi, 2Gi, 500m or 1"));
    }
    let value: f64 = number
        .parse()
        .map_err(|_| bad("expected a number such as 512Mi, 2Gi, 500m or 1"))?;
    let multiplier = match suffix {
        "" => 1.0,
        "n" => 1e-9,
        "u" => 1e-6,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        "Ki" => 1024.0,
        "Mi" => 1024.0 * 1024.0,
        "Gi" => 1024.0 * 1024.0 * 1024.0,
        "Ti" => 1024.0f64.powi(4),
        "Pi" => 1024.0f64.powi(5),
        "Ei" => 1024.0f64.powi(6),
        exp if exp.starts_with(['e', 'E']) => {
            let power: i32 = exp[1..].parse().map_err(|_| bad("bad exponent"))?;
            if !(-18..=18).contains(&power) {
                return Err(bad("exponent out of range"));
            }
            10f64.powi(power)
        }
        _ => {
            return Err(bad(
                "unknown suffix; use one of Ki Mi Gi Ti, k M G T, m, or none",
            ));
        }
    };
    let result = value * multiplier;
    if !result.is_finite() {
        return Err(bad("out of range"));
    }
    Ok(result)
}
