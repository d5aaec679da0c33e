//! Upgrading the controller's own container through a helper container.
//!
//! A container cannot replace itself: stopping it kills the process doing
//! the replacing. So the controller creates a short-lived copy of itself —
//! same (known-good) image, same mounts (the Docker socket, the state
//! volume), same environment and networks — running `container-upgrader
//! helper …`, which performs the swap of the controller exactly as for any
//! container and records it in the shared journal. The new controller (or
//! the restored old one) reads the outcome there when it starts.

use std::collections::HashMap;
use std::path::Path;

use bollard::models::{
    ContainerCreateBody, EndpointSettings, HostConfig, RestartPolicy, RestartPolicyNameEnum,
};

use crate::engine::{ContainerDetails, Engine, EngineError};
use crate::identity;
use crate::manifest::{Order, Probe, PullPolicy};
use crate::swap::journal::OpRecord;
use crate::swap::scaffold::helper_name;
use crate::swap::SwapRequest;
use crate::types::{ContainerId, OpId};

pub use crate::swap::scaffold::HELPER_LABEL;

/// The controller's own container.
#[derive(Debug, Clone)]
pub struct Me {
    /// Its id.
    pub id: ContainerId,
    /// Its name.
    pub name: String,
    /// Everything the engine says about it.
    pub details: ContainerDetails,
}

/// Finds this process's container, confirming each candidate with the
/// engine. `None`: not running in a container (or not one this engine runs).
pub async fn whoami(engine: &Engine, explicit: Option<&str>) -> Result<Option<Me>, EngineError> {
    for candidate in identity::candidates(explicit) {
        if let Some(details) = engine.inspect_container(&candidate).await? {
            let id = ContainerId::new(details.id.clone().unwrap_or_default());
            let name = details.name.as_deref().unwrap_or_default().trim_start_matches('/').to_string();
            return Ok(Some(Me { id, name, details }));
        }
    }
    Ok(None)
}

/// What a helper is started to do.
#[derive(Debug, Clone)]
pub enum Job {
    /// Swap the controller's container as `request` says.
    Swap(Box<SwapRequest>),
    /// Finish or undo an interrupted swap of the controller (the new
    /// controller cannot remove itself to restore the old one).
    Recover,
}

/// Starts a helper for `me` doing `job`, from `image` (the controller's
/// current image for a swap; the old, known-good one for a recovery).
/// Returns the helper's id.
pub async fn launch(
    engine: &Engine,
    me: &Me,
    image: &str,
    job: &Job,
    state_dir: &Path,
) -> Result<ContainerId, String> {
    let exe = std::env::current_exe().map_err(|e| format!("cannot tell this program's path: {e}"))?;
    if matches!(job, Job::Swap(req) if !req.settings.hooks.is_empty()) {
        // The helper is told the swap by flags; hooks are not among them.
        tracing::warn!(container = %me.name, "the target's hooks are not run when the controller upgrades its own container");
    }
    let mut cmd = vec!["helper".to_string(), "--state-dir".to_string(), state_dir.display().to_string()];
    cmd.extend(job_args(job, &me.name));
    let config = me.details.config.clone().unwrap_or_default();
    let host = me.details.host_config.clone().unwrap_or_default();
    let body = ContainerCreateBody {
        image: Some(image.to_string()),
        entrypoint: Some(vec![exe.display().to_string()]),
        cmd: Some(cmd),
        env: config.env.clone(),
        user: config.user.clone(),
        // The controller's labels (so whatever owns it owns its helpers too)
        // and the helper mark.
        labels: Some({
            let mut labels: HashMap<String, String> = config.labels.clone().unwrap_or_default();
            // The controller's op label names the swap that made it; the
            // helper is no swap's new container.
            labels.remove(crate::swap::OP_LABEL);
            labels.insert(HELPER_LABEL.to_string(), me.name.clone());
            labels
        }),
        host_config: Some(HostConfig {
            binds: Some(binds(&me.details)),
            network_mode: host.network_mode.clone(),
            // A helper that is killed mid-swap is started again and
            // recovers from the journal; one that finished exits 0.
            restart_policy: Some(RestartPolicy {
                name: Some(RestartPolicyNameEnum::ON_FAILURE),
                maximum_retry_count: Some(3),
            }),
            security_opt: host.security_opt.clone(),
            group_add: host.group_add.clone(),
            ..Default::default()
        }),
        ..Default::default()
    };
    let name = helper_name(&me.name, &OpId::generate().suffix());
    let id = engine.create(&name, body).await.map_err(|e| e.to_string())?;
    // The same networks as the controller, so an http/tcp gate can reach
    // the new controller.
    for network in extra_networks(&me.details) {
        engine
            .connect_network(&network, &id, EndpointSettings::default())
            .await
            .map_err(|e| e.to_string())?;
    }
    engine.start(id.as_str()).await.map_err(|e| e.to_string())?;
    tracing::info!(helper = %name, container = %me.name, "helper started");
    Ok(id)
}

/// The helper's arguments for `job`.
fn job_args(job: &Job, container: &str) -> Vec<String> {
    match job {
        Job::Recover => vec!["--recover-only".into(), container.to_string()],
        Job::Swap(req) => {
            let s = &req.settings;
            let probe = match &s.health.probe {
                Probe::Auto => "auto".to_string(),
                Probe::Running => "running".to_string(),
                Probe::Http { port, path, status } => format!("http:{port}{path}={status}"),
                Probe::Tcp { port } => format!("tcp:{port}"),
            };
            let mut args = vec![
                container.to_string(),
                "--image".into(),
                req.image.to_string(),
                "--order".into(),
                match s.order {
                    Order::StopFirst => "stop-first".into(),
                    Order::StartFirst => "start-first".into(),
                },
                // The controller pulled already: the helper must not need a registry.
                "--pull".into(),
                match s.pull {
                    PullPolicy::Never => "never".into(),
                    _ => "if-missing".into(),
                },
                "--health-timeout".into(),
                format!("{}s", s.health.timeout.as_secs().max(1)),
                "--stable".into(),
                format!("{}ms", s.health.stable.as_millis()),
                "--probe".into(),
                probe,
            ];
            if let Some(op) = &req.op_id {
                args.extend(["--op-id".into(), op.to_string()]);
            }
            // The digest the controller planned and pulled: the helper
            // creates exactly that, whatever the tag points at by then.
            if let Some(digest) = &req.planned {
                args.extend(["--planned-digest".into(), digest.to_string()]);
            }
            if !s.rollback {
                args.push("--no-rollback".into());
            }
            if s.cleanup {
                args.push("--cleanup".into());
            }
            args
        }
    }
}

/// The controller's mounts as binds: the Docker socket, the state volume,
/// the manifest — whatever it has, the helper has.
fn binds(me: &ContainerDetails) -> Vec<String> {
    me.mounts
        .iter()
        .flatten()
        .filter_map(|m| {
            let dest = m.destination.as_deref()?;
            let source = match m.typ.as_deref() {
                Some("volume") => m.name.clone()?,
                Some("bind") => m.source.clone()?,
                _ => return None,
            };
            let ro = if m.rw == Some(false) { ":ro" } else { "" };
            Some(format!("{source}:{dest}{ro}"))
        })
        .collect()
}

/// User networks beyond the one the network mode already joins.
fn extra_networks(me: &ContainerDetails) -> Vec<String> {
    let mode = me.host_config.as_ref().and_then(|h| h.network_mode.clone()).unwrap_or_default();
    let mut names: Vec<String> = me
        .network_settings
        .as_ref()
        .and_then(|n| n.networks.as_ref())
        .map(|n| n.keys().cloned().collect())
        .unwrap_or_default();
    names.sort();
    names.retain(|n| *n != mode && !(mode == "default" && n == "bridge") && n != "host" && n != "none");
    names
}

/// True for an unfinished op the controller `me` cannot finish itself:
/// one whose *new* container is `me` (restoring the old one would remove
/// the process doing it).
pub fn needs_helper(op: &OpRecord, me: &Me) -> bool {
    op.old_id != me.id
        && (op.new_id.as_ref() == Some(&me.id) || op.container == me.name || op.temp_name == me.name)
}

/// Removes helpers of `me` that have exited (a running one is at work).
pub async fn sweep_helpers(engine: &Engine, me: &Me) -> Result<usize, EngineError> {
    let mut removed = 0;
    for c in engine.list_containers().await? {
        let mine = c.labels.get(HELPER_LABEL).is_some_and(|n| *n == me.name);
        if mine && c.state != "running" && c.state != "restarting" {
            engine.remove(c.id.as_str()).await?;
            removed += 1;
        }
    }
    Ok(removed)
}

/// True when a helper for `me` is at work now.
pub async fn helper_running(engine: &Engine, me: &Me) -> Result<bool, EngineError> {
    Ok(engine.list_containers().await?.iter().any(|c| {
        c.labels.get(HELPER_LABEL).is_some_and(|n| *n == me.name)
            && (c.state == "running" || c.state == "restarting")
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::{HealthGate, Settings};
    use std::time::Duration;

    #[test]
    fn swap_job_args_round_trip_the_settings_and_never_need_a_registry() {
        let req = SwapRequest {
            container: "agent".into(),
            image: "registry.local:5000/agent:2".parse().expect("ref"),
            planned: Some(
                crate::types::Digest::parse(&format!("sha256:{}", "ab".repeat(32))).expect("digest"),
            ),
            settings: Settings {
                health: HealthGate {
                    timeout: Duration::from_secs(90),
                    stable: Duration::from_millis(1500),
                    probe: Probe::Http { port: 9001, path: "/ping".into(), status: 204 },
                },
                rollback: false,
                ..Settings::default()
            },
            op_id: Some(OpId::new("op-1")),
            service: false,
        };
        let args = job_args(&Job::Swap(Box::new(req)), "agent").join(" ");
        assert_eq!(
            args,
            "agent --image registry.local:5000/agent:2 --order stop-first --pull if-missing --health-timeout 90s --stable 1500ms --probe http:9001/ping=204 --op-id op-1 --planned-digest sha256:abababababababababababababababababababababababababababababababab --no-rollback"
        );
        assert_eq!(job_args(&Job::Recover, "agent").join(" "), "--recover-only agent");
    }
}
