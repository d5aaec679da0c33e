//! The only module that talks to the Docker Engine (through bollard).
//!
//! bollard's models stop here: callers get the crate's own types. One client
//! is shared (bollard's `Docker` is a cheap clone over one connection pool),
//! every call has a timeout, and every call is counted by endpoint so a
//! benchmark can show how many the pipeline made.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bollard::models::{ContainerSummary, ContainerSummaryStateEnum, ImageSummary};
use bollard::query_parameters::{ListContainersOptions, ListImagesOptions};
use bollard::Docker;

use crate::observe::{Health, ObservedContainer, ObservedImage};
use crate::types::{ContainerId, ImageId};

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

    /// Every container, running or not, in one call.
    pub async fn list_containers(&self) -> Result<Vec<ObservedContainer>, EngineError> {
        let options = ListContainersOptions { all: true, ..Default::default() };
        let list = self
            .bounded("listing containers", "containers/json", self.docker.list_containers(Some(options)))
            .await?;
        Ok(list.into_iter().filter_map(container).collect())
    }

    /// Every local image, in one call.
    pub async fn list_images(&self) -> Result<Vec<ObservedImage>, EngineError> {
        let options = ListImagesOptions { all: false, digests: true, ..Default::default() };
        let list =
            self.bounded("listing images", "images/json", self.docker.list_images(Some(options))).await?;
        Ok(list.into_iter().map(image).collect())
    }

    async fn bounded<T>(
        &self,
        what: &str,
        endpoint: &'static str,
        call: impl std::future::Future<Output = Result<T, bollard::errors::Error>>,
    ) -> Result<T, EngineError> {
        if let Ok(mut calls) = self.calls.lock() {
            *calls.entry(endpoint).or_default() += 1;
        }
        match tokio::time::timeout(self.timeout, call).await {
            Ok(result) => result.map_err(|source| EngineError::Call { what: what.to_string(), source }),
            Err(_) => Err(EngineError::Timeout { what: what.to_string(), after: self.timeout }),
        }
    }
}

/// bollard's summary to ours; entries without an id or name are skipped
/// (the engine always sends both; a container being removed may not).
fn container(c: ContainerSummary) -> Option<ObservedContainer> {
    let id = c.id?;
    let name = c.names?.into_iter().next()?.trim_start_matches('/').to_string();
    Some(ObservedContainer {
        id: ContainerId::new(id),
        name,
        image: c.image.unwrap_or_default(),
        image_id: ImageId::new(c.image_id.unwrap_or_default()),
        state: c.state.map_or_else(|| "unknown".to_string(), state_name),
        health: c.status.as_deref().and_then(health),
        labels: c.labels.unwrap_or_default().into_iter().collect(),
    })
}

fn state_name(s: ContainerSummaryStateEnum) -> String {
    use ContainerSummaryStateEnum as S;
    match s {
        S::CREATED => "created",
        S::RUNNING => "running",
        S::PAUSED => "paused",
        S::RESTARTING => "restarting",
        S::EXITED => "exited",
        S::REMOVING => "removing",
        S::DEAD => "dead",
        S::STOPPING => "stopping",
        S::EMPTY => "unknown",
    }
    .to_string()
}

/// Engines before API 1.52 report health only inside the status text
/// ("Up 5 minutes (healthy)"), so that is what is read.
fn health(status: &str) -> Option<Health> {
    if status.ends_with("(healthy)") {
        Some(Health::Healthy)
    } else if status.ends_with("(unhealthy)") {
        Some(Health::Unhealthy)
    } else if status.ends_with("(health: starting)") {
        Some(Health::Starting)
    } else {
        None
    }
}

fn image(i: ImageSummary) -> ObservedImage {
    // Untagged images report `<none>:<none>` / `<none>@<none>`.
    let real = |s: &String| !s.starts_with("<none>");
    ObservedImage {
        id: ImageId::new(i.id),
        repo_tags: i.repo_tags.into_iter().filter(real).collect(),
        repo_digests: i.repo_digests.into_iter().filter(real).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn health_is_read_from_status_text() {
        assert_eq!(health("Up 5 minutes (healthy)"), Some(Health::Healthy));
        assert_eq!(health("Up 1 second (health: starting)"), Some(Health::Starting));
        assert_eq!(health("Up 2 hours (unhealthy)"), Some(Health::Unhealthy));
        assert_eq!(health("Exited (0) 3 seconds ago"), None);
    }
}
