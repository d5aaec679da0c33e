//! The audit log: one row per state-changing request — who (a user, or
//! the break-glass admin), through what (page, API token, admin token),
//! from which address, what (action, object, a summary of the change) and
//! the outcome. A change's row is written in the change's own transaction
//! ([`Audit::record`]): both land or neither. A failed login, which
//! changes nothing, is written on its own ([`crate::Store::audit_alone`]).
//!
//! Read with filters and keyset paging (newest first) through
//! [`crate::Store::audit_log`]; pruned past `--audit-max-age`.

use serde::{Deserialize, Serialize};

use crate::error::db;
use crate::store::{now_ms, rfc3339, Store};
use crate::{secret, FleetError};

/// The outcome of a change that happened.
pub const OK: &str = "ok";
/// The outcome of a login that did not match.
pub const FAILED: &str = "failed";

/// How many rows one read returns by default, and at most.
pub const DEFAULT_LIMIT: i64 = 100;
/// The most rows one read returns.
pub const MAX_LIMIT: i64 = 1000;

/// What one audit row says, before it is written.
#[derive(Debug, Clone)]
pub struct Audit {
    /// Who: a user's name, or the break-glass credential.
    pub actor: String,
    /// Through what: page, API token, break-glass token.
    pub via: String,
    /// The request's source address.
    pub source: String,
    /// The action (`pin`, `campaign.rollback`, `user.add`, …).
    pub action: String,
    /// The object it changed (`agent ID`, `campaign ID`, `user NAME`, …).
    pub object: String,
    /// What changed, in a sentence.
    pub summary: String,
}

/// One audit row as read.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct AuditEntry {
    /// The row's id (with `at`, the paging cursor).
    pub id: String,
    /// When (RFC 3339).
    pub at: String,
    /// Who.
    pub actor: String,
    /// Through what.
    pub via: String,
    /// From where.
    pub source: String,
    /// What was done.
    pub action: String,
    /// To what.
    pub object: String,
    /// The change in a sentence.
    pub summary: String,
    /// `ok` or `failed`.
    pub outcome: String,
}

/// One page of the log, and the cursor of the next (older) one.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AuditPage {
    /// The rows, newest first.
    pub entries: Vec<AuditEntry>,
    /// `before=` for the next page; absent on the last.
    pub next: Option<String>,
}

/// The filters of a read (all optional; `/v1/fleet/audit?…`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditFilter {
    /// Only this actor (exact).
    pub actor: Option<String>,
    /// Only actions starting with this (`campaign` matches every campaign
    /// command).
    pub action: Option<String>,
    /// Only objects containing this.
    pub object: Option<String>,
    /// Only this outcome (`ok`, `failed`).
    pub outcome: Option<String>,
    /// Only rows at or after this (RFC 3339, or a duration back from now:
    /// `24h`).
    pub since: Option<String>,
    /// Only rows before this (RFC 3339 or a duration back).
    pub until: Option<String>,
    /// The cursor of a page (`next` of the previous one).
    pub before: Option<String>,
    /// Rows per page (default 100, at most 1000).
    pub limit: Option<i64>,
}

type Row = (String, i64, String, String, String, String, String, String, String);

impl Audit {
    /// Writes this row with `outcome` inside `tx`, the change's own
    /// transaction.
    pub async fn record(
        &self,
        tx: &mut sqlx::Transaction<'_, sqlx::Any>,
        outcome: &str,
    ) -> Result<(), FleetError> {
        sqlx::query(
            "INSERT INTO audit (id, at, actor, via, source, action, object, summary, outcome) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(secret::new_id()?)
        .bind(now_ms())
        .bind(clip(&self.actor, 200))
        .bind(clip(&self.via, 200))
        .bind(clip(&self.source, 64))
        .bind(clip(&self.action, 64))
        .bind(clip(&self.object, 300))
        .bind(clip(&self.summary, 2000))
        .bind(clip(outcome, 500))
        .execute(&mut **tx)
        .await
        .map_err(db("writing the audit log"))?;
        tracing::info!(
            actor = %self.actor, via = %self.via, source = %self.source, action = %self.action,
            object = %self.object, summary = %self.summary, outcome, "audit"
        );
        Ok(())
    }
}

/// `text` cut to at most `max` characters (rows stay bounded whatever a
/// request carried).
fn clip(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_string(),
    }
}

/// A time filter: RFC 3339, or a duration back from now (`24h`, `7d`).
fn time_bound(what: &str, given: &str) -> Result<i64, FleetError> {
    if let Ok(ts) = given.parse::<jiff::Timestamp>() {
        return Ok(ts.as_millisecond());
    }
    match humantime::parse_duration(given.trim()) {
        Ok(d) => Ok(now_ms().saturating_sub(i64::try_from(d.as_millis()).unwrap_or(i64::MAX))),
        Err(_) => Err(FleetError::Invalid(format!(
            "{what}: `{given}` is neither an RFC 3339 time (2026-12-06T03:00:00Z) nor a duration back from now (24h, 7d)"
        ))),
    }
}

/// The cursor `AT.ID` of a row.
fn cursor(at: i64, id: &str) -> String {
    format!("{at}.{id}")
}

fn parse_cursor(given: &str) -> Result<(i64, String), FleetError> {
    given
        .split_once('.')
        .and_then(|(at, id)| Some((at.parse().ok()?, id.to_string())))
        .filter(|(_, id)| !id.is_empty() && id.bytes().all(|b| b.is_ascii_hexdigit()))
        .ok_or_else(|| {
            FleetError::Invalid(format!("before: `{given}` is not a cursor (give `next` of a page)"))
        })
}

impl Store {
    /// Writes `audit` with `outcome` in a transaction of its own (for what
    /// changes nothing else: a failed login).
    pub async fn audit_alone(&self, audit: &Audit, outcome: &str) -> Result<(), FleetError> {
        let _gate = self.write_gate().await;
        let mut tx = self.pool.begin().await.map_err(db("starting to write the audit log"))?;
        audit.record(&mut tx, outcome).await?;
        tx.commit().await.map_err(db("writing the audit log"))
    }

    /// One page of the audit log under `filter`, newest first.
    pub async fn audit_log(&self, filter: &AuditFilter) -> Result<AuditPage, FleetError> {
        let limit = filter.limit.unwrap_or(DEFAULT_LIMIT);
        if !(1..=MAX_LIMIT).contains(&limit) {
            return Err(FleetError::Invalid(format!("limit: {limit}; allowed 1 to {MAX_LIMIT}")));
        }
        let since = filter.since.as_deref().map(|s| time_bound("since", s)).transpose()?;
        let until = filter.until.as_deref().map(|s| time_bound("until", s)).transpose()?;
        let before = filter.before.as_deref().map(parse_cursor).transpose()?;
        let (before_at, before_id) = before.map_or((None, None), |(at, id)| (Some(at), Some(id)));
        let escape_like = |s: &str| s.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_");
        let action = filter.action.as_deref().map(|a| format!("{}%", escape_like(a)));
        let object = filter.object.as_deref().map(|o| format!("%{}%", escape_like(o)));
        let rows: Vec<Row> = sqlx::query_as(
            "SELECT id, at, actor, via, source, action, object, summary, outcome FROM audit \
             WHERE ($1 IS NULL OR actor = $1) \
             AND ($2 IS NULL OR action LIKE $2 ESCAPE '\\') \
             AND ($3 IS NULL OR object LIKE $3 ESCAPE '\\') \
             AND ($4 IS NULL OR outcome = $4) \
             AND ($5 IS NULL OR at >= $5) \
             AND ($6 IS NULL OR at < $6) \
             AND ($7 IS NULL OR at < $7 OR (at = $7 AND id < $8)) \
             ORDER BY at DESC, id DESC LIMIT $9",
        )
        .bind(filter.actor.as_deref())
        .bind(action)
        .bind(object)
        .bind(filter.outcome.as_deref())
        .bind(since)
        .bind(until)
        .bind(before_at)
        .bind(before_id)
        .bind(limit + 1)
        .fetch_all(&self.pool)
        .await
        .map_err(db("reading the audit log"))?;
        let more = rows.len() > usize::try_from(limit).unwrap_or(usize::MAX);
        let entries: Vec<AuditEntry> = rows
            .into_iter()
            .take(usize::try_from(limit).unwrap_or(usize::MAX))
            .map(|(id, at, actor, via, source, action, object, summary, outcome)| AuditEntry {
                at: rfc3339(at),
                id: cursor(at, &id),
                actor,
                via,
                source,
                action,
                object,
                summary,
                outcome,
            })
            .collect();
        let next = if more { entries.last().map(|e| e.id.clone()) } else { None };
        Ok(AuditPage { entries, next })
    }

    /// Removes audit rows older than `max_age`; how many.
    pub async fn prune_audit(&self, max_age: std::time::Duration) -> Result<u64, FleetError> {
        let cutoff = now_ms().saturating_sub(i64::try_from(max_age.as_millis()).unwrap_or(i64::MAX));
        let _gate = self.write_gate().await;
        let done = sqlx::query("DELETE FROM audit WHERE at < $1")
            .bind(cutoff)
            .execute(&self.pool)
            .await
            .map_err(db("pruning the audit log"))?;
        Ok(done.rows_affected())
    }
}
