//! Reporting op outcomes to a server: one JSON POST per op to the
//! webhook (`--report-webhook`, else the manifest's `report.webhook`).
//! This is how a fleet server learns an agent's new version, or why an
//! upgrade failed.
//!
//! Events go through a durable [`outbox`] in the state directory and are
//! [`deliver`]ed from it by a background task, at least once, with the op
//! id as the idempotency key: a receiver that is down, a controller that
//! restarts or upgrades itself loses none. Reporting never blocks a pass.

pub mod deliver;
pub mod outbox;

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::swap::journal::OpRecord;

pub use deliver::{Delivery, Endpoint, Receiver};
pub use outbox::Outbox;

/// One op outcome as POSTed.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct OpEvent {
    /// The op.
    pub op_id: String,
    /// The container's name.
    pub container: String,
    /// The image it ran.
    pub from: String,
    /// The image it was swapped to.
    pub to: String,
    /// `committed`, `rolled_back`, `failed` or `aborted`.
    pub outcome: crate::swap::journal::OpOutcome,
    /// Why it rolled back or failed.
    pub reason: Option<String>,
    /// For a container recreated on its own image to follow the container
    /// whose network it shares: that container's name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub follows: Option<String>,
    /// `true` when the op was a Swarm service update (`container` then
    /// names the service); absent for a container swap.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub service: bool,
    /// When the op began (RFC 3339).
    pub started_at: String,
    /// When it ended (RFC 3339).
    pub ended_at: String,
    /// How long it took, in milliseconds.
    pub duration_ms: u64,
    /// The reporting controller's version.
    pub controller_version: String,
    /// With `run --git`: the commit the manifest file came from when the
    /// pass that finished this op began.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub git_commit: Option<String>,
}

impl OpEvent {
    /// The event for a finished journal record.
    pub fn from_op(op: &OpRecord) -> Self {
        let parse = |t: &str| humantime::parse_rfc3339(t).ok();
        let duration = match (parse(op.started_at()), parse(op.updated_at())) {
            (Some(a), Some(b)) => b.duration_since(a).unwrap_or_default(),
            _ => Duration::ZERO,
        };
        Self {
            op_id: op.op_id.to_string(),
            container: op.container.clone(),
            from: op.old_image.clone(),
            to: op.new_image.clone(),
            outcome: op.outcome(),
            reason: op.reason.clone(),
            follows: op.follows.clone(),
            service: op.service.is_some(),
            started_at: op.started_at().to_string(),
            ended_at: op.updated_at().to_string(),
            duration_ms: u64::try_from(duration.as_millis()).unwrap_or(u64::MAX),
            controller_version: env!("CARGO_PKG_VERSION").to_string(),
            git_commit: None,
        }
    }

    /// The event for a move refused for its signature: an op that ended
    /// (`aborted`) before anything changed, the plan's reason as its
    /// reason. Its id is derived from the container, the image and the
    /// reason, so the same refusal is the same event on every pass (the
    /// caller sends it once; a receiver dedupes by op id after a restart).
    pub fn refusal(r: &crate::plan::SignatureRefusal, at: std::time::SystemTime) -> Self {
        let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
        for part in [&r.container, &r.to, &r.reason] {
            ctx.update(&(part.len() as u64).to_be_bytes());
            ctx.update(part.as_bytes());
        }
        let id: String = ctx.finish().as_ref().iter().take(10).map(|b| format!("{b:02x}")).collect();
        let when = humantime::format_rfc3339_seconds(at).to_string();
        Self {
            op_id: format!("refused-{id}"),
            container: r.container.clone(),
            from: r.from.clone(),
            to: r.to.clone(),
            outcome: crate::swap::journal::OpOutcome::Aborted,
            reason: Some(r.reason.clone()),
            follows: None,
            service: r.service,
            started_at: when.clone(),
            ended_at: when,
            duration_ms: 0,
            controller_version: env!("CARGO_PKG_VERSION").to_string(),
            git_commit: None,
        }
    }
}
