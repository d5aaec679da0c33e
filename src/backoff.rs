//! The one backoff: exponential, with jitter, reset after quiet time.
//!
//! [`delay`] is pure — a policy, an attempt number and a seed give the same
//! wait every time — so state derived afresh on every pass (a hold computed
//! from the journal, seeded with the op id) stays stable from pass to pass.
//! [`Backoff`] is the stateful companion for loops that retry (the pass
//! retry, webhook delivery): it counts consecutive failures and forgets
//! them after a quiet time, as kube-rs's `ResettableBackoff` does.

use std::hash::{BuildHasher, Hasher};
use std::time::{Duration, Instant};

/// How a delay grows.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Policy {
    /// The wait after the first failure (attempt 1).
    pub first: Duration,
    /// The longest wait.
    pub max: Duration,
    /// The share of each delay that is random, `0.0..=1.0`: the delay lies
    /// in `(d × (1 − jitter), d]`. Jitter keeps many controllers that
    /// failed together (a registry outage) from retrying in lockstep.
    pub jitter: f64,
}

impl Policy {
    /// A policy doubling from `first` up to `max`, with 20 % jitter.
    pub const fn new(first: Duration, max: Duration) -> Self {
        Self { first, max, jitter: 0.2 }
    }
}

/// The wait before retry number `attempt` (1 = after the first failure):
/// `first × 2^(attempt−1)`, at most `max`, less a jitter fixed by `seed`.
/// Attempt 0 waits nothing.
pub fn delay(policy: &Policy, attempt: u32, seed: u64) -> Duration {
    if attempt == 0 {
        return Duration::ZERO;
    }
    let factor = 2u32.saturating_pow((attempt - 1).min(31));
    let full = policy.first.saturating_mul(factor).min(policy.max);
    let jitter = policy.jitter.clamp(0.0, 1.0) * unit(mix(seed ^ u64::from(attempt)));
    full.mul_f64(1.0 - jitter)
}

/// A stable seed for `text` (e.g. an op id), the same in every process and
/// every version: FNV-1a, not the std hasher, whose output may change.
pub fn seed_of(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

/// A seed different in every process, for retries nobody needs to repeat.
pub fn random_seed() -> u64 {
    std::collections::hash_map::RandomState::new().build_hasher().finish()
}

/// splitmix64's finaliser: nearby seeds give unrelated outputs.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// `x` mapped to `[0, 1)`.
fn unit(x: u64) -> f64 {
    // The top 53 bits fill an f64 mantissa exactly.
    (x >> 11) as f64 / (1u64 << 53) as f64
}

/// Consecutive failures of one retrying loop.
#[derive(Debug, Clone)]
pub struct Backoff {
    policy: Policy,
    /// After this long without a failure, the next one counts as the first.
    reset_after: Duration,
    seed: u64,
    attempt: u32,
    last_failure: Option<Instant>,
}

impl Backoff {
    /// A backoff following `policy` that forgets failures older than
    /// `reset_after`, with a fresh random seed.
    pub fn new(policy: Policy, reset_after: Duration) -> Self {
        Self::with_seed(policy, reset_after, random_seed())
    }

    /// As [`Backoff::new`] with a chosen seed (tests, reproducible runs).
    pub fn with_seed(policy: Policy, reset_after: Duration, seed: u64) -> Self {
        Self { policy, reset_after, seed, attempt: 0, last_failure: None }
    }

    /// A failure at `now`: how long to wait before trying again.
    pub fn failed(&mut self, now: Instant) -> Duration {
        let quiet = self.last_failure.is_some_and(|t| now.saturating_duration_since(t) >= self.reset_after);
        if quiet {
            self.attempt = 0;
        }
        self.attempt = self.attempt.saturating_add(1);
        self.last_failure = Some(now);
        delay(&self.policy, self.attempt, self.seed)
    }

    /// A success: the next failure starts from the first delay again.
    pub fn succeeded(&mut self) {
        self.attempt = 0;
        self.last_failure = None;
    }

    /// Consecutive failures counted so far.
    pub fn attempt(&self) -> u32 {
        self.attempt
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    fn exact() -> Policy {
        Policy { jitter: 0.0, ..Policy::new(S, 60 * S) }
    }

    #[test]
    fn delays_double_from_the_first_and_stop_at_the_max() {
        let waits: Vec<u64> = (0..9).map(|a| delay(&exact(), a, 7).as_secs()).collect();
        assert_eq!(waits, [0, 1, 2, 4, 8, 16, 32, 60, 60]);
        assert_eq!(delay(&exact(), u32::MAX, 7), 60 * S, "no overflow at absurd attempts");
    }

    #[test]
    fn jitter_shortens_within_its_share_and_is_stable_per_seed() {
        let policy = Policy::new(10 * S, 60 * S);
        for seed in 0..200u64 {
            let d = delay(&policy, 1, seed);
            assert!(d > 8 * S && d <= 10 * S, "seed {seed}: {d:?}");
            assert_eq!(d, delay(&policy, 1, seed), "same seed, same delay");
        }
        let distinct: std::collections::HashSet<Duration> = (0..50).map(|s| delay(&policy, 3, s)).collect();
        assert!(distinct.len() > 40, "seeds spread the retries: {}", distinct.len());
    }

    #[test]
    fn an_op_id_seeds_the_same_jitter_in_every_process() {
        assert_eq!(seed_of("op-2026"), seed_of("op-2026"));
        assert_ne!(seed_of("op-2026"), seed_of("op-2027"));
        // Pinned: a hold derived from the journal must not move when the
        // controller is upgraded.
        assert_eq!(seed_of(""), 0xcbf2_9ce4_8422_2325);
    }

    #[test]
    fn failures_grow_the_wait_and_a_success_or_quiet_time_resets_it() {
        let mut b = Backoff::with_seed(exact(), 120 * S, 1);
        let t0 = Instant::now();
        assert_eq!(b.failed(t0), S);
        assert_eq!(b.failed(t0 + S), 2 * S);
        assert_eq!(b.failed(t0 + 3 * S), 4 * S);
        b.succeeded();
        assert_eq!(b.failed(t0 + 10 * S), S, "a success starts over");
        assert_eq!(b.failed(t0 + 11 * S), 2 * S);
        assert_eq!(b.failed(t0 + 200 * S), S, "quiet for longer than reset_after: starts over");
        assert_eq!(b.attempt(), 1);
    }
}
