//! The controller loop behind `run`, in the library so it is tested
//! without the binary.
//!
//! Triggers — the manifest file changing, Docker events on targets, an API
//! push, SIGHUP — come through one bounded queue. One pass runs at a time;
//! triggers that arrive during a pass are drained before the next one, so
//! any number of them coalesce into one more pass. Each pass returns its
//! next check as an [`Action`] (the drift interval, the end of a hold, or
//! — through the pure [`error_policy`] — a retry with backoff after a
//! failure). The trigger reaches the pass for its span only: every pass
//! reconciles the whole manifest.
//!
//! Stopping: the first stop request (SIGTERM/SIGINT) lets the swaps in
//! flight finish or roll back and starts no other; a second one during
//! that wait forces the exit (the journal lets the next start finish what
//! was cut off).

mod action;
mod live;

use std::future::Future;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use crate::backoff::{Backoff, Policy};
use crate::trigger::Trigger;

pub use action::{error_policy, next_action, Action, PassError};
pub use live::{Daemon, Event, Options};

/// What the loop runs: one pass over everything, whatever the trigger.
pub trait Reconciler {
    /// Runs one pass; `trigger` is for the logs, never for branching.
    fn reconcile(&mut self, trigger: &Trigger) -> impl Future<Output = Result<Action, PassError>>;

    /// The loop will next check on its own after `wait` (`None`: only on
    /// a trigger).
    fn scheduled(&mut self, wait: Option<Duration>);
}

/// How the loop ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// Stopped with no swap in flight.
    Drained,
    /// A second stop request cut a pass short.
    Forced,
}

/// The loop's timing.
#[derive(Debug, Clone)]
pub struct Config {
    /// Retries after a failed pass.
    pub retry: Policy,
    /// After this long without a failed pass, the next failure retries
    /// from the first delay.
    pub reset_after: Duration,
    /// Editors write, then rename; `set` writes a temp file and renames:
    /// wait this long after a file event so one edit makes one pass.
    pub debounce: Duration,
    /// The least time between the end of one pass and the start of the
    /// next, whatever the triggers: a flood of Docker events, API pushes or
    /// a zero wait cannot make the controller spin on the engine and the
    /// registry.
    pub min_gap: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            retry: Policy::new(Duration::from_secs(5), Duration::from_secs(300)),
            reset_after: Duration::from_secs(600),
            debounce: Duration::from_millis(30),
            min_gap: MIN_GAP,
        }
    }
}

/// The default [`Config::min_gap`].
pub const MIN_GAP: Duration = Duration::from_secs(2);

/// Where the loop's inputs come from.
pub struct Inputs {
    /// Triggers (file watch, Docker events, API, SIGHUP).
    pub triggers: mpsc::Receiver<Trigger>,
    /// One message per stop request (SIGTERM, SIGINT).
    pub stops: mpsc::Receiver<()>,
}

/// Runs passes until stopped. `on_stop` is called at the first stop
/// request — it must make the pass in flight start no new swap.
pub async fn run<R: Reconciler>(r: &mut R, on_stop: impl Fn(), mut inputs: Inputs, config: Config) -> Exit {
    let mut backoff = Backoff::new(config.retry, config.reset_after);
    let mut trigger = Trigger::Timer;
    loop {
        let result = {
            let pass = r.reconcile(&trigger);
            tokio::pin!(pass);
            tokio::select! {
                result = &mut pass => result,
                _ = inputs.stops.recv() => {
                    on_stop();
                    // A closed channel never forces: only a real request.
                    return tokio::select! {
                        _ = &mut pass => Exit::Drained,
                        Some(()) = inputs.stops.recv() => Exit::Forced,
                    };
                }
            }
        };
        let action = match result {
            Ok(action) => {
                backoff.succeeded();
                action
            }
            Err(e) => {
                let retry = backoff.failed(Instant::now());
                let action = error_policy(&e, retry);
                tracing::warn!(error = %e, retry_in = ?action.requeue_after(), "pass failed");
                action
            }
        };
        r.scheduled(action.requeue_after());
        let ended = Instant::now();
        let retrying = backoff.attempt() > 0;
        trigger = tokio::select! {
            () = sleep(action.requeue_after()) => if retrying { Trigger::Retry } else { Trigger::Timer },
            Some(t) = inputs.triggers.recv() => t,
            _ = inputs.stops.recv() => {
                on_stop();
                return Exit::Drained;
            }
        };
        let floor = config.min_gap.saturating_sub(ended.elapsed());
        let wait = if trigger == Trigger::File { floor.max(config.debounce) } else { floor };
        if !wait.is_zero() {
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                _ = inputs.stops.recv() => {
                    on_stop();
                    return Exit::Drained;
                }
            }
        }
        // Everything queued so far is answered by the pass about to run.
        while inputs.triggers.try_recv().is_ok() {}
    }
}

async fn sleep(wait: Option<Duration>) {
    match wait {
        Some(d) => tokio::time::sleep(d).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;
    use std::collections::VecDeque;

    use super::*;

    const MS: Duration = Duration::from_millis(1);

    /// A reconciler playing back scripted results, each after `takes`.
    struct Script {
        results: VecDeque<Result<Action, PassError>>,
        takes: Duration,
        seen: Vec<Trigger>,
        finished: usize,
    }

    impl Script {
        fn new(results: Vec<Result<Action, PassError>>, takes: Duration) -> Self {
            Self { results: results.into(), takes, seen: Vec::new(), finished: 0 }
        }
    }

    impl Reconciler for Script {
        async fn reconcile(&mut self, trigger: &Trigger) -> Result<Action, PassError> {
            self.seen.push(trigger.clone());
            tokio::time::sleep(self.takes).await;
            self.finished += 1;
            self.results.pop_front().unwrap_or(Ok(Action::await_change()))
        }

        fn scheduled(&mut self, _: Option<Duration>) {}
    }

    fn fast() -> Config {
        Config {
            retry: Policy { jitter: 0.0, ..Policy::new(20 * MS, 40 * MS) },
            min_gap: Duration::ZERO,
            ..Config::default()
        }
    }

    fn channels() -> (mpsc::Sender<Trigger>, mpsc::Sender<()>, Inputs) {
        let (t, triggers) = mpsc::channel(8);
        let (s, stops) = mpsc::channel(8);
        (t, s, Inputs { triggers, stops })
    }

    fn failed() -> Result<Action, PassError> {
        Err(PassError::Targets { failed: 1, then: Action::await_change() })
    }

    #[tokio::test]
    async fn a_failed_pass_is_retried_even_when_only_changes_would_wake_the_loop() {
        let mut r = Script::new(vec![failed(), failed(), Ok(Action::await_change())], MS);
        let (_t, stop, inputs) = channels();
        let stopper = tokio::spawn(async move {
            tokio::time::sleep(500 * MS).await;
            let _ = stop.send(()).await;
        });
        assert_eq!(run(&mut r, || {}, inputs, fast()).await, Exit::Drained);
        let _ = stopper.await;
        assert_eq!(r.seen, [Trigger::Timer, Trigger::Retry, Trigger::Retry], "then it waits for a change");
    }

    #[tokio::test]
    async fn triggers_during_a_pass_coalesce_into_one_more_pass() {
        let mut r = Script::new(Vec::new(), 100 * MS);
        let (t, stop, inputs) = channels();
        let driver = tokio::spawn(async move {
            tokio::time::sleep(20 * MS).await;
            for _ in 0..5 {
                let _ = t.send(Trigger::Api).await;
            }
            tokio::time::sleep(400 * MS).await;
            let _ = stop.send(()).await;
        });
        assert_eq!(run(&mut r, || {}, inputs, fast()).await, Exit::Drained);
        let _ = driver.await;
        assert_eq!(r.seen, [Trigger::Timer, Trigger::Api]);
    }

    #[tokio::test]
    async fn passes_are_spaced_by_the_floor_whatever_asks_for_them() {
        // Every pass asks to run again at once, and triggers pour in: the
        // floor alone decides how often a pass runs.
        let results = (0..1000).map(|_| Ok(Action::requeue(Duration::ZERO))).collect();
        let mut r = Script::new(results, MS);
        let (t, stop, inputs) = channels();
        let driver = tokio::spawn(async move {
            let until = Instant::now() + 550 * MS;
            while Instant::now() < until {
                let _ = t.try_send(Trigger::Docker("die web".into()));
                tokio::time::sleep(MS).await;
            }
            let _ = stop.send(()).await;
        });
        let config = Config { min_gap: 100 * MS, ..fast() };
        assert_eq!(run(&mut r, || {}, inputs, config).await, Exit::Drained);
        let _ = driver.await;
        assert!((4..=7).contains(&r.finished), "{} passes in 550 ms with a 100 ms floor", r.finished);
    }

    #[tokio::test]
    async fn the_first_stop_lets_the_pass_finish_and_a_second_forces_the_exit() {
        let stopped = Cell::new(0);
        let mut r = Script::new(Vec::new(), 200 * MS);
        let (_t, stop, inputs) = channels();
        let _ = stop.send(()).await;
        assert_eq!(run(&mut r, || stopped.set(stopped.get() + 1), inputs, fast()).await, Exit::Drained);
        assert_eq!((r.finished, stopped.get()), (1, 1), "the pass in flight finished");

        let mut r = Script::new(Vec::new(), Duration::from_secs(3600));
        let (_t, stop, inputs) = channels();
        let _ = stop.send(()).await;
        let _ = stop.send(()).await;
        let started = Instant::now();
        assert_eq!(run(&mut r, || {}, inputs, fast()).await, Exit::Forced);
        assert!(started.elapsed() < Duration::from_secs(5));
        assert_eq!(r.finished, 0, "cut short");
    }
}
