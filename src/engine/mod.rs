//! The only module that talks to the Docker Engine (through bollard).
//!
//! bollard's models stop here: callers get the crate's own types. One client
//! is shared (bollard's `Docker` is a cheap clone over one connection pool),
//! every call has a timeout, and every call is counted by endpoint so a
//! benchmark can show how many the pipeline made.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bollard::Docker;

mod containers;
mod events;
mod exec;
mod info;
mod list;
mod pull;
mod services;

pub use containers::{platform_of, ContainerDetails, ImageDetails, Sample};
pub use exec::{ExecOutcome, Tail};
pub use info::InsecureRegistries;
pub use list::NetworkMember;
pub use pull::{Credentials, PullProgress};
pub(crate) use services::split_pin;
pub use services::{NotManager, ServiceDetails};

/// The default time one Engine API call may take.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// A failed Engine API call, with what was being attempted.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// No engine to talk to (socket missing, permission denied, bad DOCKER_HOST).
    #[error("cannot connect to the Docker Engine ({hint}): {source}")]
    Connect {
        /// Where we looked.
        hint: String,
        /// bollard's error.
        #[source]
        source: bollard::errors::Error,
    },
    /// The engine refused or failed a call.
    #[error("Docker Engine failed {what}: {source}")]
    Call {
        /// The call, in words ("listing containers").
        what: String,
        /// bollard's error.
        #[source]
        source: bollard::errors::Error,
    },
    /// The engine did not answer in time.
    #[error("Docker Engine did not answer {what} within {}s", .after.as_secs())]
    Timeout {
        /// The call, in words.
        what: String,
        /// The limit.
        after: Duration,
    },
}

/// A handle on the Docker Engine.
#[derive(Clone)]
pub struct Engine {
    docker: Docker,
    timeout: Duration,
    calls: Arc<Mutex<BTreeMap<&'static str, u64>>>,
}

impl Engine {
    /// Connects as the `docker` CLI would (`DOCKER_HOST`, else the local
    /// socket) and settles on an API version both sides speak: the engine
    /// may be older than bollard's default (20.10 speaks 1.41).
    pub async fn connect() -> Result<Self, EngineError> {
        let hint = std::env::var("DOCKER_HOST").unwrap_or_else(|_| "unix:///var/run/docker.sock".to_string());
        let docker = Docker::connect_with_defaults()
            .map_err(|source| EngineError::Connect { hint: hint.clone(), source })?;
        let engine = Self { docker, timeout: DEFAULT_TIMEOUT, calls: Arc::default() };
        let docker = engine
            .bounded("negotiating the API version", "version", engine.docker.clone().negotiate_version())
            .await
            .map_err(|e| match e {
                EngineError::Call { source, .. } => EngineError::Connect { hint, source },
                other => other,
            })?;
        Ok(Self { docker, ..engine })
    }

    /// Calls made so far, by endpoint (`containers/json`: 1, …).
    pub fn calls(&self) -> BTreeMap<&'static str, u64> {
        self.calls.lock().map(|m| m.clone()).unwrap_or_default()
    }

    pub(crate) async fn bounded<T>(
        &self,
        what: &str,
        endpoint: &'static str,
        call: impl std::future::Future<Output = Result<T, bollard::errors::Error>>,
    ) -> Result<T, EngineError> {
        self.bounded_for(what, endpoint, self.timeout, call).await
    }

    /// Like `bounded`, for calls that legitimately take longer (a stop
    /// waits for the container's own stop timeout).
    pub(crate) async fn bounded_for<T>(
        &self,
        what: &str,
        endpoint: &'static str,
        limit: Duration,
        call: impl std::future::Future<Output = Result<T, bollard::errors::Error>>,
    ) -> Result<T, EngineError> {
        if let Ok(mut calls) = self.calls.lock() {
            *calls.entry(endpoint).or_default() += 1;
        }
        let call = fault::after_request_sent(endpoint, call).await;
        match tokio::time::timeout(limit, call).await {
            Ok(result) => result.map_err(|source| EngineError::Call { what: what.to_string(), source }),
            Err(_) => Err(EngineError::Timeout { what: what.to_string(), after: limit }),
        }
    }
}

/// Test-only: with the `fault-injection` feature, setting
/// `CONTAINER_UPGRADER_FAULT_FREEZE_AT_REQUEST=N` makes the process stop
/// dead just after its N-th mutating Engine request (create, connect,
/// disconnect, start, stop, rename, remove) is sent: the request runs for a few
/// milliseconds — long enough to reach the engine, which carries it out
/// whatever becomes of its caller — then the process announces
/// `fault-injection: froze after request N (ENDPOINT)` on stderr and
/// freezes, so a test can SIGKILL it there.
#[cfg(feature = "fault-injection")]
mod fault {
    use std::future::Future;
    use std::pin::Pin;
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::time::Duration;

    const MUTATING: [&str; 7] = [
        "containers/create",
        "networks/connect",
        "networks/disconnect",
        "containers/start",
        "containers/stop",
        "containers/rename",
        "containers/delete",
    ];

    pub(super) async fn after_request_sent<F: Future>(endpoint: &str, call: F) -> Pin<Box<F>> {
        static SENT: AtomicU32 = AtomicU32::new(0);
        let mut call = Box::pin(call);
        if !MUTATING.contains(&endpoint) {
            return call;
        }
        let n = SENT.fetch_add(1, Ordering::SeqCst) + 1;
        let at =
            std::env::var("CONTAINER_UPGRADER_FAULT_FREEZE_AT_REQUEST").ok().and_then(|v| v.parse().ok());
        if at != Some(n) {
            return call;
        }
        // Drive the request until it is on the wire (or done), not further.
        let _ = tokio::time::timeout(Duration::from_millis(25), call.as_mut()).await;
        eprintln!("fault-injection: froze after request {n} ({endpoint})");
        loop {
            // Blocks a runtime thread on purpose: nothing may go on.
            std::thread::sleep(Duration::from_secs(3600));
        }
    }
}

#[cfg(not(feature = "fault-injection"))]
mod fault {
    use std::future::Future;

    /// Without the feature: the call as it is.
    pub(super) async fn after_request_sent<F: Future>(_: &str, call: F) -> F {
        call
    }
}

impl EngineError {
    /// True when the engine answered 404 (no such container or image).
    pub fn is_not_found(&self) -> bool {
        self.status() == Some(404)
    }

    /// The HTTP status the engine answered with, if it answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            EngineError::Call {
                source: bollard::errors::Error::DockerResponseServerError { status_code, .. },
                ..
            } => Some(*status_code),
            _ => None,
        }
    }
}
