//! Reporting op outcomes to a server: one JSON POST per op to the
//! manifest's `report.webhook`. This is how a fleet server learns an
//! agent's new version, or why an upgrade failed.
//!
//! Reporting never blocks reconciling: events go through a bounded queue to
//! one background task that POSTs them in order, retrying with exponential
//! backoff while the receiver is down. When the queue is full the newest
//! event is dropped with a warning rather than holding up a pass.

use std::time::Duration;

use serde::Serialize;
use tokio::sync::mpsc;

use crate::swap::journal::OpRecord;

/// Events waiting to be sent.
const QUEUE: usize = 256;
/// Attempts per event before it is dropped.
const ATTEMPTS: u32 = 8;
/// First retry delay; doubles up to [`MAX_DELAY`].
const FIRST_DELAY: Duration = Duration::from_millis(500);
const MAX_DELAY: Duration = Duration::from_secs(30);
const TIMEOUT: Duration = Duration::from_secs(10);

/// One op outcome as POSTed.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct OpEvent {
    /// The op.
    pub op_id: String,
    /// The container's name.
    pub container: String,
    /// The image it ran.
    pub from: String,
    /// The image it was swapped to.
    pub to: String,
    /// `committed`, `rolled_back` or `failed`.
    pub outcome: String,
    /// Why it rolled back or failed.
    pub reason: Option<String>,
    /// For a container recreated on its own image to follow the container
    /// whose network it shares: that container's name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub follows: Option<String>,
    /// When the op began (RFC 3339).
    pub started_at: String,
    /// When it ended (RFC 3339).
    pub ended_at: String,
    /// How long it took, in milliseconds.
    pub duration_ms: u64,
    /// The reporting controller's version.
    pub controller_version: String,
}

impl OpEvent {
    /// The event for a finished journal record.
    pub fn from_op(op: &OpRecord) -> Self {
        let parse = |t: &str| humantime::parse_rfc3339(t).ok();
        let duration = match (parse(op.started_at()), parse(op.updated_at())) {
            (Some(a), Some(b)) => b.duration_since(a).unwrap_or_default(),
            _ => Duration::ZERO,
        };
        Self {
            op_id: op.op_id.to_string(),
            container: op.container.clone(),
            from: op.old_image.clone(),
            to: op.new_image.clone(),
            outcome: op.step().map_or("unknown", |s| s.name()).to_string(),
            reason: op.reason.clone(),
            follows: op.follows.clone(),
            started_at: op.started_at().to_string(),
            ended_at: op.updated_at().to_string(),
            duration_ms: u64::try_from(duration.as_millis()).unwrap_or(u64::MAX),
            controller_version: env!("CARGO_PKG_VERSION").to_string(),
        }
    }
}

/// The sending side: cheap to clone, never blocks.
#[derive(Clone)]
pub struct Reporter {
    tx: mpsc::Sender<(String, OpEvent)>,
}

impl Reporter {
    /// Starts the background sender on the current runtime.
    pub fn start() -> Self {
        let (tx, rx) = mpsc::channel(QUEUE);
        tokio::spawn(send_all(rx));
        Self { tx }
    }

    /// Queues `event` for `url`; drops it (with a warning) if the queue is full.
    pub fn report(&self, url: &str, event: OpEvent) {
        if let Err(e) = self.tx.try_send((url.to_string(), event)) {
            tracing::warn!(error = %e, "report queue full; an op outcome was not reported");
        }
    }
}

async fn send_all(mut rx: mpsc::Receiver<(String, OpEvent)>) {
    // Built on the first event only: most controllers never report, and a
    // client holds the system's CA store in memory.
    let mut client: Option<reqwest::Client> = None;
    while let Some((url, event)) = rx.recv().await {
        if client.is_none() {
            crate::registry::ensure_crypto_provider();
            match crate::tls::http_client("report client", |b| b.timeout(TIMEOUT)) {
                Ok(c) => client = Some(c),
                Err(e) => {
                    tracing::error!(error = %e, "cannot build the report client; report dropped");
                    continue;
                }
            }
        }
        if let Some(c) = &client {
            send_one(c, &url, &event).await;
        }
    }
}

/// POSTs one event, retrying with backoff; gives up after [`ATTEMPTS`].
async fn send_one(client: &reqwest::Client, url: &str, event: &OpEvent) {
    let mut delay = FIRST_DELAY;
    for attempt in 1..=ATTEMPTS {
        let result = client.post(url).json(event).send().await;
        let error = match result {
            Ok(r) if r.status().is_success() => {
                tracing::info!(op_id = %event.op_id, url, "reported");
                return;
            }
            Ok(r) => format!("receiver answered {}", r.status()),
            Err(e) => e.to_string(),
        };
        tracing::warn!(op_id = %event.op_id, url, attempt, error = %error, "report not delivered; retrying");
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(MAX_DELAY);
    }
    tracing::error!(op_id = %event.op_id, url, "report dropped after {ATTEMPTS} attempts");
}
