//! What the controller knows after its last pass, for `GET /v1/status`.
//! The daemon replaces the snapshot after every pass; readers clone it.

use std::sync::{Arc, RwLock};

use serde::Serialize;

use crate::plan::{Action, ImageState};

/// The controller's view of every target.
#[derive(Debug, Clone, Serialize, Default)]
pub struct Snapshot {
    /// This controller's version (the crate version).
    pub version: String,
    /// Its own container, when it runs in one.
    pub controller: Option<ControllerInfo>,
    /// The manifest in force (file path), if one was ever valid.
    pub manifest: Option<String>,
    /// Why the file on disk is not the one in force, if it is invalid.
    pub manifest_error: Option<String>,
    /// When the last pass ended (RFC 3339).
    pub updated_at: Option<String>,
    /// When the drift timer fires next (RFC 3339), if it is on.
    pub next_check: Option<String>,
    /// One entry per plan entry of the last pass.
    pub targets: Vec<TargetStatus>,
    /// The last pass: what it counted and every failure it named.
    pub last_pass: Option<PassStatus>,
    /// Webhook delivery, when a webhook is configured or events wait.
    pub webhook: Option<WebhookStatus>,
    /// The link to the fleet server, with `run --server`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fleet: Option<FleetStatus>,
    /// The Git source, with `run --git`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub git: Option<GitStatus>,
    /// The last pass's signature refusals, for the fleet link's events
    /// (each target's reason is already in `targets`).
    #[serde(skip)]
    pub refusals: Vec<crate::plan::SignatureRefusal>,
}

/// Where the Git source stands: what commit the manifest file came from.
/// Kept in `STATE_DIR/git/status.json` too, for `status` and restarts.
#[derive(Debug, Clone, Serialize, serde::Deserialize, Default, PartialEq, Eq)]
#[serde(default)]
pub struct GitStatus {
    /// The repository (without credentials).
    pub url: String,
    /// The ref followed (`None`: the remote's HEAD).
    pub reference: Option<String>,
    /// The manifest's path in the repository.
    pub path: String,
    /// The commit the manifest file was last written from (or found equal to).
    pub commit: Option<String>,
    /// That commit's author, `Name <email>`.
    pub author: Option<String>,
    /// Who signed it (the principals of the key in the signers file), with
    /// `--git-verify-ssh-signers`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signer: Option<String>,
    /// That commit's author time (RFC 3339).
    pub authored_at: Option<String>,
    /// When it was applied (RFC 3339).
    pub applied_at: Option<String>,
    /// The newest commit, when its manifest was refused (the file keeps
    /// the commit above).
    pub refused: Option<GitRefusal>,
    /// When the repository was last looked at (RFC 3339).
    pub last_look: Option<String>,
    /// When it is looked at next (RFC 3339).
    pub next_look: Option<String>,
    /// Why the last look failed (the repository unreachable, the ref gone …).
    pub last_error: Option<String>,
}

/// A commit whose manifest was not applied.
#[derive(Debug, Clone, Serialize, serde::Deserialize, Default, PartialEq, Eq)]
pub struct GitRefusal {
    /// The commit.
    pub commit: String,
    /// Its author.
    pub author: String,
    /// Why its manifest was refused.
    pub reason: String,
}

/// Where the link to the fleet server stands.
#[derive(Debug, Clone, Serialize, Default, PartialEq, Eq)]
pub struct FleetStatus {
    /// The server (scheme, host and path only).
    pub server: String,
    /// This agent's id there, once enrolled.
    pub agent_id: Option<String>,
    /// The revision of the server's desired manifest last applied.
    pub desired_revision: Option<i64>,
    /// When the server last answered (RFC 3339).
    pub last_contact: Option<String>,
    /// Why the last exchange with the server failed, or why its manifest
    /// was not applied.
    pub last_error: Option<String>,
    /// Op events for the server: waiting, delivered, last failure.
    pub events: WebhookStatus,
}

/// The last pass as `/v1/status` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct PassStatus {
    /// What triggered it.
    pub trigger: String,
    /// When it ended (RFC 3339).
    pub ended_at: String,
    /// Why it could not run at all (engine or journal unreachable, no
    /// valid manifest); `summary` is then absent.
    pub error: Option<String>,
    /// What it did, counted and named.
    pub summary: Option<crate::summary::Summary>,
}

/// Where the op events stand.
#[derive(Debug, Clone, Serialize, Default, PartialEq, Eq)]
pub struct WebhookStatus {
    /// Events in the outbox not yet delivered.
    pub pending: usize,
    /// Events delivered since this controller started.
    pub delivered: u64,
    /// Why the last attempt failed, if it did.
    pub last_error: Option<String>,
}

/// The controller's own container.
#[derive(Debug, Clone, Serialize)]
pub struct ControllerInfo {
    /// Container name.
    pub container: String,
    /// The image it runs.
    pub image: String,
}

/// One target (one container of it) as of the last pass.
#[derive(Debug, Clone, Serialize)]
pub struct TargetStatus {
    /// The target as written.
    pub target: String,
    /// The container, if the target selects one.
    pub container: Option<String>,
    /// What it should run.
    pub desired: Option<ImageState>,
    /// What it runs.
    pub observed: Option<ImageState>,
    /// The plan's decision in the last pass.
    pub action: Action,
    /// Why.
    pub reason: String,
    /// The last swap of this container, from the journal.
    pub last_op: Option<LastOp>,
    /// What went wrong for it in the last pass, if anything.
    pub failure: Option<TargetFailure>,
}

/// One target's failure in the last pass.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct TargetFailure {
    /// What kind of failure.
    pub kind: crate::summary::Kind,
    /// Why.
    pub reason: String,
}

/// A swap as `status` shows it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct LastOp {
    /// Its id.
    pub op_id: String,
    /// `committed`, `rolled_back`, `failed`, `aborted` or `in_progress`.
    pub outcome: crate::swap::journal::OpOutcome,
    /// The image it replaced.
    pub from: String,
    /// The image it swapped in.
    pub to: String,
    /// Why it rolled back or failed.
    pub reason: Option<String>,
    /// For a container recreated on its own image to follow the container
    /// whose network it shares: that container's name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub follows: Option<String>,
    /// `true` when the op was a Swarm service update (the name is then a
    /// service's); absent for a container swap.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub service: bool,
    /// When it began.
    pub started_at: String,
    /// When it ended (or last moved).
    pub updated_at: String,
    /// What the target's hooks did (their output masked); absent when it
    /// has none.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub hooks: Vec<crate::swap::hooks::HookRecord>,
}

impl LastOp {
    /// The status view of a journal record.
    pub fn from_op(op: &crate::swap::journal::OpRecord) -> Self {
        Self {
            op_id: op.op_id.to_string(),
            outcome: op.outcome(),
            from: op.old_image.clone(),
            to: op.new_image.clone(),
            reason: op.reason.clone(),
            follows: op.follows.clone(),
            service: op.service.is_some(),
            started_at: op.started_at().to_string(),
            updated_at: op.updated_at().to_string(),
            hooks: op.hooks.clone(),
        }
    }
}

/// The snapshot shared between the daemon (writer) and the API (readers).
pub type SharedSnapshot = Arc<RwLock<Snapshot>>;
