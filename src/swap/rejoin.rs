//! Containers in `container:<id>` network mode follow the container whose
//! network they share.
//!
//! The engine records the peer's *id*. When a swap stops that peer, a
//! dependent is left with a namespace holding only loopback; once the peer
//! is replaced by a new container, the dependent cannot even be restarted
//! (`No such container: <old id>`). So after every swap that stopped its
//! target:
//!
//! - the target now runs as a new container (committed, or failed with
//!   rollback disabled): each dependent is recreated, same image and
//!   configuration, joined to the new container by name. That is a swap of
//!   its own (stop-first, journaled, gated on the dependent's own health),
//!   so a crash in the middle is recovered like any other;
//! - the old target is back (rolled back): it has its old id again, so each
//!   running dependent is restarted to join its fresh namespace.
//!
//! Only the network mode is followed here; IPC and PID `container:` modes
//! are not in the engine's list output and are left as they are.

use tracing::Instrument;

use super::execute::Prepared;
use super::journal::{OpRecord, Step};
use super::recreate::recreate;
use super::{backup_name, swapped_name, temp_name, Outcome, SwapError, Swapper};
use crate::engine::Dependent;
use crate::manifest::{Order, Probe, PullPolicy, Settings};
use crate::types::{ContainerId, OpId};

impl Swapper {
    /// Brings the network dependents of the swapped container along (see
    /// the module docs). Failures are logged and journaled per dependent;
    /// they never change the target's outcome.
    pub(super) async fn rejoin_dependents(&self, settings: &Settings, outcome: &Outcome) {
        let Some(op) = outcome.op() else { return };
        let stopped = op.steps.iter().any(|s| s.step == Step::Stopped);
        if !stopped {
            return;
        }
        let dependents = match self.engine().network_dependents(op.old_id.as_str()).await {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!(error = %e, container = %op.container, "cannot list the containers sharing its network; restart or recreate them by hand");
                return;
            }
        };
        // A swap's own temporary or backup container is not a dependent.
        for dependent in dependents.iter().filter(|d| swapped_name(&d.name).is_none()) {
            match outcome {
                Outcome::Committed(_) | Outcome::Failed(_) => {
                    match self.rejoin(dependent, op, &rejoin_settings(settings)).await {
                        Ok(done) => {
                            tracing::info!(dependent = %dependent.name, outcome = %done, "recreated to join {}'s new network", op.container)
                        }
                        Err(e) => {
                            tracing::warn!(dependent = %dependent.name, error = %e, "could not follow {}'s new network", op.container)
                        }
                    }
                }
                Outcome::RolledBack(_) if dependent.running => match self.restart(&dependent.id).await {
                    Ok(()) => {
                        tracing::info!(dependent = %dependent.name, "restarted to rejoin {}'s network", op.container)
                    }
                    Err(e) => {
                        tracing::warn!(dependent = %dependent.name, error = %e, "could not restart it to rejoin {}'s network", op.container)
                    }
                },
                Outcome::RolledBack(_) | Outcome::AlreadyCurrent { .. } => {}
            }
        }
    }

    async fn restart(&self, id: &ContainerId) -> Result<(), String> {
        self.engine().stop(id.as_str(), None).await.map_err(|e| e.to_string())?;
        self.engine().start(id.as_str()).await.map_err(|e| e.to_string())
    }

    /// Recreates `dependent` from its own image with its own settings, its
    /// `container:` network now naming `peer.container`.
    async fn rejoin(
        &self,
        dependent: &Dependent,
        peer: &OpRecord,
        settings: &Settings,
    ) -> Result<Outcome, SwapError> {
        let span = tracing::info_span!("rejoin", container = %dependent.name, peer = %peer.container, op_id = tracing::field::Empty);
        async {
            let _lock = self.lock(&dependent.name)?;
            let prepared = self.prepare_rejoin(dependent, peer).await?;
            tracing::Span::current().record("op_id", prepared.op.op_id.as_str());
            self.stop_first(settings, prepared).await
        }
        .instrument(span)
        .await
    }

    async fn prepare_rejoin(&self, dependent: &Dependent, peer: &OpRecord) -> Result<Prepared, SwapError> {
        let c = dependent.name.as_str();
        let unchanged = |reason: String| SwapError::Unchanged { container: c.to_string(), reason };
        let engine = self.engine();
        let old = engine
            .inspect_container(dependent.id.as_str())
            .await
            .map_err(|e| unchanged(e.to_string()))?
            .ok_or_else(|| unchanged("it was removed meanwhile".to_string()))?;
        let image_id = old.image.clone().unwrap_or_default();
        let image = engine
            .inspect_image(&image_id)
            .await
            .map_err(|e| unchanged(e.to_string()))?
            .ok_or_else(|| unchanged(format!("its image {image_id} is gone")))?;
        // As the user named it (a tag, or an id once the tag moved on).
        let reference = old.config.as_ref().and_then(|c| c.image.clone()).unwrap_or_else(|| image_id.clone());
        let mut peers = self.peers(&old).await.map_err(unchanged)?;
        // The old peer may still exist as a stopped backup (rollback
        // disabled, or its removal failed): join the container that now
        // carries the peer's name, never the backup.
        peers.insert(peer.old_id.to_string(), peer.container.clone());
        let spec =
            recreate(&old, &image, &image, &reference, &peers).map_err(|e| unchanged(e.to_string()))?;
        let op_id = OpId::generate();
        let suffix = op_id.suffix();
        let mut op = OpRecord {
            container: c.to_string(),
            old_id: dependent.id.clone(),
            old_image: reference.clone(),
            old_image_id: image_id.clone(),
            new_image: reference,
            new_image_id: image_id,
            was_running: dependent.running,
            order: "stop-first".into(),
            backup_name: backup_name(c, &suffix),
            temp_name: temp_name(c, &suffix),
            new_id: None,
            steps: Vec::new(),
            reason: None,
            op_id,
        };
        self.journal().record(&mut op, Step::Prepared, None)?;
        Ok(Prepared { old, spec, op })
    }
}

/// The target's settings, made fit for a container that keeps its image:
/// nothing is pulled or cleaned up, the old one stops first (two containers
/// in one namespace would clash on ports), and its own health decides.
fn rejoin_settings(target: &Settings) -> Settings {
    let mut settings = target.clone();
    settings.pull = PullPolicy::Never;
    settings.order = Order::StopFirst;
    settings.cleanup = false;
    settings.rollback = true;
    settings.health.probe = Probe::Auto;
    settings
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dependent_keeps_its_image_and_stops_first_with_its_own_health() {
        let mut target = Settings {
            pull: PullPolicy::Always,
            order: Order::StartFirst,
            cleanup: true,
            rollback: false,
            ..Default::default()
        };
        target.health.probe = Probe::Running;
        let s = rejoin_settings(&target);
        assert_eq!(s.pull, PullPolicy::Never);
        assert_eq!(s.order, Order::StopFirst);
        assert!(!s.cleanup, "a dependent's image is never removed");
        assert!(s.rollback);
        assert_eq!(s.health.probe, Probe::Auto);
        assert_eq!(s.health.timeout, target.health.timeout);
    }
}
