//! One reconcile pass: recover, observe, resolve, plan, then swap every
//! container the plan says to upgrade — several at a time — and report.
//!
//! The pass does not know why it runs (a file change, a timer, a CLI
//! call): it always reconciles the whole manifest, so it must be, and is,
//! idempotent. A target that fails rolls back alone; the others go on.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::SystemTime;

use futures_util::stream::{self, StreamExt};

use crate::engine::EngineError;
use crate::manifest::{Manifest, Settings};
use crate::observe;
use crate::plan::{self, Action, Plan, PlanEntry};
use crate::reference::ImageRef;
use crate::registry::Registry;
use crate::resolve;
use crate::selfupgrade::{needs_helper, Me};
use crate::swap::backoff::{self, Hold};
use crate::swap::journal::JournalError;
use crate::swap::journal::OpRecord;
use crate::swap::recover::{self, Recovered};
use crate::swap::{Outcome, SwapError, SwapRequest, Swapper};

/// The default number of swaps run at once.
pub const DEFAULT_PARALLEL: usize = 16;

/// What happened to one upgrade entry of the plan.
#[derive(Debug)]
pub enum Applied {
    /// A swap ran (committed, rolled back, failed, or found nothing to do).
    Swapped(Box<Outcome>),
    /// Held back: the same image failed recently for this container.
    Held(Hold),
    /// The swap could not run or could not finish.
    Error(SwapError),
}

/// The result of a pass.
#[derive(Debug)]
pub struct Report {
    /// Unfinished ops found and finished first.
    pub recovered: Vec<Recovered>,
    /// The plan the pass acted on.
    pub plan: Plan,
    /// One result per `upgrade` entry, in plan order.
    pub applied: Vec<(PlanEntry, Applied)>,
    /// The controller's own container, when the plan upgrades it: not
    /// swapped here (a container cannot replace itself) but handed back,
    /// after every sibling is done, for a helper to swap. `Err`: held.
    pub own: Option<(PlanEntry, Result<SwapRequest, Hold>)>,
}

/// Why a pass could not run at all.
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    /// The engine could not be listed.
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// The journal cannot be read.
    #[error(transparent)]
    Journal(#[from] JournalError),
    /// Recovery of an earlier op failed; nothing new is started on top of it.
    #[error("recovering an interrupted swap failed: {0}")]
    Recover(SwapError),
}

/// Runs one pass of `manifest` with at most `parallel` swaps at once.
pub async fn reconcile_once(
    swapper: &Swapper,
    manifest: &Manifest,
    registry: &Registry,
    parallel: usize,
    me: Option<&Me>,
    stopping: &AtomicBool,
) -> Result<Report, ReconcileError> {
    let skip = |op: &OpRecord| me.is_some_and(|me| needs_helper(op, me));
    let recovered = recover::recover_except(swapper.engine(), swapper.journal(), skip)
        .await
        .map_err(ReconcileError::Recover)?;
    let observed = observe::observe(swapper.engine(), manifest).await?;
    let needed = plan::needs_resolution(manifest, &observed);
    let resolved = resolve::resolve(manifest, &observed, registry, &needed).await;
    let plan = plan::plan(manifest, &observed, &resolved);
    let history = swapper.journal().ops()?;
    let now = SystemTime::now();

    let (own, work): (Vec<_>, Vec<_>) = plan
        .upgrades()
        .filter_map(|entry| {
            let request = request(manifest, &resolved, entry)?;
            let held = backoff::hold(&history, &request.container, &request.image.familiar(), now);
            Some((entry.clone(), held.map_or(Ok(request), Err)))
        })
        .partition(|(entry, _)| me.is_some_and(|me| entry.container.as_deref() == Some(me.name.as_str())));
    let applied = stream::iter(work)
        .map(|(entry, job)| async move {
            let applied = match job {
                Err(hold) => Applied::Held(hold),
                // Shutting down: swaps in flight finish; no new one starts.
                Ok(request) if stopping.load(Ordering::SeqCst) => Applied::Error(SwapError::Unchanged {
                    container: request.container,
                    reason: "not started: the controller is shutting down".into(),
                }),
                Ok(request) => match swapper.swap(&request).await {
                    Ok(outcome) => Applied::Swapped(Box::new(outcome)),
                    Err(e) => Applied::Error(e),
                },
            };
            (entry, applied)
        })
        .buffered(parallel.max(1))
        .collect()
        .await;
    // The convergence net for containers sharing a replaced container's
    // network (see swap::rejoin); logged, journaled, never failing the pass.
    if !stopping.load(Ordering::SeqCst) {
        if let Err(e) = swapper.rejoin_orphans(&Settings::default()).await {
            tracing::warn!(error = %e, "looking for containers left in a replaced container's network");
        }
    }
    if let Err(e) = swapper.journal().prune() {
        tracing::warn!(error = %e, "pruning the journal");
    }
    Ok(Report { recovered, plan, applied, own: own.into_iter().next() })
}

/// The swap an `upgrade` entry asks for.
fn request(manifest: &Manifest, resolved: &resolve::Resolved, entry: &PlanEntry) -> Option<SwapRequest> {
    debug_assert_eq!(entry.action, Action::Upgrade);
    let target = manifest.targets.get(entry.target_index)?;
    let desired = resolved.get(&entry.target_index)?.as_ref().ok()?;
    // Swap to the tag (what the container will show), not the digest the
    // plan compared: the pull re-resolves it a moment later.
    let image: ImageRef = desired.reference.clone();
    Some(SwapRequest {
        container: entry.container.clone()?,
        image,
        settings: target.settings.clone(),
        op_id: None,
    })
}
