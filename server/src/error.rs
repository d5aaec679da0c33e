//! What can go wrong in the fleet server, as values that say what was
//! being done and what is allowed; the API turns each into a status.

/// A fleet server error.
#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    /// No, a wrong, or a revoked credential or token (401).
    #[error("{0}")]
    Unauthorized(String),
    /// Authenticated, but not allowed (403).
    #[error("{0}")]
    Forbidden(String),
    /// No such agent, token or target (404).
    #[error("{0}")]
    NotFound(String),
    /// The request is malformed (400).
    #[error("{0}")]
    BadRequest(String),
    /// The stored state does not allow this now (409).
    #[error("{0}")]
    Conflict(String),
    /// A manifest or value that does not validate (422).
    #[error("{0}")]
    Invalid(String),
    /// The database failed.
    #[error("fleet database, {doing}: {source}")]
    Db {
        /// What was being done.
        doing: &'static str,
        /// The driver's error.
        #[source]
        source: sqlx::Error,
    },
    /// Opening or migrating the database failed (at start).
    #[error("fleet database {url}: {detail}")]
    Open {
        /// The database, without credentials.
        url: String,
        /// What failed.
        detail: String,
    },
    /// A stored value could not be read back (a bug or a foreign write).
    #[error("fleet database, {0}")]
    Corrupt(String),
    /// Too many writes from one agent (429); try again after the seconds
    /// given.
    #[error("{message}")]
    TooMany {
        /// What was refused and why.
        message: String,
        /// Seconds to wait.
        retry_after: u64,
    },
    /// A registry the server asked did not answer as needed (502).
    #[error("{0}")]
    Upstream(String),
    /// A write shared with other requests failed (the message is the
    /// database error, once per request).
    #[error("fleet database, {0}")]
    Batch(String),
}

/// Maps a driver error to [`FleetError::Db`] with what was being done.
pub(crate) fn db(doing: &'static str) -> impl FnOnce(sqlx::Error) -> FleetError {
    move |source| FleetError::Db { doing, source }
}
