//! Sending the outbox: one task per sink, so a dead sink delays only its
//! own events. Each sends its queue strictly in order - the head waits
//! until it is delivered, the next is not tried before (head of line) -
//! and an event leaves the queue only on a 2xx answer: at least once,
//! with the event's id as `Idempotency-Key` so a receiver can drop a
//! repeat.
//!
//! A failed try is retried after the shared [`backoff`]: 1 s doubling to
//! 5 min, with jitter seeded by the event id. The next try's time is kept
//! in the row, so the backoff survives a restart; a restarted server
//! tries each head once at once, then keeps to it. An event that has
//! failed for [`GIVE_UP_AFTER`] is given up - logged as an error and
//! counted on the page and the API - so one poisoned event does not hold
//! a sink forever. Every POST is bounded (connect 5 s, all 10 s) and
//! follows no redirect (one would send the fleet's events somewhere the
//! admin did not name).
//!
//! Several replicas on one PostgreSQL each run this: a sink may then get
//! an event twice, which its idempotency key makes harmless.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use container_upgrader::backoff::{self, Policy};

use super::outbox::Pending;
use super::sinks::{self, Target};
use super::Event;
use crate::store::{now_ms, Store};

/// The whole POST, connection included.
const TIMEOUT: Duration = Duration::from_secs(10);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Retries of an event: 1 s doubling to 5 min.
const RETRY: Policy = Policy::new(Duration::from_secs(1), Duration::from_secs(300));
/// An event still failing this long after it was made is given up.
pub const GIVE_UP_AFTER: Duration = Duration::from_secs(7 * 24 * 3600);
/// Delivered and given-up events are kept this long (the page shows the
/// last delivery), then pruned.
const KEEP_DONE: Duration = Duration::from_secs(7 * 24 * 3600);
const PRUNE_EVERY: Duration = Duration::from_secs(3600);
/// With nothing to do, look again this often anyway: another replica may
/// have written events, or an admin added a sink.
const IDLE: Duration = Duration::from_secs(30);
/// After a database error, try again after this.
const DB_RETRY: Duration = Duration::from_secs(5);

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// Delivers every sink's events until aborted: a task per sink, started
/// and stopped as sinks come and go.
pub async fn run(store: Store) {
    let client = loop {
        match build_client() {
            Ok(c) => break c,
            Err(e) => {
                tracing::error!(error = %e, "no HTTP client for notifications; trying again in a minute");
                tokio::time::sleep(Duration::from_secs(60)).await;
            }
        }
    };
    let mut tasks: HashMap<String, tokio::task::JoinHandle<()>> = HashMap::new();
    let mut wake = store.notify_wake.subscribe();
    let mut pruned: Option<Instant> = None;
    loop {
        match store.sink_ids().await {
            Ok(ids) => {
                tasks.retain(|id, task| {
                    let keep = ids.contains(id) && !task.is_finished();
                    if !keep {
                        task.abort();
                    }
                    keep
                });
                for id in ids {
                    tasks
                        .entry(id.clone())
                        .or_insert_with(|| tokio::spawn(sink_loop(store.clone(), client.clone(), id)));
                }
            }
            Err(e) => tracing::warn!(error = %e, "listing notification sinks failed; trying again"),
        }
        if pruned.is_none_or(|t| t.elapsed() >= PRUNE_EVERY) {
            pruned = Some(Instant::now());
            match store.prune_notifications(now_ms() - ms(KEEP_DONE)).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(removed = n, "delivered notifications pruned"),
                Err(e) => tracing::warn!(error = %e, "pruning delivered notifications failed"),
            }
        }
        tokio::select! {
            () = tokio::time::sleep(IDLE) => {}
            Ok(()) = wake.changed() => {}
        }
    }
}

/// What a sink's task does next.
#[derive(Debug, PartialEq, Eq)]
enum Next {
    /// Its queue is empty: wait for a wake-up.
    Idle,
    /// The head is not due (backing off): wait this long or a wake-up.
    Wait(Duration),
    /// Something moved: look at the queue again at once.
    Again,
    /// The sink was removed.
    Gone,
}

async fn sink_loop(store: Store, client: reqwest::Client, id: String) {
    let mut wake = store.notify_wake.subscribe();
    // A restarted server tries each head once at once, whatever its
    // stored backoff said.
    let mut fresh = true;
    loop {
        let wait = match step(&store, &client, &id, fresh).await {
            Ok(Next::Again) => continue,
            Ok(Next::Gone) => return,
            Ok(Next::Idle) => IDLE,
            Ok(Next::Wait(d)) => d,
            Err(e) => {
                tracing::warn!(sink = %id, error = %e, "notification delivery: database failed; trying again");
                DB_RETRY
            }
        };
        fresh = false;
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            Ok(()) = wake.changed() => {}
        }
    }
}

/// Looks at sink `id`'s head and sends it if it is due.
async fn step(
    store: &Store,
    client: &reqwest::Client,
    id: &str,
    fresh: bool,
) -> Result<Next, crate::FleetError> {
    let Some((name, target)) = store.sink_target(id).await? else { return Ok(Next::Gone) };
    let Some(head) = store.head(id).await? else { return Ok(Next::Idle) };
    let now = now_ms();
    if !fresh && head.next_attempt_at > now {
        return Ok(Next::Wait(Duration::from_millis(u64::try_from(head.next_attempt_at - now).unwrap_or(0))));
    }
    let event: Event = match serde_json::from_str(&head.payload) {
        Ok(e) => e,
        Err(e) => {
            let why = format!("the stored event does not read back ({e}); given up");
            tracing::error!(sink = %name, seq = head.seq, "{why}");
            store.abandon(id, head.seq, &why).await?;
            return Ok(Next::Again);
        }
    };
    let span =
        tracing::info_span!("notification", sink = %name, event = %event.id, kind = event.kind.as_str());
    let _entered = span.enter();
    match post(client, &target, &event, &head).await {
        Ok(()) => {
            store.delivered(id, head.seq).await?;
            tracing::info!(attempts = head.attempts + 1, "notification delivered");
            Ok(Next::Again)
        }
        Err(why) => after_failure(store, id, &event, &head, &why, now).await,
    }
}

/// Schedules the next try of a failed head, or gives it up when it is
/// older than [`GIVE_UP_AFTER`].
async fn after_failure(
    store: &Store,
    id: &str,
    event: &Event,
    head: &Pending,
    why: &str,
    now: i64,
) -> Result<Next, crate::FleetError> {
    if now - head.created_at > ms(GIVE_UP_AFTER) {
        let why = format!("{why}; given up after {} of tries", humantime::format_duration(GIVE_UP_AFTER));
        tracing::error!(error = %why, "notification given up; the events behind it go on");
        store.abandon(id, head.seq, &why).await?;
        return Ok(Next::Again);
    }
    let attempt = u32::try_from(head.attempts + 1).unwrap_or(u32::MAX);
    let wait = backoff::delay(&RETRY, attempt, backoff::seed_of(&event.id));
    store.attempt_failed(id, head.seq, why, now + ms(wait)).await?;
    tracing::warn!(error = %why, attempt, retry_in = ?wait, "notification not delivered; it stays in the outbox");
    Ok(Next::Wait(wait))
}

/// System roots first, bundled web PKI roots where the image has none.
fn build_client() -> Result<reqwest::Client, String> {
    container_upgrader::tls::ensure_crypto_provider();
    container_upgrader::tls::http_client("notification client", |b| {
        b.timeout(TIMEOUT).connect_timeout(CONNECT_TIMEOUT).redirect(reqwest::redirect::Policy::none())
    })
}

/// POSTs `head` to `target`; `Err` says why it did not arrive.
async fn post(
    client: &reqwest::Client,
    target: &Target,
    event: &Event,
    head: &Pending,
) -> Result<(), String> {
    let request = sinks::request(target, event, &head.payload);
    let mut builder = client.post(&target.url);
    for (name, value) in request.headers {
        builder = builder.header(name, value);
    }
    match builder.body(request.body).send().await {
        Ok(r) if r.status().is_success() => Ok(()),
        Ok(r) if r.status().is_redirection() => {
            Err(format!("the sink answered {} (redirects are not followed)", r.status()))
        }
        Ok(r) => Err(format!("the sink answered {}", r.status())),
        // Without the URL: its query or path may be a credential.
        Err(e) => Err(format!("the sink is unreachable: {}", e.without_url())),
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};

    use super::*;
    use crate::notify::sinks::SinkKind;

    /// A one-thread HTTP server answering every request with `answer`;
    /// the requests it got.
    fn server(answer: String) -> (String, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr").to_string();
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let log = seen.clone();
        std::thread::spawn(move || {
            for mut stream in listener.incoming().map_while(Result::ok) {
                let _ = stream.set_read_timeout(Some(Duration::from_millis(300)));
                let mut buf = vec![0u8; 16384];
                let n = stream.read(&mut buf).unwrap_or(0);
                log.lock().expect("lock").push(String::from_utf8_lossy(&buf[..n]).to_string());
                let _ = stream.write_all(answer.as_bytes());
            }
        });
        (addr, seen)
    }

    fn pending(payload: &str) -> Pending {
        Pending { seq: 1, payload: payload.into(), attempts: 0, next_attempt_at: 0, created_at: 0 }
    }

    #[tokio::test]
    async fn a_redirect_is_not_followed_and_a_2xx_alone_delivers() {
        let ok = "HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n".to_string();
        let (elsewhere, elsewhere_seen) = server(ok.clone());
        let redirect = format!(
            "HTTP/1.1 307 Temporary Redirect\r\nlocation: http://{elsewhere}/stolen\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
        );
        let (sink, _) = server(redirect);
        let client = build_client().expect("client");
        let event = Event::test("ops", 0).expect("event");
        let payload = serde_json::to_string(&event).expect("json");
        let target = Target {
            kind: SinkKind::Webhook,
            url: format!("http://{sink}/hook"),
            secret: Some("0123456789abcdef".into()),
        };
        let why = post(&client, &target, &event, &pending(&payload)).await.expect_err("a redirect");
        assert!(why.contains("redirects are not followed"), "{why}");
        assert!(elsewhere_seen.lock().expect("lock").is_empty(), "re-posted to the redirect's target");
        let (good, seen) = server(ok);
        let target = Target { url: format!("http://{good}/hook"), ..target };
        post(&client, &target, &event, &pending(&payload)).await.expect("delivered");
        let request = seen.lock().expect("lock").concat().to_ascii_lowercase();
        assert!(request.contains(&format!("idempotency-key: {}", event.id)), "{request}");
        assert!(request.contains("x-container-upgrader-signature: sha256="), "{request}");
        let free =
            std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free port");
        let dead = Target { url: format!("http://{free}/hook"), ..target };
        let why = post(&client, &dead, &event, &pending(&payload)).await.expect_err("nobody listens");
        assert!(why.contains("unreachable"), "{why}");
    }

    #[test]
    fn retries_double_from_a_second_to_five_minutes_within_their_jitter() {
        let seed = backoff::seed_of("event-1");
        let waits: Vec<Duration> = (1..=12).map(|a| backoff::delay(&RETRY, a, seed)).collect();
        for (i, w) in waits.iter().enumerate() {
            let full = Duration::from_secs(1u64 << i).min(Duration::from_secs(300));
            assert!(*w <= full && *w > full.mul_f64(0.79), "attempt {}: {w:?} vs {full:?}", i + 1);
        }
        assert_eq!(backoff::delay(&RETRY, 3, seed), backoff::delay(&RETRY, 3, seed), "stable per event");
    }
}
