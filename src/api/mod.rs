//! The agent HTTP API (DESIGN.md §8), off unless the daemon is given
//! `--listen`.
//!
//! | Route              | Auth  | Answer                                             |
//! |--------------------|-------|----------------------------------------------------|
//! | `GET /healthz`     | none  | `200 ok`                                           |
//! | `GET /metrics`     | read  | Prometheus/OpenMetrics text ([`crate::metrics`])   |
//! | `GET /v1/status`   | read  | the controller's [`Snapshot`] as JSON              |
//! | `PUT /v1/desired`  | token | writes the manifest, then sends [`Trigger::Api`]   |
//!
//! **When a token is configured, reads need one too**: the write token or
//! the read-only token (`--read-token-file`, for a monitoring scraper that
//! must not be able to write). The status names every managed container,
//! its images and why its last swap failed — what an attacker maps before
//! acting. `/healthz` stays open for liveness probes. With no token at all
//! the reads are open (the API is then a read-only status page, loopback
//! by default; `serve` warns when it is bound wider).
//!
//! Without a token (`--token-file` not given) the API is read-only: every
//! state-changing request gets 403, never a silent "anyone may write".
//!
//! `PUT /v1/desired` takes a whole manifest (`application/yaml`,
//! `text/yaml`, `text/plain`) or one target's new image (`application/json`
//! `{"target": "web", "image": "registry/app:2"}`) and answers 200
//! `{"written": PATH, "targets": N}`. Refusals, none of which writes: 401
//! (no or wrong token, with `WWW-Authenticate: Bearer`), 403 (no token
//! configured; no `policy.allowed_images` without `--allow-any-image`; an
//! image outside it; a push that changes the policy or the webhook, or —
//! without `policy.push_may_change_targets` — anything but the images of
//! the file's targets), 400 (invalid YAML, JSON or manifest), 404 (unknown target),
//! 409 (the file on disk is invalid, or the target cannot be edited in
//! place), 413 (over [`MAX_BODY`]), 415 (other content types), 503 (another
//! process holds the manifest lock). Error bodies are
//! `{"error": "...", "problems": [{"line", "column", "path", "message"}]}`.
//!
//! [`Snapshot`]: crate::status::Snapshot
//! [`Trigger::Api`]: crate::trigger::Trigger::Api

mod auth;
mod desired;
mod error;
mod server;
mod store;

pub use server::{FIRST_BYTE_TIMEOUT, HEADER_TIMEOUT, MAX_CONNECTIONS, REQUEST_TIMEOUT};

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, PoisonError};

use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};

use crate::metrics::Metrics;
use crate::status::SharedSnapshot;
use crate::trigger::Triggers;

/// The largest `PUT /v1/desired` body accepted (the manifest loader's own
/// limit, 1 MiB); larger gets 413.
pub const MAX_BODY: usize = crate::manifest::source::MAX_BYTES as usize;

/// How the API is set up.
#[derive(Clone)]
pub struct ApiConfig {
    /// Where the CLI binds (`--listen`; a loopback address by default).
    /// [`serve`] takes the bound listener, so this is for messages only.
    pub listen: SocketAddr,
    /// The bearer token, as read from `--token-file` (surrounding
    /// whitespace is ignored). `None`, or only whitespace: the API is
    /// read-only.
    pub token: Option<String>,
    /// The read-only token (`--read-token-file`): reads only.
    pub read_token: Option<String>,
    /// The manifest file `PUT /v1/desired` rewrites.
    pub manifest_path: PathBuf,
    /// `run --allow-any-image`: the operator accepts that a push may name
    /// any image when the file has no `policy.allowed_images`. Off, such a
    /// file makes the API refuse every write.
    pub allow_any_image: bool,
    /// With `run --git`: `POST /v1/git/refresh` asks the source to look now.
    pub git_refresh: Option<crate::gitsource::Refresh>,
}

impl std::fmt::Debug for ApiConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiConfig")
            .field("listen", &self.listen)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("read_token", &self.read_token.as_ref().map(|_| "<redacted>"))
            .field("manifest_path", &self.manifest_path)
            .field("allow_any_image", &self.allow_any_image)
            .field("git_refresh", &self.git_refresh.is_some())
            .finish()
    }
}

/// What every handler shares.
#[derive(Clone)]
struct AppState {
    token: Option<auth::Token>,
    read_token: Option<auth::Token>,
    store: Arc<store::Store>,
    snapshot: SharedSnapshot,
    triggers: Triggers,
    metrics: Arc<Metrics>,
    allow_any_image: bool,
    git_refresh: Option<crate::gitsource::Refresh>,
}

/// The API's routes, ready to serve (or to drive in-process in tests).
pub fn router(
    config: &ApiConfig,
    snapshot: SharedSnapshot,
    triggers: Triggers,
    metrics: Arc<Metrics>,
) -> Router {
    let state = AppState {
        token: config.token.as_deref().and_then(auth::Token::new),
        read_token: config.read_token.as_deref().and_then(auth::Token::new),
        store: Arc::new(store::Store::new(config.manifest_path.clone())),
        snapshot,
        triggers,
        metrics,
        allow_any_image: config.allow_any_image,
        git_refresh: config.git_refresh.clone(),
    };
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/metrics", get(get_metrics))
        .route("/v1/status", get(get_status))
        .route("/v1/desired", put(desired::put))
        .route("/v1/git/refresh", post(git_refresh))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(state)
}

/// Serves the API on `listener` until `shutdown` completes, then lets
/// in-flight requests finish (a PUT mid-write completes its write).
/// Connections are bounded in number and time (see [`MAX_CONNECTIONS`]).
pub async fn serve(
    listener: tokio::net::TcpListener,
    config: ApiConfig,
    snapshot: SharedSnapshot,
    triggers: Triggers,
    metrics: Arc<Metrics>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let addr = listener.local_addr()?;
    let read_only = config.token.as_deref().is_none_or(|t| t.trim().is_empty());
    let open_reads = read_only && config.read_token.as_deref().is_none_or(|t| t.trim().is_empty());
    if !addr.ip().is_loopback() && open_reads {
        tracing::warn!(%addr, "the API listens beyond loopback without a token: status and metrics are readable by anyone who can connect");
    }
    if config.allow_any_image && !read_only {
        tracing::warn!(
            %addr,
            "--allow-any-image: when the manifest has no policy.allowed_images, a token holder may run any image \
             in the managed containers (with their mounts and capabilities)"
        );
    }
    if read_only {
        tracing::info!(%addr, "API listening, read-only (no --token-file): PUT /v1/desired is refused");
    } else {
        tracing::info!(%addr, manifest = %config.manifest_path.display(), "API listening");
    }
    let app = router(&config, snapshot, triggers, metrics);
    server::serve(listener, app, shutdown).await
}

async fn get_metrics(State(state): State<AppState>, _auth: auth::ReadAuthorized) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)], state.metrics.encode())
}

/// `POST /v1/git/refresh` (the write token): look at the Git source now.
/// 202 once asked; 404 without `run --git`.
async fn git_refresh(State(state): State<AppState>, _auth: auth::Authorized) -> Response {
    match &state.git_refresh {
        Some(refresh) => {
            refresh.now();
            (StatusCode::ACCEPTED, Json(serde_json::json!({"refresh": "requested"}))).into_response()
        }
        None => error::ApiError::NoGitSource.into_response(),
    }
}

async fn get_status(
    State(state): State<AppState>,
    _auth: auth::ReadAuthorized,
) -> Json<crate::status::Snapshot> {
    // A writer that panicked left a whole snapshot (it replaces, never
    // edits in place), so a poisoned lock still holds a consistent value.
    Json(state.snapshot.read().unwrap_or_else(PoisonError::into_inner).clone())
}
