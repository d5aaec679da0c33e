//! The server's router: every route — the agents' wire and admin API
//! ([`super::api`]), campaigns ([`super::campaign::api`]), notification
//! sinks ([`super::notify::api`]) and the page
//! ([`super::page`]) — in one function, with the state passed explicitly
//! and the bounds every request meets: a declared body over the limit is
//! refused unread, and requests without a credential keep to their budget
//! ([`super::guard`]).

use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::get;
use axum::Router;

use super::protocol::MAX_BODY_BYTES;
use super::state::{error, FleetState};
use super::FleetError;

/// The server's routes, ready to serve (or to drive in-process in tests).
pub fn router(state: FleetState) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .merge(super::api::routes())
        .merge(super::campaign::api::routes())
        .merge(super::notify::api::routes())
        .merge(super::page::routes())
        .fallback(|| async {
            FleetError::NotFound(
                "no such route; the routes are /v1/agent/… and /v1/fleet/… (see the README)".into(),
            )
        })
        .method_not_allowed_fallback(|| async {
            error(
                StatusCode::METHOD_NOT_ALLOWED,
                "this route does not take that method (see the README's table)".into(),
            )
        })
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(middleware::from_fn_with_state(state.clone(), budget))
        .layer(middleware::from_fn(declared_size))
        .layer(middleware::from_fn(no_sniff_no_store))
        .with_state(state)
}

/// Every answer - JSON, YAML, errors, the 404 fallback - says what it is
/// and is kept by no cache (they carry manifests and fleet state); the
/// page's own stricter headers stay.
async fn no_sniff_no_store(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers.entry(header::X_CONTENT_TYPE_OPTIONS).or_insert(HeaderValue::from_static("nosniff"));
    headers.entry(header::CACHE_CONTROL).or_insert(HeaderValue::from_static("no-store"));
    response
}

/// 413 at once for a declared body over the limit, before any handler
/// (and before authentication) reads a byte of it.
async fn declared_size(request: Request, next: Next) -> Response {
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_BODY_BYTES as u64) {
        return error(StatusCode::PAYLOAD_TOO_LARGE, format!("the body is over {MAX_BODY_BYTES} bytes"));
    }
    next.run(request).await
}

/// Holds enrolments without a header token to their budget
/// ([`super::guard`]).
async fn budget(State(state): State<FleetState>, request: Request, next: Next) -> Response {
    let Some(slot) = super::guard::unauthenticated_slot(&state.guards, &request) else {
        return next.run(request).await;
    };
    let Some(_slot) = slot else {
        tracing::debug!(path = %request.uri().path(), "unauthenticated request refused: over its budget");
        return super::guard::too_many(
            super::guard::RETRY_AFTER_SECS,
            "too many requests without a credential in progress; try again shortly".into(),
        );
    };
    next.run(request).await
}
