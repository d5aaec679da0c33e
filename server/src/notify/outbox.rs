//! The outbox in the database (migration 0007): one row per (sink,
//! event), and what the deliverer reads and writes of it.
//!
//! [`enqueue`] writes one row per subscribed sink inside the caller's
//! transaction - the campaign save, the op event - so an event exists if
//! and only if its change committed. Each event takes the next number of
//! the one counter row; the row stays locked until the transaction ends,
//! so numbers commit in order and a sink's queue never grows behind the
//! deliverer's back.

use super::{Event, Kind};
use crate::error::db;
use crate::store::{now_ms, Store};
use crate::FleetError;

type Tx<'a> = sqlx::Transaction<'a, sqlx::Any>;

/// A waiting event of one sink.
#[derive(Debug, Clone)]
pub struct Pending {
    /// Its place in the sink's queue.
    pub seq: i64,
    /// The stored JSON.
    pub payload: String,
    /// Tries so far.
    pub attempts: i64,
    /// Not before this (unix ms).
    pub next_attempt_at: i64,
    /// Made at (unix ms).
    pub created_at: i64,
}

/// Writes `event` for every sink subscribed to its kind (only `only` for
/// a test), in `tx`; how many sinks. The caller wakes the deliverer after
/// committing ([`Store::wake_notifications`]).
pub(crate) async fn enqueue(tx: &mut Tx<'_>, event: &Event, only: Option<&str>) -> Result<usize, FleetError> {
    let rows: Vec<(String, String)> = sqlx::query_as("SELECT id, events FROM notify_sinks ORDER BY id")
        .fetch_all(&mut **tx)
        .await
        .map_err(db("reading the notification sinks"))?;
    let targets: Vec<String> = rows
        .into_iter()
        .filter(|(id, events)| match only {
            Some(one) => id == one,
            None => subscribed(events, event.kind),
        })
        .map(|(id, _)| id)
        .collect();
    if targets.is_empty() {
        return Ok(0);
    }
    let payload = serde_json::to_string(event)
        .map_err(|e| FleetError::Corrupt(format!("a notification cannot be encoded: {e}")))?;
    let (seq,): (i64,) =
        sqlx::query_as("UPDATE notify_counter SET value = value + 1 WHERE id = 1 RETURNING value")
            .fetch_one(&mut **tx)
            .await
            .map_err(db("numbering a notification"))?;
    let now = now_ms();
    for sink in &targets {
        sqlx::query(
            "INSERT INTO notify_outbox (sink_id, seq, event_id, kind, payload, created_at, attempts, next_attempt_at) \
             VALUES ($1, $2, $3, $4, $5, $6, 0, $6)",
        )
        .bind(sink)
        .bind(seq)
        .bind(&event.id)
        .bind(event.kind.as_str())
        .bind(&payload)
        .bind(now)
        .execute(&mut **tx)
        .await
        .map_err(db("writing a notification"))?;
    }
    Ok(targets.len())
}

/// Whether a sink subscribed to `events` (a JSON array; empty: all) gets
/// `kind`. Tests go only where they are asked for.
fn subscribed(events: &str, kind: Kind) -> bool {
    if kind == Kind::Test {
        return false;
    }
    let list: Vec<String> = serde_json::from_str(events).unwrap_or_default();
    list.is_empty() || list.iter().any(|e| e == kind.as_str())
}

impl Store {
    /// Wakes the deliverer: a transaction wrote notifications.
    pub(crate) fn wake_notifications(&self) {
        self.notify_wake.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// The oldest event waiting for sink `id`: the only one it may be
    /// sent (head of line).
    pub(crate) async fn head(&self, id: &str) -> Result<Option<Pending>, FleetError> {
        let row: Option<(i64, String, i64, i64, i64)> = sqlx::query_as(
            "SELECT seq, payload, attempts, next_attempt_at, created_at FROM notify_outbox \
             WHERE sink_id = $1 AND delivered_at IS NULL AND abandoned_at IS NULL ORDER BY seq LIMIT 1",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await
        .map_err(db("reading a sink's next notification"))?;
        Ok(row.map(|(seq, payload, attempts, next_attempt_at, created_at)| Pending {
            seq,
            payload,
            attempts,
            next_attempt_at,
            created_at,
        }))
    }

    /// Event `seq` reached sink `id`.
    pub(crate) async fn delivered(&self, id: &str, seq: i64) -> Result<(), FleetError> {
        let now = now_ms();
        let _gate = self.write_gate().await;
        sqlx::query(
            "UPDATE notify_outbox SET delivered_at = $1, last_attempt_at = $1, attempts = attempts + 1, \
             last_error = NULL WHERE sink_id = $2 AND seq = $3",
        )
        .bind(now)
        .bind(id)
        .bind(seq)
        .execute(&self.pool)
        .await
        .map_err(db("marking a notification delivered"))?;
        Ok(())
    }

    /// Event `seq` did not reach sink `id` (`error`): tried again at
    /// `next_at`.
    pub(crate) async fn attempt_failed(
        &self,
        id: &str,
        seq: i64,
        error: &str,
        next_at: i64,
    ) -> Result<(), FleetError> {
        let _gate = self.write_gate().await;
        sqlx::query(
            "UPDATE notify_outbox SET attempts = attempts + 1, last_error = $1, last_attempt_at = $2, \
             next_attempt_at = $3 WHERE sink_id = $4 AND seq = $5",
        )
        .bind(error)
        .bind(now_ms())
        .bind(next_at)
        .bind(id)
        .bind(seq)
        .execute(&self.pool)
        .await
        .map_err(db("recording a failed notification"))?;
        Ok(())
    }

    /// Gives event `seq` of sink `id` up: the events behind it go on.
    pub(crate) async fn abandon(&self, id: &str, seq: i64, why: &str) -> Result<(), FleetError> {
        let _gate = self.write_gate().await;
        sqlx::query(
            "UPDATE notify_outbox SET abandoned_at = $1, last_error = $2 WHERE sink_id = $3 AND seq = $4",
        )
        .bind(now_ms())
        .bind(why)
        .bind(id)
        .bind(seq)
        .execute(&self.pool)
        .await
        .map_err(db("giving a notification up"))?;
        Ok(())
    }

    /// Forgets events delivered or given up before `before` (unix ms).
    pub(crate) async fn prune_notifications(&self, before: i64) -> Result<u64, FleetError> {
        let _gate = self.write_gate().await;
        let done = sqlx::query(
            "DELETE FROM notify_outbox WHERE (delivered_at IS NOT NULL AND delivered_at < $1) \
             OR (abandoned_at IS NOT NULL AND abandoned_at < $1)",
        )
        .bind(before)
        .execute(&self.pool)
        .await
        .map_err(db("pruning delivered notifications"))?;
        Ok(done.rows_affected())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sink_gets_what_it_subscribed_to_and_tests_only_when_asked() {
        assert!(subscribed("[]", Kind::CampaignFailed));
        assert!(subscribed("[\"campaign.failed\"]", Kind::CampaignFailed));
        assert!(!subscribed("[\"campaign.failed\"]", Kind::AgentOffline));
        assert!(!subscribed("[]", Kind::Test));
    }
}
