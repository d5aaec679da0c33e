//! The wire between an agent (`run --server URL`) and the fleet server,
//! shared by both sides so they cannot drift apart.
//!
//! Agents only connect out (they work behind NAT):
//!
//! | request | auth | answer |
//! |---|---|---|
//! | `POST /v1/agent/enrol` [`EnrolRequest`] | the enrolment token, as `Authorization: Bearer TOKEN` (checked before the body is read) and/or in the body (older agents) | 201 [`EnrolResponse`] |
//! | `GET /v1/agent/desired?wait=SECS`, `If-None-Match: "REV"` | agent credential | 200 the manifest's YAML text with `ETag: "REV"`, or 304 after `wait` with no change |
//! | `POST /v1/agent/report` [`Report`] | agent credential | 204 |
//! | `POST /v1/agent/events` [`crate::report::OpEvent`], `Idempotency-Key: OP` | agent credential | 204, also for a repeat (de-duplicated by op id) |
//!
//! The agent credential is sent as `Authorization: Bearer AGENT_ID.SECRET`;
//! the server keeps only a hash of the secret. Every refusal is a JSON
//! [`ErrorBody`] with a 4xx status; 401 means the credential is unknown or
//! revoked (the agent stops using it), 403 that it may not do this.

use serde::{Deserialize, Serialize};

/// Enrolment: the agent's first and only request with an enrolment token.
pub const ENROL: &str = "/v1/agent/enrol";
/// The agent's desired manifest, long-polled.
pub const DESIRED: &str = "/v1/agent/desired";
/// The agent's status snapshot, after every pass.
pub const REPORT: &str = "/v1/agent/report";
/// One finished op, from the agent's durable outbox.
pub const EVENTS: &str = "/v1/agent/events";

/// The longest a desired-state poll is held open (seconds); the agent asks
/// for less, the server caps at this.
pub const MAX_WAIT_SECS: u64 = 60;
/// What an agent asks for by default.
pub const DEFAULT_WAIT_SECS: u64 = 30;

/// Request bodies larger than this are refused (413): a manifest, a
/// report of a few hundred targets.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// `POST /v1/agent/enrol`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct EnrolRequest {
    /// The enrolment token an admin created. May be empty when the
    /// request carries it as `Authorization: Bearer TOKEN`; agents send it
    /// in both places, so servers from before the header take it too.
    #[serde(default)]
    pub token: String,
    /// The agent's name as shown by the server (default: the host name).
    pub name: String,
    /// The agent's manifest file as it is now: the server's first desired
    /// state for it (validated like `validate`).
    pub manifest: String,
}

/// The answer to an enrolment.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct EnrolResponse {
    /// The agent's id on the server.
    pub agent_id: String,
    /// `AGENT_ID.SECRET`: the bearer credential for every later request.
    /// Shown once; the server keeps only its hash.
    pub credential: String,
}

/// An agent's status snapshot after a pass.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Report {
    /// The reporting controller's version (the crate version).
    pub controller_version: String,
    /// Its own container and image, when it runs in one.
    pub controller: Option<Controller>,
    /// Why the manifest file is not the one in force, if it is invalid.
    #[serde(default)]
    pub manifest_error: Option<String>,
    /// Why the last pass could not run at all.
    #[serde(default)]
    pub pass_error: Option<String>,
    /// When the last pass ended (RFC 3339).
    #[serde(default)]
    pub updated_at: Option<String>,
    /// The revision of the server's desired manifest the agent last wrote
    /// to its manifest file.
    #[serde(default)]
    pub desired_revision: Option<i64>,
    /// Why the agent did not apply the server's latest manifest (invalid
    /// there, outside the host's policy), or why the last exchange failed.
    #[serde(default)]
    pub desired_error: Option<String>,
    /// One entry per target container (plan entry) of the last pass.
    #[serde(default)]
    pub targets: Vec<TargetReport>,
    /// Images held after failures: not tried again until `until`.
    #[serde(default)]
    pub holds: Vec<HoldReport>,
    /// With `run --git`: the commit the manifest file came from. Such an
    /// agent takes its desired state from Git, not from the server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub git: Option<GitReport>,
}

/// Where an agent's manifest comes from when it follows a Git repository.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct GitReport {
    /// The repository (without credentials).
    pub url: String,
    /// The ref followed (`None`: the remote's HEAD).
    #[serde(default)]
    pub reference: Option<String>,
    /// The manifest's path in the repository.
    #[serde(default)]
    pub path: String,
    /// The commit the manifest file was written from.
    #[serde(default)]
    pub commit: Option<String>,
    /// Its author, `Name <email>`.
    #[serde(default)]
    pub author: Option<String>,
    /// Its author time (RFC 3339).
    #[serde(default)]
    pub authored_at: Option<String>,
    /// Who signed it, with `--git-verify-ssh-signers`.
    #[serde(default)]
    pub signer: Option<String>,
    /// Why the newest commit was not applied, or the last look failed.
    #[serde(default)]
    pub error: Option<String>,
}

/// The controller's own container.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Controller {
    /// Container name.
    pub container: String,
    /// The image it runs.
    pub image: String,
}

/// One target container as the agent sees it.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct TargetReport {
    /// The target as the manifest writes it (`web`, `label tier=edge`).
    pub target: String,
    /// The container, if the target selects one.
    #[serde(default)]
    pub container: Option<String>,
    /// The image it runs.
    #[serde(default)]
    pub image: Option<String>,
    /// Its registry digest, when known.
    #[serde(default)]
    pub digest: Option<String>,
    /// The version its tag spells, if any (`1.25.3`).
    #[serde(default)]
    pub version: Option<String>,
    /// What the manifest says it should run.
    #[serde(default)]
    pub desired: Option<String>,
    /// The plan's decision in the last pass (`up_to_date`, `upgrade`, …).
    pub action: String,
    /// Why.
    #[serde(default)]
    pub reason: String,
    /// The container's last op.
    #[serde(default)]
    pub last_op: Option<LastOpReport>,
    /// What went wrong for it in the last pass.
    #[serde(default)]
    pub failure: Option<String>,
}

/// A target's last op.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct LastOpReport {
    /// Its id.
    pub op_id: String,
    /// `committed`, `rolled_back`, `failed`, `aborted` or `in_progress`.
    pub outcome: String,
    /// The image it replaced.
    pub from: String,
    /// The image it swapped in.
    pub to: String,
    /// Why it rolled back or failed.
    #[serde(default)]
    pub reason: Option<String>,
    /// When it ended or last moved (RFC 3339).
    pub updated_at: String,
}

/// An image held after failed upgrades.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct HoldReport {
    /// The container.
    pub container: String,
    /// The held image.
    pub image: String,
    /// When it may be tried again (RFC 3339).
    pub until: String,
    /// Why.
    pub reason: String,
}

/// Every refusal's body.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ErrorBody {
    /// What was wrong and what is allowed.
    pub error: String,
}

/// The ETag value for a desired-state revision (quoted, as HTTP wants).
pub fn etag(revision: i64) -> String {
    format!("\"{revision}\"")
}

/// The revision an `If-None-Match`/`ETag` value names, if it is one of ours.
pub fn revision_of(etag: &str) -> Option<i64> {
    let inner = etag.trim().trim_start_matches("W/").trim_matches('"');
    inner.parse().ok().filter(|r: &i64| *r >= 0)
}

/// Splits `AGENT_ID.SECRET`; `None` for anything else.
pub fn split_credential(credential: &str) -> Option<(&str, &str)> {
    let (id, secret) = credential.split_once('.')?;
    let id_ok =
        !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    let secret_ok = secret.len() >= 32
        && secret.len() <= 128
        && secret.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    (id_ok && secret_ok).then_some((id, secret))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etags_round_trip_and_foreign_ones_are_not_revisions() {
        assert_eq!(revision_of(&etag(42)), Some(42));
        assert_eq!(revision_of("W/\"7\""), Some(7));
        assert_eq!(revision_of("\"abc\""), None);
        assert_eq!(revision_of("\"-1\""), None);
    }

    #[test]
    fn credentials_split_only_in_their_own_shape() {
        let secret = "a".repeat(43);
        let good = format!("ag-1.{secret}");
        assert_eq!(split_credential(&good), Some(("ag-1", secret.as_str())));
        assert_eq!(split_credential("nodot"), None);
        assert_eq!(split_credential("ag.short"), None);
        assert_eq!(split_credential(&format!(".{secret}")), None);
        assert_eq!(split_credential(&format!("a/b.{secret}")), None);
    }
}
