//! Listing containers and images, converted to the observe types.

use bollard::models::{ContainerSummary, ContainerSummaryStateEnum, ImageSummary};
use bollard::query_parameters::{ListContainersOptions, ListImagesOptions};

use super::{Engine, EngineError};
use crate::observed::{Health, ObservedContainer, ObservedImage};
use crate::types::{ContainerId, ImageId};

/// A container, with whose network namespace it lives in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkMember {
    /// Its id.
    pub id: ContainerId,
    /// Its name, without the leading `/`.
    pub name: String,
    /// Whether it is running now.
    pub running: bool,
    /// The id in its `container:<id>` network mode, if it has that mode.
    pub joins: Option<String>,
    /// On the default bridge (network mode `default` or `bridge`): the
    /// only place legacy links live.
    pub bridge: bool,
    /// Its labels (compose's `depends_on` among them).
    pub labels: std::collections::BTreeMap<String, String>,
}

impl Engine {
    /// Every container, running or not, in one call.
    pub async fn list_containers(&self) -> Result<Vec<ObservedContainer>, EngineError> {
        let options = ListContainersOptions { all: true, ..Default::default() };
        let list = self
            .bounded("listing containers", "containers/json", self.docker.list_containers(Some(options)))
            .await?;
        Ok(list.into_iter().filter_map(container).collect())
    }

    /// Every container with its network mode and labels, in one call: who
    /// lives in whose network namespace (`container:<id>`; the engine
    /// keeps the peer's id, so such a container loses its network when the
    /// peer is replaced), who may hold legacy links, who depends on whom in
    /// a compose project.
    pub async fn network_members(&self) -> Result<Vec<NetworkMember>, EngineError> {
        let options = ListContainersOptions { all: true, ..Default::default() };
        let list = self
            .bounded("listing containers", "containers/json", self.docker.list_containers(Some(options)))
            .await?;
        Ok(list
            .into_iter()
            .filter_map(|c| {
                let running = c.state == Some(ContainerSummaryStateEnum::RUNNING);
                let mode = c.host_config.as_ref().and_then(|h| h.network_mode.clone());
                let bridge = matches!(mode.as_deref(), None | Some("default" | "bridge"));
                let observed = container(c)?;
                Some(NetworkMember {
                    id: observed.id,
                    name: observed.name,
                    running,
                    joins: observed.joins,
                    bridge,
                    labels: observed.labels,
                })
            })
            .collect())
    }

    /// Every local image, in one call.
    pub async fn list_images(&self) -> Result<Vec<ObservedImage>, EngineError> {
        let options = ListImagesOptions { all: false, digests: true, ..Default::default() };
        let list =
            self.bounded("listing images", "images/json", self.docker.list_images(Some(options))).await?;
        Ok(list.into_iter().map(image).collect())
    }
}

/// bollard's summary to ours; entries without an id or name are skipped
/// (the engine always sends both; a container being removed may not).
fn container(c: ContainerSummary) -> Option<ObservedContainer> {
    let joins = c
        .host_config
        .as_ref()
        .and_then(|h| h.network_mode.as_deref())
        .and_then(|m| m.strip_prefix("container:"))
        .map(str::to_string);
    let id = c.id?;
    let name = own_name(c.names?)?;
    Some(ObservedContainer {
        id: ContainerId::new(id),
        name,
        image: c.image.unwrap_or_default(),
        image_id: ImageId::new(c.image_id.unwrap_or_default()),
        state: c.state.map_or_else(|| "unknown".to_string(), state_name),
        health: c.status.as_deref().and_then(health),
        labels: c.labels.unwrap_or_default().into_iter().collect(),
        joins,
        service: None,
    })
}

/// The container's own name among those the list gives: a container
/// that others link to is also listed under each link (`/web/database`),
/// in no set order; its own name is the one without a second `/`.
fn own_name(names: Vec<String>) -> Option<String> {
    let names: Vec<&str> = names.iter().map(|n| n.trim_start_matches('/')).collect();
    let own = names.iter().find(|n| !n.contains('/')).or(names.first())?;
    Some(own.to_string())
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
    fn a_linked_containers_own_name_is_not_one_of_its_link_names() {
        let names = |n: &[&str]| n.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(own_name(names(&["/web/database", "/app/db", "/db"])).as_deref(), Some("db"));
        assert_eq!(own_name(names(&["/db"])).as_deref(), Some("db"));
        assert_eq!(own_name(Vec::new()), None);
    }

    #[test]
    fn health_is_read_from_status_text() {
        assert_eq!(health("Up 5 minutes (healthy)"), Some(Health::Healthy));
        assert_eq!(health("Up 1 second (health: starting)"), Some(Health::Starting));
        assert_eq!(health("Up 2 hours (unhealthy)"), Some(Health::Unhealthy));
        assert_eq!(health("Exited (0) 3 seconds ago"), None);
    }
}
