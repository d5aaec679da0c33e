//! Failed page logins per client address, in the database: every server
//! sharing it counts the same failures, so guesses spread over replicas
//! behind a balancer meet the backoff of [`super::login_limit`].

use std::net::IpAddr;
use std::time::Duration;

use super::login_limit::{backoff, FORGET_AFTER};
use crate::error::db;
use crate::store::{now_ms, Store};
use crate::FleetError;

impl Store {
    /// How long `ip` must still wait before its next login, by the
    /// failures every server sharing the database counted; `None` when
    /// it may try now.
    pub async fn login_wait(&self, ip: IpAddr) -> Result<Option<u64>, FleetError> {
        let key = container_upgrader::serve::address_key(ip).to_string();
        let row: Option<(i64, i64)> =
            sqlx::query_as("SELECT failures, last_at FROM login_failures WHERE address = $1")
                .bind(&key)
                .fetch_optional(&self.pool)
                .await
                .map_err(db("reading login failures"))?;
        let Some((failures, last_at)) = row else { return Ok(None) };
        let since = Duration::from_millis(u64::try_from(now_ms() - last_at).unwrap_or(0));
        if since >= FORGET_AFTER {
            return Ok(None);
        }
        let wait = backoff(u32::try_from(failures).unwrap_or(u32::MAX)).and_then(|b| b.checked_sub(since));
        Ok(wait.map(|w| w.as_secs_f64().ceil() as u64).filter(|s| *s > 0))
    }

    /// Counts a failed login from `ip` for every server.
    pub async fn login_failed(&self, ip: IpAddr) -> Result<(), FleetError> {
        let key = container_upgrader::serve::address_key(ip).to_string();
        let now = now_ms();
        let forget = i64::try_from(FORGET_AFTER.as_millis()).unwrap_or(i64::MAX);
        let _gate = self.write_gate().await;
        sqlx::query(
            "INSERT INTO login_failures (address, failures, last_at) VALUES ($1, 1, $2) \
             ON CONFLICT (address) DO UPDATE SET last_at = excluded.last_at, failures = CASE \
             WHEN login_failures.last_at < $3 THEN 1 ELSE login_failures.failures + 1 END",
        )
        .bind(&key)
        .bind(now)
        .bind(now - forget)
        .execute(&self.pool)
        .await
        .map_err(db("counting a login failure"))?;
        Ok(())
    }

    /// Forgets `ip`'s failures (it logged in), and every address's that
    /// are past [`FORGET_AFTER`].
    pub async fn login_succeeded(&self, ip: IpAddr) -> Result<(), FleetError> {
        let key = container_upgrader::serve::address_key(ip).to_string();
        let forget = i64::try_from(FORGET_AFTER.as_millis()).unwrap_or(i64::MAX);
        let _gate = self.write_gate().await;
        sqlx::query("DELETE FROM login_failures WHERE address = $1 OR last_at < $2")
            .bind(&key)
            .bind(now_ms() - forget)
            .execute(&self.pool)
            .await
            .map_err(db("forgetting login failures"))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::page::login_limit::FREE_FAILURES;

    #[tokio::test]
    async fn failures_counted_on_one_server_hold_back_the_next_try_on_another() {
        let dir = tempfile::tempdir().expect("login test step");
        let url = crate::tests::database(dir.path()).await;
        let (a, b) = (Store::open(&url).await.expect("open"), Store::open(&url).await.expect("open"));
        let attacker = IpAddr::from([192, 0, 2, 66]);
        for _ in 0..FREE_FAILURES {
            assert_eq!(b.login_wait(attacker).await.expect("read"), None, "free tries");
            a.login_failed(attacker).await.expect("count");
        }
        let wait = b.login_wait(attacker).await.expect("read");
        assert_eq!(wait, Some(1), "the other server makes it wait too");
        assert_eq!(b.login_wait(IpAddr::from([192, 0, 2, 67])).await.expect("read"), None, "others not");
        b.login_succeeded(attacker).await.expect("forget");
        assert_eq!(a.login_wait(attacker).await.expect("read"), None);
    }
}
