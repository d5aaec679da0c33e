//! Every way the API refuses a request, and the JSON body it answers with.
//!
//! A refusal never writes the manifest: each is decided before the write
//! (or the write itself failed and left the old file in place).
//!
//! 4xx: the client can fix the request (401, 403, 400, 404, 413, 415) or
//! a person must fix the file first (409). 5xx: try again (503: another
//! process is updating the file) or a bug (500).

use std::path::PathBuf;

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;

use crate::manifest::edit::EditError;
use crate::manifest::{ManifestError, Problem};

/// The origin named in problems found in a pushed manifest.
pub(super) const BODY_ORIGIN: &str = "<request body>";

/// The media types `PUT /v1/desired` accepts, for messages.
const ACCEPTED: &str = "application/yaml, text/yaml or text/plain (a whole manifest), or application/json \
                        ({\"target\": \"web\", \"image\": \"registry/app:2\"})";

/// Why a request was refused.
#[derive(Debug, thiserror::Error)]
pub(super) enum ApiError {
    /// No token file was given: nothing may change state.
    #[error(
        "the API was started without --token-file, so it refuses every request that changes state; \
         restart it with --token-file FILE to allow PUT /v1/desired"
    )]
    TokenNotConfigured,
    /// `POST /v1/git/refresh` on a controller without `--git`.
    #[error("no Git source: this controller runs without --git, so there is nothing to refresh")]
    NoGitSource,
    /// No (usable) `Authorization: Bearer` header.
    #[error(
        "missing bearer token: send `Authorization: Bearer <token>` with the token from --token-file \
         (reads: or --read-token-file)"
    )]
    MissingToken,
    /// A bearer token that is not the configured one.
    #[error("wrong bearer token")]
    WrongToken,
    /// A `Content-Type` we do not read.
    #[error("unsupported content type `{found}`; send {ACCEPTED}")]
    UnsupportedMediaType {
        /// What the request said (`none` when it said nothing).
        found: String,
    },
    /// The body is over the limit.
    #[error("request body larger than {limit} bytes")]
    TooLarge {
        /// The limit in bytes.
        limit: usize,
    },
    /// The client did not send its body in time.
    #[error("the request body did not arrive within {secs} seconds")]
    BodyTimeout {
        /// The limit.
        secs: u64,
    },
    /// The body could not be read or decoded (not UTF-8, bad JSON, …).
    #[error("{message}")]
    BadBody {
        /// What is wrong, for the client.
        message: String,
        /// Where, when known (JSON syntax errors).
        problems: Vec<Problem>,
    },
    /// The pushed (or resulting) manifest does not validate.
    #[error("the manifest is invalid:\n{0}")]
    InvalidManifest(ManifestError),
    /// The push would change `policy.allowed_images`.
    #[error(
        "a pushed manifest may not change policy.allowed_images (the file has {current}, the push has {pushed}); \
         edit the policy in {path} by hand"
    )]
    PolicyChanged {
        /// The manifest file.
        path: PathBuf,
        /// The file's list, as written.
        current: String,
        /// The pushed list, as written.
        pushed: String,
    },
    /// A push that would change where op outcomes are reported: that would
    /// let a token holder send the host's container names anywhere.
    #[error("a push may not change report.webhook (the file has {current}, the push has {pushed}); edit {} on the host", .path.display())]
    WebhookChanged {
        /// The manifest file.
        path: PathBuf,
        /// The file's webhook.
        current: String,
        /// The pushed webhook.
        pushed: String,
    },
    /// The file has no `policy.allowed_images` and `run` was not started
    /// with `--allow-any-image`.
    #[error(
        "{} has no policy.allowed_images, so the API writes nothing: a push could run any image in a managed \
         container; add policy.allowed_images to the file, or start `run` with --allow-any-image to accept that",
        .path.display()
    )]
    NoPolicy {
        /// The manifest file.
        path: PathBuf,
    },
    /// A push that changes more than the images of the file's targets.
    #[error(
        "{}\na push may change only the image or track of the targets {} already has; set \
         policy.push_may_change_targets: true in it to allow more",
        lines(BODY_ORIGIN, .problems),
        .path.display()
    )]
    OutOfScope {
        /// The manifest file.
        path: PathBuf,
        /// What the push changed, at its position in the body.
        problems: Vec<Problem>,
    },
    /// Target images outside `policy.allowed_images`.
    #[error("{}", lines(BODY_ORIGIN, .0))]
    NotAllowed(Vec<Problem>),
    /// The one-target edit refused (unknown target, image outside the
    /// policy, a `track:` target, a value it cannot rewrite in place, …).
    #[error("{0}")]
    Edit(Box<EditError>), // boxed: it is several times larger than the rest
    /// The file on disk does not validate, so its policy is unknown.
    #[error(
        "the manifest on disk is not valid, so its policy cannot be checked and it cannot be changed \
         through the API; fix it by hand:\n{0}"
    )]
    CurrentInvalid(ManifestError),
    /// The file on disk cannot be read as a manifest at all (too large, not UTF-8).
    #[error("{0}; fix it by hand")]
    CurrentUnreadable(String),
    /// Another process holds the manifest's lock.
    #[error("{0}")]
    Busy(String),
    /// Reading or writing the manifest file failed; the old file is intact.
    #[error("{0}")]
    Store(String),
}

impl ApiError {
    fn status(&self) -> StatusCode {
        match self {
            ApiError::TokenNotConfigured
            | ApiError::PolicyChanged { .. }
            | ApiError::WebhookChanged { .. }
            | ApiError::NoPolicy { .. }
            | ApiError::OutOfScope { .. }
            | ApiError::NotAllowed(_) => StatusCode::FORBIDDEN,
            ApiError::MissingToken | ApiError::WrongToken => StatusCode::UNAUTHORIZED,
            ApiError::NoGitSource => StatusCode::NOT_FOUND,
            ApiError::UnsupportedMediaType { .. } => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::BodyTimeout { .. } => StatusCode::REQUEST_TIMEOUT,
            ApiError::BadBody { .. } | ApiError::InvalidManifest(_) => StatusCode::BAD_REQUEST,
            ApiError::Edit(e) => edit_status(e),
            // The request may be fine; the file it would change is not.
            ApiError::CurrentInvalid(_) | ApiError::CurrentUnreadable(_) => StatusCode::CONFLICT,
            ApiError::Busy(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Store(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn problems(&self) -> &[Problem] {
        match self {
            ApiError::BadBody { problems, .. }
            | ApiError::NotAllowed(problems)
            | ApiError::OutOfScope { problems, .. } => problems,
            ApiError::InvalidManifest(e) | ApiError::CurrentInvalid(e) => &e.problems,
            ApiError::Edit(e) => match e.as_ref() {
                EditError::Invalid { source } => &source.problems,
                _ => &[],
            },
            _ => &[],
        }
    }

    /// RFC 6750 §3: a 401 names the scheme, and `invalid_token` when one was
    /// sent but is wrong.
    fn www_authenticate(&self) -> Option<&'static str> {
        match self {
            ApiError::MissingToken => Some("Bearer realm=\"container-upgrader\""),
            ApiError::WrongToken => Some("Bearer realm=\"container-upgrader\", error=\"invalid_token\""),
            _ => None,
        }
    }
}

/// `origin:line:column: path: message`, one problem a line, as
/// [`ManifestError`] shows them.
fn lines(origin: &str, problems: &[Problem]) -> String {
    ManifestError { origin: origin.to_string(), problems: problems.to_vec() }.to_string()
}

/// A refused one-target edit, by whose fault it is.
fn edit_status(e: &EditError) -> StatusCode {
    match e {
        EditError::InvalidImage { .. } => StatusCode::BAD_REQUEST,
        EditError::UnknownTarget { .. } => StatusCode::NOT_FOUND,
        EditError::Refused { .. } => StatusCode::FORBIDDEN,
        // The request is well-formed, but the file (invalid, a `track:`
        // target, a value written so it cannot be rewritten in place) is
        // in a state that needs a person.
        EditError::Invalid { .. } | EditError::Tracked { .. } | EditError::NotInPlace { .. } => {
            StatusCode::CONFLICT
        }
        // The edit's own self-check failed: our bug, not the client's.
        EditError::Unverified { .. } => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// The error body: `{"error": "...", "problems": [{"line", "column", "path", "message"}]}`.
#[derive(Debug, Serialize)]
struct ErrorBody<'a> {
    error: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    problems: Vec<ProblemBody<'a>>,
}

/// One problem, flat. Line and column are 1-based; line 0 means the body as
/// a whole.
#[derive(Debug, Serialize)]
struct ProblemBody<'a> {
    line: usize,
    column: usize,
    path: &'a str,
    message: &'a str,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        if status.is_server_error() {
            tracing::error!(status = status.as_u16(), error = %self, "API request failed");
        } else {
            tracing::info!(status = status.as_u16(), error = %self, "API request refused");
        }
        let problems = self
            .problems()
            .iter()
            .map(|p| ProblemBody {
                line: p.pos.line,
                column: p.pos.column,
                path: &p.path,
                message: &p.message,
            })
            .collect();
        let mut response = (status, Json(ErrorBody { error: self.to_string(), problems })).into_response();
        if let Some(challenge) = self.www_authenticate() {
            response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static(challenge));
        }
        response
    }
}
