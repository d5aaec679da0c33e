//! Swarm services: listing them as targets, inspecting one, updating its
//! image with an `UpdateConfig`, and reading why its tasks failed.
//!
//! Only a manager answers the service endpoints; a worker or a standalone
//! engine answers 503, which is returned as [`NotManager`] (a plan reason),
//! not as an engine failure.

use std::collections::HashMap;

use bollard::auth::DockerCredentials;
use bollard::models::{
    Service, ServiceSpecRollbackConfig, ServiceSpecRollbackConfigFailureActionEnum,
    ServiceSpecRollbackConfigOrderEnum, ServiceSpecUpdateConfig, ServiceSpecUpdateConfigFailureActionEnum,
    ServiceSpecUpdateConfigOrderEnum, ServiceUpdateStatusStateEnum, TaskState,
};
use bollard::query_parameters::{
    InspectServiceOptions, ListServicesOptions, ListTasksOptions, UpdateServiceOptions,
};

use super::{Engine, EngineError};
use crate::manifest::Order;
use crate::observed::{ObservedContainer, ServiceState};
use crate::reference::ImageRef;
use crate::swarm::rollout::{FailureAction, Rollout, UpdateState};
use crate::types::{ContainerId, Digest, ImageId};

/// The engine is not a Swarm manager: service targets cannot be observed
/// or updated through it. Carries the engine's own words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotManager(pub String);

/// One service as an update needs it.
#[derive(Debug, Clone)]
pub struct ServiceDetails {
    /// The service id.
    pub id: String,
    /// Its name.
    pub name: String,
    /// The spec version an update must name (optimistic concurrency).
    pub version: u64,
    /// The image its spec names, as written there (`repo:tag@sha256:…`).
    pub image: String,
    /// Where its last update stands, if it ever had one.
    pub update: Option<UpdateState>,
    /// When that update started (RFC 3339), to tell a new update from it.
    pub update_started_at: Option<String>,
    /// Swarm's message about it (`update completed`, the failure, …).
    pub update_message: Option<String>,
    /// Its replica count; `None` for a global service.
    pub replicas: Option<u64>,
    spec: bollard::models::ServiceSpec,
}

impl Engine {
    /// Every service with its task counts, in one call; `Ok(Err(_))` when
    /// the engine is not a Swarm manager.
    pub async fn list_services(&self) -> Result<Result<Vec<ObservedContainer>, NotManager>, EngineError> {
        let options = ListServicesOptions { status: Some(true), ..Default::default() };
        let listed =
            self.bounded("listing services", "services", self.docker.list_services(Some(options))).await;
        match listed {
            Ok(list) => Ok(Ok(list.into_iter().filter_map(observed).collect())),
            Err(e) => not_manager(e).map(Err),
        }
    }

    /// The service `name` (or id); `None` when there is none.
    pub async fn inspect_service(&self, name: &str) -> Result<Option<ServiceDetails>, EngineError> {
        let call = self.docker.inspect_service(name, None::<InspectServiceOptions>);
        match self.bounded(&format!("inspecting service {name}"), "services/{id}", call).await {
            Ok(s) => Ok(details(s)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Updates `service` to run `image` (a reference pinned by digest),
    /// rolled out as `rollout` says; returns the engine's warnings.
    pub async fn update_service(
        &self,
        service: &ServiceDetails,
        image: &str,
        rollout: &Rollout,
        credentials: Option<super::Credentials>,
    ) -> Result<Vec<String>, EngineError> {
        let mut spec = service.spec.clone();
        let container = spec
            .task_template
            .get_or_insert_with(Default::default)
            .container_spec
            .get_or_insert_with(Default::default);
        container.image = Some(image.to_string());
        spec.update_config = Some(update_config(rollout));
        spec.rollback_config = Some(rollback_config(rollout));
        let version = i32::try_from(service.version).unwrap_or(i32::MAX);
        // With credentials, Swarm keeps them in the spec for the nodes'
        // pulls (as `docker service update --with-registry-auth`); without,
        // it keeps those the spec already has.
        let auth_from = "spec";
        let options =
            UpdateServiceOptions { version, registry_auth_from: auth_from.into(), ..Default::default() };
        let credentials = credentials.map(|c| DockerCredentials {
            username: c.username,
            password: c.password,
            identitytoken: c.identity_token,
            serveraddress: ImageRef::parse(image).ok().map(|r| r.registry().to_string()),
            ..Default::default()
        });
        let what = format!("updating service {} to {image}", service.name);
        let answer = self
            .bounded(
                &what,
                "services/{id}/update",
                self.docker.update_service(&service.id, spec, options, credentials),
            )
            .await?;
        Ok(answer.warnings.unwrap_or_default())
    }

    /// Why the service's tasks failed, newest first (at most `limit`):
    /// `task 2: task: non-zero exit (3)`.
    pub async fn task_errors(&self, service_id: &str, limit: usize) -> Result<Vec<String>, EngineError> {
        let filters = HashMap::from([("service".to_string(), vec![service_id.to_string()])]);
        let options = ListTasksOptions { filters: Some(filters) };
        let tasks = self.bounded("listing tasks", "tasks", self.docker.list_tasks(Some(options))).await?;
        let mut failed: Vec<(String, String)> = tasks
            .into_iter()
            .filter_map(|t| {
                let status = t.status?;
                let failed = matches!(status.state, Some(TaskState::FAILED | TaskState::REJECTED));
                let err = status.err.or(status.message).filter(|_| failed)?;
                let at = status.timestamp.map(|d| d.to_string()).unwrap_or_default();
                let slot = t.slot.map_or_else(String::new, |s| format!(" {s}"));
                Some((at, format!("task{slot}: {err}")))
            })
            .collect();
        failed.sort_by(|a, b| b.0.cmp(&a.0));
        let mut errors: Vec<String> = Vec::new();
        for (_, e) in failed {
            if !errors.contains(&e) && errors.len() < limit {
                errors.push(e);
            }
        }
        Ok(errors)
    }
}

/// A 503 from a service endpoint means "not a manager"; anything else is
/// an engine failure.
fn not_manager(e: EngineError) -> Result<NotManager, EngineError> {
    match &e {
        EngineError::Call {
            source: bollard::errors::Error::DockerResponseServerError { status_code: 503, message },
            ..
        } => Ok(NotManager(message.trim().to_string())),
        _ => Err(e),
    }
}

/// A listed service as a target sees it; services without an id or name
/// are skipped (the engine always sends both).
fn observed(s: Service) -> Option<ObservedContainer> {
    let id = s.id?;
    let spec = s.spec?;
    let name = spec.name?;
    let image = spec.task_template.and_then(|t| t.container_spec).and_then(|c| c.image).unwrap_or_default();
    let (shown, digest) = split_pin(&image);
    let status = s.service_status.unwrap_or_default();
    let (running, desired) = (status.running_tasks.unwrap_or(0), status.desired_tasks.unwrap_or(0));
    let state =
        if running >= desired { "running".to_string() } else { format!("{running}/{desired} tasks running") };
    let update = s.update_status.and_then(|u| u.state).and_then(update_state);
    Some(ObservedContainer {
        id: ContainerId::new(id),
        name,
        image: shown,
        image_id: ImageId::new(digest.as_ref().map_or("", Digest::as_str)),
        state,
        health: None,
        labels: spec.labels.unwrap_or_default().into_iter().collect(),
        joins: None,
        service: Some(ServiceState { digest, update, running, desired }),
    })
}

/// `repo:tag@sha256:…` as a container would show it (`repo:tag`) and the
/// digest it pins; a reference without a tag is shown whole.
pub(crate) fn split_pin(image: &str) -> (String, Option<Digest>) {
    match ImageRef::parse(image) {
        Ok(r) => {
            let digest = r.digest().cloned();
            let shown = r.tag().map_or_else(|| r.familiar(), |t| r.with_tag(t).familiar());
            (shown, digest)
        }
        Err(_) => (image.to_string(), None),
    }
}

fn details(s: Service) -> Option<ServiceDetails> {
    let spec = s.spec?;
    let image = spec
        .task_template
        .as_ref()
        .and_then(|t| t.container_spec.as_ref())
        .and_then(|c| c.image.clone())
        .unwrap_or_default();
    let status = s.update_status.unwrap_or_default();
    let replicas = spec.mode.as_ref().and_then(|m| m.replicated.as_ref()).and_then(|r| r.replicas);
    Some(ServiceDetails {
        replicas: replicas.and_then(|r| u64::try_from(r).ok()),
        id: s.id?,
        name: spec.name.clone().unwrap_or_default(),
        version: s.version.and_then(|v| v.index).unwrap_or(0),
        image,
        update: status.state.and_then(update_state),
        update_started_at: status.started_at.map(|d| d.to_string()),
        update_message: status.message,
        spec,
    })
}

fn update_state(s: ServiceUpdateStatusStateEnum) -> Option<UpdateState> {
    use ServiceUpdateStatusStateEnum as S;
    Some(match s {
        S::UPDATING => UpdateState::Updating,
        S::PAUSED => UpdateState::Paused,
        S::COMPLETED => UpdateState::Completed,
        S::ROLLBACK_STARTED => UpdateState::RollbackStarted,
        S::ROLLBACK_PAUSED => UpdateState::RollbackPaused,
        S::ROLLBACK_COMPLETED => UpdateState::RollbackCompleted,
        S::EMPTY => return None,
    })
}

fn update_config(r: &Rollout) -> ServiceSpecUpdateConfig {
    ServiceSpecUpdateConfig {
        parallelism: Some(r.parallelism),
        delay: Some(r.delay_ns),
        failure_action: Some(match r.failure_action {
            FailureAction::Rollback => ServiceSpecUpdateConfigFailureActionEnum::ROLLBACK,
            FailureAction::Pause => ServiceSpecUpdateConfigFailureActionEnum::PAUSE,
        }),
        monitor: Some(r.monitor_ns),
        max_failure_ratio: Some(r.max_failure_ratio),
        order: Some(match r.order {
            Order::StopFirst => ServiceSpecUpdateConfigOrderEnum::STOP_FIRST,
            Order::StartFirst => ServiceSpecUpdateConfigOrderEnum::START_FIRST,
        }),
    }
}

/// The rollback goes back the way the update came (same order, batch and
/// monitor); a rollback that fails itself pauses for a person.
fn rollback_config(r: &Rollout) -> ServiceSpecRollbackConfig {
    ServiceSpecRollbackConfig {
        parallelism: Some(r.parallelism),
        delay: Some(r.delay_ns),
        failure_action: Some(ServiceSpecRollbackConfigFailureActionEnum::PAUSE),
        monitor: Some(r.monitor_ns),
        max_failure_ratio: Some(r.max_failure_ratio),
        order: Some(match r.order {
            Order::StopFirst => ServiceSpecRollbackConfigOrderEnum::STOP_FIRST,
            Order::StartFirst => ServiceSpecRollbackConfigOrderEnum::START_FIRST,
        }),
    }
}
