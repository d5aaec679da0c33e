//! The queue of enrolments waiting for their group commit, which the
//! [`Store`](super::Store) holds and [`enrolment`](super::enrolment)
//! fills and writes: below both, so neither imports the other back.

use std::sync::Arc;

use tokio::sync::oneshot;

use super::FleetError;

/// Tokens whose hash and labels this process remembers.
pub(crate) const KNOWN_TOKENS: usize = 1024;

/// Enrolments waiting for the next group commit (`Store::enrol`), and
/// the unchanging parts of tokens used before.
#[derive(Default)]
pub(crate) struct EnrolQueue {
    queue: std::sync::Mutex<Vec<Pending>>,
    /// Token id → its hash and labels (they never change).
    known: std::sync::Mutex<std::collections::HashMap<String, (String, String)>>,
    /// Held by whoever writes a group.
    pub(crate) writer: Arc<tokio::sync::Mutex<()>>,
}

impl EnrolQueue {
    pub(crate) fn known(&self, id: &str) -> Option<(String, String)> {
        self.known.lock().unwrap_or_else(std::sync::PoisonError::into_inner).get(id).cloned()
    }

    pub(crate) fn remember(&self, id: &str, hash: &str, labels: &str) {
        let mut known = self.known.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if known.len() >= KNOWN_TOKENS {
            known.clear();
        }
        known.insert(id.to_string(), (hash.to_string(), labels.to_string()));
    }

    pub(crate) fn lock_queue(&self) -> std::sync::MutexGuard<'_, Vec<Pending>> {
        // A panic while holding it leaves a list of whole entries.
        self.queue.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// One enrolment, checked, waiting to be written.
pub(crate) struct Pending {
    pub(crate) token_id: String,
    pub(crate) token_hash: String,
    pub(crate) agent_id: String,
    pub(crate) credential_hash: String,
    pub(crate) name: String,
    pub(crate) labels: String,
    pub(crate) manifest: String,
    pub(crate) now: i64,
    /// The request's source address, for the audit log.
    pub(crate) source: String,
    pub(crate) done: oneshot::Sender<Result<Spent, FleetError>>,
}

/// Whether an enrolment got a use of its token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Spent {
    /// It did.
    Yes,
    /// The token had no use left for it.
    NoUseLeft,
}
