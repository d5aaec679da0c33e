//! The reconciler `run` drives: loads the manifest (keeping the last good
//! one), runs a controller pass, and publishes what it learned — the
//! status snapshot, the metrics, the outbox of webhook events — and hands
//! the pass to the caller to show (the library never prints).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use tracing::Instrument;

use super::{next_action, Action, PassError, Reconciler};
use crate::controller::{Controller, Pass};
use crate::manifest::Manifest;
use crate::metrics::{self, Metrics};
use crate::reconcile::ReconcileError;
use crate::report::{Delivery, Outbox};
use crate::status::{ControllerInfo, LastOp, PassStatus, SharedSnapshot, TargetFailure, TargetStatus};
use crate::summary::Summary;
use crate::swap::journal::OpRecord;
use crate::trigger::Trigger;
use crate::watch;

/// What `run` was given besides the controller.
#[derive(Debug, Clone)]
pub struct Options {
    /// The manifest file.
    pub manifest: PathBuf,
    /// `--report-webhook`: overrides the manifest's `report.webhook`.
    pub webhook: Option<String>,
}

/// What the daemon has to tell the operator; the CLI prints it.
#[derive(Debug)]
pub enum Event<'e> {
    /// A line for stderr: startup news, a manifest that fails to load.
    Note(String),
    /// A pass ran.
    Pass(&'e Pass),
    /// A pass could not run.
    PassFailed(&'e ReconcileError),
}

/// The live reconciler.
pub struct Daemon<'a, O> {
    controller: &'a Controller,
    options: Options,
    current: watch::Current,
    snapshot: SharedSnapshot,
    metrics: Arc<Metrics>,
    outbox: Option<Outbox>,
    delivery: Option<Delivery>,
    output: O,
    /// Refusal events already queued for the webhook (by op id).
    told: std::collections::BTreeSet<String>,
}

impl<'a, O: FnMut(Event<'_>)> Daemon<'a, O> {
    /// Finishes what the controller's last run left (interrupted swaps of
    /// itself, finished helpers) and starts delivering the outbox.
    /// `current` is the manifest in force, shared with the Docker event
    /// watch; `snapshot` and `metrics` are shared with the API.
    pub async fn start(
        controller: &'a Controller,
        options: Options,
        current: watch::Current,
        snapshot: SharedSnapshot,
        metrics: Arc<Metrics>,
        mut output: O,
    ) -> Self {
        for note in controller.startup().await {
            output(Event::Note(note));
        }
        let journal = controller.swapper().journal();
        let opened = Outbox::open(journal.dir())
            .and_then(|outbox| outbox.init_ledger(&journal.ops().unwrap_or_default()).map(|()| outbox));
        let outbox = match opened {
            Ok(outbox) => Some(outbox),
            Err(e) => {
                output(Event::Note(format!("error: op events cannot be reported: {e}")));
                None
            }
        };
        let delivery = outbox.clone().map(|o| Delivery::start(o, metrics.clone(), snapshot.clone()));
        Self {
            controller,
            options,
            current,
            snapshot,
            metrics,
            outbox,
            delivery,
            output,
            told: Default::default(),
        }
    }

    async fn pass(&mut self, trigger: &Trigger) -> Result<Action, PassError> {
        let manifest_error = self.load();
        // The commit the file came from as the pass reads it (`run --git`).
        let git_commit = self.snapshot.read().ok().and_then(|s| s.git.as_ref()?.commit.clone());
        let Some(manifest) = self.manifest() else {
            let error = manifest_error.unwrap_or_else(|| "no manifest".into());
            self.metrics.pass_failed();
            let done =
                Done { pass: None, manifest_error: Some(error.clone()), pass_error: Some(error.clone()) };
            self.publish(trigger, done, &self.journal());
            return Err(PassError::NoManifest(error));
        };
        // Before the pass: events already in the outbox go out even when
        // the pass itself cannot run (the engine is down).
        if let Some(delivery) = &self.delivery {
            delivery.set_url(self.webhook(&manifest));
        }
        match self.controller.pass(&manifest).await {
            Ok(pass) => {
                (self.output)(Event::Pass(&pass));
                let summary = Summary::of(&pass);
                let now = SystemTime::now();
                let unix = now.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default().as_secs_f64();
                self.metrics.pass_summary(&summary, unix);
                self.report_new_ops(&manifest, &pass.journal, git_commit.as_deref());
                self.report_refusals(&manifest, &pass, git_commit.as_deref());
                let done = Done { pass: Some((&pass, &summary)), manifest_error, pass_error: None };
                self.publish(trigger, done, &pass.journal);
                next_action(&summary, manifest.drift_interval.0, now)
            }
            Err(e) => {
                (self.output)(Event::PassFailed(&e));
                self.metrics.pass_failed();
                let done = Done { pass: None, manifest_error, pass_error: Some(e.to_string()) };
                self.publish(trigger, done, &self.journal());
                Err(PassError::Reconcile(e))
            }
        }
    }

    /// Loads the manifest into `current`; on failure keeps the last good
    /// one and returns the problems.
    fn load(&mut self) -> Option<String> {
        match Manifest::load(&self.options.manifest) {
            Ok(m) => {
                if let Ok(mut current) = self.current.write() {
                    *current = Some(m);
                }
                None
            }
            Err(e) => {
                let what = if self.manifest().is_some() {
                    "keeping the last good manifest"
                } else {
                    "no valid manifest yet; nothing is done"
                };
                (self.output)(Event::Note(format!("{e}\nerror: {what}")));
                Some(e.to_string())
            }
        }
    }

    fn manifest(&self) -> Option<Manifest> {
        self.current.read().ok().and_then(|m| m.clone())
    }

    /// The webhook in force: the flag, else the manifest's.
    fn webhook(&self, manifest: &Manifest) -> Option<String> {
        self.options.webhook.clone().or_else(|| manifest.webhook.clone())
    }

    fn journal(&self) -> Vec<OpRecord> {
        self.controller.swapper().journal().ops().unwrap_or_default()
    }

    /// Puts every op finished since the last pass in the outbox (the
    /// controller's own self-upgrade included: its outcome is found here
    /// after the restart) and counts it in the metrics.
    fn report_new_ops(&mut self, manifest: &Manifest, journal: &[OpRecord], git_commit: Option<&str>) {
        let url = self.webhook(manifest);
        let (Some(outbox), Some(delivery)) = (&self.outbox, &self.delivery) else { return };
        match outbox.enqueue_news_from(journal, url.is_some(), git_commit) {
            Ok(news) => {
                for event in &news {
                    self.metrics.op_done(event.outcome, Duration::from_millis(event.duration_ms));
                }
                if !news.is_empty() {
                    delivery.wake();
                }
            }
            // The ledger did not move: the next pass tries these again.
            Err(e) => (self.output)(Event::Note(format!("error: op events not queued for the webhook: {e}"))),
        }
    }

    /// Puts each signature refusal of the pass not told before in the
    /// outbox: the webhook learns why a target is held, once.
    fn report_refusals(&mut self, manifest: &Manifest, pass: &Pass, git_commit: Option<&str>) {
        let url = self.webhook(manifest);
        let (Some(outbox), Some(delivery), Some(_)) = (&self.outbox, &self.delivery, url) else { return };
        match outbox.enqueue_refusals(&pass.report.plan.refusals, git_commit, &mut self.told) {
            Ok(0) => {}
            Ok(_) => delivery.wake(),
            Err(e) => {
                (self.output)(Event::Note(format!("error: refusal events not queued for the webhook: {e}")))
            }
        }
    }

    fn publish(&self, trigger: &Trigger, done: Done<'_>, ops: &[OpRecord]) {
        let Ok(mut snap) = self.snapshot.write() else { return };
        let now = humantime::format_rfc3339_seconds(SystemTime::now()).to_string();
        snap.version = env!("CARGO_PKG_VERSION").to_string();
        snap.controller = self.controller.me().map(|me| ControllerInfo {
            container: me.name.clone(),
            image: me.details.config.as_ref().and_then(|c| c.image.clone()).unwrap_or_default(),
        });
        snap.manifest = Some(self.options.manifest.display().to_string());
        snap.manifest_error = done.manifest_error;
        snap.updated_at = Some(now.clone());
        snap.last_pass = Some(PassStatus {
            trigger: trigger.to_string(),
            ended_at: now,
            error: done.pass_error,
            summary: done.pass.map(|(_, s)| s.clone()),
        });
        if let Some((pass, summary)) = done.pass {
            snap.targets = targets(pass, summary, ops);
            snap.refusals = pass.report.plan.refusals.clone();
        }
    }
}

/// How a pass ended, for the status.
struct Done<'p> {
    pass: Option<(&'p Pass, &'p Summary)>,
    /// The file on disk is invalid (the last good manifest may be in force).
    manifest_error: Option<String>,
    /// The pass could not run.
    pass_error: Option<String>,
}

/// One status entry per plan entry, with its last op and this pass's failure.
fn targets(pass: &Pass, summary: &Summary, ops: &[OpRecord]) -> Vec<TargetStatus> {
    let last_op =
        |container: &str| ops.iter().rev().find(|op| op.container == container).map(LastOp::from_op);
    pass.report
        .plan
        .actions
        .iter()
        .map(|e| TargetStatus {
            target: e.target.clone(),
            container: e.container.clone(),
            desired: e.desired.clone(),
            observed: e.current.clone(),
            action: e.action,
            reason: e.reason.clone(),
            last_op: e.container.as_deref().and_then(last_op),
            failure: summary
                .failures
                .iter()
                .find(|f| f.target == e.target && f.container == e.container)
                .map(|f| TargetFailure { kind: f.kind, reason: f.reason.clone() }),
        })
        .collect()
}

impl<O: FnMut(Event<'_>)> Reconciler for Daemon<'_, O> {
    async fn reconcile(&mut self, trigger: &Trigger) -> Result<Action, PassError> {
        let span = tracing::info_span!("pass", trigger = %trigger);
        let started = Instant::now();
        let result = self.pass(trigger).instrument(span).await;
        self.metrics.pass_done(metrics::trigger_label(trigger), started.elapsed());
        result
    }

    fn scheduled(&mut self, wait: Option<Duration>) {
        if let Ok(mut snap) = self.snapshot.write() {
            snap.next_check =
                wait.map(|w| humantime::format_rfc3339_seconds(SystemTime::now() + w).to_string());
        }
    }
}
