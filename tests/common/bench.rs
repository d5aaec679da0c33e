//! Figures for the benches (`benches/*.rs` include this harness too).

use std::collections::BTreeMap;
use std::time::Duration;

/// The middle sample (sorts `samples`).
pub fn median(samples: &mut [Duration]) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

/// Milliseconds, for printing.
pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// The Engine API calls made between two `Engine::calls()` readings, by
/// endpoint, leaving out those not called.
pub fn calls_between(
    before: &BTreeMap<&'static str, u64>,
    after: &BTreeMap<&'static str, u64>,
) -> BTreeMap<&'static str, u64> {
    after.iter().map(|(k, v)| (*k, v - before.get(k).copied().unwrap_or(0))).filter(|(_, v)| *v > 0).collect()
}
