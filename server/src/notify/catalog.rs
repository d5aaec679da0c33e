//! The sinks in the database (migration 0007): added on the page, the
//! API or the CLI, or synced from `--notifications-file`; listed with the
//! state of their queues, never with their secrets.

use serde::{Deserialize, Serialize};

use super::outbox::enqueue;
use super::sinks::{self, SinkKind, Target};
use super::{Event, Kind};
use crate::access::Audit;
use crate::error::db;
use crate::store::{now_ms, rfc3339, Store};
use crate::FleetError;

/// Where a sink was declared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// `--notifications-file`: synced at every start, not removable on the
    /// page or the API.
    File,
    /// Added by an admin on the page, the API or the CLI.
    Page,
}

impl Source {
    fn as_str(self) -> &'static str {
        match self {
            Source::File => "file",
            Source::Page => "page",
        }
    }
}

/// A sink to add (`POST /v1/fleet/notifications`, the page's form, the
/// file).
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewSink {
    /// A unique name.
    pub name: String,
    /// `webhook`, `slack` or `ntfy`.
    pub kind: SinkKind,
    /// Where events are POSTed.
    pub url: String,
    /// The webhook's HMAC key (required), or ntfy's bearer token.
    #[serde(default)]
    pub secret: Option<String>,
    /// The event kinds it gets; empty or absent: all.
    #[serde(default)]
    pub events: Vec<String>,
}

impl std::fmt::Debug for NewSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewSink")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("url", &sinks::shown_url(self.kind, &self.url))
            .field("secret", &self.secret.as_ref().map(|_| "set"))
            .field("events", &self.events)
            .finish()
    }
}

impl NewSink {
    /// Checks it; its event kinds, parsed.
    pub fn check(&self) -> Result<Vec<Kind>, String> {
        let secret = self.secret.as_deref().filter(|s| !s.is_empty());
        sinks::validate(&self.name, self.kind, &self.url, secret)?;
        let mut kinds = Vec::new();
        for e in &self.events {
            let k = Kind::parse(e.trim()).map_err(|m| format!("sink `{}`: {m}", self.name))?;
            if !kinds.contains(&k) {
                kinds.push(k);
            }
        }
        Ok(kinds)
    }
}

/// A sink as the API and the page show it: never its secret.
#[derive(Debug, Clone, Serialize)]
pub struct SinkInfo {
    /// Its id.
    pub id: String,
    /// Its name.
    pub name: String,
    /// `webhook`, `slack`, `ntfy`.
    pub kind: SinkKind,
    /// Its URL without credentials (a Slack URL's origin only).
    pub url: String,
    /// Whether it has a secret (never the secret).
    pub secret: Option<&'static str>,
    /// The event kinds it gets; empty: all.
    pub events: Vec<String>,
    /// `file` or `page`.
    pub source: Source,
    /// Added (RFC 3339).
    pub created_at: String,
    /// Events waiting for it.
    pub backlog: i64,
    /// When the oldest waiting event was made.
    pub oldest_waiting: Option<String>,
    /// Tries of the event at the head of its queue.
    pub attempts: i64,
    /// When that event is tried next.
    pub next_attempt_at: Option<String>,
    /// Why the last try failed, if the head is still waiting.
    pub last_error: Option<String>,
    /// When an event last reached it.
    pub last_delivered_at: Option<String>,
    /// Events it never got (given up after [`super::deliver::GIVE_UP_AFTER`]).
    pub abandoned: i64,
}

/// sink id, name, kind, url, secret, events, source, created_at.
type SinkRow = (String, String, String, String, Option<String>, String, String, i64);

impl Store {
    /// Adds a sink; 409 when its name is taken.
    /// `audit` (the caller's) is written in the same transaction.
    pub async fn add_sink(
        &self,
        sink: &NewSink,
        source: Source,
        audit: Option<&Audit>,
    ) -> Result<SinkInfo, FleetError> {
        let kinds = sink.check().map_err(FleetError::Invalid)?;
        let id = crate::secret::new_id()?;
        let events = events_json(&kinds);
        let secret = sink.secret.as_deref().filter(|s| !s.is_empty());
        let _gate = self.write_gate().await;
        let mut tx = self.pool.begin().await.map_err(db("starting to add a sink"))?;
        let done = sqlx::query(
            "INSERT INTO notify_sinks (id, name, kind, url, secret, events, source, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (name) DO NOTHING",
        )
        .bind(&id)
        .bind(&sink.name)
        .bind(sink.kind.as_str())
        .bind(&sink.url)
        .bind(secret)
        .bind(&events)
        .bind(source.as_str())
        .bind(now_ms())
        .execute(&mut *tx)
        .await
        .map_err(db("adding a notification sink"))?;
        if done.rows_affected() == 0 {
            return Err(FleetError::Conflict(format!(
                "a sink named `{}` exists; remove it first or choose another name",
                sink.name
            )));
        }
        if let Some(audit) = audit {
            audit.record(&mut tx, crate::access::audit::OK).await?;
        }
        tx.commit().await.map_err(db("committing a new sink"))?;
        drop(_gate);
        tracing::info!(sink = %sink.name, kind = sink.kind.as_str(), source = source.as_str(), "notification sink added");
        self.sink(&id).await
    }

    /// Removes sink `id` and its waiting events; 409 for a file's sink.
    /// `audit` (the caller's) is written in the same transaction.
    pub async fn remove_sink(&self, id: &str, audit: Option<&Audit>) -> Result<(), FleetError> {
        let (name, source) = self.sink_name_source(id).await?;
        if source == Source::File.as_str() {
            return Err(FleetError::Conflict(format!(
                "sink `{name}` is declared in --notifications-file; remove it there and restart the server"
            )));
        }
        self.delete_sink(id, audit).await?;
        tracing::info!(sink = %name, "notification sink removed");
        Ok(())
    }

    async fn delete_sink(&self, id: &str, audit: Option<&Audit>) -> Result<(), FleetError> {
        let _gate = self.write_gate().await;
        let mut tx = self.pool.begin().await.map_err(db("starting to remove a sink"))?;
        sqlx::query("DELETE FROM notify_outbox WHERE sink_id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(db("removing a sink's notifications"))?;
        sqlx::query("DELETE FROM notify_sinks WHERE id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(db("removing a sink"))?;
        if let Some(audit) = audit {
            audit.record(&mut tx, crate::access::audit::OK).await?;
        }
        tx.commit().await.map_err(db("committing a sink's removal"))
    }

    async fn sink_name_source(&self, id: &str) -> Result<(String, String), FleetError> {
        sqlx::query_as("SELECT name, source FROM notify_sinks WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(db("reading a sink"))?
            .ok_or_else(|| {
                FleetError::NotFound(format!(
                    "no notification sink `{id}`; GET /v1/fleet/notifications lists them"
                ))
            })
    }

    /// Queues a test event for sink `id` alone, behind what waits for it.
    /// `audit` (the caller's) is written in the same transaction.
    pub async fn test_sink(&self, id: &str, audit: Option<&Audit>) -> Result<String, FleetError> {
        let (name, _) = self.sink_name_source(id).await?;
        let event = Event::test(&name, now_ms())?;
        {
            let _gate = self.write_gate().await;
            let mut tx = self.pool.begin().await.map_err(db("starting to queue a test"))?;
            // A write first: the sink's row is locked (a removal waits for
            // the test), and SQLite takes its write lock before the reads,
            // so a writer in between cannot fail the transaction.
            let locked = sqlx::query("UPDATE notify_sinks SET name = name WHERE id = $1")
                .bind(id)
                .execute(&mut *tx)
                .await
                .map_err(db("locking a sink for its test"))?;
            if locked.rows_affected() != 1 {
                return Err(FleetError::NotFound(format!("no notification sink `{id}`")));
            }
            enqueue(&mut tx, &event, Some(id)).await?;
            if let Some(audit) = audit {
                audit.record(&mut tx, crate::access::audit::OK).await?;
            }
            tx.commit().await.map_err(db("committing a test notification"))?;
        }
        self.wake_notifications();
        Ok(event.id)
    }

    /// Every sink with its queue's state, by name.
    pub async fn sinks(&self) -> Result<Vec<SinkInfo>, FleetError> {
        let rows: Vec<SinkRow> = sqlx::query_as(
            "SELECT id, name, kind, url, secret, events, source, created_at FROM notify_sinks ORDER BY name",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(db("listing notification sinks"))?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            out.push(self.sink_info(row).await?);
        }
        Ok(out)
    }

    /// Sink `id` with its queue's state.
    pub async fn sink(&self, id: &str) -> Result<SinkInfo, FleetError> {
        let row: Option<SinkRow> = sqlx::query_as(
            "SELECT id, name, kind, url, secret, events, source, created_at FROM notify_sinks WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await
        .map_err(db("reading a notification sink"))?;
        let row = row.ok_or_else(|| FleetError::NotFound(format!("no notification sink `{id}`")))?;
        self.sink_info(row).await
    }

    async fn sink_info(&self, row: SinkRow) -> Result<SinkInfo, FleetError> {
        let (id, name, kind, url, secret, events, source, created_at) = row;
        let kind = SinkKind::parse(&kind).map_err(FleetError::Corrupt)?;
        let (backlog, oldest): (i64, Option<i64>) = sqlx::query_as(
            "SELECT COUNT(*), MIN(created_at) FROM notify_outbox WHERE sink_id = $1 \
             AND delivered_at IS NULL AND abandoned_at IS NULL",
        )
        .bind(&id)
        .fetch_one(&self.pool)
        .await
        .map_err(db("counting a sink's notifications"))?;
        let head = self.head(&id).await?;
        let last_error: Option<(Option<String>,)> = sqlx::query_as(
            "SELECT last_error FROM notify_outbox WHERE sink_id = $1 AND last_error IS NOT NULL \
             ORDER BY last_attempt_at DESC LIMIT 1",
        )
        .bind(&id)
        .fetch_optional(&self.pool)
        .await
        .map_err(db("reading a sink's last error"))?;
        let (delivered, abandoned): (Option<i64>, i64) = sqlx::query_as(
            "SELECT MAX(delivered_at), COUNT(abandoned_at) FROM notify_outbox WHERE sink_id = $1",
        )
        .bind(&id)
        .fetch_one(&self.pool)
        .await
        .map_err(db("reading a sink's deliveries"))?;
        // The last error matters while something waits, or when it came
        // after the last delivery (an abandoned event).
        let last_error = last_error.and_then(|(e,)| e).filter(|_| backlog > 0 || abandoned > 0);
        Ok(SinkInfo {
            url: sinks::shown_url(kind, &url),
            id,
            name,
            kind,
            secret: secret.map(|_| "set"),
            events: serde_json::from_str(&events).unwrap_or_default(),
            source: if source == "file" { Source::File } else { Source::Page },
            created_at: rfc3339(created_at),
            backlog,
            oldest_waiting: oldest.map(rfc3339),
            attempts: head.as_ref().map_or(0, |h| h.attempts),
            next_attempt_at: head.map(|h| rfc3339(h.next_attempt_at)),
            last_error,
            last_delivered_at: delivered.map(rfc3339),
            abandoned,
        })
    }

    /// The ids of every sink.
    pub(crate) async fn sink_ids(&self) -> Result<Vec<String>, FleetError> {
        let rows: Vec<(String,)> = sqlx::query_as("SELECT id FROM notify_sinks ORDER BY id")
            .fetch_all(&self.pool)
            .await
            .map_err(db("listing notification sinks"))?;
        Ok(rows.into_iter().map(|(id,)| id).collect())
    }

    /// Where sink `id` is sent to; `None` once it is removed.
    pub(crate) async fn sink_target(&self, id: &str) -> Result<Option<(String, Target)>, FleetError> {
        let row: Option<(String, String, String, Option<String>)> =
            sqlx::query_as("SELECT name, kind, url, secret FROM notify_sinks WHERE id = $1")
                .bind(id)
                .fetch_optional(&self.pool)
                .await
                .map_err(db("reading a notification sink"))?;
        let Some((name, kind, url, secret)) = row else { return Ok(None) };
        let kind = SinkKind::parse(&kind).map_err(FleetError::Corrupt)?;
        Ok(Some((name, Target { kind, url, secret })))
    }

    /// Makes the sinks of `--notifications-file` exactly `declared`: new
    /// ones added, changed ones updated (their waiting events go to the
    /// new URL), ones no longer declared removed with their queue. A page
    /// sink of the same name is taken over by the file, with a warning.
    pub async fn sync_file_sinks(&self, declared: &[NewSink]) -> Result<(), FleetError> {
        let existing: Vec<(String, String, String)> =
            sqlx::query_as("SELECT id, name, source FROM notify_sinks")
                .fetch_all(&self.pool)
                .await
                .map_err(db("reading the notification sinks"))?;
        for sink in declared {
            let kinds = sink.check().map_err(FleetError::Invalid)?;
            let secret = sink.secret.as_deref().filter(|s| !s.is_empty());
            match existing.iter().find(|(_, name, _)| *name == sink.name) {
                None => {
                    self.add_sink(sink, Source::File, None).await?;
                }
                Some((id, name, source)) => {
                    if source != Source::File.as_str() {
                        tracing::warn!(sink = %name, "a sink added on the page has the name of one in --notifications-file; the file's takes it over");
                    }
                    let _gate = self.write_gate().await;
                    sqlx::query(
                        "UPDATE notify_sinks SET kind = $1, url = $2, secret = $3, events = $4, source = 'file' WHERE id = $5",
                    )
                    .bind(sink.kind.as_str())
                    .bind(&sink.url)
                    .bind(secret)
                    .bind(events_json(&kinds))
                    .bind(id)
                    .execute(&self.pool)
                    .await
                    .map_err(db("updating a notification sink"))?;
                }
            }
        }
        for (id, name, source) in &existing {
            if source == Source::File.as_str() && !declared.iter().any(|d| d.name == *name) {
                tracing::info!(sink = %name, "a sink no longer in --notifications-file is removed, with its waiting events");
                self.delete_sink(id, None).await?;
            }
        }
        Ok(())
    }
}

fn events_json(kinds: &[Kind]) -> String {
    let names: Vec<&str> = kinds.iter().map(|k| k.as_str()).collect();
    serde_json::to_string(&names).unwrap_or_else(|_| "[]".into())
}
