//! What the loop does after a pass, decided purely: the next check as a
//! value (kube-rs's `Action`), and the error policy beside it.

use std::time::{Duration, SystemTime};

use crate::reconcile::ReconcileError;
use crate::summary::{Kind, Summary};

/// A hold's end is stored to the millisecond and compared with `<`: wake a
/// little after it so the pass finds the hold over.
const HOLD_SLACK: Duration = Duration::from_secs(1);

/// When to check again when nothing else asks for a pass.
#[must_use]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Action {
    requeue_after: Option<Duration>,
}

impl Action {
    /// Check again after `duration` (a trigger may come first).
    pub fn requeue(duration: Duration) -> Self {
        Self { requeue_after: Some(duration) }
    }

    /// Check again only on a trigger (file, Docker event, API, SIGHUP).
    pub fn await_change() -> Self {
        Self { requeue_after: None }
    }

    /// The wait, or `None` to wait for a trigger.
    pub fn requeue_after(&self) -> Option<Duration> {
        self.requeue_after
    }

    /// The sooner of two actions.
    pub fn sooner(self, other: Action) -> Action {
        match (self.requeue_after, other.requeue_after) {
            (Some(a), Some(b)) => Action::requeue(a.min(b)),
            (Some(_), None) => self,
            _ => other,
        }
    }
}

/// Why a pass did not bring everything to the manifest.
#[derive(Debug, thiserror::Error)]
pub enum PassError {
    /// No manifest ever loaded; its problems were reported.
    #[error("no valid manifest: {0}")]
    NoManifest(String),
    /// The pass could not run (engine or journal unreachable, recovery
    /// failed).
    #[error(transparent)]
    Reconcile(#[from] ReconcileError),
    /// The pass ran, but some targets failed in a way a retry may fix
    /// (pull failed, registry down, lock held, a swap stuck half-way).
    #[error("{failed} target(s) failed")]
    Targets {
        /// How many.
        failed: usize,
        /// When the pass would check again had nothing failed.
        then: Action,
    },
}

/// What a pass that ran decides: the drift interval, or sooner when a hold
/// ends (a held or rolled-back upgrade is retried when its hold expires,
/// even with `drift_interval: 0`); an error when a retry may fix a target.
pub fn next_action(summary: &Summary, drift: Duration, now: SystemTime) -> Result<Action, PassError> {
    let drift = if drift.is_zero() { Action::await_change() } else { Action::requeue(drift) };
    let hold_ends = summary
        .failures
        .iter()
        .filter_map(|f| f.retry_at)
        .map(|t| t.duration_since(now).unwrap_or_default() + HOLD_SLACK)
        .min();
    let then = hold_ends.map_or(drift, |d| drift.sooner(Action::requeue(d)));
    let failed = summary.failures.iter().filter(|f| matches!(f.kind, Kind::Error | Kind::Stuck)).count();
    if failed > 0 {
        Err(PassError::Targets { failed, then })
    } else {
        Ok(then)
    }
}

/// What to do after a failed pass, given the backoff's `retry` delay:
/// retry (the sooner of the retry and what the pass itself decided), or,
/// with no manifest at all, wait for the file to change — retrying cannot
/// fix a file.
pub fn error_policy(error: &PassError, retry: Duration) -> Action {
    match error {
        PassError::NoManifest(_) => Action::await_change(),
        PassError::Reconcile(_) => Action::requeue(retry),
        PassError::Targets { then, .. } => then.sooner(Action::requeue(retry)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::summary::Failure;

    const S: Duration = Duration::from_secs(1);

    fn summary(failures: &[(Kind, Option<Duration>)], now: SystemTime) -> Summary {
        let failures = failures
            .iter()
            .map(|(kind, ends)| Failure {
                target: "web".into(),
                container: Some("web".into()),
                kind: *kind,
                reason: "x".into(),
                retry_at: ends.map(|d| now + d),
            })
            .collect();
        Summary { failures, ..Summary::default() }
    }

    #[test]
    fn a_clean_pass_waits_for_the_drift_interval_or_for_a_change() {
        let now = SystemTime::now();
        assert_eq!(next_action(&summary(&[], now), 300 * S, now).ok(), Some(Action::requeue(300 * S)));
        assert_eq!(next_action(&summary(&[], now), Duration::ZERO, now).ok(), Some(Action::await_change()));
    }

    #[test]
    fn a_hold_ending_before_the_next_drift_check_brings_the_check_forward() {
        let now = SystemTime::now();
        let held = summary(&[(Kind::Held, Some(60 * S)), (Kind::RolledBack, Some(120 * S))], now);
        assert_eq!(next_action(&held, 300 * S, now).ok(), Some(Action::requeue(61 * S)));
        assert_eq!(
            next_action(&held, Duration::ZERO, now).ok(),
            Some(Action::requeue(61 * S)),
            "drift 0 too"
        );
        assert_eq!(next_action(&held, 10 * S, now).ok(), Some(Action::requeue(10 * S)));
        let refused = summary(&[(Kind::Refused, None)], now);
        assert_eq!(
            next_action(&refused, 300 * S, now).ok(),
            Some(Action::requeue(300 * S)),
            "no retry fixes a policy"
        );
    }

    #[test]
    fn a_failed_target_is_retried_with_backoff_even_with_drift_zero() {
        let now = SystemTime::now();
        let failed = summary(&[(Kind::Error, None)], now);
        let error = next_action(&failed, Duration::ZERO, now).expect_err("an error");
        assert_eq!(error_policy(&error, 5 * S), Action::requeue(5 * S));
        let error = next_action(&failed, 300 * S, now).expect_err("an error");
        assert_eq!(
            error_policy(&error, 600 * S),
            Action::requeue(300 * S),
            "never later than the drift check"
        );
        let both = summary(&[(Kind::Stuck, None), (Kind::Held, Some(2 * S))], now);
        let error = next_action(&both, 300 * S, now).expect_err("an error");
        assert_eq!(error_policy(&error, 30 * S), Action::requeue(3 * S), "the hold ends first");
    }

    #[test]
    fn without_any_manifest_only_a_change_helps() {
        let error = PassError::NoManifest("desired-state.yaml:1:1: …".into());
        assert_eq!(error_policy(&error, 5 * S), Action::await_change());
    }
}
