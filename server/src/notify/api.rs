//! The admin's notification routes, merged by [`crate::routes::router`].
//!
//! | route | auth | answer |
//! |---|---|---|
//! | `GET /v1/fleet/notifications` | admin | `[SinkInfo]`: each sink with its backlog, last error, last delivery |
//! | `POST /v1/fleet/notifications` `{"name", "kind", "url", "secret", "events"}` | admin | 201 `SinkInfo` |
//! | `DELETE /v1/fleet/notifications/{id}` | admin | 204 (409 for a sink of the file) |
//! | `POST /v1/fleet/notifications/{id}/test` | admin | 202 `{"event": ID}`, queued behind the sink's backlog |

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};

use super::catalog::{NewSink, Source};
use crate::access::Admin;
use crate::state::{json, FleetState};
use crate::FleetError;

/// The notification routes.
pub fn routes() -> Router<FleetState> {
    Router::new()
        .route("/v1/fleet/notifications", get(list).post(add))
        .route("/v1/fleet/notifications/{id}", delete(remove))
        .route("/v1/fleet/notifications/{id}/test", post(test))
}

async fn list(State(state): State<FleetState>, _: Admin) -> Result<Response, FleetError> {
    Ok(Json(state.store.sinks().await?).into_response())
}

async fn add(State(state): State<FleetState>, Admin(by): Admin, body: Bytes) -> Result<Response, FleetError> {
    let sink: NewSink = json(&body, "the sink")?;
    let audit = by.audit("notification.add", format!("sink {}", sink.name), added(&sink));
    let info = state.store.add_sink(&sink, Source::Page, Some(&audit)).await?;
    Ok((StatusCode::CREATED, Json(info)).into_response())
}

async fn remove(
    State(state): State<FleetState>,
    Admin(by): Admin,
    Path(id): Path<String>,
) -> Result<Response, FleetError> {
    let audit = by.audit("notification.remove", format!("sink {id}"), "sink removed with its waiting events");
    state.store.remove_sink(&id, Some(&audit)).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn test(
    State(state): State<FleetState>,
    Admin(by): Admin,
    Path(id): Path<String>,
) -> Result<Response, FleetError> {
    let audit = by.audit("notification.test", format!("sink {id}"), "test event queued");
    let event = state.store.test_sink(&id, Some(&audit)).await?;
    Ok((StatusCode::ACCEPTED, Json(serde_json::json!({ "event": event }))).into_response())
}

/// The audit summary of a new sink: never its secret, nor a Slack URL's
/// path.
pub(crate) fn added(sink: &NewSink) -> String {
    let events = if sink.events.is_empty() { "all events".to_string() } else { sink.events.join(", ") };
    format!(
        "{} sink to {} ({events}{})",
        sink.kind.as_str(),
        super::sinks::shown_url(sink.kind, &sink.url),
        if sink.secret.as_deref().is_some_and(|s| !s.is_empty()) { ", secret set" } else { "" }
    )
}
