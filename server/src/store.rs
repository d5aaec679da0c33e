//! The fleet database: one code path over [`sqlx::AnyPool`] for SQLite
//! (a file, the default) and PostgreSQL (shared by several servers), with
//! the numbered migrations in `migrations/` embedded in the binary.
//!
//! The SQL is the dialect both accept: `$1` placeholders, TEXT and BIGINT
//! columns, times as unix milliseconds, JSON as TEXT, ids made here.
//! What each table holds is split by concern: [`super::enrolment`],
//! [`super::desired`], [`super::reports`], [`super::versions`].

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sqlx::any::AnyPoolOptions;
use sqlx::{AnyPool, Executor};
use tokio::sync::watch;

use super::FleetError;

/// How long SQLite waits for another writer before failing a statement.
const SQLITE_BUSY_TIMEOUT_MS: u64 = 5000;
/// PostgreSQL connections per server (a server resource shared with other
/// replicas); half are kept open.
const POSTGRES_CONNECTIONS: u32 = 16;
/// How long a request waits for a free database connection.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(10);

/// While a long-poll waits, the database is read again this often: the
/// last net under the wake-ups (in this process, and from other replicas
/// through PostgreSQL's NOTIFY, after whose every reconnect each held poll
/// reads once more). Polls are held 30 s by default, so a held poll reads
/// at its start and at its end: at 10,000 agents a shorter period was
/// thousands of reads a second with nothing changed.
pub const RECHECK: Duration = Duration::from_secs(30);

/// `--offline-after`'s default: three missed polls.
pub const DEFAULT_OFFLINE_AFTER: u32 = 3;

/// The fleet database and the in-process wake-ups of long-polls.
#[derive(Clone)]
pub struct Store {
    pub(crate) pool: AnyPool,
    /// Per agent: the newest desired revision this process wrote (or a
    /// nudge after a revoke), which its long-poll waits on.
    wakers: Arc<Mutex<HashMap<String, watch::Sender<i64>>>>,
    /// Set when the server stops: long-polls answer 304 at once instead
    /// of holding the shutdown for up to a minute.
    stopping: Arc<watch::Sender<bool>>,
    /// Nudged by every report and event, so campaigns react at once.
    pub(crate) reported: Arc<tokio::sync::Notify>,
    /// Bumped after a transaction wrote notifications, so the deliverer
    /// sends them at once ([`crate::notify::deliver`]).
    pub(crate) notify_wake: Arc<watch::Sender<u64>>,
    /// SQLite only: this process's writers take turns here, first come
    /// first served, instead of colliding in the database and sleeping in
    /// its busy handler (whose growing sleeps made a burst's tail slow).
    /// Another process on the same file still meets the busy timeout.
    writes: Option<Arc<tokio::sync::Mutex<()>>>,
    /// Enrolments waiting for their group commit.
    pub(crate) enrolments: Arc<super::enrol_queue::EnrolQueue>,
    /// Writes per agent, rate-limited ([`crate::bounds`]).
    pub(crate) writes_by_agent: crate::bounds::WriteLimiter,
    /// Missed polls after which an agent counts as offline (the server's
    /// `--offline-after`), for what the store decides itself (a campaign
    /// leaving offline agents out).
    pub offline_after: u32,
    /// PostgreSQL only: its URL, for the connection that listens to what
    /// other replicas write ([`crate::replicas`]).
    pub(crate) shared: Option<Arc<str>>,
    /// How often a waiting long-poll reads its revision again (the
    /// fallback when a wake-up is missed).
    pub(crate) recheck: Duration,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").finish_non_exhaustive()
    }
}

/// The database URL for a SQLite file.
pub fn sqlite_url(path: &Path) -> String {
    format!("sqlite://{}?mode=rwc", path.display())
}

/// `url` without a password, for messages.
pub fn redacted(url: &str) -> String {
    container_upgrader::redact::url(url)
}

impl Store {
    /// Connects to `url` (`sqlite://PATH`, `postgres://…`) and brings its
    /// schema up to date. SQLite runs in WAL mode (readers do not wait for
    /// the writer) with foreign keys on and a busy timeout.
    pub async fn open(url: &str) -> Result<Self, FleetError> {
        sqlx::any::install_default_drivers();
        let fail = |detail: String| FleetError::Open { url: redacted(url), detail };
        let url = sqlite_with_create(url);
        let sqlite = url.starts_with("sqlite:");
        if sqlite {
            prepare_sqlite(&url).await.map_err(fail)?;
        }
        let pool = AnyPoolOptions::new()
            // SQLite has one writer at a time anyway; PostgreSQL connections
            // are a server resource shared with other replicas.
            .max_connections(if sqlite { 8 } else { POSTGRES_CONNECTIONS })
            // PostgreSQL connections take a round of authentication to
            // open: kept open, the first burst of agents does not pay it.
            .min_connections(if sqlite { 0 } else { POSTGRES_CONNECTIONS / 2 })
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .after_connect(|conn, _meta| {
                Box::pin(async move {
                    if conn.backend_name().eq_ignore_ascii_case("sqlite") {
                        conn.execute("PRAGMA journal_mode = WAL").await?;
                        conn.execute(format!("PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}").as_str())
                            .await?;
                        conn.execute("PRAGMA foreign_keys = ON").await?;
                        conn.execute("PRAGMA synchronous = NORMAL").await?;
                    }
                    Ok(())
                })
            })
            .connect(&url)
            .await
            .map_err(|e| fail(format!("cannot connect: {e}")))?;
        sqlx::migrate!("./migrations")
            .run(&pool)
            .await
            .map_err(|e| fail(format!("cannot apply the schema migrations: {e}")))?;
        if !sqlite {
            // Opened now rather than on the first requests.
            let warm = (0..POSTGRES_CONNECTIONS / 2).map(|_| pool.acquire());
            for conn in futures_util::future::join_all(warm).await {
                conn.map_err(|e| fail(format!("cannot connect: {e}")))?;
            }
        }
        Ok(Self {
            pool,
            wakers: Arc::default(),
            stopping: Arc::new(watch::channel(false).0),
            reported: Arc::default(),
            notify_wake: Arc::new(watch::channel(0).0),
            writes: sqlite.then(Arc::default),
            enrolments: Arc::default(),
            offline_after: DEFAULT_OFFLINE_AFTER,
            writes_by_agent: crate::bounds::WriteLimiter::default(),
            shared: (!sqlite).then(|| Arc::from(url.as_str())),
            recheck: RECHECK,
        })
    }

    /// The store with long-polls reading their revision again every
    /// `every` (tests: only a wake-up ends a wait sooner).
    #[must_use]
    pub fn with_recheck(mut self, every: Duration) -> Self {
        self.recheck = every;
        self
    }

    /// The store with `--offline-after` set to `polls`.
    #[must_use]
    pub fn with_offline_after(mut self, polls: u32) -> Self {
        self.offline_after = polls;
        self
    }

    /// Waits for this process's turn to write (SQLite; no wait on
    /// PostgreSQL, whose writers lock only the rows they touch). Held
    /// across a write transaction.
    pub(crate) async fn write_gate(&self) -> Option<tokio::sync::MutexGuard<'_, ()>> {
        match &self.writes {
            Some(gate) => Some(gate.lock().await),
            None => None,
        }
    }

    /// Closes every connection (SQLite checkpoints its WAL).
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// Ends every long-poll in this process (with "no change").
    pub fn stop_polls(&self) {
        self.stopping.send_replace(true);
    }

    pub(crate) fn stopping(&self) -> watch::Receiver<bool> {
        self.stopping.subscribe()
    }

    /// A receiver that changes whenever this process writes `agent`'s
    /// desired state or revokes it.
    pub(crate) fn subscribe(&self, agent: &str) -> watch::Receiver<i64> {
        let mut wakers = self.wakers.lock().unwrap_or_else(PoisonError::into_inner);
        wakers.entry(agent.to_string()).or_insert_with(|| watch::channel(0).0).subscribe()
    }

    /// Wakes every long-poll held in this process, each to read its
    /// revision once more (announcements may have been missed).
    pub(crate) fn wake_all(&self) {
        let wakers = self.wakers.lock().unwrap_or_else(PoisonError::into_inner);
        for sender in wakers.values() {
            sender.send_modify(|_| {});
        }
    }

    /// Wakes `agent`'s long-polls in this process.
    pub(crate) fn wake(&self, agent: &str, revision: i64) {
        let mut wakers = self.wakers.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(sender) = wakers.get(agent) {
            sender.send_replace(revision);
            if sender.receiver_count() == 0 {
                wakers.remove(agent);
            }
        }
    }
}

/// A SQLite URL gets `mode=rwc` (create the file) unless it names a mode.
/// The file path of a `sqlite:` URL (`sqlite://PATH?…`, `sqlite:PATH`);
/// `None` for an in-memory database.
fn sqlite_path(url: &str) -> Option<std::path::PathBuf> {
    let rest = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:"))?;
    let path = rest.split('?').next().unwrap_or(rest);
    (!path.is_empty() && path != ":memory:").then(|| std::path::PathBuf::from(path))
}

/// Before the pool: a new SQLite file is created 0600 (its -wal and -shm
/// files take its mode), an existing one readable by others is named in a
/// warning, and a file that is not a database is said to be one - not
/// left to the pool, whose retries end in "pool timed out".
async fn prepare_sqlite(url: &str) -> Result<(), String> {
    use sqlx::Connection;
    let Some(path) = sqlite_path(url) else { return Ok(()) };
    if !path.exists() {
        container_upgrader::private_fs::create_private(&path)
            .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
    } else if let Ok(meta) = std::fs::metadata(&path) {
        use std::os::unix::fs::PermissionsExt;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            tracing::warn!(path = %path.display(), mode = format!("{mode:o}"), "the fleet database is readable by group or others (it holds agents' manifests and hashed credentials); chmod 600 it");
        }
    }
    let mut conn = sqlx::AnyConnection::connect(url)
        .await
        .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    let probe = sqlx::query("SELECT COUNT(*) FROM sqlite_master").execute(&mut conn).await;
    let _ = conn.close().await;
    probe.map(|_| ()).map_err(|e| {
        format!(
            "{} is not an SQLite database, or is damaged ({e}); give --db another file or restore a backup",
            path.display()
        )
    })
}

fn sqlite_with_create(url: &str) -> String {
    if !url.starts_with("sqlite:") || url.contains("mode=") {
        return url.to_string();
    }
    let joiner = if url.contains('?') { '&' } else { '?' };
    format!("{url}{joiner}mode=rwc")
}

/// Now, in unix milliseconds.
pub fn now_ms() -> i64 {
    let since = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    i64::try_from(since.as_millis()).unwrap_or(i64::MAX)
}

/// Unix milliseconds as RFC 3339 (seconds), for answers.
pub fn rfc3339(ms: i64) -> String {
    let ms = u64::try_from(ms).unwrap_or(0);
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_millis(ms)).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_urls_create_the_file_unless_told_otherwise() {
        assert_eq!(sqlite_with_create("sqlite:///x/fleet.db"), "sqlite:///x/fleet.db?mode=rwc");
        assert_eq!(sqlite_with_create("sqlite://f.db?cache=shared"), "sqlite://f.db?cache=shared&mode=rwc");
        assert_eq!(sqlite_with_create("sqlite://f.db?mode=ro"), "sqlite://f.db?mode=ro");
        assert_eq!(sqlite_with_create("postgres://u@h/db"), "postgres://u@h/db");
    }
}
