//! `run`: the controller loop.
//!
//! Triggers — the manifest file changing, the drift timer, Docker events on
//! targets, an API push, SIGHUP — all go into one bounded queue. One pass
//! runs at a time; triggers that arrive during a pass are drained before
//! the next one, so any number of them coalesce into one more pass. A
//! manifest that fails to load is reported with its positions and the last
//! good one stays in force. SIGTERM/SIGINT: no new swap starts, swaps in
//! flight finish or roll back, then exit 0.

use std::path::Path;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant, SystemTime};

use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::mpsc;
use tracing::Instrument;

use std::net::SocketAddr;

use container_upgrader::api::{self, ApiConfig};
use container_upgrader::controller::{Controller, Pass};
use container_upgrader::manifest::{Manifest, DEFAULT_DRIFT_INTERVAL};
use container_upgrader::metrics::{self, Metrics};
use container_upgrader::report::{OpEvent, Reporter};
use container_upgrader::status::{ControllerInfo, LastOp, SharedSnapshot, Snapshot, TargetStatus};
use container_upgrader::swap::journal::OpRecord;
use container_upgrader::trigger::Trigger;
use container_upgrader::watch;

use super::{exit, swap_cmd, Failure};

/// With `drift_interval: 0`, the timer is off: this is just "a long time".
const IDLE: Duration = Duration::from_secs(24 * 3600);
/// Editors write, then rename; `set` writes a temp file and renames: wait
/// this long after a file event so one edit makes one pass.
const DEBOUNCE: Duration = Duration::from_millis(30);

/// What `run` was given besides the controller.
pub struct Options<'a> {
    pub manifest: &'a Path,
    pub webhook: Option<String>,
    /// Serve the agent API here.
    pub listen: Option<SocketAddr>,
    /// The bearer token state-changing API calls need (read from a file).
    pub token: Option<String>,
}

pub async fn run(controller: &Controller, options: Options<'_>) -> Result<u8, Failure> {
    let mut term = signal(SignalKind::terminate()).map_err(|e| Failure::new(exit::INTERNAL, e))?;
    let mut int = signal(SignalKind::interrupt()).map_err(|e| Failure::new(exit::INTERNAL, e))?;
    let mut hup = signal(SignalKind::hangup()).map_err(|e| Failure::new(exit::INTERNAL, e))?;
    let (tx, mut rx) = mpsc::channel::<Trigger>(64);
    let current: watch::Current = Arc::new(RwLock::new(None));
    let _watcher = watch::watch_file(options.manifest, tx.clone()).map_err(|e| {
        Failure::new(exit::INTERNAL, format!("error: watching {}: {e}", options.manifest.display()))
    })?;
    tokio::spawn(watch::watch_docker(controller.swapper().engine().clone(), current.clone(), tx.clone()));
    let reporter = Reporter::start();
    let snapshot: SharedSnapshot = Arc::new(RwLock::new(Snapshot::default()));
    let metrics = Arc::new(Metrics::new());
    let (api_stop, api_stopped) = tokio::sync::oneshot::channel::<()>();
    let api = match options.listen {
        Some(addr) => {
            Some(start_api(addr, &options, snapshot.clone(), tx.clone(), metrics.clone(), api_stopped).await?)
        }
        None => None,
    };
    let mut loop_state =
        Loop { controller, options: &options, current, snapshot, reporter, reported: None, metrics };

    for note in controller.startup().await {
        eprintln!("{note}");
    }
    loop_state.reported = last_finished(controller);
    let mut trigger = Trigger::Timer;
    loop {
        // A signal during a pass stops new swaps at once; the ones in
        // flight finish (or roll back) before the pass returns.
        let signalled = {
            let pass = loop_state.pass(&trigger);
            tokio::pin!(pass);
            let signalled = tokio::select! {
                () = &mut pass => false,
                _ = term.recv() => true,
                _ = int.recv() => true,
            };
            if signalled {
                controller.stop();
                eprintln!("stopping: no new swap starts; waiting for the swaps in flight");
                pass.await;
            }
            signalled
        };
        if signalled {
            break;
        }
        let wait = loop_state.interval();
        let next_check = Instant::now() + wait;
        loop_state.set_next_check(wait);
        trigger = tokio::select! {
            () = tokio::time::sleep_until(next_check.into()) => Trigger::Timer,
            Some(t) = rx.recv() => t,
            _ = hup.recv() => Trigger::Hangup,
            _ = term.recv() => break,
            _ = int.recv() => break,
        };
        if trigger == Trigger::File {
            tokio::time::sleep(DEBOUNCE).await;
        }
        // Everything queued so far is answered by the pass about to run.
        while rx.try_recv().is_ok() {}
    }
    controller.stop();
    let _ = api_stop.send(());
    if let Some(api) = api {
        let _ = api.await;
    }
    eprintln!("stopping: no swap in flight");
    Ok(exit::OK)
}

/// Binds and serves the API on its own task; it stops when `stopped` fires.
async fn start_api(
    addr: SocketAddr,
    options: &Options<'_>,
    snapshot: SharedSnapshot,
    triggers: container_upgrader::trigger::Triggers,
    metrics: Arc<Metrics>,
    stopped: tokio::sync::oneshot::Receiver<()>,
) -> Result<tokio::task::JoinHandle<()>, Failure> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| Failure::new(exit::USAGE, format!("error: cannot listen on {addr}: {e}")))?;
    let config = ApiConfig {
        listen: addr,
        token: options.token.clone(),
        manifest_path: options.manifest.to_path_buf(),
    };
    let shutdown = async {
        let _ = stopped.await;
    };
    Ok(tokio::spawn(async move {
        if let Err(e) = api::serve(listener, config, snapshot, triggers, metrics, shutdown).await {
            tracing::error!(error = %e, "the API stopped");
        }
    }))
}

struct Loop<'a> {
    controller: &'a Controller,
    options: &'a Options<'a>,
    current: watch::Current,
    snapshot: SharedSnapshot,
    reporter: Reporter,
    /// The newest finished op already reported (ops after it are news).
    reported: Option<String>,
    metrics: Arc<Metrics>,
}

impl Loop<'_> {
    /// Loads the manifest (keeping the last good one), runs one pass, and
    /// publishes what it learned.
    async fn pass(&mut self, trigger: &Trigger) {
        let span = tracing::info_span!("pass", trigger = %trigger);
        let started = Instant::now();
        self.pass_inner().instrument(span).await;
        self.metrics.pass_done(metrics::trigger_label(trigger), started.elapsed());
    }

    async fn pass_inner(&mut self) {
        let error = match Manifest::load(self.options.manifest) {
            Ok(m) => {
                if let Ok(mut current) = self.current.write() {
                    *current = Some(m);
                }
                None
            }
            Err(e) => {
                let kept = self.manifest().is_some();
                let what = if kept {
                    "keeping the last good manifest"
                } else {
                    "no valid manifest yet; nothing is done"
                };
                eprintln!("{e}\nerror: {what}");
                Some(e.to_string())
            }
        };
        let Some(manifest) = self.manifest() else {
            self.publish(None, &self.journal(), error);
            return;
        };
        match self.controller.pass(&manifest).await {
            Ok(pass) => {
                if swap_cmd::print_pass(&pass) == exit::OK {
                    let now = SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
                    self.metrics.set_last_success(now.as_secs_f64());
                }
                self.report_new_ops(&manifest, &pass.journal);
                self.publish(Some(&pass), &pass.journal, error);
            }
            Err(e) => {
                eprintln!("error: {e}");
                self.publish(None, &self.journal(), error.or(Some(e.to_string())));
            }
        }
    }

    fn manifest(&self) -> Option<Manifest> {
        self.current.read().ok().and_then(|m| m.clone())
    }

    fn interval(&self) -> Duration {
        let interval = self.manifest().map_or(DEFAULT_DRIFT_INTERVAL, |m| m.drift_interval.0);
        if interval.is_zero() {
            IDLE
        } else {
            interval
        }
    }

    /// POSTs every op finished since the last report (the controller's own
    /// self-upgrade included: its outcome is found here after a restart).
    fn report_new_ops(&mut self, manifest: &Manifest, ops: &[OpRecord]) {
        let finished: Vec<&OpRecord> = ops.iter().filter(|op| op.is_finished()).collect();
        let start = self
            .reported
            .as_ref()
            .and_then(|id| finished.iter().position(|op| op.op_id.as_str() == id).map(|i| i + 1))
            .unwrap_or(0);
        let newest = finished.last().filter(|last| self.reported.as_deref() != Some(last.op_id.as_str()));
        if let Some(last) = newest {
            self.reported = Some(last.op_id.to_string());
            // Persisted so a restarted controller (a self-upgrade stops it
            // before its op ends) reports what it did not see end.
            let path = self.controller.swapper().journal().dir().join("reported");
            if let Err(e) = std::fs::write(&path, last.op_id.as_str()) {
                tracing::warn!(error = %e, "cannot record the last reported op");
            }
        }
        let url = self.options.webhook.clone().or_else(|| manifest.webhook.clone());
        for op in &finished[start..] {
            let event = OpEvent::from_op(op);
            self.metrics.op_done(&event.outcome, Duration::from_millis(event.duration_ms));
            if let Some(url) = &url {
                self.reporter.report(url, event);
            }
        }
    }

    fn journal(&self) -> Vec<OpRecord> {
        self.controller.swapper().journal().ops().unwrap_or_default()
    }

    fn publish(&self, pass: Option<&Pass>, ops: &[OpRecord], manifest_error: Option<String>) {
        let last_op =
            |container: &str| ops.iter().rev().find(|op| op.container == container).map(LastOp::from_op);
        let Ok(mut snap) = self.snapshot.write() else { return };
        snap.version = env!("CARGO_PKG_VERSION").to_string();
        snap.controller = self.controller.me().map(|me| ControllerInfo {
            container: me.name.clone(),
            image: me.details.config.as_ref().and_then(|c| c.image.clone()).unwrap_or_default(),
        });
        snap.manifest = Some(self.options.manifest.display().to_string());
        snap.manifest_error = manifest_error;
        snap.updated_at = Some(humantime::format_rfc3339_seconds(SystemTime::now()).to_string());
        if let Some(pass) = pass {
            snap.targets = pass
                .report
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
                })
                .collect();
        }
    }

    fn set_next_check(&self, wait: Duration) {
        if let Ok(mut snap) = self.snapshot.write() {
            snap.next_check = (wait < IDLE)
                .then(|| humantime::format_rfc3339_seconds(SystemTime::now() + wait).to_string());
        }
    }
}

/// The last op reported by any controller on this state directory; on a
/// first start, the newest finished op (older history is not news).
fn last_finished(controller: &Controller) -> Option<String> {
    let journal = controller.swapper().journal();
    if let Ok(id) = std::fs::read_to_string(journal.dir().join("reported")) {
        return Some(id.trim().to_string());
    }
    let ops = journal.ops().unwrap_or_default();
    ops.iter().rev().find(|op| op.is_finished()).map(|op| op.op_id.to_string())
}
