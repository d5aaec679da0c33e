//! What agents tell the server: a status snapshot after every pass (kept
//! whole, and as one row per target) and one event per finished op.

use super::bounds;
use super::error::db;
use super::protocol::{Report, TargetReport};
use super::store::{now_ms, Store};
use super::FleetError;
use container_upgrader::reference::ImageRef;
use container_upgrader::report::OpEvent;

/// The most targets one report may carry.
pub const MAX_TARGETS: usize = 2000;

/// `registry/repository` of an image, when it parses.
pub fn repository_of(image: &str) -> Option<String> {
    ImageRef::parse(image).ok().map(|r| r.name())
}

impl Store {
    /// One write for `agent` from its rate ([`bounds::WRITES_PER_SEC`]
    /// after a burst of [`bounds::WRITE_BURST`]); 429 beyond it (the
    /// agent keeps its events in its outbox and sends them again).
    ///
    /// On SQLite (one server) the bucket is in memory; on PostgreSQL it is
    /// the agent's row, so replicas behind a balancer count one budget.
    async fn admit_write(&self, agent: &str) -> Result<(), FleetError> {
        let refused = |retry_after: u64| {
            tracing::warn!(agent, "agent write refused: over its rate");
            FleetError::TooMany {
                message: format!(
                    "this agent wrote more than {} reports and events in a burst (then {} a second); try again in {retry_after} s",
                    bounds::WRITE_BURST, bounds::WRITES_PER_SEC
                ),
                retry_after,
            }
        };
        if self.shared.is_none() {
            return self.writes_by_agent.take(agent).map_err(refused);
        }
        // Thousandths of a write: the budget refills by WRITES_PER_SEC
        // (2 thousandths a millisecond) up to WRITE_BURST, one write
        // costs 1000.
        let burst = (bounds::WRITE_BURST * 1000.0) as i64;
        let per_ms = (bounds::WRITES_PER_SEC) as i64;
        let now = now_ms();
        let refilled = "LEAST($2, COALESCE(write_budget, $2) + ($3 - COALESCE(write_budget_at, $3)) * $4)";
        let done = sqlx::query(&format!(
            "UPDATE agents SET write_budget = {refilled} - 1000, write_budget_at = $3 WHERE id = $1 AND {refilled} >= 1000"
        ))
        .bind(agent)
        .bind(burst)
        .bind(now)
        .bind(per_ms)
        .execute(&self.pool)
        .await
        .map_err(db("counting an agent's writes"))?;
        if done.rows_affected() == 1 {
            return Ok(());
        }
        let row: Option<(Option<i64>,)> = sqlx::query_as("SELECT write_budget FROM agents WHERE id = $1")
            .bind(agent)
            .fetch_optional(&self.pool)
            .await
            .map_err(db("reading an agent's writes"))?;
        let missing = 1000 - row.and_then(|(b,)| b).unwrap_or(0);
        Err(refused(u64::try_from(missing / per_ms.max(1) / 1000 + 1).unwrap_or(1)))
    }

    /// Removes history beyond `keep`: per agent, events past the newest
    /// `max_events` and those older than `max_age`. The rows removed.
    pub async fn prune_history(&self, keep: bounds::Retention) -> Result<u64, FleetError> {
        let cutoff = now_ms() - i64::try_from(keep.max_age.as_millis()).unwrap_or(i64::MAX);
        let _gate = self.write_gate().await;
        let old = sqlx::query("DELETE FROM events WHERE received_at < $1")
            .bind(cutoff)
            .execute(&self.pool)
            .await
            .map_err(db("pruning old history"))?;
        let many = sqlx::query(
            "DELETE FROM events WHERE (agent_id, op_id) IN (SELECT agent_id, op_id FROM (SELECT agent_id, op_id, \
             ROW_NUMBER() OVER (PARTITION BY agent_id ORDER BY received_at DESC, op_id DESC) AS n FROM events) r \
             WHERE r.n > $1)",
        )
        .bind(i64::from(keep.max_events))
        .execute(&self.pool)
        .await
        .map_err(db("pruning long history"))?;
        Ok(old.rows_affected() + many.rows_affected())
    }

    /// Stores `report` as `agent`'s latest: the whole snapshot, its
    /// controller, and its targets (replacing the previous ones), in one
    /// transaction. True when a repository no check has seen yet appeared.
    pub async fn store_report(&self, agent: &str, report: &Report) -> Result<bool, FleetError> {
        if report.targets.len() > MAX_TARGETS {
            return Err(FleetError::Invalid(format!(
                "the report has {} targets; at most {MAX_TARGETS} are accepted",
                report.targets.len()
            )));
        }
        self.admit_write(agent).await?;
        let mut bounded = report.clone();
        bounds::report(&mut bounded);
        let report = &bounded;
        let now = now_ms();
        let body = serde_json::to_string(report)
            .map_err(|e| FleetError::BadRequest(format!("the report cannot be stored: {e}")))?;
        // Most passes change nothing but the time: then the agent row alone
        // is touched, not the targets (one write instead of a transaction
        // rewriting every target).
        let same = self.same_as_last(agent, report).await?;
        let git = report.git.as_ref().and_then(|g| serde_json::to_string(g).ok());
        let _gate = self.write_gate().await;
        if same {
            sqlx::query(
                "UPDATE agents SET last_report = $1, reported_at = $2, last_seen = $2, git = $4 WHERE id = $3",
            )
            .bind(&body)
            .bind(now)
            .bind(agent)
            .bind(&git)
                .execute(&self.pool)
                .await
                .map_err(db("storing a report"))?;
            return Ok(false);
        }
        // The version checker asks only registries this agent's manifest
        // names (its targets' repositories, its policy's allowed images):
        // an agent cannot make the server fetch arbitrary hosts. Read
        // before the transaction: a second connection taken while holding
        // one starves the pool when every connection does the same.
        let manifest = self.desired(agent).await.ok().and_then(|d| {
            container_upgrader::manifest::Manifest::parse(&format!("agent {agent}'s manifest"), &d.manifest)
                .ok()
        });
        let mut tx = self.pool.begin().await.map_err(db("starting to store a report"))?;
        sqlx::query(
            "UPDATE agents SET controller_version = $1, controller_image = $2, last_report = $3, \
             reported_at = $4, last_seen = $4, git = $6 WHERE id = $5",
        )
        .bind(&report.controller_version)
        .bind(report.controller.as_ref().map(|c| c.image.clone()))
        .bind(&body)
        .bind(now)
        .bind(agent)
        .bind(&git)
        .execute(&mut *tx)
        .await
        .map_err(db("storing a report"))?;
        sqlx::query("DELETE FROM targets WHERE agent_id = $1")
            .bind(agent)
            .execute(&mut *tx)
            .await
            .map_err(db("replacing a report's targets"))?;
        for t in &report.targets {
            let repository = t.image.as_deref().and_then(|i| checkable_repository(manifest.as_ref(), i));
            insert_target(&mut tx, agent, t, repository, now).await?;
        }
        let (unknown,): (i64,) = sqlx::query_as(
            "SELECT COUNT(*) FROM targets t WHERE t.agent_id = $1 AND t.repository IS NOT NULL \
             AND NOT EXISTS (SELECT 1 FROM repositories r WHERE r.repository = t.repository)",
        )
        .bind(agent)
        .fetch_one(&mut *tx)
        .await
        .map_err(db("looking for new repositories"))?;
        tx.commit().await.map_err(db("committing a report"))?;
        self.reported.notify_one();
        Ok(unknown > 0)
    }

    /// True when `report` says what the agent's last one said, but for
    /// when its pass ended.
    async fn same_as_last(&self, agent: &str, report: &Report) -> Result<bool, FleetError> {
        let last: Option<(Option<String>,)> = sqlx::query_as("SELECT last_report FROM agents WHERE id = $1")
            .bind(agent)
            .fetch_optional(&self.pool)
            .await
            .map_err(db("reading the last report"))?;
        let Some(Ok(mut last)) = last.and_then(|(l,)| l).map(|l| serde_json::from_str::<Report>(&l)) else {
            return Ok(false);
        };
        last.updated_at.clone_from(&report.updated_at);
        Ok(&last == report)
    }

    /// Stores one op event; a repeat of the same op id is ignored. True
    /// when it was new.
    pub async fn store_event(&self, agent: &str, event: &OpEvent) -> Result<bool, FleetError> {
        self.admit_write(agent).await?;
        let mut bounded = event.clone();
        bounds::event(&mut bounded);
        let event = &bounded;
        let op_ok = !event.op_id.is_empty()
            && event.op_id.len() <= 128
            && event.op_id.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b));
        if !op_ok {
            return Err(FleetError::Invalid(
                "op_id: 1-128 characters of letters, digits, `-`, `_`, `.`, `:`".into(),
            ));
        }
        // The reason has its own column: the body keeps the rest, so the
        // reason is stored once.
        let body = serde_json::to_string(&OpEvent { reason: None, ..event.clone() })
            .map_err(|e| FleetError::BadRequest(format!("the event cannot be stored: {e}")))?;
        let outcome = serde_json::to_value(event.outcome)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        let _gate = self.write_gate().await;
        // A failed op is told to the notification sinks: its event is
        // written in the same transaction, and only for a new op.
        let mut tx = self.pool.begin().await.map_err(db("starting to store an op event"))?;
        let now = now_ms();
        let done = sqlx::query(
            "INSERT INTO events (agent_id, op_id, container, from_image, to_image, outcome, reason, \
             started_at, ended_at, body, received_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) \
             ON CONFLICT (agent_id, op_id) DO NOTHING",
        )
        .bind(agent)
        .bind(&event.op_id)
        .bind(&event.container)
        .bind(&event.from)
        .bind(&event.to)
        .bind(outcome)
        .bind(&event.reason)
        .bind(&event.started_at)
        .bind(&event.ended_at)
        .bind(body)
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(db("storing an op event"))?;
        let fresh = done.rows_affected() == 1;
        let notified = if fresh && crate::notify::op_failed(event.outcome) {
            notify_op_failed(&mut tx, agent, event, now).await?
        } else {
            false
        };
        tx.commit().await.map_err(db("committing an op event"))?;
        self.reported.notify_one();
        if notified {
            self.wake_notifications();
        }
        Ok(fresh)
    }
}

/// Writes `agent.op_failed` for `event` in `tx`; true when a sink is to
/// be told.
async fn notify_op_failed(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    agent: &str,
    event: &OpEvent,
    now: i64,
) -> Result<bool, FleetError> {
    let (name, last_seen): (String, i64) = sqlx::query_as("SELECT name, last_seen FROM agents WHERE id = $1")
        .bind(agent)
        .fetch_one(&mut **tx)
        .await
        .map_err(db("reading an agent's name"))?;
    let info =
        crate::notify::AgentInfo { id: agent.to_string(), name, last_seen: crate::store::rfc3339(last_seen) };
    let notice = crate::notify::op_event(info, event, now)?;
    Ok(crate::notify::outbox::enqueue(tx, &notice, None).await? > 0)
}

/// The repository of `image` when the agent's `manifest` names it: one of
/// its targets' repositories, or an image its `policy.allowed_images`
/// lists. `None` otherwise: the server never asks that registry.
pub fn checkable_repository(
    manifest: Option<&container_upgrader::manifest::Manifest>,
    image: &str,
) -> Option<String> {
    let reference = ImageRef::parse(image).ok()?;
    let m = manifest?;
    let own = m.targets.iter().any(|t| t.want.image().name() == reference.name());
    let listed = m.policy.allowed_images.is_some() && m.policy.allows(&reference);
    (own || listed).then(|| reference.name())
}

async fn insert_target(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    agent: &str,
    t: &TargetReport,
    repository: Option<String>,
    now: i64,
) -> Result<(), FleetError> {
    let op = t.last_op.as_ref();
    sqlx::query(
        "INSERT INTO targets (agent_id, target, container, image, repository, digest, version, desired, \
         action, reason, last_op_id, last_outcome, last_reason, failure, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15) \
         ON CONFLICT (agent_id, target, container) DO NOTHING",
    )
    .bind(agent)
    .bind(&t.target)
    .bind(t.container.clone().unwrap_or_default())
    .bind(&t.image)
    .bind(repository)
    .bind(&t.digest)
    .bind(&t.version)
    .bind(&t.desired)
    .bind(&t.action)
    .bind(&t.reason)
    .bind(op.map(|o| o.op_id.clone()))
    .bind(op.map(|o| o.outcome.clone()))
    .bind(op.and_then(|o| o.reason.clone()))
    .bind(&t.failure)
    .bind(now)
    .execute(&mut **tx)
    .await
    .map_err(db("storing a report's target"))?;
    Ok(())
}
