//! What one agent may store: every free-text field of a report or an op
//! event is cut to a bound (with a marker saying how much was left out),
//! writes are rate-limited per agent, and its history is pruned by count
//! and age. An enrolled agent is trusted to say what runs on its host, not
//! to fill the server's disk: 300 events with 1 MB reasons once grew the
//! database by 600 MB in seconds and made the agent's page 100 MB of HTML.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use container_upgrader::protocol::Report;
use container_upgrader::report::OpEvent;

/// A reason or failure text: room for a long Docker error and its cause.
pub const MAX_REASON: usize = 4096;
/// Any other text field (names, images, times, versions).
pub const MAX_FIELD: usize = 512;
/// Writes (reports and events) one agent may make in a burst.
pub const WRITE_BURST: f64 = 300.0;
/// Writes per second one agent regains after a burst.
pub const WRITES_PER_SEC: f64 = 2.0;

/// Cuts `s` to at most `max` bytes (on a character boundary), ending in
/// "… [N bytes cut]" so nobody mistakes it for the whole text.
pub fn cut(s: &mut String, max: usize) {
    if s.len() <= max {
        return;
    }
    let removed = s.len();
    let marker_room = 32;
    let mut end = max.saturating_sub(marker_room);
    while end > 0 && !s.is_char_boundary(end) {
        end -= 1;
    }
    s.truncate(end);
    let cut = removed - end;
    s.push_str(&format!("… [{cut} bytes cut]"));
}

fn cut_opt(s: &mut Option<String>, max: usize) {
    if let Some(s) = s {
        cut(s, max);
    }
}

/// `report` with every text field within its bound.
pub fn report(report: &mut Report) {
    cut(&mut report.controller_version, MAX_FIELD);
    if let Some(c) = &mut report.controller {
        cut(&mut c.container, MAX_FIELD);
        cut(&mut c.image, MAX_FIELD);
    }
    cut_opt(&mut report.manifest_error, MAX_REASON);
    cut_opt(&mut report.pass_error, MAX_REASON);
    cut_opt(&mut report.updated_at, MAX_FIELD);
    cut_opt(&mut report.desired_error, MAX_REASON);
    for t in &mut report.targets {
        cut(&mut t.target, MAX_FIELD);
        cut_opt(&mut t.container, MAX_FIELD);
        cut_opt(&mut t.image, MAX_FIELD);
        cut_opt(&mut t.digest, MAX_FIELD);
        cut_opt(&mut t.version, MAX_FIELD);
        cut_opt(&mut t.desired, MAX_FIELD);
        cut(&mut t.action, MAX_FIELD);
        cut(&mut t.reason, MAX_REASON);
        cut_opt(&mut t.failure, MAX_REASON);
        if let Some(op) = &mut t.last_op {
            cut(&mut op.op_id, MAX_FIELD);
            cut(&mut op.outcome, MAX_FIELD);
            cut(&mut op.from, MAX_FIELD);
            cut(&mut op.to, MAX_FIELD);
            cut_opt(&mut op.reason, MAX_REASON);
            cut(&mut op.updated_at, MAX_FIELD);
        }
    }
    if let Some(g) = &mut report.git {
        cut(&mut g.url, MAX_FIELD);
        cut_opt(&mut g.reference, MAX_FIELD);
        cut(&mut g.path, MAX_FIELD);
        cut_opt(&mut g.commit, MAX_FIELD);
        cut_opt(&mut g.author, MAX_FIELD);
        cut_opt(&mut g.authored_at, MAX_FIELD);
        cut_opt(&mut g.signer, MAX_FIELD);
        cut_opt(&mut g.error, MAX_REASON);
    }
    for h in &mut report.holds {
        cut(&mut h.container, MAX_FIELD);
        cut(&mut h.image, MAX_FIELD);
        cut(&mut h.until, MAX_FIELD);
        cut(&mut h.reason, MAX_REASON);
    }
}

/// `event` with every text field within its bound.
pub fn event(event: &mut OpEvent) {
    cut(&mut event.container, MAX_FIELD);
    cut(&mut event.from, MAX_FIELD);
    cut(&mut event.to, MAX_FIELD);
    cut_opt(&mut event.reason, MAX_REASON);
    cut_opt(&mut event.follows, MAX_FIELD);
    cut(&mut event.started_at, MAX_FIELD);
    cut(&mut event.ended_at, MAX_FIELD);
    cut(&mut event.controller_version, MAX_FIELD);
}

/// How long an agent's history is kept: at most this many events per
/// agent, none older than this.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// Events kept per agent, newest first.
    pub max_events: u32,
    /// Events older than this are dropped.
    pub max_age: Duration,
}

impl Default for Retention {
    fn default() -> Self {
        Self { max_events: 1000, max_age: Duration::from_secs(90 * 24 * 3600) }
    }
}

/// A token bucket per agent: [`WRITE_BURST`] writes, then
/// [`WRITES_PER_SEC`], in memory: one server on SQLite. On PostgreSQL the
/// budget is the agent's row instead, shared by every replica.
#[derive(Debug, Default, Clone)]
pub struct WriteLimiter {
    buckets: Arc<Mutex<HashMap<String, (f64, Instant)>>>,
}

impl WriteLimiter {
    /// Takes one write for `agent`; `Err(seconds)` to wait when it has none
    /// left.
    pub fn take(&self, agent: &str) -> Result<(), u64> {
        self.take_at(agent, Instant::now())
    }

    fn take_at(&self, agent: &str, now: Instant) -> Result<(), u64> {
        let Ok(mut buckets) = self.buckets.lock() else { return Ok(()) };
        if buckets.len() > 100_000 {
            // Full buckets carry no information: forget them.
            buckets.retain(|_, (tokens, at)| {
                *tokens + now.duration_since(*at).as_secs_f64() * WRITES_PER_SEC < WRITE_BURST
            });
        }
        let (tokens, at) = buckets.entry(agent.to_string()).or_insert((WRITE_BURST, now));
        *tokens = (*tokens + now.duration_since(*at).as_secs_f64() * WRITES_PER_SEC).min(WRITE_BURST);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            Ok(())
        } else {
            // Truncation is fine: a wait of at most a second or so.
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            let wait = ((1.0 - *tokens) / WRITES_PER_SEC).ceil() as u64;
            Err(wait.max(1))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_text_is_cut_on_a_character_boundary_and_says_so() {
        let mut s = "é".repeat(5000);
        cut(&mut s, MAX_REASON);
        assert!(s.len() <= MAX_REASON, "{}", s.len());
        assert!(s.ends_with("bytes cut]"), "{s}");
        let mut short = "fine".to_string();
        cut(&mut short, MAX_REASON);
        assert_eq!(short, "fine");
    }

    #[test]
    fn an_agent_gets_its_burst_then_its_rate() {
        let limiter = WriteLimiter::default();
        let t0 = Instant::now();
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let burst = WRITE_BURST as usize;
        for _ in 0..burst {
            assert!(limiter.take_at("a", t0).is_ok());
        }
        assert!(limiter.take_at("a", t0).is_err(), "the burst is spent");
        assert!(limiter.take_at("b", t0).is_ok(), "another agent is not held back");
        assert!(limiter.take_at("a", t0 + Duration::from_secs(1)).is_ok(), "the rate refills");
    }
}
