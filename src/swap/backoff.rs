//! Not retrying a failed image in a loop.
//!
//! A target whose swap to image X failed — its new container failed the
//! gate, or the swap ended before any change (the pull failed, the create
//! was refused) — is held off X: after the n-th consecutive failure for the
//! same container and image, the next attempt waits `BASE × 2^(n-1)`, at
//! most `MAX`, less up to a fifth (jitter, so a fleet that failed together
//! does not retry together; [`crate::backoff`]). A commit for the container, or a
//! different desired image (the manifest changed), clears it. Derived from
//! the journal alone: no other state to keep in step, so the jitter comes
//! from the failed op's id and is the same on every pass.

use std::time::{Duration, SystemTime};

use super::journal::{OpRecord, Step};

/// The wait after the first failure, unless `CONTAINER_UPGRADER_HOLD_BASE`
/// (a duration such as `30s`) says otherwise.
pub const BASE: Duration = Duration::from_secs(60);

/// [`BASE`], or the operator's `CONTAINER_UPGRADER_HOLD_BASE` (read once;
/// an unreadable value keeps the default, with a warning).
pub fn base() -> Duration {
    static BASE_SET: std::sync::OnceLock<Duration> = std::sync::OnceLock::new();
    *BASE_SET.get_or_init(|| match std::env::var("CONTAINER_UPGRADER_HOLD_BASE") {
        Err(_) => BASE,
        Ok(text) => match humantime::parse_duration(text.trim()) {
            Ok(d) if !d.is_zero() && d <= MAX => d,
            _ => {
                tracing::warn!(value = %text, "CONTAINER_UPGRADER_HOLD_BASE is not a duration between 1ms and 1h; using 1m");
                BASE
            }
        },
    })
}
/// The longest wait.
pub const MAX: Duration = Duration::from_secs(3600);

/// Why a swap is held back, and until when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hold {
    /// Consecutive failures for this container and image.
    pub failures: u32,
    /// When the next attempt is allowed.
    pub until: SystemTime,
    /// The last failure's reason.
    pub reason: String,
}

/// The hold on swapping `container` to `image` at `now`, if any. `ops` is
/// the journal, oldest first.
pub fn hold(ops: &[OpRecord], container: &str, image: &str, now: SystemTime) -> Option<Hold> {
    let mut failures = 0u32;
    let mut last: Option<&OpRecord> = None;
    for op in ops.iter().filter(|o| o.container == container) {
        match op.step() {
            Some(Step::Committed) => {
                failures = 0;
                last = None;
            }
            Some(Step::RolledBack | Step::Failed | Step::Aborted)
                if op.new_image == image && op.reason.is_some() =>
            {
                failures += 1;
                last = Some(op);
            }
            // A failure for another image means the manifest moved on.
            Some(Step::RolledBack | Step::Failed | Step::Aborted) => {
                failures = 0;
                last = None;
            }
            _ => {}
        }
    }
    let last = last?;
    let ended = humantime::parse_rfc3339(last.updated_at()).ok()?;
    let policy = crate::backoff::Policy::new(base(), MAX);
    let until =
        ended + crate::backoff::delay(&policy, failures, crate::backoff::seed_of(last.op_id.as_str()));
    (now < until).then(|| Hold { failures, until, reason: last.reason.clone().unwrap_or_default() })
}

/// The wait after `failures` consecutive failures, before jitter.
pub fn delay(failures: u32) -> Duration {
    crate::backoff::delay(
        &crate::backoff::Policy { jitter: 0.0, ..crate::backoff::Policy::new(BASE, MAX) },
        failures,
        0,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::swap::journal::StepRecord;
    use crate::types::OpId;

    fn op(container: &str, image: &str, step: Step, at: &str) -> OpRecord {
        OpRecord {
            op_id: OpId::new(at),
            new_image: image.into(),
            steps: vec![
                StepRecord { step: Step::Prepared, at: at.into() },
                StepRecord { step, at: at.into() },
            ],
            reason: (step != Step::Committed).then(|| "exited with code 1".into()),
            ..OpRecord::sample(container)
        }
    }

    fn t(s: &str) -> SystemTime {
        humantime::parse_rfc3339(s).expect("time")
    }

    #[test]
    fn a_failed_pull_holds_the_image_like_a_failed_gate() {
        let ops = [op("web", "app:2", Step::Aborted, "2026-01-01T00:00:00Z")];
        let h = hold(&ops, "web", "app:2", t("2026-01-01T00:00:30Z")).expect("held");
        assert_eq!(h.failures, 1);
    }

    #[test]
    fn delays_double_and_cap() {
        assert_eq!(delay(1), Duration::from_secs(60));
        assert_eq!(delay(2), Duration::from_secs(120));
        assert_eq!(delay(3), Duration::from_secs(240));
        assert_eq!(delay(30), MAX);
    }

    #[test]
    fn a_failure_holds_that_image_until_the_backoff_expires() {
        let ops = [op("web", "app:2", Step::RolledBack, "2026-01-01T00:00:00Z")];
        let h = hold(&ops, "web", "app:2", t("2026-01-01T00:00:30Z")).expect("held");
        assert_eq!(h.failures, 1);
        assert_eq!(h.reason, "exited with code 1");
        assert!(hold(&ops, "web", "app:2", t("2026-01-01T00:01:01Z")).is_none(), "expired");
        assert!(hold(&ops, "web", "app:3", t("2026-01-01T00:00:30Z")).is_none(), "another image is not held");
        assert!(
            hold(&ops, "db", "app:2", t("2026-01-01T00:00:30Z")).is_none(),
            "another container is not held"
        );
    }

    #[test]
    fn consecutive_failures_lengthen_the_hold_and_a_commit_clears_it() {
        let mut ops = vec![
            op("web", "app:2", Step::RolledBack, "2026-01-01T00:00:00Z"),
            op("web", "app:2", Step::RolledBack, "2026-01-01T00:02:00Z"),
            op("web", "app:2", Step::RolledBack, "2026-01-01T00:05:00Z"),
        ];
        let h =
            hold(&ops, "web", "app:2", t("2026-01-01T00:08:00Z")).expect("held 4 minutes after the third");
        assert_eq!(h.failures, 3);
        let four_minutes = t("2026-01-01T00:09:00Z");
        assert!(
            h.until <= four_minutes && h.until >= four_minutes - Duration::from_secs(48),
            "{:?}",
            h.until
        );
        ops.push(op("web", "app:2", Step::Committed, "2026-01-01T00:10:00Z"));
        assert!(hold(&ops, "web", "app:2", t("2026-01-01T00:10:01Z")).is_none());
    }
}
