//! What can go wrong in a swap, as values: why a swap changed nothing
//! ([`NoChange`]), why a pull failed ([`PullError`]), which engine step of
//! a swap failed ([`StepError`]). Each carries its source; the journal's
//! reason is their `Display`, written once here.

use crate::engine::EngineError;
use crate::swap::journal::JournalError;

/// Why a swap ended before anything changed: the container is as it was.
#[derive(Debug, thiserror::Error)]
pub enum NoChange {
    /// The container to swap does not exist.
    #[error("no container named {0}")]
    NoSuchContainer(String),
    /// The service is gone (or was never there).
    #[error("no service named {0}")]
    NoSuchService(String),
    /// The image the container runs is gone, so the image's defaults cannot
    /// be told from the container's own settings.
    #[error(
        "its image {0} is gone; without it the image's defaults cannot be told from the container's own settings"
    )]
    OldImageGone(String),
    /// Inspecting the container or its images failed.
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// The new image could not be made present.
    #[error("pulling {image} failed: {source}")]
    Pull {
        /// The image, as the user wrote it.
        image: String,
        /// Why.
        #[source]
        source: PullError,
    },
    /// The swap cannot be done faithfully or in this order (a `--rm`
    /// container stop-first, host ports start-first, a peer gone).
    #[error("{0}")]
    NotAllowed(String),
    /// A step before the old container was touched failed (the create, a
    /// network connect, a rename of a stopped container).
    #[error(transparent)]
    Step(#[from] StepError),
    /// The state directory refused (another upgrader holds the lock, or it
    /// cannot be written).
    #[error(transparent)]
    Journal(#[from] JournalError),
    /// The target's `pre_upgrade` hook failed (its masked output is in
    /// the reason): the swap was skipped.
    #[error("{0}")]
    Hook(String),
    /// The controller is stopping: no new swap starts.
    #[error("not started: the controller is shutting down")]
    ShuttingDown,
    /// It depends on containers that depend on it (see
    /// [`crate::dependencies`]): no order can put both first.
    #[error("{0}")]
    DependencyCycle(String),
}

impl NoChange {
    /// A short name for the kind, for metrics and summaries.
    pub fn kind(&self) -> &'static str {
        match self {
            NoChange::NoSuchContainer(_) => "no_such_container",
            NoChange::NoSuchService(_) => "no_such_service",
            NoChange::OldImageGone(_) => "old_image_gone",
            NoChange::Engine(_) => "engine",
            NoChange::Pull { .. } => "pull",
            NoChange::NotAllowed(_) => "not_allowed",
            NoChange::Step(_) => "step",
            NoChange::Journal(JournalError::Busy(_)) => "busy",
            NoChange::Journal(_) => "journal",
            NoChange::Hook(_) => "hook",
            NoChange::ShuttingDown => "shutting_down",
            NoChange::DependencyCycle(_) => "dependency_cycle",
        }
    }
}

/// Why the new image could not be made present.
#[derive(Debug, thiserror::Error)]
pub enum PullError {
    /// `pull: never` and no local image by that name.
    #[error("it is not present locally and pull is `never`")]
    NotPresent,
    /// The engine's pull (or the look-up around it) failed; the reason
    /// opens with its kind when the engine's words tell it.
    #[error("{kind}{source}", kind = pull_kind(&.0.to_string()).map(|k| format!("{k}: ")).unwrap_or_default(), source = .0)]
    Engine(#[from] EngineError),
    /// The engine said it pulled, but the image is not there.
    #[error("it is not present after pulling it")]
    Vanished,
}

/// What kind of pull failure the engine's message describes, as an
/// operator acts on it: `not found`, `unauthorized`, `rate limited`, `no
/// image for this platform`, `disk full`. `None`: the words do not say.
pub fn pull_kind(message: &str) -> Option<&'static str> {
    let m = message.to_ascii_lowercase();
    let has = |needles: &[&str]| needles.iter().any(|n| m.contains(n));
    if has(&["no matching manifest for", "does not match the specified platform", "no match for platform"]) {
        Some("no image for this platform")
    } else if has(&["toomanyrequests", "too many requests", "rate limit"]) {
        Some("rate limited")
    } else if has(&["no space left on device", "disk quota exceeded"]) {
        Some("disk full")
    } else if has(&["unauthorized", "authentication required", "denied", "401", "403"]) {
        Some("unauthorized")
    } else if has(&["manifest unknown", "not found", "name unknown", "404"]) {
        Some("not found")
    } else {
        None
    }
}

/// One engine request of a swap that failed, with what it was for, or the
/// journal write that should have followed it.
#[derive(Debug, thiserror::Error)]
pub enum StepError {
    /// The engine refused or failed the request.
    #[error("{what} failed: {source}")]
    Engine {
        /// What the request was for ("stopping the old container").
        what: &'static str,
        /// The engine's answer.
        #[source]
        source: EngineError,
    },
    /// The step happened but could not be journaled.
    #[error(transparent)]
    Journal(#[from] JournalError),
    /// The new container was created from another image than the one
    /// pulled for it: its tag moved in between.
    #[error("the new container was created from image {created}, not the pulled {planned}: its tag moved meanwhile; nothing is run that was not planned")]
    ImageMoved {
        /// The image id pulled for the swap.
        planned: String,
        /// The image id the container got.
        created: String,
    },
}

impl StepError {
    /// Wraps an engine error with what the request was for.
    pub fn engine(what: &'static str) -> impl FnOnce(EngineError) -> StepError {
        move |source| StepError::Engine { what, source }
    }
}

#[cfg(test)]
mod tests {
    use super::pull_kind;

    #[test]
    fn pull_failures_are_told_apart_by_the_engines_words() {
        let cases = [
            (
                "manifest for 127.0.0.1:5000/app:9 not found: manifest unknown: manifest unknown",
                Some("not found"),
            ),
            (
                "pull access denied for app, repository does not exist or may require 'docker login'",
                Some("unauthorized"),
            ),
            (
                "Head \"https://r/v2/app/manifests/1\": unauthorized: authentication required",
                Some("unauthorized"),
            ),
            ("toomanyrequests: You have reached your pull rate limit.", Some("rate limited")),
            (
                "no matching manifest for linux/arm64/v8 in the manifest list entries",
                Some("no image for this platform"),
            ),
            ("write /var/lib/docker/tmp/GetImageBlob1: no space left on device", Some("disk full")),
            ("connection reset by peer", None),
        ];
        for (message, kind) in cases {
            assert_eq!(pull_kind(message), kind, "{message}");
        }
    }
}
