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
//! A crash between the target's commit and its dependents' recreation, a
//! dependent that was busy in a swap of its own, or a peer whose backup
//! could not be removed leaves a dependent pinned to a dead or backup
//! container: every reconcile pass and `recover` look for such orphans
//! ([`Swapper::rejoin_orphans`]) and recreate them the same way, when the
//! journal says which container took the dead one's place.
//!
//! Only the network mode is followed here; IPC and PID `container:` modes
//! are not in the engine's list output and are left as they are.

use tracing::Instrument;

use super::execute::Prepared;
use super::journal::{OpRecord, Step};
use super::recreate::recreate;
use super::{backup_name, swapped_name, temp_name, NoChange, Outcome, SwapError, Swapper};
use crate::engine::NetworkMember;
use crate::manifest::{Order, Probe, PullPolicy, Settings};
use crate::types::{ImageId, OpId};

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
        // The target's replacement moves whoever depends on it.
        let members = match self.engine().network_members().await {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(error = %e, container = %op.container, "cannot list the containers sharing its network; the next pass retries");
                return;
            }
        };
        let old_id = op.old_id.as_str();
        // A swap's own temporary or backup container is not a dependent.
        let dependents =
            members.iter().filter(|m| m.joins.as_deref() == Some(old_id) && swapped_name(&m.name).is_none());
        for dependent in dependents {
            if self.is_own(dependent, &op.container) {
                continue;
            }
            let result = match outcome {
                Outcome::Committed(_) | Outcome::Failed(_) => {
                    self.recreate_into(dependent, old_id, &op.container, &rejoin_settings(settings)).await
                }
                Outcome::RolledBack(_) if dependent.running => {
                    self.restart_into(dependent, &op.container).await
                }
                Outcome::RolledBack(_) | Outcome::AlreadyCurrent { .. } => continue,
            };
            log_followed(&dependent.name, &op.container, &result);
        }
        self.follow_dependents(settings, outcome, op, &members).await;
    }

    /// The convergence net, run by every reconcile pass and `recover`:
    /// - a container whose `container:` network names a container that is
    ///   gone or is a swap's backup is recreated to join the container that
    ///   took its peer's place in a finished swap of this journal;
    /// - a running container that joined an earlier start of a peer this
    ///   tool has swapped (it started before the peer did: `recover`
    ///   restored the peer) is restarted into the peer's current namespace.
    ///
    /// One list call when no container shares another's network.
    pub async fn rejoin_orphans(&self, settings: &Settings) -> Result<Vec<Rejoined>, SwapError> {
        let members = self.engine().network_members().await.map_err(|e| SwapError::unchanged("(all)", e))?;
        let ops = self.journal().ops()?;
        let mut done = self.relink_orphans(settings, &members, &ops).await;
        if !members.iter().any(|m| m.joins.is_some()) {
            return Ok(done);
        }
        let settings = rejoin_settings(settings);
        for member in &members {
            let Some(old_peer) = member.joins.as_deref() else { continue };
            let (peer, result) = if let Some(peer) = orphan_peer(member, &members, &ops) {
                if self.is_own(member, &peer) {
                    continue;
                }
                let result = self.recreate_into(member, old_peer, &peer, &settings).await;
                (peer, result)
            } else if let Some(peer) = self.stale_peer(member, &members, &ops).await {
                if self.is_own(member, &peer) {
                    continue;
                }
                let result = self.restart_into(member, &peer).await;
                (peer, result)
            } else {
                continue;
            };
            log_followed(&member.name, &peer, &result);
            done.push(Rejoined { container: member.name.clone(), peer, result });
        }
        Ok(done)
    }

    /// The peer's name when `member` runs in a namespace its peer has since
    /// replaced by starting again, for peers this tool has swapped.
    async fn stale_peer(
        &self,
        member: &NetworkMember,
        members: &[NetworkMember],
        ops: &[OpRecord],
    ) -> Option<String> {
        let id = member.joins.as_deref()?;
        let peer = members.iter().find(|m| m.id.as_str() == id && m.running)?;
        let swapped = ops.iter().filter(|op| op.container == peer.name).collect::<Vec<_>>();
        // Only peers this journal swapped, and none whose swap is going on.
        if !member.running
            || swapped_name(&member.name).is_some()
            || swapped.is_empty()
            || swapped.iter().any(|op| !op.is_finished())
        {
            return None;
        }
        let started = |details: Option<crate::engine::ContainerDetails>| {
            let at = details?.state?.started_at?;
            humantime::parse_rfc3339(&at).ok()
        };
        let mine = started(self.engine().inspect_container(member.id.as_str()).await.ok().flatten())?;
        let theirs = started(self.engine().inspect_container(id).await.ok().flatten())?;
        (mine < theirs).then(|| peer.name.clone())
    }

    /// True (and says so) when `dependent` is the container this process
    /// runs in: it cannot stop itself to follow `peer`.
    pub(super) fn is_own(&self, dependent: &NetworkMember, peer: &str) -> bool {
        let own = self.own_container().is_some_and(|id| *id == dependent.id);
        if own {
            tracing::warn!(container = %dependent.name, "this controller shares {peer}'s network and cannot recreate itself to follow it; restart or recreate its container");
        }
        own
    }

    /// Recreates `dependent` to join `peer` (see [`Self::rejoin`]); says
    /// what was done, or why not.
    async fn recreate_into(
        &self,
        dependent: &NetworkMember,
        old_peer: &str,
        peer: &str,
        settings: &Settings,
    ) -> Result<String, String> {
        match self.rejoin(dependent, Some(old_peer), peer, settings).await {
            Ok(Outcome::Committed(_)) => Ok(format!("recreated in {peer}'s network")),
            Ok(other) => Err(other.to_string()),
            Err(e) => Err(e.to_string()),
        }
    }

    /// Restarts `dependent`, under its lock, so it joins `peer`'s current
    /// namespace; says what was done, or why not.
    async fn restart_into(&self, dependent: &NetworkMember, peer: &str) -> Result<String, String> {
        self.restart_for(dependent, &format!("restarted into {peer}'s network")).await
    }

    /// Recreates `dependent` from its own image with its own settings, its
    /// `container:` network (the one naming `old_peer`, when given) and its
    /// legacy links now naming `peer`.
    pub(super) async fn rejoin(
        &self,
        dependent: &NetworkMember,
        old_peer: Option<&str>,
        peer: &str,
        settings: &Settings,
    ) -> Result<Outcome, SwapError> {
        let span = tracing::info_span!("rejoin", container = %dependent.name, peer = %peer, op_id = tracing::field::Empty);
        async {
            let _lock = self.lock(&dependent.name)?;
            let prepared = self.prepare_rejoin(dependent, old_peer, peer).await?;
            tracing::Span::current().record("op_id", prepared.op.op_id.as_str());
            self.stop_first(settings, prepared).await
        }
        .instrument(span)
        .await
    }

    async fn prepare_rejoin(
        &self,
        dependent: &NetworkMember,
        old_peer: Option<&str>,
        peer: &str,
    ) -> Result<Prepared, SwapError> {
        let c = dependent.name.as_str();
        let unchanged = |cause: NoChange| SwapError::unchanged(c, cause);
        let engine = self.engine();
        let old = engine
            .inspect_container(dependent.id.as_str())
            .await
            .map_err(|e| unchanged(e.into()))?
            .ok_or_else(|| unchanged(NoChange::NoSuchContainer(c.to_string())))?;
        let image_id = old.image.clone().unwrap_or_default();
        let image = engine
            .inspect_image(&image_id)
            .await
            .map_err(|e| unchanged(e.into()))?
            .ok_or_else(|| unchanged(NoChange::OldImageGone(image_id.clone())))?;
        // As the user named it (a tag, or an id once the tag moved on).
        let reference = old.config.as_ref().and_then(|c| c.image.clone()).unwrap_or_else(|| image_id.clone());
        let mut peers = self.peers(&old).await.map_err(unchanged)?;
        // The old peer may still exist as a stopped backup (rollback
        // disabled, or its removal failed): join the container that now
        // carries the peer's name, never the backup.
        if let Some(old_peer) = old_peer {
            peers.insert(old_peer.to_string(), peer.to_string());
        }
        let spec = recreate(&old, &image, &image, &reference, &peers)
            .map_err(|e| unchanged(NoChange::NotAllowed(e.to_string())))?;
        let op_id = OpId::generate();
        let suffix = op_id.suffix();
        let mut op = OpRecord {
            container: c.to_string(),
            old_id: dependent.id.clone(),
            old_image: reference.clone(),
            old_image_id: ImageId::new(image_id.clone()),
            new_image: reference,
            new_image_id: ImageId::new(image_id),
            was_running: dependent.running,
            order: Order::StopFirst,
            backup_name: backup_name(c, &suffix),
            temp_name: temp_name(c, &suffix),
            new_id: None,
            steps: Vec::new(),
            reason: None,
            follows: Some(peer.to_string()),
            stop_grace_secs: Some(super::execute::stop_grace(&old)),
            hooks: Vec::new(),
            left_networks: Vec::new(),
            service: None,
            op_id,
        };
        self.journal().record(&mut op, Step::Prepared, None)?;
        Ok(Prepared { old, spec, op })
    }
}

/// A container brought back into its peer's network.
#[derive(Debug)]
pub struct Rejoined {
    /// The dependent container.
    pub container: String,
    /// The container whose network it joins.
    pub peer: String,
    /// What was done, or why it did not work.
    pub result: Result<String, String>,
}

pub(super) fn log_followed(dependent: &str, peer: &str, result: &Result<String, String>) {
    match result {
        Ok(what) => tracing::info!(dependent = %dependent, "{what}"),
        Err(e) => tracing::warn!(dependent = %dependent, error = %e, "could not follow {peer}"),
    }
}

/// The name of the container `member` should share a network with, when
/// its `container:<id>` names one that is gone or is a swap's backup: the
/// name of the container that replaced it in a finished swap of this
/// journal (committed, or failed with the new container kept). `None` when
/// it is not an orphan, when the swap is still going (it brings its
/// dependents along itself), or when nothing says who took the peer's place
/// (a container replaced by hand, or by another journal's swap).
pub(crate) fn orphan_peer(
    member: &NetworkMember,
    members: &[NetworkMember],
    ops: &[OpRecord],
) -> Option<String> {
    let id = member.joins.as_deref()?;
    if swapped_name(&member.name).is_some() {
        return None;
    }
    if members.iter().any(|m| m.id.as_str() == id && swapped_name(&m.name).is_none()) {
        return None;
    }
    let name = &ops.iter().rev().find(|op| op.old_id.as_str() == id && took_over(op))?.container;
    members.iter().any(|m| &m.name == name && m.id.as_str() != id).then(|| name.clone())
}

/// True when the op's new container took the name for good.
pub(super) fn took_over(op: &OpRecord) -> bool {
    match op.step() {
        Some(Step::Committed) => true,
        Some(Step::Failed) => op.steps.iter().any(|s| s.step == Step::Started),
        _ => false,
    }
}

/// The target's settings, made fit for a container that keeps its image:
/// nothing is pulled or cleaned up, the old one stops first (two containers
/// in one namespace would clash on ports), and its own health decides.
pub(super) fn rejoin_settings(target: &Settings) -> Settings {
    let mut settings = target.clone();
    settings.pull = PullPolicy::Never;
    settings.order = Order::StopFirst;
    settings.cleanup = false;
    settings.rollback = true;
    settings.health.probe = Probe::Auto;
    // The hooks are the target's: a dependent recreated on its own image
    // to follow it is not upgraded, and is not the container they name.
    settings.hooks = Default::default();
    settings
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::swap::journal::StepRecord;
    use crate::types::ContainerId;

    fn member(id: &str, name: &str, joins: Option<&str>) -> NetworkMember {
        NetworkMember {
            id: ContainerId::new(id),
            name: name.into(),
            running: true,
            joins: joins.map(Into::into),
            bridge: joins.is_none(),
            labels: Default::default(),
        }
    }

    fn op(container: &str, old_id: &str, steps: &[Step]) -> OpRecord {
        OpRecord {
            old_id: ContainerId::new(old_id),
            steps: steps.iter().map(|&step| StepRecord { step, at: String::new() }).collect(),
            ..OpRecord::sample(container)
        }
    }

    #[test]
    fn an_orphan_follows_the_container_whose_swap_replaced_its_peer() {
        let members = [member("new-vpn", "vpn", None), member("c1", "client", Some("old-vpn"))];
        let done = [Step::Prepared, Step::Created, Step::Stopped, Step::Started];
        let committed = op("vpn", "old-vpn", &[&done[..], &[Step::Committed]].concat());
        assert_eq!(orphan_peer(&members[1], &members, &[committed]), Some("vpn".into()));
        // Rollback disabled: the new container stayed.
        let kept = op("vpn", "old-vpn", &[&done[..], &[Step::Failed]].concat());
        assert_eq!(orphan_peer(&members[1], &members, &[kept]), Some("vpn".into()));
    }

    #[test]
    fn an_orphan_pinned_to_a_kept_backup_follows_the_new_container() {
        let members = [
            member("new-vpn", "vpn", None),
            member("old-vpn", &backup_name("vpn", "x"), None),
            member("c1", "client", Some("old-vpn")),
        ];
        let kept = op("vpn", "old-vpn", &[Step::Prepared, Step::Stopped, Step::Started, Step::Failed]);
        assert_eq!(orphan_peer(&members[2], &members, &[kept]), Some("vpn".into()));
        // Still going: the swap brings its dependents along itself.
        let going = op("vpn", "old-vpn", &[Step::Prepared, Step::Stopped, Step::Started]);
        assert_eq!(orphan_peer(&members[2], &members, &[going]), None);
        // Another journal's swap: not ours to touch.
        assert_eq!(orphan_peer(&members[2], &members, &[]), None);
    }

    #[test]
    fn what_is_not_an_orphan_or_cannot_be_placed_is_left_alone() {
        let members = [member("vpn-id", "vpn", None), member("c1", "client", Some("vpn-id"))];
        assert_eq!(orphan_peer(&members[1], &members, &[]), None, "its peer is alive");
        assert_eq!(orphan_peer(&members[0], &members, &[]), None, "no container: mode");
        // Gone, but replaced by hand: nothing says by whom.
        let members = [member("other", "vpn", None), member("c1", "client", Some("gone"))];
        assert_eq!(orphan_peer(&members[1], &members, &[]), None);
        // Gone in a swap that was rolled back or never got going.
        let rolled = op("vpn", "gone", &[Step::Prepared, Step::Stopped, Step::RolledBack]);
        let early = op("vpn", "gone", &[Step::Prepared, Step::Failed]);
        assert_eq!(orphan_peer(&members[1], &members, &[rolled, early]), None);
        // The peer's name is carried by nobody now.
        let committed = op("web", "gone", &[Step::Started, Step::Committed]);
        assert_eq!(orphan_peer(&members[1], &members, &[committed]), None);
        // A swap's own temporary is never an orphan to recreate.
        let temp = member("t", &temp_name("client", "y"), Some("gone"));
        let committed = op("vpn", "gone", &[Step::Started, Step::Committed]);
        assert_eq!(orphan_peer(&temp, &members, &[committed]), None);
    }

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
