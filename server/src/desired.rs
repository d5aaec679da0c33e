//! Each agent's desired manifest: a text and a revision that grows with
//! every change. Agents long-poll it; an admin pins a target or replaces
//! the whole text.

use std::time::Duration;

use tokio::time::Instant;

use super::error::db;
use super::store::{now_ms, Store};
use super::FleetError;
use crate::access::Audit;
use container_upgrader::manifest::edit::{self, EditError};
use container_upgrader::manifest::Manifest;
use container_upgrader::protocol::GitReport;

pub use super::store::RECHECK;

/// A desired manifest and its revision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Desired {
    /// The manifest's YAML text.
    pub manifest: String,
    /// Its revision (1 at enrolment).
    pub revision: i64,
}

fn origin(agent: &str) -> String {
    format!("agent {agent}'s manifest")
}

impl Store {
    /// `agent`'s desired manifest.
    pub async fn desired(&self, agent: &str) -> Result<Desired, FleetError> {
        let row: Option<(String, i64)> =
            sqlx::query_as("SELECT manifest, revision FROM desired WHERE agent_id = $1")
                .bind(agent)
                .fetch_optional(&self.pool)
                .await
                .map_err(db("reading a desired manifest"))?;
        match row {
            Some((manifest, revision)) => Ok(Desired { manifest, revision }),
            None => {
                self.agent_exists(agent).await?;
                Err(FleetError::Corrupt(format!("agent `{agent}` has no desired manifest")))
            }
        }
    }

    /// Waits until `agent`'s revision differs from `known` or about `wait`
    /// passes (or the server stops); `None` then. A revoke during the wait ends it
    /// with 401. Only the revision is read while waiting, not the text.
    pub async fn wait_desired(
        &self,
        agent: &str,
        known: Option<i64>,
        wait: Duration,
    ) -> Result<Option<Desired>, FleetError> {
        // Held for 80-100 % of `wait`: agents that enrolled together (a
        // fleet rollout, a server restart) would otherwise re-ask together
        // forever, every poll a burst of credential checks and writes.
        let hold = container_upgrader::backoff::Policy::new(wait, wait);
        let wait = container_upgrader::backoff::delay(&hold, 1, container_upgrader::backoff::random_seed());
        let deadline = Instant::now() + wait;
        let mut woken = self.subscribe(agent);
        let mut stopping = self.stopping();
        loop {
            // The queries boxed: inline they would size this future, which
            // lives for the whole wait, for every held poll.
            if Some(Box::pin(self.revision(agent)).await?) != known {
                return Box::pin(self.desired(agent)).await.map(Some);
            }
            let now = Instant::now();
            if now >= deadline || *stopping.borrow() {
                return Ok(None);
            }
            let nap = (deadline - now).min(self.recheck);
            tokio::select! {
                changed = woken.changed() => {
                    if changed.is_err() {
                        // The sender went away (pruned): subscribe again.
                        woken = self.subscribe(agent);
                    }
                }
                () = tokio::time::sleep(nap) => {}
                _ = stopping.changed() => {}
            }
        }
    }

    /// `agent`'s current revision; 401 once it is revoked.
    async fn revision(&self, agent: &str) -> Result<i64, FleetError> {
        let row: Option<(i64, Option<i64>)> = sqlx::query_as(
            "SELECT d.revision, a.revoked_at FROM desired d JOIN agents a ON a.id = d.agent_id WHERE d.agent_id = $1",
        )
        .bind(agent)
        .fetch_optional(&self.pool)
        .await
        .map_err(db("reading a desired revision"))?;
        match row {
            Some((revision, None)) => Ok(revision),
            Some((_, Some(_))) => Err(FleetError::Unauthorized("this agent was revoked".into())),
            None => Err(FleetError::NotFound(format!("no agent `{agent}`"))),
        }
    }

    /// Replaces `agent`'s manifest with `text` (validated like `validate`);
    /// the new revision.
    pub async fn put_manifest(&self, agent: &str, text: &str, audit: &Audit) -> Result<i64, FleetError> {
        Manifest::parse(&origin(agent), text).map_err(|e| FleetError::Invalid(e.to_string()))?;
        self.refuse_revoked(agent).await?;
        self.refuse_git(agent).await?;
        let current = self.desired(agent).await?;
        self.write_desired(agent, text, current.revision, Some(audit)).await
    }

    /// Pins `target` of `agent`'s manifest to `image`, changing only that
    /// value (comments kept) and within the manifest's own policy; the new
    /// revision.
    /// `audit` is the request's row (a campaign's sends are recorded by the
    /// campaign, and have none).
    pub async fn pin(
        &self,
        agent: &str,
        target: &str,
        image: &str,
        audit: Option<&Audit>,
    ) -> Result<i64, FleetError> {
        self.refuse_revoked(agent).await?;
        self.refuse_git(agent).await?;
        let current = self.desired(agent).await?;
        let text = edit::set_image(&current.manifest, &origin(agent), target, image).map_err(edit_error)?;
        self.write_desired(agent, &text, current.revision, audit).await
    }

    /// Where `agent`'s manifest comes from when it follows Git (`run --git`).
    pub async fn git_of(&self, agent: &str) -> Result<Option<GitReport>, FleetError> {
        let row: Option<(Option<String>,)> = sqlx::query_as("SELECT git FROM agents WHERE id = $1")
            .bind(agent)
            .fetch_optional(&self.pool)
            .await
            .map_err(db("reading where an agent's manifest comes from"))?;
        Ok(row.and_then(|(g,)| g).and_then(|g| serde_json::from_str(&g).ok()))
    }

    /// Refuses to write the desired state of an agent that follows Git: it
    /// would never apply it, and a campaign would wait for nothing.
    async fn refuse_git(&self, agent: &str) -> Result<(), FleetError> {
        match self.git_of(agent).await? {
            Some(git) => Err(FleetError::Conflict(git_refusal(agent, &git))),
            None => Ok(()),
        }
    }

    /// Writes `text` as the revision after `base`, if nobody wrote since,
    /// with `audit`'s row in the same transaction.
    async fn write_desired(
        &self,
        agent: &str,
        text: &str,
        base: i64,
        audit: Option<&Audit>,
    ) -> Result<i64, FleetError> {
        let revision = base + 1;
        let gate = self.write_gate().await;
        let mut tx = self.pool.begin().await.map_err(db("starting to write a desired manifest"))?;
        let done = sqlx::query(
            "UPDATE desired SET manifest = $1, revision = $2, updated_at = $3 WHERE agent_id = $4 AND revision = $5 \
             AND EXISTS (SELECT 1 FROM agents a WHERE a.id = $4 AND a.revoked_at IS NULL)",
        )
        .bind(text)
        .bind(revision)
        .bind(now_ms())
        .bind(agent)
        .bind(base)
        .execute(&mut *tx)
        .await
        .map_err(db("writing a desired manifest"))?;
        if done.rows_affected() == 1 {
            self.announce(&mut tx, agent, revision).await?;
            if let Some(audit) = audit {
                let audit =
                    Audit { summary: format!("{} (revision {revision})", audit.summary), ..audit.clone() };
                audit.record(&mut tx, crate::access::audit::OK).await?;
            }
            tx.commit().await.map_err(db("writing a desired manifest"))?;
        }
        drop(gate);
        if done.rows_affected() != 1 {
            self.refuse_revoked(agent).await?;
            return Err(FleetError::Conflict(format!(
                "agent `{agent}`'s manifest changed while this edit was made (it was revision {base}); try again"
            )));
        }
        self.wake(agent, revision);
        tracing::info!(agent, revision, "desired manifest written");
        Ok(revision)
    }
}

impl Store {
    /// 409 when `agent` is revoked: it polls no more, so a pin or a
    /// manifest written for it would wait there, unseen, for a host that
    /// must be enrolled again (and would then start from a fresh manifest).
    async fn refuse_revoked(&self, agent: &str) -> Result<(), FleetError> {
        let row: Option<(Option<i64>, String)> =
            sqlx::query_as("SELECT revoked_at, name FROM agents WHERE id = $1")
                .bind(agent)
                .fetch_optional(&self.pool)
                .await
                .map_err(db("reading an agent"))?;
        match row {
            Some((Some(_), name)) => Err(FleetError::Conflict(format!(
                "agent {name} (`{agent}`) is revoked: it takes no pin or manifest; enrol the host again"
            ))),
            _ => Ok(()),
        }
    }
}

/// An edit's refusal as the status it deserves.
fn edit_error(e: EditError) -> FleetError {
    let text = e.to_string();
    match e {
        EditError::UnknownTarget { .. } => FleetError::NotFound(text),
        EditError::Refused { .. } => FleetError::Forbidden(text),
        EditError::InvalidImage { .. } => FleetError::Invalid(text),
        EditError::Invalid { .. }
        | EditError::Tracked { .. }
        | EditError::NotInPlace { .. }
        | EditError::Unverified { .. } => FleetError::Conflict(text),
    }
}

/// Why `agent`, which follows `git`, is not pinned by the server.
pub fn git_refusal(agent: &str, git: &GitReport) -> String {
    let reference = git.reference.as_deref().map(|r| format!(" {r}")).unwrap_or_default();
    format!(
        "agent `{agent}` takes its desired state from Git ({}{reference}, {}): commit the change there; the \
         server only shows what it runs",
        git.url, git.path
    )
}
