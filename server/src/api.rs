//! The agents' wire ([`super::protocol`]) and the admin JSON API. The
//! state they share, authentication and error answers are
//! [`super::state`]'s; [`super::routes`] puts every route together.
//!
//! | route | auth | answer |
//! |---|---|---|
//! | `GET /healthz` | none | `ok` |
//! | the agent routes of [`super::protocol`] | agent credential | see there |
//! | `GET /v1/fleet/agents?label=K=V&version=V&status=S&has_update=K` | admin | `[AgentSummary]` |
//! | `GET /v1/fleet/agents/{id}` | admin | `AgentDetail` |
//! | `PUT /v1/fleet/agents/{id}/targets/{target}` `{"image": "…"}` | admin | `{"revision": N}` |
//! | `GET /v1/fleet/agents/{id}/manifest` | admin | the YAML, `ETag` |
//! | `PUT /v1/fleet/agents/{id}/manifest` (YAML) | admin | `{"revision": N}` |
//! | `POST /v1/fleet/agents/{id}/revoke` | admin | 204 |
//! | `GET /v1/fleet/repositories` | admin | `[RepositoryInfo]` |
//! | `POST /v1/fleet/enrolment-tokens` `{"expires_in", "uses", "labels"}` | admin | 201 `NewToken` |
//! | `GET /v1/fleet/enrolment-tokens` | admin | `[TokenInfo]` |
//! | `DELETE /v1/fleet/enrolment-tokens/{id}` | admin | 204 |
//! | `DELETE /v1/fleet/sessions` | admin | `{"ended": N}`: every page session ends ("log out everywhere") |
//! | `/v1/fleet/campaigns…` | admin | see [`super::campaign::api`] |
//! | `/v1/fleet/notifications…` | admin | see [`super::notify::api`] |
//! | `/`, `/login`, `/agents/{id}`, … (the page) | session cookie | HTML, see [`super::page`] |

use std::time::Duration;

use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{FromRequestParts, Path, Query, Request, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde::Deserialize;

use super::access::{Admin, Operator, Viewer};
use super::agents::Filter;
use super::enrolment::Labels;
use super::guard;
use super::protocol::{self, EnrolRequest, Report, MAX_BODY_BYTES, MAX_WAIT_SECS};
use super::state::{bearer, bearer_in, json, FleetState};
use super::FleetError;
use container_upgrader::manifest::Dur;
use container_upgrader::report::OpEvent;

/// The agents' wire and the admin JSON API, merged into the server's
/// router by [`crate::routes::router`].
pub fn routes() -> Router<FleetState> {
    Router::new()
        .route(protocol::ENROL, post(enrol))
        .route(protocol::DESIRED, get(desired))
        .route(protocol::REPORT, post(report))
        .route(protocol::EVENTS, post(event))
        .route("/v1/fleet/agents", get(list_agents))
        .route("/v1/fleet/agents/{id}", get(get_agent))
        .route("/v1/fleet/agents/{id}/targets/{target}", put(pin))
        .route("/v1/fleet/agents/{id}/manifest", get(get_manifest).put(put_manifest))
        .route("/v1/fleet/agents/{id}/revoke", post(revoke_agent))
        .route("/v1/fleet/repositories", get(repositories))
        .route("/v1/fleet/enrolment-tokens", post(create_token).get(list_tokens))
        .route("/v1/fleet/enrolment-tokens/{id}", axum::routing::delete(revoke_token))
        .route("/v1/fleet/sessions", axum::routing::delete(end_sessions))
}

/// An authenticated, unrevoked agent: its id comes from the credential
/// only, never from the URL or the body.
struct Agent(String);

impl FromRequestParts<FleetState> for Agent {
    type Rejection = FleetError;

    async fn from_request_parts(parts: &mut Parts, state: &FleetState) -> Result<Self, Self::Rejection> {
        let credential = bearer(parts).ok_or_else(|| {
            FleetError::Unauthorized(
                "send the agent credential as `Authorization: Bearer AGENT_ID.SECRET`".into(),
            )
        })?;
        // Boxed: the check's state would otherwise size the future of
        // every request an agent makes, a held poll's for its whole wait.
        Box::pin(state.store.authenticate(credential)).await.map(Agent)
    }
}

fn text(body: Bytes, what: &str) -> Result<String, FleetError> {
    String::from_utf8(body.to_vec()).map_err(|_| FleetError::BadRequest(format!("{what}: not UTF-8 text")))
}

/// `POST /v1/agent/enrol`. The token may come in `Authorization: Bearer`
/// (checked before the body is read: a wrong one is refused at once and
/// the connection closed) or, from agents before the header, in the body
/// (then the request keeps to the unauthenticated budget, see
/// [`crate::guard`]). When both are sent they must be the same token.
async fn enrol(State(state): State<FleetState>, request: Request) -> Result<Response, Response> {
    let header_token = bearer_in(request.headers()).map(str::to_string);
    let source = super::access::source_of(request.extensions());
    if let Some(token) = &header_token {
        state.store.check_enrolment_token(token).await.map_err(|e| guard::closing(e.into_response()))?;
    }
    let body = axum::body::to_bytes(request.into_body(), MAX_BODY_BYTES)
        .await
        .map_err(|e| FleetError::BadRequest(format!("reading the enrolment request: {e}")).into_response())?;
    let mut enrolment: EnrolRequest =
        json(&body, "the enrolment request").map_err(IntoResponse::into_response)?;
    if let Some(token) = header_token {
        if enrolment.token.is_empty() {
            enrolment.token = token;
        } else if enrolment.token.trim() != token {
            return Err(FleetError::BadRequest(
                "the enrolment token in the body is not the one in the Authorization header".into(),
            )
            .into_response());
        }
    }
    let answer = state.store.enrol(&enrolment, &source).await.map_err(IntoResponse::into_response)?;
    Ok((StatusCode::CREATED, Json(answer)).into_response())
}

#[derive(Debug, Deserialize)]
struct WaitQuery {
    wait: Option<u64>,
}

async fn desired(
    State(state): State<FleetState>,
    Agent(agent): Agent,
    query: Result<Query<WaitQuery>, QueryRejection>,
    headers: HeaderMap,
) -> Result<Response, FleetError> {
    let Query(query) = query.map_err(|e| FleetError::BadRequest(format!("{e}; allowed: ?wait=SECONDS")))?;
    let wait = Duration::from_secs(query.wait.unwrap_or(0).min(MAX_WAIT_SECS));
    let known =
        headers.get(header::IF_NONE_MATCH).and_then(|v| v.to_str().ok()).and_then(protocol::revision_of);
    // Not kept for the wait.
    drop(headers);
    match state.store.wait_desired(&agent, known, wait).await? {
        None => Ok(StatusCode::NOT_MODIFIED.into_response()),
        Some(desired) => Ok((
            [
                (header::CONTENT_TYPE, "application/yaml".to_string()),
                (header::ETAG, protocol::etag(desired.revision)),
            ],
            desired.manifest,
        )
            .into_response()),
    }
}

async fn report(
    State(state): State<FleetState>,
    Agent(agent): Agent,
    body: Bytes,
) -> Result<StatusCode, FleetError> {
    let report: Report = json(&body, "the report")?;
    if state.store.store_report(&agent, &report).await? {
        state.new_repository.notify_one();
    }
    Ok(StatusCode::NO_CONTENT)
}

async fn event(
    State(state): State<FleetState>,
    Agent(agent): Agent,
    headers: HeaderMap,
    body: Bytes,
) -> Result<StatusCode, FleetError> {
    let event: OpEvent = json(&body, "the event")?;
    if let Some(key) = headers.get("idempotency-key").and_then(|v| v.to_str().ok()) {
        if key != event.op_id {
            return Err(FleetError::BadRequest(format!(
                "Idempotency-Key `{key}` is not the event's op_id `{}`; they must be equal",
                event.op_id
            )));
        }
    }
    state.store.store_event(&agent, &event).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn list_agents(
    State(state): State<FleetState>,
    _: Viewer,
    filter: Result<Query<Filter>, QueryRejection>,
) -> Result<Response, FleetError> {
    let Query(filter) = filter.map_err(|e| {
        FleetError::BadRequest(format!(
            "{e}; allowed: label=KEY=VALUE, version=V, status=online|offline|revoked, has_update=any|patch|minor|major"
        ))
    })?;
    Ok(Json(state.store.agents(&filter, state.offline_after).await?).into_response())
}

async fn get_agent(
    State(state): State<FleetState>,
    _: Viewer,
    Path(id): Path<String>,
) -> Result<Response, FleetError> {
    Ok(Json(state.store.agent(&id, state.offline_after).await?).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PinBody {
    image: String,
}

fn revision(revision: i64) -> Response {
    ([(header::ETAG, protocol::etag(revision))], Json(serde_json::json!({ "revision": revision })))
        .into_response()
}

async fn pin(
    State(state): State<FleetState>,
    Operator(by): Operator,
    Path((id, target)): Path<(String, String)>,
    body: Bytes,
) -> Result<Response, FleetError> {
    let PinBody { image } = json(&body, "the pin (`{\"image\": \"REF\"}`)")?;
    let audit = by.audit("pin", format!("agent {id}"), format!("target {target} pinned to {image}"));
    Ok(revision(state.store.pin(&id, &target, &image, Some(&audit)).await?))
}

async fn get_manifest(
    State(state): State<FleetState>,
    _: Viewer,
    Path(id): Path<String>,
) -> Result<Response, FleetError> {
    let desired = state.store.desired(&id).await?;
    Ok((
        [
            (header::CONTENT_TYPE, "application/yaml".to_string()),
            (header::ETAG, protocol::etag(desired.revision)),
        ],
        desired.manifest,
    )
        .into_response())
}

async fn put_manifest(
    State(state): State<FleetState>,
    Operator(by): Operator,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, FleetError> {
    let manifest = text(body, "the manifest")?;
    let audit = by.audit(
        "manifest.put",
        format!("agent {id}"),
        format!("manifest replaced ({} bytes)", manifest.len()),
    );
    Ok(revision(state.store.put_manifest(&id, &manifest, &audit).await?))
}

async fn revoke_agent(
    State(state): State<FleetState>,
    Admin(by): Admin,
    Path(id): Path<String>,
) -> Result<StatusCode, FleetError> {
    state.store.revoke_agent(&id, &by.audit("agent.revoke", format!("agent {id}"), "agent revoked")).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn repositories(State(state): State<FleetState>, _: Viewer) -> Result<Response, FleetError> {
    Ok(Json(state.store.repositories().await?).into_response())
}

/// `POST /v1/fleet/enrolment-tokens`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenRequest {
    /// A duration (`24h`, `30m`); default 24h, at most 7 days.
    expires_in: Option<String>,
    /// Enrolments allowed; default 1.
    uses: Option<i64>,
    /// Labels the enrolled agents get.
    #[serde(default)]
    labels: Labels,
}

async fn create_token(
    State(state): State<FleetState>,
    Admin(by): Admin,
    body: Bytes,
) -> Result<Response, FleetError> {
    let request: TokenRequest =
        if body.is_empty() { json(b"{}", "the token request")? } else { json(&body, "the token request")? };
    let expires = Dur::parse(request.expires_in.as_deref().unwrap_or("24h"))
        .map_err(|e| FleetError::Invalid(format!("expires_in: {e}")))?;
    let valid_ms = i64::try_from(expires.0.as_millis()).unwrap_or(i64::MAX);
    let audit = by.audit("enrolment-token.create", "", format!("valid for {expires}"));
    let token = state.store.create_token(valid_ms, request.uses.unwrap_or(1), request.labels, &audit).await?;
    Ok((StatusCode::CREATED, [(header::CACHE_CONTROL, "no-store")], Json(token)).into_response())
}

async fn list_tokens(State(state): State<FleetState>, _: Admin) -> Result<Response, FleetError> {
    Ok(Json(state.store.list_tokens().await?).into_response())
}

async fn revoke_token(
    State(state): State<FleetState>,
    Admin(by): Admin,
    Path(id): Path<String>,
) -> Result<StatusCode, FleetError> {
    let audit =
        by.audit("enrolment-token.revoke", format!("enrolment token {id}"), "enrolment token revoked");
    state.store.revoke_token(&id, &audit).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn end_sessions(State(state): State<FleetState>, Admin(by): Admin) -> Result<Response, FleetError> {
    let ended = state
        .store
        .end_all_sessions(&by.audit("sessions.end-all", "page sessions", "every page session ended"))
        .await?;
    tracing::info!(ended, "every page session ended through the API");
    Ok(Json(serde_json::json!({ "ended": ended })).into_response())
}
