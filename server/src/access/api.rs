//! The routes of users, API tokens and the audit log, merged into
//! [`crate::routes::router`].
//!
//! | route | role | answer |
//! |---|---|---|
//! | `GET /v1/fleet/me` | viewer | `{user, role, via}`: who this credential is |
//! | `GET /v1/fleet/users` | admin | `[UserInfo]` |
//! | `POST /v1/fleet/users` `{name, role, password?}` | admin | 201 `NewUser` (the setup code shown once when no password) |
//! | `PUT /v1/fleet/users/{name}/role` `{role}` | admin | `UserInfo`; the user's sessions end |
//! | `POST /v1/fleet/users/{name}/reset` | admin | `NewUser`: the password forgotten, a new setup code |
//! | `DELETE /v1/fleet/users/{name}` | admin | 204; their tokens and sessions go too |
//! | `GET /v1/fleet/api-tokens?user=NAME` | viewer | `[ApiTokenInfo]`: one's own; an admin's: everyone's or `user`'s |
//! | `POST /v1/fleet/api-tokens` `{name, role?, expires_in?, user?}` | viewer | 201 `NewApiToken` (shown once); `user` other than oneself needs admin |
//! | `DELETE /v1/fleet/api-tokens/{id}` | viewer | 204; another user's token needs admin |
//! | `GET /v1/fleet/audit?actor=&action=&object=&outcome=&since=&until=&before=&limit=` | viewer | `AuditPage`, newest first |

use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use axum::{Json, Router};
use serde::Deserialize;

use super::audit::AuditFilter;
use super::users::hash_password_blocking;
use super::{tokens, Admin, Principal, Role, Viewer};
use crate::state::{json, FleetState};
use crate::FleetError;

/// The routes.
pub fn routes() -> Router<FleetState> {
    Router::new()
        .route("/v1/fleet/me", get(me))
        .route("/v1/fleet/users", get(list_users).post(add_user))
        .route("/v1/fleet/users/{name}", delete(remove_user))
        .route("/v1/fleet/users/{name}/role", put(set_role))
        .route("/v1/fleet/users/{name}/reset", post(reset_user))
        .route("/v1/fleet/api-tokens", get(list_tokens).post(create_token))
        .route("/v1/fleet/api-tokens/{id}", delete(revoke_token))
        .route("/v1/fleet/audit", get(audit))
}

async fn me(Viewer(me): Viewer) -> Response {
    Json(serde_json::json!({ "user": me.user, "role": me.role, "via": me.via(), "actor": me.actor() }))
        .into_response()
}

async fn list_users(State(state): State<FleetState>, _: Admin) -> Result<Response, FleetError> {
    Ok(Json(state.store.users().await?).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AddUser {
    name: String,
    role: String,
    password: Option<String>,
}

fn secret_answer(status: StatusCode, body: impl serde::Serialize) -> Response {
    (status, [(header::CACHE_CONTROL, "no-store")], Json(body)).into_response()
}

async fn add_user(
    State(state): State<FleetState>,
    Admin(by): Admin,
    body: Bytes,
) -> Result<Response, FleetError> {
    let request: AddUser = json(&body, "the user (`{\"name\", \"role\", \"password\"?}`)")?;
    let role: Role = request.role.parse()?;
    super::users::check_name(&request.name)?;
    let hash = match request.password {
        Some(password) => Some(hash_password_blocking(password).await?),
        None => None,
    };
    let how = if hash.is_some() { "with a password" } else { "with a setup code for the first login" };
    let audit = by.audit("user.add", format!("user {}", request.name), format!("added as {role}, {how}"));
    let added = state.store.add_user(&request.name, role, hash, &audit).await?;
    Ok(secret_answer(StatusCode::CREATED, added))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SetRole {
    role: String,
}

async fn set_role(
    State(state): State<FleetState>,
    Admin(by): Admin,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<Response, FleetError> {
    let SetRole { role } = json(&body, "the role (`{\"role\": \"viewer|operator|admin\"}`)")?;
    let role: Role = role.parse()?;
    let before = state.store.user(&name).await?.role;
    let audit = by.audit("user.role", format!("user {name}"), format!("role {before} → {role}"));
    Ok(Json(state.store.set_role(&name, role, &audit).await?).into_response())
}

async fn reset_user(
    State(state): State<FleetState>,
    Admin(by): Admin,
    Path(name): Path<String>,
) -> Result<Response, FleetError> {
    let audit = by.audit("user.reset", format!("user {name}"), "password forgotten, a new setup code made");
    Ok(secret_answer(StatusCode::OK, state.store.reset_user(&name, &audit).await?))
}

async fn remove_user(
    State(state): State<FleetState>,
    Admin(by): Admin,
    Path(name): Path<String>,
) -> Result<StatusCode, FleetError> {
    let audit =
        by.audit("user.remove", format!("user {name}"), "removed, with their API tokens and sessions");
    state.store.remove_user(&name, &audit).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenQuery {
    user: Option<String>,
}

/// Whose tokens `by` may see or change: their own; an admin, anyone's.
fn may_touch(by: &Principal, owner: &str) -> Result<(), FleetError> {
    if by.user.as_deref() == Some(owner) {
        return Ok(());
    }
    by.require(Role::Admin).map_err(|_| {
        FleetError::Forbidden(format!(
            "the tokens of user `{owner}` are theirs: only they or an admin may see or change them"
        ))
    })
}

async fn list_tokens(
    State(state): State<FleetState>,
    Viewer(by): Viewer,
    query: Result<Query<TokenQuery>, QueryRejection>,
) -> Result<Response, FleetError> {
    let Query(query) = query.map_err(|e| FleetError::BadRequest(format!("{e}; allowed: ?user=NAME")))?;
    let user = match (query.user, &by.user) {
        (Some(user), _) => {
            may_touch(&by, &user)?;
            Some(user)
        }
        (None, Some(me)) if by.role < Role::Admin => Some(me.clone()),
        (None, _) => None,
    };
    Ok(Json(state.store.api_tokens(user.as_deref()).await?).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateToken {
    name: String,
    role: Option<String>,
    expires_in: Option<String>,
    user: Option<String>,
}

async fn create_token(
    State(state): State<FleetState>,
    Viewer(by): Viewer,
    body: Bytes,
) -> Result<Response, FleetError> {
    let request: CreateToken =
        json(&body, "the token (`{\"name\", \"role\"?, \"expires_in\"?, \"user\"?}`)")?;
    let Some(user) = request.user.or_else(|| by.user.clone()) else {
        return Err(FleetError::Invalid(
            "user: the break-glass admin token belongs to no user; name the user the token is for".into(),
        ));
    };
    may_touch(&by, &user)?;
    let role: Role = match &request.role {
        Some(role) => role.parse()?,
        None => state.store.user(&user).await?.role,
    };
    if by.user.as_deref() == Some(user.as_str()) && role > by.role {
        return Err(FleetError::Forbidden(format!(
            "a token of the {role} role is above the {} role this request has",
            by.role
        )));
    }
    let given = request.expires_in.as_deref().unwrap_or(tokens::DEFAULT_VALID);
    let valid = humantime::parse_duration(given.trim()).map_err(|e| {
        FleetError::Invalid(format!(
            "expires_in: `{given}`: {e}; a duration such as 12h, 30d, 90d (at most 366d)"
        ))
    })?;
    let valid_ms = i64::try_from(valid.as_millis()).unwrap_or(i64::MAX);
    let expires = humantime::format_duration(valid);
    let audit = by.audit(
        "api-token.create",
        format!("user {user}"),
        format!("API token `{}` ({role}) valid for {expires}", request.name),
    );
    let made = state.store.create_api_token(&user, &request.name, role, valid_ms, &audit).await?;
    Ok(secret_answer(StatusCode::CREATED, made))
}

async fn revoke_token(
    State(state): State<FleetState>,
    Viewer(by): Viewer,
    Path(id): Path<String>,
) -> Result<StatusCode, FleetError> {
    let token = state.store.api_token(&id).await?;
    may_touch(&by, &token.user)?;
    let audit = by.audit(
        "api-token.revoke",
        format!("user {}", token.user),
        format!("API token `{}` ({}) revoked", token.name, token.id),
    );
    state.store.revoke_api_token(&id, &audit).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn audit(
    State(state): State<FleetState>,
    _: Viewer,
    filter: Result<Query<AuditFilter>, QueryRejection>,
) -> Result<Response, FleetError> {
    let Query(filter) = filter.map_err(|e| {
        FleetError::BadRequest(format!(
            "{e}; allowed: actor, action, object, outcome, since, until (RFC 3339 or 24h), before, limit"
        ))
    })?;
    Ok(Json(state.store.audit_log(&filter).await?).into_response())
}
