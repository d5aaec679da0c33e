//! Figures for the benches (`benches/*.rs` include this harness too).

use std::collections::BTreeMap;
use std::sync::Mutex;
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

/// Latencies per endpoint, from many tasks at once.
#[derive(Default)]
pub struct Samples(Mutex<BTreeMap<&'static str, Vec<Duration>>>);

/// p50, p99 and max of one endpoint's samples, and how many.
#[derive(Debug, Clone, Copy, Default)]
pub struct Quantiles {
    pub n: usize,
    pub p50: Duration,
    pub p99: Duration,
    pub max: Duration,
}

impl Samples {
    /// One request to `endpoint` took `took`.
    pub fn add(&self, endpoint: &'static str, took: Duration) {
        if let Ok(mut s) = self.0.lock() {
            s.entry(endpoint).or_default().push(took);
        }
    }

    /// Prints and forgets what was sampled; returns the quantiles per
    /// endpoint.
    pub fn print(&self, phase: &str) -> BTreeMap<&'static str, Quantiles> {
        let Ok(mut s) = self.0.lock() else { return BTreeMap::new() };
        let mut all = BTreeMap::new();
        for (endpoint, mut sorted) in std::mem::take(&mut *s) {
            sorted.sort();
            let at = |q: f64| sorted[((sorted.len() as f64 - 1.0) * q).round() as usize];
            let q = Quantiles { n: sorted.len(), p50: at(0.5), p99: at(0.99), max: at(1.0) };
            println!(
                "  {phase:<6} {endpoint:<36} n={:<6} p50 {:>7.2} ms  p99 {:>7.2} ms  max {:>7.2} ms",
                q.n,
                ms(q.p50),
                ms(q.p99),
                ms(q.max),
            );
            all.insert(endpoint, q);
        }
        all
    }
}

/// VmRSS and VmHWM in MiB, and CPU seconds (user + system), of `pid`.
pub fn usage(pid: u32) -> (f64, f64, f64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let kib = |key: &str| {
        status
            .lines()
            .find(|l| l.starts_with(key))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command's closing parenthesis; utime and stime are
    // the 14th and 15th of the whole line.
    let rest: Vec<&str> =
        stat.rsplit_once(')').map(|(_, r)| r.split_whitespace().collect()).unwrap_or_default();
    let ticks = |i: usize| rest.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    let cpu = (ticks(11) + ticks(12)) / 100.0;
    (kib("VmRSS:") / 1024.0, kib("VmHWM:") / 1024.0, cpu)
}
