//! The campaign routes, merged into [`crate::routes::router`]: reading
//! and previewing need the viewer role, creating and commands the
//! operator role ([`crate::access`]).
//!
//! | route | answer |
//! |---|---|
//! | `POST /v1/fleet/campaigns` [`Request`] | 201 `{"id": …}` + the campaign |
//! | `GET /v1/fleet/campaigns` | `[CampaignSummary]`, newest first |
//! | `GET /v1/fleet/campaigns/{id}` | `CampaignView` |
//! | `POST /v1/fleet/campaigns/preview` [`Request`] | `{"image", "agents", "waves"}` |
//! | `POST /v1/fleet/campaigns/{id}/pause` (`resume`, `abort`, `abort-and-revert`, `rollback`) | `CampaignView` |

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};

use super::engine::Command;
use super::runner;
use super::spec::Request;
use super::view;
use crate::access::{Operator, Viewer};
use crate::state::{json, FleetState};
use crate::FleetError;

/// The campaign routes.
pub fn routes() -> Router<FleetState> {
    Router::new()
        .route("/v1/fleet/campaigns", post(create).get(list))
        .route("/v1/fleet/campaigns/preview", post(preview))
        .route("/v1/fleet/campaigns/{id}", get(show))
        .route("/v1/fleet/campaigns/{id}/{command}", post(command))
}

const WHAT: &str = "the campaign (see the README's Campaigns section for its fields)";

async fn create(
    State(state): State<FleetState>,
    Operator(by): Operator,
    body: Bytes,
) -> Result<Response, FleetError> {
    let request: Request = json(&body, WHAT)?;
    let id = runner::create(&state.store, &request, state.registry.as_ref(), &by).await?;
    Ok((StatusCode::CREATED, Json(state.store.campaign_view(&id).await?)).into_response())
}

async fn preview(State(state): State<FleetState>, _: Viewer, body: Bytes) -> Result<Response, FleetError> {
    let request: Request = json(&body, WHAT)?;
    let c = runner::plan(&state.store, &request).await?;
    let names = state.store.agent_names().await?;
    let mut p = view::preview(&c, &names);
    p.offline = state.store.offline_members(&c).await?;
    match runner::pinned_image(&c, &request, state.registry.as_ref()).await {
        Ok(image) => p.pins = Some(image),
        Err(e) => p.pin_error = Some(e.to_string()),
    }
    Ok(Json(p).into_response())
}

async fn list(State(state): State<FleetState>, _: Viewer) -> Result<Response, FleetError> {
    let all = state.store.campaigns().await?;
    Ok(Json(all.iter().map(view::summary).collect::<Vec<_>>()).into_response())
}

async fn show(
    State(state): State<FleetState>,
    _: Viewer,
    Path(id): Path<String>,
) -> Result<Response, FleetError> {
    Ok(Json(state.store.campaign_view(&id).await?).into_response())
}

async fn command(
    State(state): State<FleetState>,
    Operator(by): Operator,
    Path((id, command)): Path<(String, String)>,
) -> Result<Response, FleetError> {
    runner::apply(&state.store, &id, command_named(&command)?, &by).await?;
    Ok(Json(state.store.campaign_view(&id).await?).into_response())
}

/// The command a route segment names (the API's and the page's).
pub fn command_named(word: &str) -> Result<Command, FleetError> {
    match word {
        "pause" => Ok(Command::Pause),
        "resume" => Ok(Command::Resume),
        "abort" => Ok(Command::Abort),
        "abort-and-revert" => Ok(Command::AbortAndRevert),
        "rollback" => Ok(Command::Rollback),
        other => Err(FleetError::NotFound(format!(
            "no campaign command `{other}`; allowed: pause, resume, abort, abort-and-revert, rollback"
        ))),
    }
}
