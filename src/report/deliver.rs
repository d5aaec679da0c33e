//! Delivering the outbox to the webhook: one background task, oldest event
//! first, each POST bounded by timeouts, redirects never followed (a
//! redirect would send the host's events somewhere the operator did not
//! name). An event leaves the outbox only when the receiver answers 2xx.
//!
//! A receiver that cannot be reached ends the sweep (the next events would
//! fail the same way); one that refuses an event (non-2xx) does not hold
//! up the events behind it. Failed sweeps are retried with the shared
//! [`crate::backoff`]; new events, or a new URL, wake the task at once
//! unless it is backing off.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{watch, Notify};

use super::outbox::Outbox;
use super::OpEvent;
use crate::backoff::{Backoff, Policy};
use crate::metrics::Metrics;
use crate::status::{SharedSnapshot, WebhookStatus};

/// The whole POST, connection included.
const TIMEOUT: Duration = Duration::from_secs(10);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Retries of a failed sweep: 1 s doubling to 5 min, forgotten after 10
/// quiet minutes.
const RETRY: Policy = Policy::new(Duration::from_secs(1), Duration::from_secs(300));
const RESET_AFTER: Duration = Duration::from_secs(600);
/// With nothing to do, look again this often anyway: another controller
/// on the same state directory (a self-upgrade's successor) may have
/// written events.
const IDLE_SWEEP: Duration = Duration::from_secs(300);

/// The handle the daemon keeps: tells the task about new events and the
/// webhook URL in force.
#[derive(Debug)]
pub struct Delivery {
    wake: Arc<Notify>,
    url: watch::Sender<Option<Endpoint>>,
}

/// Where events go.
#[derive(Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// The URL each event is POSTed to.
    pub url: String,
    /// Sent as `Authorization: Bearer …` when set.
    pub bearer: Option<String>,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("url", &crate::redact::url(&self.url))
            .field("bearer", &self.bearer.as_ref().map(|_| "…"))
            .finish()
    }
}

/// Where a delivery's progress is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Receiver {
    /// The webhook: `webhook` in the status, and the webhook metrics.
    Webhook,
    /// The fleet server (`run --server`): `fleet.events_pending` in the
    /// status; events carry the agent's credential.
    Fleet,
}

impl Delivery {
    /// Starts delivering `outbox` to the webhook on the current runtime.
    /// Nothing is sent until [`Delivery::set_url`] names a webhook.
    pub fn start(outbox: Outbox, metrics: Arc<Metrics>, status: SharedSnapshot) -> Self {
        Self::start_to(Receiver::Webhook, outbox, metrics, status)
    }

    /// Starts delivering `outbox` to `receiver`. Nothing is sent until
    /// [`Delivery::set_url`] (or [`Delivery::set_endpoint`]) names one.
    pub fn start_to(
        receiver: Receiver,
        outbox: Outbox,
        metrics: Arc<Metrics>,
        status: SharedSnapshot,
    ) -> Self {
        let wake = Arc::new(Notify::new());
        let (url, url_rx) = watch::channel(None);
        let task = Task { receiver, outbox, metrics, status, wake: wake.clone(), url: url_rx, delivered: 0 };
        tokio::spawn(task.run());
        Self { wake, url }
    }

    /// The receiver's URL and the bearer credential each POST carries.
    pub fn set_endpoint(&self, endpoint: Option<Endpoint>) {
        self.url.send_if_modified(|current| {
            let changed = *current != endpoint;
            *current = endpoint;
            changed
        });
    }

    /// The webhook in force (the flag, else the manifest's); `None` keeps
    /// events waiting.
    pub fn set_url(&self, url: Option<String>) {
        self.set_endpoint(url.map(|url| Endpoint { url, bearer: None }));
    }

    /// New events are in the outbox.
    pub fn wake(&self) {
        self.wake.notify_one();
    }
}

/// How one POST went.
enum Attempt {
    Delivered,
    /// The receiver answered, but not with success.
    Refused(String),
    /// No answer: connection refused, timeout, TLS failure.
    Unreachable(String),
}

struct Task {
    receiver: Receiver,
    outbox: Outbox,
    metrics: Arc<Metrics>,
    status: SharedSnapshot,
    wake: Arc<Notify>,
    url: watch::Receiver<Option<Endpoint>>,
    delivered: u64,
}

impl Task {
    async fn run(mut self) {
        // Built on first use: most controllers never report, and a client
        // holds the system's CA store in memory.
        let mut client: Option<reqwest::Client> = None;
        let mut backoff = Backoff::new(RETRY, RESET_AFTER);
        loop {
            let url = self.url.borrow_and_update().clone();
            let wait = match url {
                None => IDLE_SWEEP,
                Some(endpoint) => match self.sweep(&mut client, &endpoint).await {
                    Ok(()) => {
                        backoff.succeeded();
                        IDLE_SWEEP
                    }
                    Err(error) => {
                        let wait = backoff.failed(Instant::now());
                        tracing::warn!(url = %crate::redact::url(&endpoint.url), error = %error, retry_in = ?wait, receiver = ?self.receiver, "op events not delivered; they stay in the outbox");
                        self.publish(Some(error));
                        // Backing off: new events wait for the retry too.
                        tokio::select! {
                            () = tokio::time::sleep(wait) => {}
                            Ok(()) = self.url.changed() => {}
                        }
                        continue;
                    }
                },
            };
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = self.wake.notified() => {}
                Ok(()) = self.url.changed() => {}
            }
        }
    }

    /// Sends every waiting event; `Err` names the last failure.
    async fn sweep(
        &mut self,
        client: &mut Option<reqwest::Client>,
        endpoint: &Endpoint,
    ) -> Result<(), String> {
        let pending = self.outbox.pending().map_err(|e| e.to_string())?;
        if pending.is_empty() {
            self.publish(None);
            return Ok(());
        }
        let client = match client {
            Some(c) => c,
            None => client.insert(build_client()?),
        };
        let mut failure = None;
        for event in &pending {
            match post(client, endpoint, event).await {
                Attempt::Delivered => {
                    self.count(true);
                    self.delivered += 1;
                    tracing::info!(op_id = %event.op_id, receiver = ?self.receiver, "op event delivered");
                    // Delivered but not forgotten: it is sent again later,
                    // which the op id lets the receiver recognise.
                    if let Err(e) = self.outbox.remove(&event.op_id) {
                        tracing::error!(op_id = %event.op_id, error = %e, "a delivered event stays in the outbox");
                    }
                }
                Attempt::Refused(why) => {
                    self.count(false);
                    failure = Some(format!("op {}: {why}", event.op_id));
                }
                Attempt::Unreachable(why) => {
                    self.count(false);
                    failure = Some(why);
                    break;
                }
            }
        }
        self.publish(failure.clone());
        failure.map_or(Ok(()), Err)
    }

    fn count(&self, delivered: bool) {
        if self.receiver == Receiver::Webhook {
            self.metrics.webhook_attempt(delivered);
        }
    }

    /// Puts the outbox's state in the status and the metrics.
    fn publish(&self, last_error: Option<String>) {
        let pending = self.outbox.len().unwrap_or_default();
        let Ok(mut snap) = self.status.write() else { return };
        let status = WebhookStatus { pending, delivered: self.delivered, last_error };
        match self.receiver {
            Receiver::Webhook => {
                self.metrics.set_webhook_pending(pending);
                snap.webhook = Some(status);
            }
            Receiver::Fleet => snap.fleet.get_or_insert_with(Default::default).events = status,
        }
    }
}

/// System roots first, bundled web PKI roots where the image has none
/// (`crate::tls`): a `FROM scratch` controller still reports.
fn build_client() -> Result<reqwest::Client, String> {
    crate::registry::ensure_crypto_provider();
    crate::tls::http_client("webhook client", |b| {
        b.timeout(TIMEOUT).connect_timeout(CONNECT_TIMEOUT).redirect(reqwest::redirect::Policy::none())
    })
}

/// POSTs one event, its op id as the idempotency key.
async fn post(client: &reqwest::Client, endpoint: &Endpoint, event: &OpEvent) -> Attempt {
    let mut request = client.post(&endpoint.url).header("Idempotency-Key", &event.op_id).json(event);
    if let Some(bearer) = &endpoint.bearer {
        request = request.bearer_auth(bearer);
    }
    match request.send().await {
        Ok(r) if r.status().is_success() => Attempt::Delivered,
        Ok(r) if r.status().is_redirection() => {
            Attempt::Refused(format!("the receiver answered {} (redirects are not followed)", r.status()))
        }
        Ok(r) => Attempt::Refused(format!("the receiver answered {}", r.status())),
        // Without the URL: it may carry a token in its query.
        Err(e) => Attempt::Unreachable(format!("webhook unreachable: {}", e.without_url())),
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::net::TcpListener;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    fn event() -> OpEvent {
        OpEvent {
            op_id: "op-1".into(),
            container: "web".into(),
            from: "app:1".into(),
            to: "app:2".into(),
            outcome: crate::swap::journal::OpOutcome::Committed,
            reason: None,
            follows: None,
            service: false,
            started_at: "2024-05-01T12:00:00Z".into(),
            ended_at: "2024-05-01T12:00:01Z".into(),
            duration_ms: 1000,
            controller_version: "test".into(),
            git_commit: None,
        }
    }

    /// A one-thread HTTP server answering every request with `answer`;
    /// counts the requests it got.
    fn server(answer: String) -> (String, Arc<AtomicUsize>) {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr").to_string();
        let hits = Arc::new(AtomicUsize::new(0));
        let seen = hits.clone();
        std::thread::spawn(move || {
            for mut stream in listener.incoming().map_while(Result::ok) {
                seen.fetch_add(1, Ordering::SeqCst);
                let _ = stream.set_read_timeout(Some(Duration::from_millis(200)));
                let mut buf = [0u8; 8192];
                let _ = stream.read(&mut buf);
                let _ = stream.write_all(answer.as_bytes());
            }
        });
        (addr, hits)
    }

    #[tokio::test]
    async fn a_redirect_is_not_followed_and_the_event_stays() {
        let ok = "HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n".to_string();
        let (elsewhere, elsewhere_hits) = server(ok);
        for code in ["301 Moved Permanently", "307 Temporary Redirect", "308 Permanent Redirect"] {
            let redirect = format!(
                "HTTP/1.1 {code}\r\nlocation: http://{elsewhere}/stolen\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
            );
            let (receiver, hits) = server(redirect);
            let client = build_client().expect("client");
            let endpoint = Endpoint { url: format!("http://{receiver}/events"), bearer: None };
            let attempt = post(&client, &endpoint, &event()).await;
            match attempt {
                Attempt::Refused(why) => assert!(why.contains("redirects are not followed"), "{code}: {why}"),
                _ => panic!("{code}: a redirect counted as delivered or unreachable"),
            }
            assert_eq!(hits.load(Ordering::SeqCst), 1, "{code}");
        }
        assert_eq!(
            elsewhere_hits.load(Ordering::SeqCst),
            0,
            "the event was re-posted to the redirect target"
        );
    }
}
