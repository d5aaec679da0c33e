//! How many login attempts the page takes, and how fast (issue 20).
//!
//! Before, every parallel login ran argon2 at the hash's memory cost (100
//! parallel wrong logins took the server from 10 MB to 1.6 GiB), and only
//! failures waited their turn, so a right guess among 200 parallel ones
//! came back at once. Now:
//!
//! - one login at a time per address (an IPv6 /64); more get 429;
//! - [`MAX_VERIFYING`] argon2 verifications at once server-wide; a login
//!   waits at most [`VERIFY_WAIT`] for one, then gets 429;
//! - per address [`FREE_FAILURES`] failures, then it must wait before the
//!   next try: 1 s, doubling with each failure, at most [`MAX_BACKOFF`];
//!   forgotten [`FORGET_AFTER`] after its last failure or on a success;
//! - server-wide [`GLOBAL_FAILURES_PER_MINUTE`]: past it, an address that
//!   has failed before is refused until the minute is over, while one
//!   that has not (the admin's) is still heard.
//!
//! The admin's right password from another address therefore waits for at
//! most one verification in progress, not for the attack.
//!
//! Several servers on one database share the per-address failures (the
//! `login_failures` table, [`super::login_failures`]): guesses spread over the
//! replicas behind a balancer meet the same backoff as on one server.
//! Turns and slots stay per server: they bound each server's own work.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// argon2 verifications at once: memory is at most this many times the
/// hash's cost (itself at most [`super::login::MAX_HASH_MEMORY_KIB`]).
pub const MAX_VERIFYING: usize = 2;
/// The longest a login waits for a verification slot before 429.
pub const VERIFY_WAIT: Duration = Duration::from_secs(2);
/// Failures an address has before it must wait between tries.
pub const FREE_FAILURES: u32 = 5;
/// The longest an address waits between tries.
pub const MAX_BACKOFF: Duration = Duration::from_secs(15 * 60);
/// An address's failures are forgotten this long after its last one.
pub const FORGET_AFTER: Duration = Duration::from_secs(15 * 60);
/// Failures a minute, server-wide, before known failers are refused.
pub const GLOBAL_FAILURES_PER_MINUTE: u32 = 60;
/// Addresses remembered at most (expired ones are dropped first; when all
/// are fresh, unknown addresses count as having failed).
const MAX_TRACKED: usize = 65_536;

/// Why a login is not heard now; the seconds to wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// The address has a login in progress.
    Busy,
    /// The address failed too often; try again in this many seconds.
    Backoff(u64),
    /// The server sees too many failures; try again in this many seconds.
    Global(u64),
    /// No verification slot came free in time.
    Saturated,
}

impl Refused {
    /// What `Retry-After` says.
    pub fn retry_after(self) -> u64 {
        match self {
            Refused::Busy | Refused::Saturated => 1,
            Refused::Backoff(s) | Refused::Global(s) => s.max(1),
        }
    }
}

#[derive(Debug, Default)]
struct Record {
    in_flight: bool,
    failures: u32,
    last_failure: Option<Instant>,
    blocked_until: Option<Instant>,
}

#[derive(Debug)]
struct Table {
    addresses: HashMap<IpAddr, Record>,
    window_start: Instant,
    window_failures: u32,
}

/// The page's login limits (shared by every login request).
#[derive(Debug)]
pub struct LoginLimiter {
    verifying: Arc<Semaphore>,
    table: Mutex<Table>,
}

impl Default for LoginLimiter {
    fn default() -> Self {
        Self {
            verifying: Arc::new(Semaphore::new(MAX_VERIFYING)),
            table: Mutex::new(Table {
                addresses: HashMap::new(),
                window_start: Instant::now(),
                window_failures: 0,
            }),
        }
    }
}

/// One admitted login: its address's turn, given back on drop.
pub struct Attempt<'a> {
    limiter: &'a LoginLimiter,
    key: IpAddr,
}

/// How long after `failures` failures the next try must wait.
pub(crate) fn backoff(failures: u32) -> Option<Duration> {
    let over = failures.checked_sub(FREE_FAILURES)?;
    let secs = 1u64.checked_shl(over.min(20)).unwrap_or(u64::MAX);
    Some(Duration::from_secs(secs).min(MAX_BACKOFF))
}

impl LoginLimiter {
    fn table(&self) -> std::sync::MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Admits a login from `ip` now, or says why not.
    pub fn admit(&self, ip: IpAddr) -> Result<Attempt<'_>, Refused> {
        let key = container_upgrader::serve::address_key(ip);
        let now = Instant::now();
        let mut table = self.table();
        if now.duration_since(table.window_start) >= Duration::from_secs(60) {
            table.window_start = now;
            table.window_failures = 0;
        }
        let global_over = table.window_failures >= GLOBAL_FAILURES_PER_MINUTE;
        let window_left = Duration::from_secs(60).saturating_sub(now.duration_since(table.window_start));
        if !table.addresses.contains_key(&key) && table.addresses.len() >= MAX_TRACKED {
            table.addresses.retain(|_, r| {
                r.in_flight || r.last_failure.is_some_and(|t| now.duration_since(t) < FORGET_AFTER)
            });
            if table.addresses.len() >= MAX_TRACKED {
                return Err(Refused::Global(window_left.as_secs()));
            }
        }
        let record = table.addresses.entry(key).or_default();
        if record.last_failure.is_some_and(|t| now.duration_since(t) >= FORGET_AFTER) {
            *record = Record { in_flight: record.in_flight, ..Record::default() };
        }
        if record.in_flight {
            return Err(Refused::Busy);
        }
        if let Some(until) = record.blocked_until.filter(|u| *u > now) {
            return Err(Refused::Backoff(until.duration_since(now).as_secs_f64().ceil() as u64));
        }
        if global_over && record.failures > 0 {
            return Err(Refused::Global(window_left.as_secs()));
        }
        record.in_flight = true;
        Ok(Attempt { limiter: self, key })
    }

    /// A slot to run argon2 in, waiting at most [`VERIFY_WAIT`].
    pub async fn verification_slot(&self) -> Result<OwnedSemaphorePermit, Refused> {
        match tokio::time::timeout(VERIFY_WAIT, self.verifying.clone().acquire_owned()).await {
            Ok(Ok(permit)) => Ok(permit),
            _ => Err(Refused::Saturated),
        }
    }
}

impl Attempt<'_> {
    /// The attempt failed: counts against its address and the server.
    pub fn failed(&self) {
        let now = Instant::now();
        let mut table = self.limiter.table();
        table.window_failures = table.window_failures.saturating_add(1);
        if let Some(record) = table.addresses.get_mut(&self.key) {
            record.failures = record.failures.saturating_add(1);
            record.last_failure = Some(now);
            record.blocked_until = backoff(record.failures).map(|wait| now + wait);
        }
    }

    /// The attempt succeeded: its address starts afresh.
    pub fn succeeded(&self) {
        if let Some(record) = self.limiter.table().addresses.get_mut(&self.key) {
            *record = Record { in_flight: true, ..Record::default() };
        }
    }
}

impl Drop for Attempt<'_> {
    fn drop(&mut self) {
        let mut table = self.limiter.table();
        if let Some(record) = table.addresses.get_mut(&self.key) {
            record.in_flight = false;
            if record.failures == 0 {
                table.addresses.remove(&self.key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([192, 0, 2, last])
    }

    #[test]
    fn one_login_at_a_time_per_address() {
        let limiter = LoginLimiter::default();
        let first = limiter.admit(ip(1)).expect("admitted");
        assert_eq!(limiter.admit(ip(1)).err(), Some(Refused::Busy));
        assert!(limiter.admit(ip(2)).is_ok(), "another address is heard");
        drop(first);
        assert!(limiter.admit(ip(1)).is_ok());
    }

    #[test]
    fn failures_past_the_free_ones_back_off_doubling() {
        let limiter = LoginLimiter::default();
        for _ in 0..FREE_FAILURES - 1 {
            limiter.admit(ip(1)).expect("free").failed();
        }
        limiter.admit(ip(1)).expect("the last free one").failed();
        assert_eq!(limiter.admit(ip(1)).err(), Some(Refused::Backoff(1)));
        assert_eq!(backoff(FREE_FAILURES + 1), Some(Duration::from_secs(2)));
        assert_eq!(backoff(FREE_FAILURES + 40), Some(MAX_BACKOFF));
        assert_eq!(backoff(FREE_FAILURES - 1), None);
        assert!(limiter.admit(ip(2)).is_ok(), "others are not affected");
    }

    #[test]
    fn a_success_forgets_the_failures() {
        let limiter = LoginLimiter::default();
        limiter.admit(ip(1)).expect("admitted").failed();
        limiter.admit(ip(1)).expect("admitted").succeeded();
        assert!(limiter.table().addresses.is_empty());
    }

    #[test]
    fn past_the_global_budget_only_addresses_without_failures_are_heard() {
        let limiter = LoginLimiter::default();
        for n in 0..GLOBAL_FAILURES_PER_MINUTE {
            let address = IpAddr::from([10, 0, (n / 256) as u8, (n % 256) as u8]);
            limiter.admit(address).expect("admitted").failed();
        }
        assert!(matches!(limiter.admit(IpAddr::from([10, 0, 0, 1])), Err(Refused::Global(_))));
        assert!(limiter.admit(ip(9)).is_ok(), "a fresh address is still heard");
    }
}
