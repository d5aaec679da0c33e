//! The fleet page (DESIGN.md §10 "The page"): server-rendered HTML behind
//! the admin login, a little hand-written JavaScript that polls the same
//! pages as JSON for live updates, no third-party front-end code.
//!
//! | route | answer |
//! |---|---|
//! | `GET /login`, `POST /login` | the login form; a session cookie ([`login`]) |
//! | `POST /setup` | a new user's setup code and chosen password: sets it, a session ([`login`]) |
//! | `POST /logout` | ends the session |
//! | `GET /logout-everywhere`, `POST /logout-everywhere` | the button; ends every session (CSRF) |
//! | `GET /?label=&target=&repo=&version=&status=&has_update=&failing=&q=&sort=&dir=&page=&size=` | the overview and one page of the fleet's rows ([`fleet_view`], [`fleet_query`]); `&format=json` that page's live cells |
//! | `GET /agents/{id}` | one agent ([`agent_view`]); `?format=json` its live cells |
//! | `POST /agents/{id}/pin` | pins one target (CSRF) |
//! | `GET /campaigns` | the campaigns' history, newest first ([`campaign_view`]); `?format=json` its live cells |
//! | `GET /campaigns/new?agents=…` | the campaign form, the fleet page's selection ticked ([`campaign_form`]) |
//! | `POST /campaigns/new` | `action=preview`: the waves; `action=start`: creates the campaign, to its page (CSRF) |
//! | `GET /campaigns/{id}` | one campaign, its waves and agents with states and reasons; `?format=json` its live cells |
//! | `POST /campaigns/{id}/{pause,resume,abort,abort-and-revert,rollback}` | abort, abort-and-revert and rollback answer a confirmation page first; with `confirm=yes` the command, back to the campaign (CSRF) |
//! | `GET /repositories` | every repository the fleet runs, its versions and whether its registry answers ([`repositories`]) |
//! | `GET /users`, `POST /users` | admin: the users; adds one, its setup code shown once ([`users_view`]) |
//! | `POST /users/{name}/{role,reset,remove}` | admin: changes the role; reset and remove answer a confirmation page first, with `confirm=yes` the change (CSRF) |
//! | `GET /tokens`, `POST /tokens` | one's own API tokens (an admin: everyone's); makes one, shown once ([`tokens_view`]) |
//! | `POST /tokens/{id}/revoke` | revokes one's own token, or any for an admin (CSRF) |
//! | `GET /audit?actor=&action=&object=&outcome=&since=&before=` | the audit log, newest first, "Older →" by cursor ([`audit_view`]) |
//! | `GET /account`, `POST /account` | a named user's own password change ([`account`]) |
//! | `GET /notifications` | the notification sinks, their queues, the add form ([`notifications`]) |
//! | `POST /notifications` | adds a sink (CSRF) |
//! | `POST /notifications/{id}/{test,remove}` | queues a test event, or removes a page sink (CSRF) |
//! | `GET /static/fleet.js`, `/static/fleet.css` | our script and stylesheet |
//!
//! Every answer here carries a strict Content-Security-Policy (no inline
//! script or style, no framing), `Referrer-Policy: no-referrer` and
//! `Cache-Control: no-store`.

pub mod account;
pub mod agent_view;
pub mod audit_view;
pub mod campaign_form;
pub mod campaign_request;
pub mod campaign_view;
pub mod fleet_query;
pub mod fleet_view;
pub mod html;
pub mod live;
pub mod login;
pub mod login_failures;
pub mod login_limit;
pub mod notifications;
pub mod overview;
pub mod repositories;
pub mod session;
pub mod tokens_view;
pub mod users_view;

#[cfg(test)]
mod access_tests;
#[cfg(test)]
mod campaign_tests;

use axum::extract::Request;
use axum::http::{header, HeaderValue};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;

use super::state::FleetState;
pub use super::state::PageConfig;
use super::FleetError;

/// The page's routes, merged into the server's router by
/// [`super::routes::router`].
pub fn routes() -> Router<FleetState> {
    Router::new()
        .route("/", get(fleet_view::fleet))
        .route("/login", get(login::form).post(login::login))
        .route("/setup", post(login::setup))
        .route("/logout", post(login::logout))
        .route("/logout-everywhere", get(login::everywhere_form).post(login::logout_everywhere))
        .route("/agents/{id}", get(agent_view::agent))
        .route("/agents/{id}/pin", post(agent_view::pin))
        .route("/repositories", get(repositories::repositories))
        .route("/users", get(users_view::list).post(users_view::add))
        .route("/users/{name}/role", post(users_view::set_role))
        .route("/users/{name}/reset", post(users_view::reset))
        .route("/users/{name}/remove", post(users_view::remove))
        .route("/tokens", get(tokens_view::list).post(tokens_view::create))
        .route("/tokens/{id}/revoke", post(tokens_view::revoke))
        .route("/audit", get(audit_view::audit))
        .route("/account", get(account::account).post(account::change_password))
        .route("/notifications", get(notifications::list).post(notifications::add))
        .route("/notifications/{id}/{command}", post(notifications::command))
        .route("/campaigns", get(campaign_view::list))
        .route("/campaigns/new", get(campaign_form::form).post(campaign_form::submit))
        .route("/campaigns/{id}", get(campaign_view::campaign))
        .route("/campaigns/{id}/{command}", post(campaign_view::command))
        .route("/static/fleet.js", get(script))
        .route("/static/fleet.css", get(stylesheet))
        .layer(middleware::from_fn(security_headers))
}

/// The headers every page answer carries.
async fn security_headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    let set = [
        (
            header::CONTENT_SECURITY_POLICY,
            "default-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'; object-src 'none'",
        ),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::CACHE_CONTROL, "no-store"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
    ];
    for (name, value) in set {
        headers.insert(name, HeaderValue::from_static(value));
    }
    response
}

async fn script() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/javascript; charset=utf-8")], include_str!("fleet.js"))
}

async fn stylesheet() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], include_str!("fleet.css"))
}

/// A fleet error as an HTML page with its status.
#[derive(Debug)]
pub struct PageError(pub FleetError);

impl From<FleetError> for PageError {
    fn from(e: FleetError) -> Self {
        Self(e)
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let message = match &self.0 {
            FleetError::Db { .. }
            | FleetError::Open { .. }
            | FleetError::Corrupt(_)
            | FleetError::Batch(_) => "the server's database failed; see its log".to_string(),
            other => other.to_string(),
        };
        // The API's mapping decides the status (and logs database errors).
        let status = self.0.into_response().status();
        let body = format!(
            r#"<p class="error">{}</p><p><a href="/">Back to the fleet</a></p>"#,
            html::escape(&message)
        );
        (status, Html(html::layout("Error", None, &body))).into_response()
    }
}
