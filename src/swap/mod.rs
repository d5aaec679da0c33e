//! The swap engine: replace one container by a new one from another image,
//! with the same configuration, gated on health, rolled back on failure.
//!
//! [`Swapper::swap`] is the only code that mutates containers. Every step is
//! journaled before the next begins ([`journal`]), so [`recover`] can finish
//! or undo a swap that a crash interrupted. The decisions — what the new
//! container looks like ([`recreate`]), whether it is healthy ([`health`]),
//! whether a failed image may be retried yet ([`backoff`]) — are pure.
//! Containers sharing the swapped container's network follow it
//! (`rejoin`). The backup and temporary containers a swap makes are never
//! targets themselves ([`scaffold`]).

pub mod backoff;

mod error;
mod execute;
mod follow;
pub mod health;
pub mod hooks;
pub mod journal;
pub mod names;
pub mod recover;
pub mod recreate;
mod rejoin;
pub mod scaffold;

use std::fmt;

pub use error::{NoChange, PullError, StepError};
pub use execute::Swapper;
pub use names::{backup_name, swapped_name, temp_name};
pub use rejoin::Rejoined;

use crate::manifest::Settings;
use crate::reference::ImageRef;
use crate::types::OpId;
use journal::{JournalError, OpRecord};

/// One imperative swap: this container onto this image, with these settings.
#[derive(Debug, Clone)]
pub struct SwapRequest {
    /// The container, by name or id.
    pub container: String,
    /// The image to run, as the user wrote it (the new container shows it).
    pub image: ImageRef,
    /// The registry digest the plan chose for `image`'s tag. When set, the
    /// swap pulls exactly that (`name@digest`), names it `image`, and
    /// creates from it — a tag moved since the plan, or a mirror serving
    /// an older one, cannot change what runs. `None`: pull `image` as is.
    pub planned: Option<crate::types::Digest>,
    /// Pull policy, order, rollback, cleanup and the health gate.
    pub settings: Settings,
    /// The op id to use; `None` makes a new one. A helper is given its op
    /// id by the controller, so a restarted helper knows whether its swap
    /// already began (and then recovers it instead of starting another).
    pub op_id: Option<crate::types::OpId>,
    /// `container` names a Swarm service: upgraded by a service update
    /// ([`crate::swarm::update`]), never swapped.
    pub service: bool,
}

/// How a swap ended.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// The new container passed the gate and replaced the old one.
    Committed(OpRecord),
    /// The container already runs that image: nothing to do.
    AlreadyCurrent {
        /// The container's name.
        container: String,
        /// The image it runs.
        image: String,
    },
    /// The new container failed; the old one (same id) is back.
    RolledBack(OpRecord),
    /// The gate failed with rollback disabled: the new container stays, the
    /// old one is kept stopped under its backup name.
    Failed(OpRecord),
}

impl Outcome {
    /// The journal record, when a swap was attempted.
    pub fn op(&self) -> Option<&OpRecord> {
        match self {
            Outcome::Committed(op) | Outcome::RolledBack(op) | Outcome::Failed(op) => Some(op),
            Outcome::AlreadyCurrent { .. } => None,
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let reason = |op: &OpRecord| op.reason.clone().unwrap_or_default();
        match self {
            Outcome::Committed(op) => write!(f, "{}: upgraded {} → {} (op {})", op.container, op.old_image, op.new_image, op.op_id),
            Outcome::AlreadyCurrent { container, image } => write!(f, "{container}: already runs {image}"),
            Outcome::RolledBack(op) => write!(
                f,
                "{}: rolled back to {}: upgrade to {} failed: {} (op {})",
                op.container,
                op.old_image,
                op.new_image,
                reason(op),
                op.op_id
            ),
            Outcome::Failed(op) if op.service.is_some() => write!(
                f,
                "{}: update to {} failed and was NOT rolled back (rollback disabled): {}; Swarm paused the update, so tasks may run either image (op {})",
                op.container,
                op.new_image,
                reason(op),
                op.op_id
            ),
            Outcome::Failed(op) => write!(
                f,
                "{}: upgrade to {} failed and was NOT rolled back (rollback disabled): {}; the old container is kept stopped as {} (op {})",
                op.container,
                op.new_image,
                reason(op),
                op.backup_name,
                op.op_id
            ),
        }
    }
}

/// A swap that could not run, or could not be undone.
#[derive(Debug, thiserror::Error)]
pub enum SwapError {
    /// Refused or failed before anything changed: the container is as it was.
    #[error("{container}: nothing changed: {cause}")]
    Unchanged {
        /// The container as named in the request.
        container: String,
        /// What went wrong (boxed: engine errors are large, and this is the
        /// cold path).
        #[source]
        cause: Box<NoChange>,
    },
    /// A step or the rollback failed half-way; the journal keeps the op for
    /// `container-upgrader recover`.
    #[error(
        "{container}: op {op_id} stopped half-way: {reason}; run `container-upgrader recover` to restore it"
    )]
    Stuck {
        /// The container's name.
        container: String,
        /// The unfinished operation.
        op_id: OpId,
        /// What failed.
        reason: String,
    },
    /// The state directory cannot be written: nothing is done without a journal.
    #[error(transparent)]
    Journal(#[from] JournalError),
    /// A journal file is not a readable record. It is moved aside, never
    /// deleted; the containers its op may have left are resolved by name.
    #[error(
        "journal record {} is damaged ({reason}); {}",
        .path.display(),
        match .moved_to {
            Ok(to) => format!("moved aside to {}", to.display()),
            Err(e) => format!("it could not be moved aside: {e}"),
        }
    )]
    DamagedRecord {
        /// The file.
        path: std::path::PathBuf,
        /// Why it cannot be read.
        reason: String,
        /// Where it was moved, or why it could not be.
        moved_to: Result<std::path::PathBuf, String>,
    },
}

impl SwapError {
    /// Nothing changed for `container`, because of `cause`.
    pub fn unchanged(container: &str, cause: impl Into<NoChange>) -> Self {
        SwapError::Unchanged { container: container.to_string(), cause: Box::new(cause.into()) }
    }
}

/// The label every container a swap creates carries, valued with the op
/// id: what tells the tool's own new container from a user's, even when the
/// journal record is lost. The recreation never carries it over.
pub const OP_LABEL: &str = "container-upgrader.op";
