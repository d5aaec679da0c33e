//! The budget of what anyone may ask without a credential (issue 20).
//!
//! Two routes read a body before they know who is asking: an enrolment
//! whose token is in its body (agents before the `Authorization` header)
//! and the page's login. Each has [`UNAUTHENTICATED_AT_ONCE`] requests in
//! progress; one more is answered 429 at once, with `Retry-After` and
//! `Connection: close`, so it gives its connection back instead of
//! holding it. A login takes its slot only once its address is admitted
//! (one at a time per address, [`crate::page::login_limit`]), so one
//! address flooding logins cannot use up the admin's budget. Every other route checks its credential from the headers
//! before reading a byte of the body, so these requests can never take
//! what agents and admins need.

use std::sync::Arc;

use axum::extract::Request;
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::protocol;

/// Enrolments with their token in the body in progress at once, and as
/// many logins, server-wide.
pub const UNAUTHENTICATED_AT_ONCE: usize = 32;
/// What a refused client is told to wait, in seconds.
pub const RETRY_AFTER_SECS: u64 = 5;

/// The server's budgets (part of [`FleetState`]).
#[derive(Clone)]
pub struct Guards {
    unauthenticated: Arc<Semaphore>,
    logins: Arc<Semaphore>,
}

impl Default for Guards {
    fn default() -> Self {
        Self::new(UNAUTHENTICATED_AT_ONCE)
    }
}

impl Guards {
    /// Budgets with `unauthenticated` requests of each kind at once.
    pub fn new(unauthenticated: usize) -> Self {
        Self {
            unauthenticated: Arc::new(Semaphore::new(unauthenticated)),
            logins: Arc::new(Semaphore::new(unauthenticated)),
        }
    }

    /// A login's slot; `None` when every one is taken (answer
    /// [`too_many`]).
    pub fn login_slot(&self) -> Option<OwnedSemaphorePermit> {
        self.logins.clone().try_acquire_owned().ok()
    }
}

/// Whether `request` reads a body before any credential is known: an
/// enrolment without `Authorization` (the token in the body). (The login
/// takes its slot itself, see [`Guards::login_slot`].)
fn unauthenticated(request: &Request) -> bool {
    request.method() == Method::POST
        && request.uri().path() == protocol::ENROL
        && !request.headers().contains_key(header::AUTHORIZATION)
}

/// An enrolment's slot when `request` reads its body before any
/// credential is known; `Some(None)` when it needs one and every one is
/// taken (answer [`too_many`]); `None` when it needs none.
pub fn unauthenticated_slot(guards: &Guards, request: &Request) -> Option<Option<OwnedSemaphorePermit>> {
    unauthenticated(request).then(|| guards.unauthenticated.clone().try_acquire_owned().ok())
}

/// 429 with `Retry-After: secs` and `Connection: close`.
pub fn too_many(secs: u64, message: String) -> Response {
    // The shape of every error answer (`crate::state::error`).
    let body = axum::Json(serde_json::json!({ "error": message }));
    let mut response = closing((StatusCode::TOO_MANY_REQUESTS, body).into_response());
    response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs.max(1)));
    response
}

/// `response` with `Connection: close`: for an answer given before the
/// request's body was read, so the connection is not kept for a body
/// nobody will read.
pub fn closing(mut response: Response) -> Response {
    response.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}
