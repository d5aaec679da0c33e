//! The controller: who it is, what it finishes at start, and one pass over
//! the manifest — siblings first, then its own container through a helper.
//!
//! `reconcile --once` runs one [`Controller::pass`]; `run` runs
//! [`Controller::startup`] then passes on every trigger.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::engine::EngineError;
use crate::manifest::Manifest;
use crate::reconcile::{self, ReconcileError, Report};
use crate::registry::{self, Registry};
use crate::selfupgrade::{self, Job, Me};
use crate::swap::backoff::Hold;
use crate::swap::journal::{OpRecord, Step};
use crate::swap::{SwapRequest, Swapper};

/// What happened to the controller's own upgrade in a pass.
#[derive(Debug)]
pub enum Own {
    /// A helper was started to swap this container.
    HelperStarted {
        /// The helper's container id.
        helper: String,
        /// The image it swaps to.
        image: String,
    },
    /// A helper is already at work on it.
    InProgress,
    /// Held off the image by the backoff.
    Held(Hold),
    /// The hand-off failed before anything changed (pull or helper refused).
    Failed(String),
}

/// A pass: the reconcile report and the self-upgrade hand-off.
#[derive(Debug)]
pub struct Pass {
    /// Siblings and the plan.
    pub report: Report,
    /// The controller's own upgrade, when the plan asked for one.
    pub own: Option<Own>,
    /// How the last self-upgrade ended, when that is news since the last
    /// time it was told (e.g. the helper committed after this controller
    /// started).
    pub own_news: Option<String>,
    /// The journal as the pass left it (read once, for whoever reports it).
    pub journal: Vec<OpRecord>,
    /// The plan entry of the controller's own container, when the plan
    /// upgrades it (so a failed hand-off is named like any target).
    pub own_entry: Option<crate::plan::PlanEntry>,
}

/// The controller's long-lived parts.
pub struct Controller {
    swapper: Swapper,
    state_dir: PathBuf,
    me: Option<Me>,
    parallel: usize,
    insecure: Vec<String>,
    registry_timeout: Duration,
    told: std::sync::Mutex<Option<crate::types::OpId>>,
    stopping: std::sync::atomic::AtomicBool,
    registry: std::sync::Mutex<Option<CachedRegistry>>,
}

/// A registry client kept across passes: building one loads the system's
/// CA store, which costs memory and time on every pass otherwise.
struct CachedRegistry {
    plain: Vec<String>,
    built: std::time::Instant,
    registry: Arc<Registry>,
}

/// How long a cached client (and the credentials it read) is reused.
const REGISTRY_REUSE: Duration = Duration::from_secs(600);

impl Controller {
    /// Finds the controller's own container (none outside a container).
    pub async fn new(
        swapper: Swapper,
        state_dir: &Path,
        self_id: Option<&str>,
        parallel: usize,
        insecure: Vec<String>,
        registry_timeout: Duration,
    ) -> Result<Self, EngineError> {
        let me = selfupgrade::whoami(swapper.engine(), self_id).await?;
        match &me {
            Some(me) => tracing::info!(container = %me.name, id = %me.id.short(), "running in a container"),
            None => tracing::info!("not running in a container"),
        }
        let state_dir = state_dir.to_path_buf();
        let swapper = match &me {
            Some(me) => swapper.with_own_container(me.id.clone()),
            None => swapper,
        };
        Ok(Self {
            swapper,
            state_dir,
            me,
            parallel,
            insecure,
            registry_timeout,
            told: Default::default(),
            stopping: Default::default(),
            registry: Default::default(),
        })
    }

    /// From now on no new swap starts (SIGTERM); swaps in flight finish.
    pub fn stop(&self) {
        self.stopping.store(true, std::sync::atomic::Ordering::SeqCst);
    }

    /// The swapper (engine and journal) this controller acts through.
    pub fn swapper(&self) -> &Swapper {
        &self.swapper
    }

    /// The controller's own container, if it runs in one.
    pub fn me(&self) -> Option<&Me> {
        self.me.as_ref()
    }

    /// At start: hand interrupted swaps of this very container to a helper
    /// (a controller cannot remove itself to restore its predecessor),
    /// remove finished helpers, and say how the last self-upgrade ended.
    pub async fn startup(&self) -> Vec<String> {
        let mut notes = Vec::new();
        let Some(me) = &self.me else { return notes };
        let engine = self.swapper.engine();
        let journal = self.swapper.journal();
        let ops = journal.ops().unwrap_or_default();
        for op in ops.iter().filter(|op| !op.is_finished() && selfupgrade::needs_helper(op, me)) {
            // A held lock means the swap's helper is still at work.
            let Ok(lock) = journal.lock(&op.container) else { continue };
            drop(lock);
            match selfupgrade::launch(engine, me, op.old_image_id.as_str(), &Job::Recover, &self.state_dir)
                .await
            {
                Ok(_) => notes.push(format!(
                    "op {} on this container was interrupted; a helper is recovering it",
                    op.op_id
                )),
                Err(e) => notes.push(format!(
                    "op {} on this container was interrupted and no helper could start: {e}",
                    op.op_id
                )),
            }
        }
        match selfupgrade::sweep_helpers(engine, me).await {
            Ok(n) if n > 0 => notes.push(format!("removed {n} finished helper(s)")),
            Ok(_) => {}
            Err(e) => notes.push(format!("finished helpers not removed: {e}")),
        }
        notes.extend(self.own_news(&ops));
        notes
    }

    /// The last finished op on this controller's container, if not told yet.
    fn own_news(&self, ops: &[OpRecord]) -> Option<String> {
        let me = self.me.as_ref()?;
        let op = ops.iter().rev().find(|op| op.container == me.name && op.is_finished())?;
        let mut told = self.told.lock().ok()?;
        if told.as_ref() == Some(&op.op_id) {
            return None;
        }
        *told = Some(op.op_id.clone());
        Some(describe_last(op))
    }

    /// One pass over `manifest`: siblings are swapped (several at a time),
    /// then, if the plan upgrades this controller, a helper is started for it.
    pub async fn pass(&self, manifest: &Manifest) -> Result<Pass, ReconcileError> {
        if let Some(me) = &self.me {
            // Helpers exit when done; their containers go at the next pass.
            if let Err(e) = selfupgrade::sweep_helpers(self.swapper.engine(), me).await {
                tracing::warn!(error = %e, "finished helpers not removed");
            }
        }
        let seen = manifest.targets.iter().map(|t| t.want.image());
        let plain = registry::plain_http_for(self.swapper.engine(), &self.insecure, seen).await;
        let registry = self.registry(plain);
        let me = self.me.as_ref();
        let result =
            reconcile::reconcile_once(&self.swapper, manifest, &registry, self.parallel, me, &self.stopping)
                .await;
        // A client that failed is never kept: it may have been built while
        // the process was out of file descriptors (no CA store, no
        // credentials read) and would fail every lookup until it expired.
        if result
            .as_ref()
            .map_or(true, |r| r.plan.actions.iter().any(|a| a.action == crate::plan::Action::Error))
        {
            self.forget_registry();
        }
        let mut report = result?;
        let journal = self.swapper.journal().ops().unwrap_or_default();
        let own_news = self.own_news(&journal);
        let own_entry = report.own.as_ref().map(|(entry, _)| entry.clone());
        let own = match (report.own.take(), &self.me) {
            (Some((_, Err(hold))), _) => Some(Own::Held(hold)),
            // Shutting down: the helper would outlive this controller's
            // say in the matter; the next start picks the upgrade up again.
            (Some((_, Ok(_))), Some(_)) if self.stopping.load(std::sync::atomic::Ordering::SeqCst) => None,
            (Some((_, Ok(request))), Some(me)) => Some(self.hand_off(me, request).await),
            _ => None,
        };
        Ok(Pass { report, own, own_news, journal, own_entry })
    }

    /// The registry client for the `plain` HTTP registries (see
    /// [`registry::plain_http_for`]): the cached one while that set is the same and it is younger than
    /// [`REGISTRY_REUSE`] (credentials are re-read after that).
    fn registry(&self, plain: Vec<String>) -> Arc<Registry> {
        let mut cache = match self.registry.lock() {
            Ok(c) => c,
            Err(poisoned) => poisoned.into_inner(),
        };
        if let Some(c) = cache.as_ref().filter(|c| c.plain == plain && c.built.elapsed() < REGISTRY_REUSE) {
            return c.registry.clone();
        }
        let registry = Arc::new(Registry::with_plain_http(plain.clone(), self.registry_timeout));
        *cache = Some(CachedRegistry { plain, built: std::time::Instant::now(), registry: registry.clone() });
        registry
    }

    /// Drops the cached registry client: the next pass builds a new one.
    fn forget_registry(&self) {
        let mut cache = match self.registry.lock() {
            Ok(c) => c,
            Err(poisoned) => poisoned.into_inner(),
        };
        *cache = None;
    }

    /// Pulls the new image (so a registry failure changes nothing and the
    /// helper needs no registry), then starts the helper from the current,
    /// known-good image.
    async fn hand_off(&self, me: &Me, mut request: SwapRequest) -> Own {
        let engine = self.swapper.engine();
        match selfupgrade::helper_running(engine, me).await {
            Ok(true) => return Own::InProgress,
            Ok(false) => {}
            Err(e) => return Own::Failed(e.to_string()),
        }
        // The target's pull policy holds for the controller's own
        // container too (`never`: a locally built image, no registry).
        if let Err(e) = self.swapper.prefetch(&request, &me.details).await {
            return Own::Failed(e.to_string());
        }
        let current = me.details.image.clone().unwrap_or_default();
        request.op_id = Some(crate::types::OpId::generate());
        let image = request.image.familiar();
        match selfupgrade::launch(engine, me, &current, &Job::Swap(Box::new(request)), &self.state_dir).await
        {
            Ok(helper) => Own::HelperStarted { helper: helper.to_string(), image },
            Err(e) => Own::Failed(format!("starting the helper: {e}")),
        }
    }
}

/// "upgraded to X (op …)" or "upgrade to X failed: reason (op …)".
pub fn describe_last(op: &OpRecord) -> String {
    match op.step() {
        Some(Step::Committed) => format!(
            "last self-upgrade: {} → {} committed at {} (op {})",
            op.old_image,
            op.new_image,
            op.updated_at(),
            op.op_id
        ),
        _ => format!(
            "last self-upgrade: upgrade to {} failed: {} (op {}, {})",
            op.new_image,
            op.reason.as_deref().unwrap_or("no reason recorded"),
            op.op_id,
            op.updated_at()
        ),
    }
}
