//! Why a reconcile pass runs. The reason goes into the pass's tracing span
//! and nowhere else: every pass reconciles the whole manifest.

use std::fmt;

/// What asked for a pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trigger {
    /// The drift timer.
    Timer,
    /// The retry after a pass that failed (see `daemon::error_policy`).
    Retry,
    /// The manifest file changed.
    File,
    /// A Docker event about a target (`destroy web`, `start web`, …).
    Docker(String),
    /// The HTTP API accepted a new desired state.
    Api,
    /// SIGHUP.
    Hangup,
}

impl fmt::Display for Trigger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Trigger::Timer => f.write_str("drift timer"),
            Trigger::Retry => f.write_str("retry after a failed pass"),
            Trigger::File => f.write_str("manifest file changed"),
            Trigger::Docker(what) => write!(f, "docker event: {what}"),
            Trigger::Api => f.write_str("API push"),
            Trigger::Hangup => f.write_str("SIGHUP"),
        }
    }
}

/// The sending side every trigger source holds. Bounded: when passes fall
/// behind, triggers are dropped, which loses nothing because one more pass
/// is already due (see the daemon's coalescing).
pub type Triggers = tokio::sync::mpsc::Sender<Trigger>;
