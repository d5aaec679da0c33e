//! Containers that follow a swapped container without living in its
//! network namespace (that is [`super::rejoin`]'s work):
//!
//! - **legacy links** (`--link db:alias`, default bridge only). The engine
//!   renames a link along with the container it names, so once `db` is
//!   swapped its dependents link to `db`'s backup: their `/etc/hosts` keeps
//!   the old address, and once the backup is removed they cannot even be
//!   started again ("Cannot link to a non running container"). After a
//!   swap that replaced `db`, each dependent is recreated — same image and
//!   settings, its links naming `db` again — as a journaled stop-first swap
//!   of its own, gated on its own health. After a rollback (`db` back under
//!   its name, perhaps on another address) a running dependent is
//!   restarted so its links are written afresh.
//! - **compose `depends_on` with `restart: true`**: Compose restarts such a
//!   dependent whenever it updates the service; so does a swap of that
//!   service's container (committed or rolled back), when the dependent
//!   runs.
//!
//! The convergence net ([`Swapper::relink_orphans`], run by every pass and
//! `recover`) recreates a linking container left naming a removed backup
//! by a crash between a swap and its followers.

use std::collections::BTreeSet;

use super::journal::OpRecord;
use super::rejoin::log_followed;
use super::{swapped_name, Outcome, Swapper};
use crate::dependencies::{compose_depends_on, linked_peers, COMPOSE_PROJECT, COMPOSE_SERVICE};
use crate::engine::NetworkMember;
use crate::manifest::Settings;

impl Swapper {
    /// Brings `op`'s link and compose dependents along (see the module
    /// docs). Failures are logged per dependent; they never change the
    /// swap's outcome.
    pub(super) async fn follow_dependents(
        &self,
        settings: &Settings,
        outcome: &Outcome,
        op: &OpRecord,
        members: &[NetworkMember],
    ) {
        let replaced = match outcome {
            Outcome::Committed(_) | Outcome::Failed(_) => true,
            Outcome::RolledBack(_) => false,
            Outcome::AlreadyCurrent { .. } => return,
        };
        let mut done = BTreeSet::new();
        let candidates =
            members.iter().filter(|m| m.name != op.container && swapped_name(&m.name).is_none() && m.bridge);
        for dependent in candidates {
            if !self.links_to(dependent, &[op.container.as_str(), op.backup_name.as_str()]).await {
                continue;
            }
            if self.is_own(dependent, &op.container) {
                continue;
            }
            let result = if replaced {
                self.relink(dependent, &op.container, settings).await
            } else if dependent.running {
                self.restart_for(dependent, &format!("restarted to link to {} again", op.container)).await
            } else {
                continue;
            };
            log_followed(&dependent.name, &op.container, &result);
            done.insert(dependent.name.as_str());
        }
        // Compose: the target's project and service, as its labels say.
        let Some(target) = members.iter().find(|m| m.name == op.container) else { return };
        let (Some(project), Some(service)) =
            (target.labels.get(COMPOSE_PROJECT), target.labels.get(COMPOSE_SERVICE))
        else {
            return;
        };
        let restarts = members.iter().filter(|m| {
            m.running
                && m.name != op.container
                && !done.contains(m.name.as_str())
                && swapped_name(&m.name).is_none()
                && m.labels.get(COMPOSE_PROJECT) == Some(project)
                && compose_depends_on(&m.labels).iter().any(|d| &d.service == service && d.restart)
        });
        for dependent in restarts {
            if self.is_own(dependent, &op.container) {
                continue;
            }
            let why = format!(
                "restarted after {} was replaced (compose depends_on with restart: true)",
                op.container
            );
            let result = self.restart_for(dependent, &why).await;
            log_followed(&dependent.name, &op.container, &result);
        }
    }

    /// True when `dependent`'s legacy links name one of `names` (as
    /// inspect shows them: a link follows its container's renames).
    async fn links_to(&self, dependent: &NetworkMember, names: &[&str]) -> bool {
        let Ok(Some(details)) = self.engine().inspect_container(dependent.id.as_str()).await else {
            return false;
        };
        let links = details.host_config.and_then(|h| h.links).unwrap_or_default();
        links.iter().filter_map(|l| linked_peers(l)).any(|(raw, _)| names.contains(&raw.as_str()))
    }

    /// Recreates `dependent` with its links naming `peer` again.
    async fn relink(
        &self,
        dependent: &NetworkMember,
        peer: &str,
        settings: &Settings,
    ) -> Result<String, String> {
        match self.rejoin(dependent, None, peer, &super::rejoin::rejoin_settings(settings)).await {
            Ok(Outcome::Committed(_)) => Ok(format!("recreated to link to the new {peer}")),
            Ok(other) => Err(other.to_string()),
            Err(e) => Err(e.to_string()),
        }
    }

    /// Restarts `dependent` under its lock; says `what` was done, or why not.
    pub(super) async fn restart_for(&self, dependent: &NetworkMember, what: &str) -> Result<String, String> {
        let _lock = self.lock(&dependent.name).map_err(|e| e.to_string())?;
        let id = dependent.id.as_str();
        self.engine().stop(id, None).await.map_err(|e| e.to_string())?;
        self.engine().start(id).await.map_err(|e| e.to_string())?;
        Ok(what.to_string())
    }

    /// The convergence net for links: a container on the default bridge
    /// whose link names the backup of a container this journal swapped
    /// (committed, or failed with the new one kept) is recreated to link to
    /// the container that now carries the name. Costs one inspect per
    /// container on the default bridge, and only while the journal holds
    /// such a swap.
    pub(super) async fn relink_orphans(
        &self,
        settings: &Settings,
        members: &[NetworkMember],
        ops: &[OpRecord],
    ) -> Vec<super::Rejoined> {
        let replaced: Vec<&OpRecord> = ops.iter().filter(|op| super::rejoin::took_over(op)).collect();
        if replaced.is_empty() {
            return Vec::new();
        }
        let mut done = Vec::new();
        for member in members.iter().filter(|m| m.bridge && swapped_name(&m.name).is_none()) {
            let Ok(Some(details)) = self.engine().inspect_container(member.id.as_str()).await else {
                continue;
            };
            let links = details.host_config.and_then(|h| h.links).unwrap_or_default();
            let Some(op) = links
                .iter()
                .filter_map(|l| linked_peers(l))
                .find_map(|(raw, _)| replaced.iter().find(|op| op.backup_name == raw))
            else {
                continue;
            };
            // The name is carried by a container again, and it is not busy.
            if !members.iter().any(|m| m.name == op.container) || self.is_own(member, &op.container) {
                continue;
            }
            let result = self.relink(member, &op.container, settings).await;
            log_followed(&member.name, &op.container, &result);
            done.push(super::Rejoined { container: member.name.clone(), peer: op.container.clone(), result });
        }
        done
    }
}
