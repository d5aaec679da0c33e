//! Executing one swap, stop-first or start-first, step by step.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::sync::Arc;
use std::time::Duration;

use tracing::Instrument;

use super::journal::{Journal, LeftNetwork, OpRecord, Step, TargetLock};
use super::recreate::{recreate, CreateSpec};
use super::{
    backup_name, health, swapped_name, temp_name, NoChange, Outcome, PullError, StepError, SwapError,
    SwapRequest, OP_LABEL,
};
use crate::engine::{ContainerDetails, Engine, ImageDetails};
use crate::manifest::{Order, Phase, PullPolicy, Settings};
use crate::platform::Platform;
use crate::types::{ContainerId, ImageId, OpId};

/// Performs swaps; one value is shared by every swap of a pass.
#[derive(Clone)]
pub struct Swapper {
    engine: Engine,
    journal: Journal,
    show_progress: bool,
    own: Option<ContainerId>,
    /// One lock per reference being pulled: swaps of a pass that need the
    /// same image wait for one pull instead of each pulling it.
    pulling: Arc<std::sync::Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>>,
    /// Permits for engine work (pull, create, start, stop, rename,
    /// remove), shared by every swap of a pass; `None`: unbounded. A swap
    /// holds one only while it asks the engine for something — never while
    /// its new container sits in the health gate, which only waits — so a
    /// long gate does not hold up other swaps.
    slots: Option<Arc<tokio::sync::Semaphore>>,
}

/// A permit for engine work (`None` when the swapper is unbounded).
/// Rule that keeps it deadlock-free: a function holding one never calls a
/// function that takes one; it drops its own first.
type Slot = Option<tokio::sync::OwnedSemaphorePermit>;

/// What `prepare` learned before anything is touched.
pub(super) struct Prepared {
    pub(super) old: ContainerDetails,
    pub(super) spec: CreateSpec,
    pub(super) op: OpRecord,
}

impl Swapper {
    /// A swapper over `engine`, journaling to `journal`. Pull progress is
    /// printed on stderr when it is a terminal.
    pub fn new(engine: Engine, journal: Journal) -> Self {
        Self {
            engine,
            journal,
            show_progress: std::io::stderr().is_terminal(),
            own: None,
            pulling: Arc::default(),
            slots: None,
        }
    }

    /// This swapper with at most `n` swaps asking the engine for work at
    /// once (`--parallel`); clones share the bound.
    pub fn with_engine_slots(mut self, n: usize) -> Self {
        self.slots = Some(Arc::new(tokio::sync::Semaphore::new(n.max(1))));
        self
    }

    /// Waits until a slot for engine work is free, then gives it back: a
    /// pass that starts every swap at once lets each one check for a
    /// shutdown only when its turn comes, as the bounded queue did.
    pub async fn engine_turn(&self) {
        drop(self.slot().await);
    }

    /// A permit for engine work; the semaphore is never closed.
    async fn slot(&self) -> Slot {
        self.slots.clone()?.acquire_owned().await.ok()
    }

    /// Tells the swapper which container this process runs in: it is never
    /// stopped from inside (recreating it to follow a peer's network would
    /// kill the process half-way through).
    pub fn with_own_container(mut self, id: ContainerId) -> Self {
        self.own = Some(id);
        self
    }

    /// The container this process runs in, if known.
    pub(super) fn own_container(&self) -> Option<&ContainerId> {
        self.own.as_ref()
    }

    /// The journal this swapper writes.
    pub fn journal(&self) -> &Journal {
        &self.journal
    }

    /// The engine this swapper drives.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Swaps `req.container` onto `req.image`. Errors before the swap leave
    /// the container untouched ([`SwapError::Unchanged`]); a failed new
    /// container is rolled back (or kept, with rollback disabled).
    pub async fn swap(&self, req: &SwapRequest) -> Result<Outcome, SwapError> {
        let span = tracing::info_span!("swap", container = %req.container, to = %req.image.familiar(), op_id = tracing::field::Empty);
        let outcome = async {
            let _lock = self.lock(&req.container)?;
            let prepared = {
                let _slot = self.slot().await;
                self.prepare(req).await?
            };
            let Some(mut prepared) = prepared else {
                let image = req.image.familiar();
                return Ok(Outcome::AlreadyCurrent { container: req.container.clone(), image });
            };
            tracing::Span::current().record("op_id", prepared.op.op_id.as_str());
            if let Err(reason) = self.hook(Phase::PreUpgrade, &req.settings.hooks, &mut prepared.op).await? {
                return Err(self.abort(&mut prepared.op, NoChange::Hook(reason)));
            }
            match req.settings.order {
                Order::StopFirst => self.stop_first(&req.settings, prepared).await,
                Order::StartFirst => self.start_first(&req.settings, prepared).await,
            }
        }
        .instrument(span)
        .await?;
        self.rejoin_dependents(&req.settings, &outcome).await;
        Ok(outcome)
    }

    pub(super) fn lock(&self, container: &str) -> Result<TargetLock, SwapError> {
        self.journal.lock(container).map_err(|e| SwapError::unchanged(container, e))
    }

    /// Inspects, pulls and computes the new container; journals `prepared`.
    /// `None`: the container already runs the image. A failure once the
    /// container is known (a pull, a refused recreation) is journaled as
    /// `aborted`, so the backoff holds the image instead of retrying it on
    /// every pass.
    async fn prepare(&self, req: &SwapRequest) -> Result<Option<Prepared>, SwapError> {
        let c = req.container.as_str();
        let engine = &self.engine;
        let old = engine
            .inspect_container(c)
            .await
            .map_err(|e| SwapError::unchanged(c, e))?
            .ok_or_else(|| SwapError::unchanged(c, NoChange::NoSuchContainer(c.to_string())))?;
        let old_image_id = old.image.clone().unwrap_or_default();
        let old_image = engine
            .inspect_image(&old_image_id)
            .await
            .map_err(|e| SwapError::unchanged(c, e))?
            .ok_or_else(|| SwapError::unchanged(c, NoChange::OldImageGone(old_image_id.clone())))?;
        let mut op = new_op(req, &old);
        // The old image's platform, so an emulated container is re-pulled
        // for its own architecture, not the host's.
        let platform = crate::engine::platform_of(&old_image);
        let new_image = match self.pull(req, platform.as_ref()).await {
            Ok(image) => image,
            Err(source) => {
                return Err(self.abort(&mut op, NoChange::Pull { image: req.image.familiar(), source }))
            }
        };
        op.new_image_id = ImageId::new(new_image.id.clone().unwrap_or_default());
        if op.new_image_id.as_str() == old_image_id {
            return Ok(None);
        }
        let spec = match self.spec(req, &old, &old_image, &new_image).await {
            Ok(spec) => spec,
            Err(cause) => return Err(self.abort(&mut op, cause)),
        };
        self.journal.record(&mut op, Step::Prepared, None)?;
        Ok(Some(Prepared { old, spec, op }))
    }

    /// The new container's create request, or why it cannot be made.
    async fn spec(
        &self,
        req: &SwapRequest,
        old: &ContainerDetails,
        old_image: &ImageDetails,
        new_image: &ImageDetails,
    ) -> Result<CreateSpec, NoChange> {
        let peers = self.peers(old).await?;
        let spec = recreate(old, old_image, new_image, &req.image.familiar(), &peers)
            .map_err(|e| NoChange::NotAllowed(e.to_string()))?;
        match req.settings.order {
            Order::StartFirst => start_first_allowed(old),
            Order::StopFirst => stop_first_allowed(old),
        }
        .map_err(|e| NoChange::NotAllowed(e.to_string()))?;
        Ok(spec)
    }

    /// Makes the desired image present per the pull policy, for `platform`
    /// (the old image's; `None`: the engine's own); returns it.
    /// The controller's hand-off to its helper pulls through here too, so
    /// one pull policy covers every container, its own included.
    pub async fn pull(
        &self,
        req: &SwapRequest,
        platform: Option<&Platform>,
    ) -> Result<ImageDetails, PullError> {
        let image = req.image.familiar();
        // A planned digest is pulled as `name@digest`: exactly what was planned.
        let source = match &req.planned {
            Some(d) if req.settings.pull != PullPolicy::Never => req.image.pinned_only(d.clone()),
            _ => req.image.clone(),
        };
        let reference = source.to_string();
        let lock = self.pulling.lock().map(|mut m| m.entry(reference.clone()).or_default().clone());
        let _pulling = match &lock {
            Ok(lock) => Some(lock.lock().await),
            Err(_) => None,
        };
        let present = self.engine.inspect_image(&reference).await?;
        let must_pull = match req.settings.pull {
            // A digest names its content: present is exactly what a pull
            // would bring (another swap of this pass pulled it already).
            PullPolicy::Always if source.digest().is_some() => present.is_none(),
            PullPolicy::Always => true,
            PullPolicy::IfMissing => present.is_none(),
            PullPolicy::Never => false,
        };
        if !must_pull {
            let image = present.ok_or(PullError::NotPresent)?;
            self.name_as_written(&source, req, &image, &reference).await?;
            return Ok(image);
        }
        let credentials = crate::registry::for_engine(req.image.registry(), "pulling").await;
        let show = self.show_progress;
        self.engine
            .pull(&source, platform, credentials, |p| {
                if show {
                    eprintln!(
                        "{image}: {}{}{}",
                        p.layer.map(|l| format!("{l}: ")).unwrap_or_default(),
                        p.status,
                        p.progress.map(|x| format!(" {x}")).unwrap_or_default()
                    );
                }
            })
            .await?;
        let pulled = self.engine.inspect_image(&reference).await?.ok_or(PullError::Vanished)?;
        self.name_as_written(&source, req, &pulled, &reference).await?;
        Ok(pulled)
    }

    /// Tags the image fetched by digest as the name the user wrote: the
    /// create names it so, and the container shows it.
    async fn name_as_written(
        &self,
        source: &crate::reference::ImageRef,
        req: &SwapRequest,
        image: &ImageDetails,
        reference: &str,
    ) -> Result<(), PullError> {
        if *source != req.image {
            self.engine.tag(image.id.as_deref().unwrap_or(reference), &req.image).await?;
        }
        Ok(())
    }

    /// Makes `req.image` present for a swap of `old` that another process
    /// (the self-upgrade helper) will perform, under the same pull policy
    /// as any swap; a failure is journaled `aborted` on `old`'s name, so the
    /// same backoff holds the image.
    pub async fn prefetch(&self, req: &SwapRequest, old: &ContainerDetails) -> Result<(), SwapError> {
        let platform = match old.image.as_deref() {
            Some(id) => {
                self.engine.image_platform(id).await.map_err(|e| SwapError::unchanged(&req.container, e))?
            }
            None => None,
        };
        match self.pull(req, platform.as_ref()).await {
            Ok(_) => Ok(()),
            Err(source) => {
                let mut op = new_op(&SwapRequest { op_id: None, ..req.clone() }, old);
                Err(self.abort(&mut op, NoChange::Pull { image: req.image.familiar(), source }))
            }
        }
    }

    /// Journals an op that ended before anything changed, so the backoff
    /// sees it; says nothing changed.
    pub(super) fn abort(&self, op: &mut OpRecord, cause: impl Into<NoChange>) -> SwapError {
        let cause = cause.into();
        if let Err(e) = self.journal.record(op, Step::Aborted, Some(cause.to_string())) {
            tracing::error!(error = %e, "journaling a failure before the swap");
        }
        SwapError::unchanged(&op.container, cause)
    }

    /// Names of the containers whose ids the old one refers to
    /// (`container:<id>` network, IPC and PID modes). The engine stores the
    /// peer's id; the new container is created with its *name*, so it joins
    /// whichever container carries that name now. A peer that was itself
    /// swapped no longer has its old id: the journal maps it to its name.
    pub(super) async fn peers(&self, old: &ContainerDetails) -> Result<HashMap<String, String>, NoChange> {
        let host = old.host_config.as_ref();
        let modes = [
            host.and_then(|h| h.network_mode.clone()),
            host.and_then(|h| h.ipc_mode.clone()),
            host.and_then(|h| h.pid_mode.clone()),
        ];
        let mut peers = HashMap::new();
        for id in modes.into_iter().flatten().filter_map(|m| m.strip_prefix("container:").map(str::to_string))
        {
            let live = self.engine.inspect_container(&id).await?;
            let name = match live.and_then(|p| p.name) {
                // A peer in the middle of its own swap: join whatever
                // carries its name, never its backup or temporary.
                Some(name) => {
                    let name = name.trim_start_matches('/');
                    swapped_name(name).unwrap_or(name).to_string()
                }
                None => self
                    .journal
                    .ops()?
                    .into_iter()
                    .rev()
                    .find(|op| op.old_id.as_str() == id && op.step() == Some(Step::Committed))
                    .map(|op| op.container)
                    .ok_or_else(|| {
                        NoChange::NotAllowed(format!(
                            "it shares a namespace with container {id}, which no longer exists"
                        ))
                    })?,
            };
            peers.insert(id, name);
        }
        Ok(peers)
    }

    /// Creates the new container under its temporary name with all its
    /// networks; journals `created`. On failure removes it: nothing changed.
    /// The new container carries [`OP_LABEL`]: whoever finds it later — a
    /// recovery whose journal record was lost, a check before removing it —
    /// can tell it is this op's and not a user's.
    async fn create(&self, op: &mut OpRecord, spec: &CreateSpec) -> Result<(), StepError> {
        let mut body = spec.body.clone();
        body.labels.get_or_insert_with(HashMap::new).insert(OP_LABEL.to_string(), op.op_id.to_string());
        let id = self
            .engine
            .create_for(&op.temp_name, body, spec.platform.as_ref())
            .await
            .map_err(StepError::engine("creating the new container"))?;
        op.new_id = Some(id.clone());
        // The create names the image by tag; whatever moved that tag since
        // the pull (another pull, a `docker tag`), run only what was planned.
        let created = self
            .engine
            .inspect_container(id.as_str())
            .await
            .map_err(StepError::engine("inspecting the new container"))?;
        let image = created.and_then(|c| c.image).unwrap_or_default();
        if image != op.new_image_id.as_str() {
            return Err(StepError::ImageMoved { planned: op.new_image_id.to_string(), created: image });
        }
        for (network, endpoint) in &spec.extra_networks {
            self.engine
                .connect_network(network, &id, endpoint.clone())
                .await
                .map_err(StepError::engine("connecting the new container to its networks"))?;
        }
        Ok(self.journal.record(op, Step::Created, None)?)
    }

    pub(super) async fn stop_first(&self, settings: &Settings, p: Prepared) -> Result<Outcome, SwapError> {
        let Prepared { old, spec, mut op } = p;
        // One slot from create to start: the downtime is not stretched by
        // other swaps' turns between stop and start.
        let slot = self.slot().await;
        self.create_or_abort(&mut op, &spec).await?;
        if let Err(e) = self.retire_old(&old, &mut op).await {
            drop(slot);
            return self.undo_retire(op, e.into()).await;
        }
        self.journal.record(&mut op, Step::Stopped, None)?;
        let new_id = op.new_id.clone().map(|id| id.to_string()).unwrap_or_default();
        if let Err(e) = self.take_over(&op, &new_id).await {
            drop(slot);
            return self.roll_back(op, e.to_string()).await;
        }
        self.journal.record(&mut op, Step::Started, None)?;
        drop(slot);
        self.gate_and_finish(settings, op, &new_id).await
    }

    async fn start_first(&self, settings: &Settings, p: Prepared) -> Result<Outcome, SwapError> {
        let Prepared { old, spec, mut op } = p;
        let slot = self.slot().await;
        self.create_or_abort(&mut op, &spec).await?;
        let new_id = op.new_id.clone().map(|id| id.to_string()).unwrap_or_default();
        // The old container is untouched until the new one has passed.
        let started = self.engine.start(&new_id).await;
        drop(slot);
        let verdict = match started {
            Ok(()) => health::wait(&self.engine, &new_id, &settings.health).await,
            Err(e) => Err(format!("starting the new container failed: {e}")),
        };
        if let Err(reason) = verdict {
            let reason = self.pre_rollback(&settings.hooks, &mut op, reason).await?;
            return self.discard_new(op, reason).await;
        }
        let slot = self.slot().await;
        let retired = match self.leave_networks(&spec, &mut op).await {
            Ok(()) => self.retire_old(&old, &mut op).await,
            Err(e) => Err(e),
        };
        if let Err(e) = retired {
            drop(slot);
            return self.roll_back(op, e.to_string()).await;
        }
        self.journal.record(&mut op, Step::Stopped, None)?;
        if let Err(e) = self.engine.rename(&new_id, &op.container).await {
            drop(slot);
            return self.roll_back(op, format!("renaming the new container failed: {e}")).await;
        }
        self.journal.record(&mut op, Step::Started, None)?;
        drop(slot);
        self.commit(settings, op).await
    }

    /// Creates the new container; on failure removes what the create left
    /// and journals the op `aborted` (nothing changed).
    async fn create_or_abort(&self, op: &mut OpRecord, spec: &CreateSpec) -> Result<(), SwapError> {
        let Err(e) = self.create(op, spec).await else { return Ok(()) };
        // The journal says `aborted`, so the leftover sweep removes a
        // temporary container this removal misses.
        if let Err(e) = self.engine.remove(&op.temp_name).await {
            tracing::warn!(error = %e, container = %op.temp_name, "the half-created container was not removed yet");
        }
        Err(self.abort(op, e))
    }

    /// start-first, once the new container has passed: takes the old one
    /// off its user-defined networks before it is stopped, so Docker's DNS
    /// names only the new one by the shared aliases while the old one shuts
    /// down. Stopped with its aliases, the old container stays in DNS until
    /// its process is gone, and a client resolving the alias meanwhile is
    /// sent to a closing listener. The networks are journaled (with the
    /// intent to stop) first: whoever restores the old container
    /// ([`super::recover::restore_old`]) connects it again.
    async fn leave_networks(&self, spec: &CreateSpec, op: &mut OpRecord) -> Result<(), StepError> {
        if !op.was_running {
            return Ok(());
        }
        let primary = spec.body.networking_config.iter().flat_map(|n| n.endpoints_config.iter().flatten());
        // The default bridge has no DNS: nothing to leave there.
        op.left_networks = primary
            .chain(spec.extra_networks.iter().map(|(n, e)| (n, e)))
            .filter(|(network, _)| !matches!(network.as_str(), "bridge" | "default"))
            .map(|(network, endpoint)| LeftNetwork::new(network, endpoint))
            .collect();
        if op.left_networks.is_empty() {
            return Ok(());
        }
        self.journal.record(op, Step::Stopping, None)?;
        for left in &op.left_networks {
            self.engine
                .disconnect_network(&left.network, op.old_id.as_str())
                .await
                .map_err(StepError::engine("taking the old container off its networks"))?;
        }
        Ok(())
    }

    /// Stops the old container (its own signal and timeout) and renames it
    /// to the backup name. The intent to stop is journaled first: an
    /// accepted stop outlives this process, and recovery must know to wait
    /// it out.
    async fn retire_old(&self, old: &ContainerDetails, op: &mut OpRecord) -> Result<(), StepError> {
        let id = op.old_id.to_string();
        if op.was_running {
            self.journal.record(op, Step::Stopping, None)?;
            let grace = old.config.as_ref().and_then(|c| c.stop_timeout).and_then(|t| u64::try_from(t).ok());
            self.engine
                .stop(&id, grace.map(Duration::from_secs))
                .await
                .map_err(StepError::engine("stopping the old container"))?;
        }
        self.engine
            .rename(&id, &op.backup_name)
            .await
            .map_err(StepError::engine("renaming the old container"))
    }

    /// stop-first, after retiring the old container failed: nothing changed
    /// when no stop was asked for; otherwise the old container went down and
    /// is brought back, which is a rollback.
    async fn undo_retire(&self, mut op: OpRecord, cause: NoChange) -> Result<Outcome, SwapError> {
        if op.reached(Step::Stopping) {
            return self.roll_back(op, cause.to_string()).await;
        }
        let slot = self.slot().await;
        let restored = super::recover::restore_old(&self.engine, &op).await;
        drop(slot);
        restored.map_err(|e| {
            self.stuck(&mut op, format!("{cause}; putting the old container back failed: {e}"))
        })?;
        Err(self.abort(&mut op, cause))
    }

    /// Gives the original name to the new container and starts it.
    async fn take_over(&self, op: &OpRecord, new_id: &str) -> Result<(), StepError> {
        self.engine
            .rename(new_id, &op.container)
            .await
            .map_err(StepError::engine("renaming the new container"))?;
        if op.was_running {
            self.engine.start(new_id).await.map_err(StepError::engine("starting the new container"))?;
        }
        Ok(())
    }

    async fn gate_and_finish(
        &self,
        settings: &Settings,
        op: OpRecord,
        new_id: &str,
    ) -> Result<Outcome, SwapError> {
        // A stopped target is recreated stopped: there is nothing to gate.
        if op.was_running {
            if let Err(reason) = health::wait(&self.engine, new_id, &settings.health).await {
                return self.new_failed(settings, op, reason).await;
            }
        }
        self.commit(settings, op).await
    }

    /// The new container failed (its gate, or its `post_upgrade` hook):
    /// rolled back after the `pre_rollback` hook, or kept with rollback off.
    async fn new_failed(
        &self,
        settings: &Settings,
        mut op: OpRecord,
        reason: String,
    ) -> Result<Outcome, SwapError> {
        if settings.rollback {
            let reason = self.pre_rollback(&settings.hooks, &mut op, reason).await?;
            return self.roll_back(op, reason).await;
        }
        self.journal.record(&mut op, Step::Failed, Some(reason))?;
        Ok(Outcome::Failed(op))
    }

    /// Runs the `post_upgrade` hook (a failure is a failed new container),
    /// journals the commit, then removes the backup (and the old image when
    /// asked). A backup that cannot be removed now is removed by `recover`.
    async fn commit(&self, settings: &Settings, mut op: OpRecord) -> Result<Outcome, SwapError> {
        if let Err(reason) = self.hook(Phase::PostUpgrade, &settings.hooks, &mut op).await? {
            return self.new_failed(settings, op, reason).await;
        }
        self.journal.record(&mut op, Step::Committed, None)?;
        let _slot = self.slot().await;
        if let Err(e) = self.engine.remove(op.old_id.as_str()).await {
            tracing::warn!(error = %e, backup = %op.backup_name, "backup not removed; `recover` will retry");
        }
        if settings.cleanup {
            // Not forced: the engine refuses while another container uses it.
            if let Err(e) = self.engine.remove_image(op.old_image_id.as_str()).await {
                tracing::info!(error = %e, image = %op.old_image_id, "old image kept");
            }
        }
        Ok(Outcome::Committed(op))
    }

    /// Start-first failure: the old container was never touched.
    async fn discard_new(&self, mut op: OpRecord, reason: String) -> Result<Outcome, SwapError> {
        let slot = self.slot().await;
        let removed = super::recover::remove_new(&self.engine, &op).await;
        drop(slot);
        if let Err(e) = removed {
            return Err(self.stuck(&mut op, format!("{reason}; removing the new container failed: {e}")));
        }
        self.journal.record(&mut op, Step::RolledBack, Some(reason))?;
        Ok(Outcome::RolledBack(op))
    }

    /// Removes the new container, gives the name back to the old one and
    /// starts it, then checks it stays up; journals `rolled_back` with the
    /// reason. A restore that fails leaves the op unfinished for `recover`.
    async fn roll_back(&self, mut op: OpRecord, reason: String) -> Result<Outcome, SwapError> {
        tracing::warn!(reason = %reason, "rolling back");
        let slot = self.slot().await;
        let restored = super::recover::restore_old(&self.engine, &op).await;
        drop(slot);
        // Checking that it stays up only waits: no slot.
        let restored = match restored {
            Ok(()) => super::recover::verify(&self.engine, &op, op.old_id.as_str()).await,
            Err(e) => Err(e),
        };
        if let Err(e) = restored {
            return Err(self.stuck(&mut op, format!("{reason}; rollback failed: {e}")));
        }
        self.journal.record(&mut op, Step::RolledBack, Some(reason))?;
        Ok(Outcome::RolledBack(op))
    }

    /// The op could not be finished or undone: its reason is journaled, the
    /// op stays unfinished, and `recover` takes it up again.
    fn stuck(&self, op: &mut OpRecord, reason: String) -> SwapError {
        op.reason = Some(reason.clone());
        if let Err(e) = self.journal.write(op) {
            tracing::error!(error = %e, "journaling why the swap stopped half-way");
        }
        SwapError::Stuck { container: op.container.clone(), op_id: op.op_id.clone(), reason }
    }
}

/// The op a swap of `old` to `req.image` journals; the new image id is
/// filled in once the image is present.
fn new_op(req: &SwapRequest, old: &ContainerDetails) -> OpRecord {
    let name = old.name.as_deref().unwrap_or(&req.container).trim_start_matches('/').to_string();
    let op_id = req.op_id.clone().unwrap_or_else(OpId::generate);
    let suffix = op_id.suffix();
    OpRecord {
        container: name.clone(),
        old_id: ContainerId::new(old.id.clone().unwrap_or_default()),
        old_image: old
            .config
            .as_ref()
            .and_then(|cfg| cfg.image.clone())
            .unwrap_or_else(|| old.image.clone().unwrap_or_default()),
        old_image_id: ImageId::new(old.image.clone().unwrap_or_default()),
        new_image: req.image.familiar(),
        new_image_id: ImageId::new(""),
        was_running: old.state.as_ref().and_then(|s| s.running).unwrap_or(false),
        order: req.settings.order,
        backup_name: backup_name(&name, &suffix),
        temp_name: temp_name(&name, &suffix),
        new_id: None,
        steps: Vec::new(),
        reason: None,
        follows: None,
        stop_grace_secs: Some(stop_grace(old)),
        hooks: Vec::new(),
        left_networks: Vec::new(),
        service: None,
        op_id,
    }
}

/// How long the engine may take to stop `c`: its own stop timeout, else
/// the engine's default of 10 s.
pub(super) fn stop_grace(c: &ContainerDetails) -> u64 {
    c.config.as_ref().and_then(|cfg| cfg.stop_timeout).and_then(|t| u64::try_from(t).ok()).unwrap_or(10)
}

/// stop-first keeps the stopped old container as the backup. The engine
/// deletes an `--rm` container (and its anonymous volumes) the moment it
/// stops, which would leave nothing to roll back to.
fn stop_first_allowed(old: &ContainerDetails) -> Result<(), String> {
    if old.host_config.as_ref().and_then(|h| h.auto_remove).unwrap_or(false) {
        return Err("the container runs with --rm (AutoRemove): stopping it deletes it and its anonymous volumes, so it cannot be kept as a backup; use start-first, or recreate it without --rm".into());
    }
    Ok(())
}

/// start-first runs both containers at once: refused where they would clash.
fn start_first_allowed(old: &ContainerDetails) -> Result<(), String> {
    let host = old.host_config.as_ref();
    let binds_host_port = host.and_then(|h| h.port_bindings.as_ref()).is_some_and(|ports| {
        ports.values().flatten().flatten().any(|b| b.host_port.as_deref().is_some_and(|p| !p.is_empty()))
    });
    if binds_host_port {
        return Err("start-first needs the old and new containers to run side by side, but this one binds host ports; use stop-first".into());
    }
    let static_ip = old.network_settings.as_ref().and_then(|n| n.networks.as_ref()).is_some_and(|nets| {
        nets.values().any(|e| {
            e.ipam_config.as_ref().is_some_and(|c| c.ipv4_address.is_some() || c.ipv6_address.is_some())
        })
    });
    if static_ip {
        return Err("start-first needs the old and new containers to run side by side, but this one has a static IP; use stop-first".into());
    }
    Ok(())
}
