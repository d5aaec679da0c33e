//! What every handler — the agents' wire, the admin API, the campaign
//! routes and the page — shares: the state passed to each, the admin and
//! its bearer token, JSON bodies, and errors as JSON answers. Below all of
//! them, so none imports another to get it.

use std::sync::Arc;

use axum::http::request::Parts;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use tokio::sync::Notify;

use super::protocol::ErrorBody;
use super::{FleetError, Store};

/// What every handler shares.
#[derive(Clone)]
pub struct FleetState {
    /// The database.
    pub store: Store,
    /// The admin bearer token.
    pub admin_token: Arc<str>,
    /// Missed polls before an agent counts as offline.
    pub offline_after: u32,
    /// Nudges the version checker (a new repository was reported).
    pub new_repository: Arc<Notify>,
    /// The page's login and cookie settings.
    pub page: PageConfig,
    /// How campaigns reach registries to pin their image by digest (the
    /// version checker's settings); `None` hands agents the image as given
    /// (in-process tests, which have no registry).
    pub registry: Option<super::versions::CheckerConfig>,
    /// The budget of requests without a credential.
    pub guards: super::guard::Guards,
    /// Load balancers and proxies (`--trusted-proxy`) whose
    /// `X-Forwarded-For` names the client: its address is then the one
    /// login limits and the audit log see.
    pub trusted_proxies: Arc<[ipnet::IpNet]>,
}

impl std::fmt::Debug for FleetState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FleetState").field("offline_after", &self.offline_after).finish_non_exhaustive()
    }
}

pub(crate) fn error(status: StatusCode, message: String) -> Response {
    (status, Json(ErrorBody { error: message })).into_response()
}

impl IntoResponse for FleetError {
    fn into_response(self) -> Response {
        let status = match &self {
            Self::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::Conflict(_) => StatusCode::CONFLICT,
            Self::Invalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Self::Upstream(_) => StatusCode::BAD_GATEWAY,
            Self::TooMany { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::Db { .. } | Self::Open { .. } | Self::Corrupt(_) | Self::Batch(_) => {
                tracing::error!(error = %self, "fleet request failed");
                return error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "the server's database failed; see its log".into(),
                );
            }
        };
        let mut response = error(status, self.to_string());
        if let Self::TooMany { retry_after, .. } = &self {
            if let Ok(v) = HeaderValue::from_str(&retry_after.to_string()) {
                response.headers_mut().insert(header::RETRY_AFTER, v);
            }
        }
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

pub(crate) fn bearer(parts: &Parts) -> Option<&str> {
    bearer_in(&parts.headers)
}

/// The token of an `Authorization: Bearer TOKEN` header.
pub(crate) fn bearer_in(headers: &axum::http::HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then_some(token.trim())
}

pub(crate) fn json<T: serde::de::DeserializeOwned>(body: &[u8], what: &str) -> Result<T, FleetError> {
    serde_json::from_slice(body)
        .map_err(|e| FleetError::BadRequest(format!("{what}: not the expected JSON: {e}")))
}

/// How the page is set up (part of [`FleetState`]).
#[derive(Clone, Default)]
pub struct PageConfig {
    /// The server speaks TLS: cookies get `Secure`.
    pub secure_cookies: bool,
    /// The admin password's argon2 PHC hash (`--admin-password-file`);
    /// without it only the admin token logs in.
    pub password_hash: Option<Arc<str>>,
    /// How many logins are heard, and how fast (per address and in all).
    pub(crate) logins: Arc<super::page::login_limit::LoginLimiter>,
    /// What page sessions are bound to
    /// ([`super::page::session::credential_fingerprint`]): sessions made
    /// under another admin token or password are not found.
    pub credential: Arc<str>,
}

impl std::fmt::Debug for PageConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PageConfig")
            .field("secure_cookies", &self.secure_cookies)
            .field("password", &self.password_hash.is_some())
            .finish()
    }
}
