//! The pure half of a service update: the `UpdateConfig` a target's
//! settings ask for, how long the update may take, and what each
//! `UpdateStatus` state means for the op.

use std::time::Duration;

use crate::manifest::{Order, Settings};

/// What Swarm does when too many tasks fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureAction {
    /// Roll the service back to its previous spec (`rollback: true`).
    Rollback,
    /// Stop the update where it is, for a person (`rollback: false`).
    Pause,
}

/// A Swarm `UpdateConfig`, in our terms.
#[derive(Debug, Clone, PartialEq)]
pub struct Rollout {
    /// `stop-first` or `start-first`.
    pub order: Order,
    /// Tasks replaced at once (`0`: all).
    pub parallelism: i64,
    /// Pause between batches, in nanoseconds.
    pub delay_ns: i64,
    /// How long each new task is watched for failure, in nanoseconds.
    pub monitor_ns: i64,
    /// What a failed update does.
    pub failure_action: FailureAction,
    /// The share of tasks that may fail.
    pub max_failure_ratio: f64,
}

impl Rollout {
    /// The rollout a target's settings ask for: `order` as is, the health
    /// gate's `stable` window as Swarm's monitor period (a task that dies
    /// within it fails the update, as a container that dies within it
    /// fails the gate), `rollback` as the failure action.
    pub fn from_settings(settings: &Settings) -> Self {
        let ns = |d: Duration| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX);
        Self {
            order: settings.order,
            parallelism: i64::try_from(settings.update.parallelism).unwrap_or(i64::MAX),
            delay_ns: ns(settings.update.delay),
            monitor_ns: ns(settings.health.stable),
            failure_action: if settings.rollback { FailureAction::Rollback } else { FailureAction::Pause },
            max_failure_ratio: settings.update.max_failure_ratio,
        }
    }
}

/// How long the whole update of `tasks` tasks may take before the watch
/// gives up on it: per batch, the health timeout (a task must be healthy
/// by then), the monitor window and the delay; twice that when a failed
/// update rolls back through every batch again; plus a minute of
/// scheduling slack. Swarm keeps going after it: the op stays in progress
/// and the next pass (or recovery) reads how it ended.
pub fn deadline(settings: &Settings, tasks: u64) -> Duration {
    let parallelism = settings.update.parallelism;
    let batches = if parallelism == 0 { 1 } else { tasks.max(1).div_ceil(parallelism) };
    let per_batch = settings.health.timeout + settings.health.stable + settings.update.delay;
    let passes = if settings.rollback { 2 } else { 1 };
    let batches = u32::try_from(batches.saturating_mul(passes)).unwrap_or(u32::MAX);
    per_batch.saturating_mul(batches).saturating_add(Duration::from_secs(60))
}

/// A service's `UpdateStatus.State`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpdateState {
    /// Tasks are being replaced.
    Updating,
    /// Stopped on failures (failure action `pause`).
    Paused,
    /// Every task runs the new spec.
    Completed,
    /// Failed, and going back to the previous spec.
    RollbackStarted,
    /// The rollback itself stopped on failures.
    RollbackPaused,
    /// Every task is back on the previous spec.
    RollbackCompleted,
}

impl UpdateState {
    /// Swarm's word for it.
    pub fn name(self) -> &'static str {
        match self {
            UpdateState::Updating => "updating",
            UpdateState::Paused => "paused",
            UpdateState::Completed => "completed",
            UpdateState::RollbackStarted => "rollback_started",
            UpdateState::RollbackPaused => "rollback_paused",
            UpdateState::RollbackCompleted => "rollback_completed",
        }
    }

    /// True while Swarm is still moving tasks: another update must wait.
    pub fn in_progress(self) -> bool {
        matches!(self, UpdateState::Updating | UpdateState::RollbackStarted)
    }
}

/// How a finished (or stopped) update ends the op.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// Every task runs the new image.
    Committed,
    /// Swarm put every task back on the old image.
    RolledBack,
    /// Stopped half-way (paused): tasks may run either image.
    Failed,
}

/// What `state` means for an update this op issued; `None` while it runs.
pub fn ending(state: UpdateState) -> Option<Ending> {
    match state {
        UpdateState::Updating | UpdateState::RollbackStarted => None,
        UpdateState::Completed => Some(Ending::Committed),
        UpdateState::RollbackCompleted => Some(Ending::RolledBack),
        UpdateState::Paused | UpdateState::RollbackPaused => Some(Ending::Failed),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::Manifest;

    fn settings(target: &str) -> Settings {
        let text = format!("version: 1\ntargets:\n  - service: web\n    image: app:2\n{target}");
        Manifest::parse("m.yaml", &text).expect("manifest").targets[0].settings.clone()
    }

    #[test]
    fn the_update_config_follows_the_targets_settings() {
        let s = settings(
            "    order: start-first\n    rollback: true\n    health: {timeout: 30s, stable: 4s}\n    update: {parallelism: 2, delay: 1s, max_failure_ratio: 0.5}\n",
        );
        let r = Rollout::from_settings(&s);
        assert_eq!(
            r,
            Rollout {
                order: Order::StartFirst,
                parallelism: 2,
                delay_ns: 1_000_000_000,
                monitor_ns: 4_000_000_000,
                failure_action: FailureAction::Rollback,
                max_failure_ratio: 0.5,
            }
        );
    }

    #[test]
    fn without_rollback_a_failed_update_pauses_and_swarm_defaults_apply() {
        let r = Rollout::from_settings(&settings("    rollback: false\n"));
        assert_eq!(r.failure_action, FailureAction::Pause);
        assert_eq!((r.order, r.parallelism, r.delay_ns, r.max_failure_ratio), (Order::StopFirst, 1, 0, 0.0));
        // The default gate's stable window (5s) is the monitor period.
        assert_eq!(r.monitor_ns, 5_000_000_000);
    }

    #[test]
    fn the_deadline_grows_with_batches_and_doubles_for_a_rollback() {
        let s = settings("    health: {timeout: 10s, stable: 2s}\n    update: {parallelism: 2, delay: 1s}\n");
        // 5 tasks by 2: 3 batches of 13s, twice (rollback), plus a minute.
        assert_eq!(deadline(&s, 5), Duration::from_secs(3 * 13 * 2 + 60));
        let all_at_once = settings("    rollback: false\n    update: {parallelism: 0}\n");
        assert_eq!(deadline(&all_at_once, 50), Duration::from_secs(60 + 5 + 60));
        // No task (scaled to 0) still gets one batch.
        assert_eq!(deadline(&all_at_once, 0), deadline(&all_at_once, 1));
    }

    #[test]
    fn only_final_states_end_the_op() {
        use UpdateState as S;
        let cases = [
            (S::Updating, None),
            (S::RollbackStarted, None),
            (S::Completed, Some(Ending::Committed)),
            (S::RollbackCompleted, Some(Ending::RolledBack)),
            (S::Paused, Some(Ending::Failed)),
            (S::RollbackPaused, Some(Ending::Failed)),
        ];
        for (state, want) in cases {
            assert_eq!(ending(state), want, "{}", state.name());
            assert_eq!(state.in_progress(), want.is_none(), "{}", state.name());
        }
    }
}
