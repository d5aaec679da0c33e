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
use crate::state::{json, Admin, FleetState};
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

async fn add(State(state): State<FleetState>, _: Admin, body: Bytes) -> Result<Response, FleetError> {
    let sink: NewSink = json(&body, "the sink")?;
    let info = state.store.add_sink(&sink, Source::Page).await?;
    Ok((StatusCode::CREATED, Json(info)).into_response())
}

async fn remove(
    State(state): State<FleetState>,
    _: Admin,
    Path(id): Path<String>,
) -> Result<Response, FleetError> {
    state.store.remove_sink(&id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn test(
    State(state): State<FleetState>,
    _: Admin,
    Path(id): Path<String>,
) -> Result<Response, FleetError> {
    let event = state.store.test_sink(&id).await?;
    Ok((StatusCode::ACCEPTED, Json(serde_json::json!({ "event": event }))).into_response())
}
