//! Agents gone quiet: a periodic scan tells `agent.offline` once per
//! offline episode - an agent not seen for longer than
//! `--notify-offline-after` - and `agent.online` when it is seen again.
//! The notice's time is kept on the agent's row (`offline_notified_at`),
//! so a restart, or a second replica, does not tell it again: the row is
//! claimed by a conditional UPDATE in the transaction that writes the
//! event.

use std::time::Duration;

use super::{outbox, presence_event, AgentInfo};
use crate::error::db;
use crate::store::{now_ms, rfc3339, Store};
use crate::FleetError;

/// `--notify-offline-after`'s default.
pub const DEFAULT_AFTER: Duration = Duration::from_secs(600);

/// How often the scan runs for a threshold `after`: a quarter of it,
/// between 1 s and 30 s.
pub fn interval(after: Duration) -> Duration {
    (after / 4).clamp(Duration::from_secs(1), Duration::from_secs(30))
}

/// Scans every [`interval`] until aborted. Offline notices start once
/// this process has watched for `after` itself: a server that was down
/// (or upgraded) for longer must not call its whole fleet offline because
/// nobody could be seen while it was away. Back-online notices start at
/// once.
pub async fn run(store: Store, after: Duration) {
    let started = std::time::Instant::now();
    loop {
        let offline_too = started.elapsed() >= after;
        match store.scan_presence(after, offline_too).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(events = n, "agents' presence notified"),
            Err(e) => tracing::warn!(error = %e, "scanning for offline agents failed; trying again"),
        }
        tokio::time::sleep(interval(after)).await;
    }
}

impl Store {
    /// Writes `agent.offline` (when `offline_too`) for agents unseen for
    /// longer than `after` and not told yet, `agent.online` for those told
    /// and seen since; how many events.
    pub async fn scan_presence(&self, after: Duration, offline_too: bool) -> Result<usize, FleetError> {
        let now = now_ms();
        let cutoff = now - i64::try_from(after.as_millis()).unwrap_or(i64::MAX);
        // Nothing is older than the epoch: no row matches.
        let cutoff_offline = if offline_too { cutoff } else { i64::MIN };
        let gone: Vec<(String, String, i64)> = sqlx::query_as(
            "SELECT id, name, last_seen FROM agents WHERE revoked_at IS NULL AND offline_notified_at IS NULL \
             AND last_seen < $1 ORDER BY last_seen",
        )
        .bind(cutoff_offline)
        .fetch_all(&self.pool)
        .await
        .map_err(db("looking for offline agents"))?;
        let back: Vec<(String, String, i64)> = sqlx::query_as(
            "SELECT id, name, last_seen FROM agents WHERE revoked_at IS NULL AND offline_notified_at IS NOT NULL \
             AND last_seen > offline_notified_at ORDER BY last_seen",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(db("looking for agents back online"))?;
        let mut told = 0;
        for (online, rows) in [(false, gone), (true, back)] {
            for (id, name, last_seen) in rows {
                let agent = AgentInfo { id, name, last_seen: rfc3339(last_seen) };
                if self.tell_presence(agent, online, after, cutoff, now).await? {
                    told += 1;
                }
            }
        }
        if told > 0 {
            self.wake_notifications();
        }
        Ok(told)
    }

    /// Claims one agent's change and writes its event, in one
    /// transaction; false when another scan claimed it first.
    async fn tell_presence(
        &self,
        agent: AgentInfo,
        online: bool,
        after: Duration,
        cutoff: i64,
        now: i64,
    ) -> Result<bool, FleetError> {
        let _gate = self.write_gate().await;
        let mut tx = self.pool.begin().await.map_err(db("starting an agent's presence notice"))?;
        let claimed = if online {
            sqlx::query("UPDATE agents SET offline_notified_at = NULL WHERE id = $1 AND offline_notified_at IS NOT NULL")
                .bind(&agent.id)
                .execute(&mut *tx)
                .await
        } else {
            sqlx::query(
                "UPDATE agents SET offline_notified_at = $1 WHERE id = $2 AND offline_notified_at IS NULL AND last_seen < $3",
            )
            .bind(now)
            .bind(&agent.id)
            .bind(cutoff)
            .execute(&mut *tx)
            .await
        }
        .map_err(db("claiming an agent's presence notice"))?;
        if claimed.rows_affected() != 1 {
            return Ok(false);
        }
        let event = presence_event(agent, online, after, now)?;
        outbox::enqueue(&mut tx, &event, None).await?;
        tx.commit().await.map_err(db("committing an agent's presence notice"))?;
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_scan_runs_at_a_quarter_of_the_threshold_within_bounds() {
        assert_eq!(interval(Duration::from_secs(600)), Duration::from_secs(30));
        assert_eq!(interval(Duration::from_secs(60)), Duration::from_secs(15));
        assert_eq!(interval(Duration::from_secs(2)), Duration::from_secs(1));
    }
}
