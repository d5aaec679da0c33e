//! Several servers on one PostgreSQL: what one replica writes wakes the
//! long-polls another holds (`LISTEN`/`NOTIFY`, with the long-poll's own
//! periodic re-read as the fallback when a notification is lost), and the
//! work only one server may do at a time — the campaign runner, the
//! version checker — runs under a lease row ([`Store::lead`]) that another
//! replica takes over within seconds when its holder dies.
//!
//! On SQLite (one server) notifications are in-process only and the lease
//! is always this server's; the same code runs.

use std::future::Future;
use std::time::Duration;

use crate::error::db;
use crate::store::{now_ms, Store};
use crate::{secret, FleetError};

/// The channel desired-state changes are announced on.
pub const CHANNEL: &str = "fleet_desired";
/// How long a lease lasts without renewal.
pub const LEASE_TTL: Duration = Duration::from_secs(10);
/// How often its holder renews it (and others try to take it).
pub const LEASE_RENEW: Duration = Duration::from_secs(2);

impl Store {
    /// Announces `agent`'s new `revision` (or `-1`: revoked) to the other
    /// replicas, inside `tx`: PostgreSQL delivers it when the change
    /// commits, never before and never for a change rolled back. Nothing
    /// on SQLite.
    pub(crate) async fn announce(
        &self,
        tx: &mut sqlx::Transaction<'_, sqlx::Any>,
        agent: &str,
        revision: i64,
    ) -> Result<(), FleetError> {
        if self.shared.is_none() {
            return Ok(());
        }
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(CHANNEL)
            .bind(format!("{agent} {revision}"))
            .fetch_optional(&mut **tx)
            .await
            .map_err(db("announcing a desired manifest"))?;
        Ok(())
    }

    /// On PostgreSQL, listens for what other replicas announce and wakes
    /// this server's long-polls; returns at once on SQLite. Reconnects by
    /// itself; notifications missed meanwhile are caught by the
    /// long-polls' periodic re-read.
    pub async fn listen_for_replicas(self) {
        let Some(url) = self.shared.clone() else { return };
        let mut stopping = self.stopping();
        let mut backoff = Duration::from_millis(500);
        loop {
            match sqlx::postgres::PgListener::connect(&url).await {
                Ok(mut listener) => match listener.listen(CHANNEL).await {
                    Ok(()) => {
                        tracing::debug!("listening for other replicas' changes");
                        backoff = Duration::from_millis(500);
                        // Whatever was announced before this LISTEN (at
                        // start, or while the connection was down) is read.
                        self.wake_all();
                        loop {
                            tokio::select! {
                                got = listener.recv() => match got {
                                    Ok(n) => self.heard(n.payload()),
                                    Err(e) => {
                                        tracing::warn!(error = %e, "listening for other replicas failed; reconnecting");
                                        break;
                                    }
                                },
                                _ = stopping.changed() => return,
                            }
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "LISTEN failed; trying again"),
                },
                Err(e) => {
                    tracing::warn!(error = %e, "cannot connect to listen for other replicas; trying again")
                }
            }
            tokio::select! {
                () = tokio::time::sleep(backoff) => {}
                _ = stopping.changed() => return,
            }
            backoff = (backoff * 2).min(Duration::from_secs(30));
        }
    }

    /// One announcement: `AGENT REVISION`.
    fn heard(&self, payload: &str) {
        match payload.split_once(' ').and_then(|(agent, rev)| Some((agent, rev.parse::<i64>().ok()?))) {
            Some((agent, revision)) => self.wake(agent, revision),
            None => tracing::debug!(payload, "an announcement not of our shape ignored"),
        }
    }

    /// Takes or renews lease `name` for `holder` for `ttl`: true when
    /// `holder` holds it now (it was free, expired, or already theirs).
    pub async fn try_lease(&self, name: &str, holder: &str, ttl: Duration) -> Result<bool, FleetError> {
        let now = now_ms();
        let until = now.saturating_add(i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX));
        let _gate = self.write_gate().await;
        let done = sqlx::query(
            "INSERT INTO leases (name, holder, expires_at) VALUES ($1, $2, $3) \
             ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at \
             WHERE leases.holder = excluded.holder OR leases.expires_at < $4",
        )
        .bind(name)
        .bind(holder)
        .bind(until)
        .bind(now)
        .execute(&self.pool)
        .await
        .map_err(db("taking a lease"))?;
        Ok(done.rows_affected() == 1)
    }

    /// Gives lease `name` up if `holder` holds it (a clean stop: another
    /// replica takes over at once rather than after the TTL).
    pub async fn release_lease(&self, name: &str, holder: &str) -> Result<(), FleetError> {
        let _gate = self.write_gate().await;
        sqlx::query("DELETE FROM leases WHERE name = $1 AND holder = $2")
            .bind(name)
            .bind(holder)
            .execute(&self.pool)
            .await
            .map_err(db("releasing a lease"))?;
        Ok(())
    }

    /// Runs `work()` only while this server holds lease `name`: tries
    /// every [`LEASE_RENEW`], starts the work when it gets the lease,
    /// renews it while the work runs, and stops the work the moment a
    /// renewal fails (another replica may take over after [`LEASE_TTL`]).
    /// Never returns while the server runs.
    pub async fn lead<F, Fut>(self, name: &'static str, work: F)
    where
        F: Fn() -> Fut,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let holder = match secret::new_id() {
            Ok(id) => id,
            Err(e) => {
                tracing::error!(error = %e, lease = name, "no id for this server's lease; not leading");
                return;
            }
        };
        self.lead_as(name, &holder, LEASE_TTL, LEASE_RENEW, work).await;
    }

    /// [`Store::lead`] with its holder id and timings given (tests).
    pub async fn lead_as<F, Fut>(
        self,
        name: &'static str,
        holder: &str,
        ttl: Duration,
        every: Duration,
        work: F,
    ) where
        F: Fn() -> Fut,
        Fut: Future<Output = ()> + Send + 'static,
    {
        // Aborted with this loop: the work never outlives its lease holder.
        struct Work(Option<tokio::task::JoinHandle<()>>);
        impl Drop for Work {
            fn drop(&mut self) {
                if let Some(task) = self.0.take() {
                    task.abort();
                }
            }
        }
        let mut work_task = Work(None);
        let running = &mut work_task.0;
        let mut stopping = self.stopping();
        loop {
            let held = match self.try_lease(name, holder, ttl).await {
                Ok(held) => held,
                Err(e) => {
                    tracing::warn!(error = %e, lease = name, "renewing a lease failed");
                    false
                }
            };
            match (held, running.as_ref().is_some_and(|r| !r.is_finished())) {
                (true, false) => {
                    tracing::info!(lease = name, "this server leads now");
                    *running = Some(tokio::spawn(work()));
                }
                (false, true) => {
                    tracing::warn!(lease = name, "this server lost the lead; stopping");
                    if let Some(task) = running.take() {
                        task.abort();
                    }
                }
                _ => {}
            }
            tokio::select! {
                () = tokio::time::sleep(every) => {}
                _ = stopping.changed() => {
                    if let Some(task) = running.take() {
                        task.abort();
                        if let Err(e) = self.release_lease(name, holder).await {
                            tracing::debug!(error = %e, lease = name, "releasing the lease at stop failed");
                        }
                    }
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::time::Duration;

    use crate::access::Principal;
    use crate::Store;
    use container_upgrader::protocol::EnrolRequest;

    const MANIFEST: &str = "version: 1\npolicy:\n  allowed_images: [\"127.0.0.1:5000/*\"]\ntargets:\n  - container: app\n    image: 127.0.0.1:5000/app:1.0.0\n";

    /// Two replicas of one database (on SQLite, one server: the same
    /// store twice); no periodic re-read, so only a wake-up ends a wait.
    async fn replicas(dir: &std::path::Path) -> (Store, Store) {
        let url = crate::tests::database(dir).await;
        let a = Store::open(&url).await.expect("replica test step").with_recheck(Duration::from_secs(3600));
        let b = if url.starts_with("postgres") {
            Store::open(&url).await.expect("replica test step").with_recheck(Duration::from_secs(3600))
        } else {
            a.clone()
        };
        (a, b)
    }

    #[tokio::test]
    async fn a_pin_on_one_replica_answers_a_poll_held_on_another_at_once() {
        let dir = tempfile::tempdir().expect("replica test step");
        let (a, b) = replicas(dir.path()).await;
        tokio::spawn(b.clone().listen_for_replicas());
        let audit = Principal::server().audit("test", "", "");
        let token =
            a.create_token(60_000, 1, Default::default(), &audit).await.expect("replica test step").token;
        let request = EnrolRequest { token, name: "h".into(), manifest: MANIFEST.into() };
        let agent = a.enrol(&request, "-").await.expect("replica test step").agent_id;
        // The listener connects in the background: poll until it hears.
        let poll = {
            let (b, agent) = (b.clone(), agent.clone());
            tokio::spawn(async move { b.wait_desired(&agent, Some(1), Duration::from_secs(50)).await })
        };
        tokio::time::sleep(Duration::from_millis(500)).await;
        a.pin(&agent, "app", "127.0.0.1:5000/app:1.1.0", Some(&audit)).await.expect("replica test step");
        let answered = tokio::time::timeout(Duration::from_secs(30), poll)
            .await
            .expect("the poll on the other replica was woken, not left to its 50 s")
            .expect("replica test step")
            .expect("replica test step")
            .expect("a new revision");
        assert_eq!(answered.revision, 2);
        assert!(answered.manifest.contains("app:1.1.0"));
    }

    /// Every connection of the pool busy with a report must not wait for
    /// a second one (a read inside the transaction did: under a burst
    /// the pool starved and reports failed after its 10 s timeout).
    #[tokio::test]
    async fn a_burst_of_changed_reports_from_many_agents_never_starves_the_pool() {
        let dir = tempfile::tempdir().expect("replica test step");
        let (a, _) = replicas(dir.path()).await;
        let audit = Principal::server().audit("test", "", "");
        let token =
            a.create_token(60_000, 64, Default::default(), &audit).await.expect("replica test step").token;
        let mut agents = Vec::new();
        for i in 0..64 {
            let request =
                EnrolRequest { token: token.clone(), name: format!("h{i}"), manifest: MANIFEST.into() };
            agents.push(a.enrol(&request, "-").await.expect("replica test step").agent_id);
        }
        for round in 0..3 {
            let reports = agents.iter().map(|agent| {
                let (a, agent) = (a.clone(), agent.clone());
                async move {
                    let report: container_upgrader::protocol::Report = serde_json::from_value(serde_json::json!({
                        "controller_version": "0.1.0",
                        "targets": [{ "target": "app", "container": "app",
                                      "image": format!("127.0.0.1:5000/app:1.0.{round}"),
                                      "version": format!("1.0.{round}"), "action": "up_to_date", "reason": "" }],
                    }))
                    .expect("replica test step");
                    a.store_report(&agent, &report).await
                }
            });
            let done = tokio::time::timeout(Duration::from_secs(60), futures_util::future::join_all(reports))
                .await
                .expect("the burst finished");
            let failed: Vec<String> =
                done.into_iter().filter_map(Result::err).map(|e| e.to_string()).collect();
            assert!(failed.is_empty(), "round {round}: {} failed, e.g. {:?}", failed.len(), failed.first());
        }
    }

    #[tokio::test]
    async fn an_agents_writes_spread_over_replicas_meet_one_budget() {
        let dir = tempfile::tempdir().expect("replica test step");
        let (a, b) = replicas(dir.path()).await;
        let audit = Principal::server().audit("test", "", "");
        let token =
            a.create_token(60_000, 1, Default::default(), &audit).await.expect("replica test step").token;
        let request = EnrolRequest { token, name: "h".into(), manifest: MANIFEST.into() };
        let agent = a.enrol(&request, "-").await.expect("replica test step").agent_id;
        let mut refused_at = None;
        for i in 0..400 {
            let event: container_upgrader::report::OpEvent = serde_json::from_value(serde_json::json!({
                "op_id": format!("op-{i}"), "container": "app", "from": "127.0.0.1:5000/app:1.0.0",
                "to": "127.0.0.1:5000/app:1.1.0", "outcome": "committed", "reason": null,
                "started_at": "2026-01-01T00:00:00Z", "ended_at": "2026-01-01T00:00:01Z",
                "duration_ms": 1000, "controller_version": "0.1.0",
            }))
            .expect("replica test step");
            let replica = if i % 2 == 0 { &a } else { &b };
            match replica.store_event(&agent, &event).await {
                Ok(_) => {}
                Err(crate::FleetError::TooMany { .. }) => {
                    refused_at = Some(i);
                    break;
                }
                Err(e) => panic!("event {i}: {e}"),
            }
        }
        let at = refused_at.expect("the burst ends");
        let burst = crate::bounds::WRITE_BURST as usize;
        assert!(
            (burst..burst + 60).contains(&at),
            "one budget of {burst} for both replicas, refused at {at}"
        );
    }

    #[tokio::test]
    async fn one_lease_holder_at_a_time_and_another_takes_over_when_it_stops() {
        let dir = tempfile::tempdir().expect("replica test step");
        let (a, b) = replicas(dir.path()).await;
        let ttl = Duration::from_millis(600);
        assert!(a.try_lease("x", "a", ttl).await.expect("replica test step"));
        assert!(!b.try_lease("x", "b", ttl).await.expect("replica test step"), "held by a");
        assert!(a.try_lease("x", "a", ttl).await.expect("replica test step"), "a renews");
        tokio::time::sleep(ttl + Duration::from_millis(100)).await;
        assert!(b.try_lease("x", "b", ttl).await.expect("replica test step"), "expired: b takes it");
        assert!(!a.try_lease("x", "a", ttl).await.expect("replica test step"), "a lost it");

        // Two servers leading the same work: it never runs twice at once,
        // and runs on the other when the first one dies.
        let running = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let ran_on = Arc::new(std::sync::Mutex::new(Vec::new()));
        let leader = |store: Store, me: &'static str| {
            let (running, most, ran_on) = (running.clone(), most.clone(), ran_on.clone());
            tokio::spawn(store.lead_as("work", me, ttl, Duration::from_millis(100), move || {
                let (running, most, ran_on) = (running.clone(), most.clone(), ran_on.clone());
                async move {
                    let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                    most.fetch_max(now, Ordering::SeqCst);
                    ran_on.lock().expect("replica test step").push(me);
                    // Counted down when aborted.
                    struct Leave(Arc<AtomicUsize>);
                    impl Drop for Leave {
                        fn drop(&mut self) {
                            self.0.fetch_sub(1, Ordering::SeqCst);
                        }
                    }
                    let _leave = Leave(running);
                    std::future::pending::<()>().await;
                }
            }))
        };
        let first = leader(a.clone(), "first");
        tokio::time::sleep(Duration::from_millis(300)).await;
        let second = leader(b.clone(), "second");
        tokio::time::sleep(Duration::from_millis(1000)).await;
        assert_eq!(*ran_on.lock().expect("replica test step"), ["first"]);
        // The first dies without a word (no release): the second takes
        // over once the lease runs out.
        first.abort();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while ran_on.lock().expect("replica test step").len() < 2 {
            assert!(tokio::time::Instant::now() < deadline, "nobody took over");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(*ran_on.lock().expect("replica test step"), ["first", "second"]);
        second.abort();
        assert_eq!(most.load(Ordering::SeqCst), 1, "never two at once");
    }
}
