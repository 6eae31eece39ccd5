//! Shared helpers for paddock's benchmarks: percentiles and report printing.

/// Latency percentiles of a sample, in the sample's unit.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Percentiles {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
}

impl Percentiles {
    /// Computes percentiles by nearest rank; `None` for an empty sample.
    pub fn of(samples: &mut [f64]) -> Option<Self> {
        if samples.is_empty() {
            return None;
        }
        samples.sort_by(f64::total_cmp);
        let n = samples.len();
        let rank = |q: f64| {
            // Nearest rank: ceil(q·n), 1-based, kept within the sample.
            let idx = (1..=n).find(|&r| r as f64 >= q * n as f64).unwrap_or(n) - 1;
            samples[idx]
        };
        Some(Self {
            p50: rank(0.50),
            p90: rank(0.90),
            p99: rank(0.99),
            max: samples[samples.len() - 1],
        })
    }
}
