//! Container and image lifecycle calls the swap engine needs.
//!
//! "Already in that state" is an outcome, not an error: stopping a stopped
//! container, starting a running one and removing a missing one succeed.

use std::time::Duration;

use bollard::models::{
    ContainerCreateBody, EndpointSettings, NetworkConnectRequest, NetworkDisconnectRequest,
};
use bollard::query_parameters::{
    CreateContainerOptions, InspectContainerOptions, LogsOptions, RemoveContainerOptions, RemoveImageOptions,
    RenameContainerOptions, StartContainerOptions, StopContainerOptions,
};
use futures_util::StreamExt;

use super::{Engine, EngineError};
use crate::platform::Platform;
use crate::types::ContainerId;

/// What `docker inspect` says about a container (bollard's model: the
/// recreation reads almost every field of it).
pub type ContainerDetails = bollard::models::ContainerInspectResponse;
/// What `docker image inspect` says about an image.
pub type ImageDetails = bollard::models::ImageInspect;

/// The platform `image` is for (its `Os`, `Architecture`, `Variant`).
pub fn platform_of(image: &ImageDetails) -> Option<Platform> {
    Platform::of(image.os.as_deref(), image.architecture.as_deref(), image.variant.as_deref())
}

/// The part of a container's state the health gate reads.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Sample {
    /// `running`, `exited`, `restarting`, …
    pub status: String,
    /// Running (or restarting) now.
    pub running: bool,
    /// Restarts by the restart policy since creation.
    pub restart_count: i64,
    /// The last exit code.
    pub exit_code: i64,
    /// Killed by the kernel's OOM killer.
    pub oom_killed: bool,
    /// Docker HEALTHCHECK status (`starting`, `healthy`, `unhealthy`), if any.
    pub health: Option<String>,
    /// The output of the last health check, if any.
    pub health_output: Option<String>,
    /// The engine's error starting it, if any.
    pub error: Option<String>,
}

impl Sample {
    /// Reads the gate's view out of an inspect response.
    pub fn from_details(d: &ContainerDetails) -> Self {
        let state = d.state.clone().unwrap_or_default();
        let health = state.health.as_ref();
        Sample {
            status: state.status.map(|s| s.to_string()).unwrap_or_default(),
            running: state.running.unwrap_or(false),
            restart_count: d.restart_count.unwrap_or(0),
            exit_code: state.exit_code.unwrap_or(0),
            oom_killed: state.oom_killed.unwrap_or(false),
            health: health
                .and_then(|h| h.status)
                .map(|s| s.to_string())
                .filter(|s| !s.is_empty() && s != "none"),
            health_output: health
                .and_then(|h| h.log.as_ref())
                .and_then(|log| log.last())
                .and_then(|entry| entry.output.clone())
                .map(|o| o.trim().to_string()),
            error: state.error.filter(|e| !e.is_empty()),
        }
    }
}

impl Engine {
    /// `docker inspect CONTAINER`; `None` when there is no such container.
    pub async fn inspect_container(&self, id: &str) -> Result<Option<ContainerDetails>, EngineError> {
        let what = format!("inspecting container {id}");
        let call = self.docker.inspect_container(id, None::<InspectContainerOptions>);
        optional(self.bounded(&what, "containers/inspect", call).await)
    }

    /// `docker image inspect IMAGE`; `None` when it is not present.
    pub async fn inspect_image(&self, image: &str) -> Result<Option<ImageDetails>, EngineError> {
        let what = format!("inspecting image {image}");
        optional(self.bounded(&what, "images/inspect", self.docker.inspect_image(image)).await)
    }

    /// The platform image `image` is for; `None` when it is not present or
    /// names none.
    pub async fn image_platform(&self, image: &str) -> Result<Option<Platform>, EngineError> {
        Ok(self.inspect_image(image).await?.as_ref().and_then(platform_of))
    }

    /// Creates a container named `name`; returns its id.
    pub async fn create(&self, name: &str, body: ContainerCreateBody) -> Result<ContainerId, EngineError> {
        self.create_for(name, body, None).await
    }

    /// Creates a container named `name` for `platform`: the engine refuses
    /// when the image it finds is for another one, instead of creating a
    /// container of another architecture. Returns its id.
    pub async fn create_for(
        &self,
        name: &str,
        body: ContainerCreateBody,
        platform: Option<&Platform>,
    ) -> Result<ContainerId, EngineError> {
        let options = CreateContainerOptions {
            name: Some(name.to_string()),
            platform: platform.map(Platform::to_string).unwrap_or_default(),
        };
        let what = format!("creating container {name}");
        let created = self
            .bounded(&what, "containers/create", self.docker.create_container(Some(options), body))
            .await?;
        Ok(ContainerId::new(created.id))
    }

    /// Connects a created container to one more network.
    pub async fn connect_network(
        &self,
        network: &str,
        container: &ContainerId,
        endpoint: EndpointSettings,
    ) -> Result<(), EngineError> {
        let request =
            NetworkConnectRequest { container: container.to_string(), endpoint_config: Some(endpoint) };
        let what = format!("connecting {} to network {network}", container.short());
        self.bounded(&what, "networks/connect", self.docker.connect_network(network, request)).await
    }

    /// Takes a container off a network: Docker's DNS stops naming it by
    /// its aliases there. Not connected is fine.
    pub async fn disconnect_network(&self, network: &str, container: &str) -> Result<(), EngineError> {
        let request = NetworkDisconnectRequest { container: container.to_string(), force: Some(false) };
        let what = format!("disconnecting {container} from network {network}");
        self.bounded(&what, "networks/disconnect", self.docker.disconnect_network(network, request)).await
    }

    /// Starts a container (already running is fine).
    pub async fn start(&self, id: &str) -> Result<(), EngineError> {
        let what = format!("starting container {id}");
        let call = self.docker.start_container(id, None::<StartContainerOptions>);
        self.bounded(&what, "containers/start", call).await
    }

    /// Stops a container with its own signal, waiting `grace` before the
    /// engine kills it (`None`: the container's own stop timeout). Already
    /// stopped is fine.
    pub async fn stop(&self, id: &str, grace: Option<Duration>) -> Result<(), EngineError> {
        let t = grace.map(|g| i32::try_from(g.as_secs()).unwrap_or(i32::MAX));
        let options = StopContainerOptions { t, ..Default::default() };
        // The engine waits up to the grace period (default 10 s, or the
        // container's StopTimeout) before SIGKILL: allow that plus margin.
        let limit = grace.unwrap_or(Duration::from_secs(600)) + self.timeout;
        let what = format!("stopping container {id}");
        self.bounded_for(&what, "containers/stop", limit, self.docker.stop_container(id, Some(options))).await
    }

    /// Renames a container.
    pub async fn rename(&self, id: &str, name: &str) -> Result<(), EngineError> {
        let options = RenameContainerOptions { name: name.to_string() };
        let what = format!("renaming container {id} to {name}");
        self.bounded(&what, "containers/rename", self.docker.rename_container(id, options)).await
    }

    /// Removes a container, forcing a running one; never its volumes (a
    /// carried anonymous volume is shared with the other container of the
    /// swap). A missing container is fine.
    pub async fn remove(&self, id: &str) -> Result<(), EngineError> {
        let options = RemoveContainerOptions { force: true, v: false, link: false };
        let what = format!("removing container {id}");
        match self.bounded(&what, "containers/delete", self.docker.remove_container(id, Some(options))).await
        {
            Err(e) if e.is_not_found() => Ok(()),
            // A removal the engine accepted earlier (from a process that
            // died since) is still going: it is the outcome we want.
            Err(e) if e.status() == Some(409) && e.to_string().contains("already in progress") => {
                self.wait_gone(id).await.map_err(|_| e)
            }
            other => other,
        }
    }

    /// Waits (up to the call timeout) until no container `id` exists.
    async fn wait_gone(&self, id: &str) -> Result<(), EngineError> {
        let deadline = tokio::time::Instant::now() + self.timeout;
        while tokio::time::Instant::now() < deadline {
            if self.inspect_container(id).await?.is_none() {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err(EngineError::Timeout {
            what: format!("waiting for container {id} to be removed"),
            after: self.timeout,
        })
    }

    /// Removes an image by id (not forced: an image in use stays).
    pub async fn remove_image(&self, id: &str) -> Result<(), EngineError> {
        let what = format!("removing image {id}");
        let call = self.docker.remove_image(id, None::<RemoveImageOptions>, None);
        match self.bounded(&what, "images/delete", call).await {
            Err(e) if e.is_not_found() => Ok(()),
            other => other.map(|_| ()),
        }
    }

    /// The last `lines` lines of the container's output (stdout and stderr).
    pub async fn logs_tail(&self, id: &str, lines: usize) -> Result<Vec<String>, EngineError> {
        let options =
            LogsOptions { stdout: true, stderr: true, tail: lines.to_string(), ..Default::default() };
        let what = format!("reading logs of {id}");
        let collect = async {
            let mut stream = self.docker.logs(id, Some(options));
            let mut text = String::new();
            while let Some(chunk) = stream.next().await {
                text.push_str(&chunk?.to_string());
            }
            Ok(text)
        };
        let text = self.bounded(&what, "containers/logs", collect).await?;
        Ok(text.lines().map(str::to_string).filter(|l| !l.trim().is_empty()).collect())
    }
}

/// A 404 answer becomes `None`.
fn optional<T>(result: Result<T, EngineError>) -> Result<Option<T>, EngineError> {
    match result {
        Ok(v) => Ok(Some(v)),
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(e),
    }
}
