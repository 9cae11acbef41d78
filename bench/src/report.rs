//! The run's figures: latency percentiles and the JSON file written at the end of a run.

use std::path::Path;

use anyhow::Context as _;
use serde_json::Value;

/// Latency percentiles in microseconds.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub(crate) struct Percentiles {
    pub(crate) p50: u32,
    pub(crate) p99: u32,
}

impl Percentiles {
    /// The percentiles of `samples` (0 for both when there are none).
    pub(crate) fn of(mut samples: Vec<u32>) -> Self {
        samples.sort_unstable();
        let at = |q: f64| -> u32 {
            if samples.is_empty() {
                return 0;
            }
            let i = ((samples.len() - 1) as f64 * q).round() as usize;
            samples[i.min(samples.len() - 1)]
        };
        Self {
            p50: at(0.50),
            p99: at(0.99),
        }
    }
}

/// Writes `value` to `path` as pretty-printed JSON.
pub(crate) fn write_json(path: &Path, value: &Value) -> anyhow::Result<()> {
    let text = serde_json::to_string_pretty(value).context("failed to encode the figures")?;
    std::fs::write(path, text + "\n").with_context(|| format!("failed to write {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_of_a_known_sample() {
        let p = Percentiles::of((1..=100).collect());
        assert_eq!(p.p50, 51);
        assert_eq!(p.p99, 99);
        assert_eq!(Percentiles::of(Vec::new()).p99, 0);
    }
}
