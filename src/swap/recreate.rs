//! Faithful recreation: the create request for the container that replaces
//! an old one, computed purely from `docker inspect` of the old container and
//! of its old and new images (DESIGN.md §6).
//!
//! Two rules decide every field:
//!
//! - what the user set is carried, as `docker inspect` shows it, except where
//!   Docker reports a value it cannot take back (`container:<id>` modes,
//!   legacy links as `/peer:/me/alias`, runtime network state);
//! - what the old container only had because the old image set it is left
//!   unset, so the daemon's own image merge applies the new image's default.
//!   This is why the new image is not consulted: the daemon does that merge.
//!
//! The container name and the swap's own labels are not part of the request:
//! the executor adds them.

mod config;
mod host;
mod network;

#[cfg(test)]
mod config_tests;
#[cfg(test)]
mod fixture;
#[cfg(test)]
mod host_tests;
#[cfg(test)]
mod network_tests;
#[cfg(test)]
mod prop_tests;

use std::collections::HashMap;
use std::fmt;

use bollard::models::{
    ContainerConfig, ContainerCreateBody, ContainerInspectResponse, EndpointSettings, HostConfig,
    ImageConfig, ImageInspect,
};

/// The create request for the new container, and the networks to connect
/// before it starts.
#[derive(Debug, Clone, PartialEq)]
pub struct CreateSpec {
    /// `ContainerCreateBody` for `POST /containers/create`: the config, the
    /// host config and a networking config holding AT MOST ONE endpoint
    /// (Docker 20.10 = API 1.41 refuses more than one at create time).
    pub body: ContainerCreateBody,
    /// Further networks to connect after create and before start, each with
    /// its endpoint settings (aliases, static IPv4/IPv6, links, driver
    /// options), sorted by network name.
    pub extra_networks: Vec<(String, EndpointSettings)>,
    /// The platform the old container's image is for: the new one is
    /// created for it too, so an emulated container (`--platform`) keeps
    /// its architecture. `None`: the old image names none.
    pub platform: Option<crate::platform::Platform>,
}

/// A namespace a container can share with another container
/// (`container:<id>` in its host config).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Namespace {
    /// `HostConfig.NetworkMode`.
    Network,
    /// `HostConfig.IpcMode`.
    Ipc,
    /// `HostConfig.PidMode`.
    Pid,
}

impl fmt::Display for Namespace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Namespace::Network => "network",
            Namespace::Ipc => "IPC",
            Namespace::Pid => "PID",
        })
    }
}

/// Why the new container's request cannot be computed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecreateError {
    /// The inspect data lacks a part recreation needs.
    #[error("recreating container {container}: its inspect data has no {part}")]
    Missing {
        /// The old container's name (or id).
        container: String,
        /// The missing part, as Docker names it (`Id`, `Config`, `HostConfig`).
        part: &'static str,
    },
    /// The old container shares a namespace with a container whose name is
    /// not known, so the new one cannot follow it by name.
    #[error("recreating container {container}: it shares the {namespace} namespace of container {peer_id}, whose name is unknown")]
    UnknownPeer {
        /// The old container's name (or id).
        container: String,
        /// Which namespace it shares.
        namespace: Namespace,
        /// The id Docker reports in `container:<id>`.
        peer_id: String,
    },
}

/// The create request for the container replacing `old`, to run `new_ref`.
///
/// `old_image` is the image `old` was created from: its defaults are what
/// gets dropped. `new_image` is accepted for the caller's symmetry but its
/// defaults need no copying: the daemon merges them at create for every field
/// left unset here. `peers` maps container ids to names, to turn
/// `container:<id>` network/IPC/PID modes and `--volumes-from <id>` into
/// names that follow a recreated peer.
pub fn recreate(
    old: &ContainerInspectResponse,
    old_image: &ImageInspect,
    _new_image: &ImageInspect,
    new_ref: &str,
    peers: &HashMap<String, String>,
) -> Result<CreateSpec, RecreateError> {
    let container = old.name.as_deref().or(old.id.as_deref()).unwrap_or("?").trim_start_matches('/');
    let missing = |part| RecreateError::Missing { container: container.to_string(), part };
    let id = old.id.as_deref().ok_or_else(|| missing("Id"))?;
    let cfg = old.config.as_ref().ok_or_else(|| missing("Config"))?;
    let old_host = old.host_config.as_ref().ok_or_else(|| missing("HostConfig"))?;
    let image = old_image.config.clone().unwrap_or_default();

    let host_config = host::host_config(old_host, cfg, old.mounts.as_deref().unwrap_or_default(), peers)
        .map_err(|(namespace, peer_id)| RecreateError::UnknownPeer {
            container: container.to_string(),
            namespace,
            peer_id,
        })?;
    let identity = network::Identity { short_id: short_id(id), name: container };
    let networks = network::split(&host_config, old.network_settings.as_ref(), &identity);
    let mut body = create_body(cfg, &image, &host_config, short_id(id));
    body.image = Some(new_ref.to_string());
    body.host_config = Some(host_config);
    body.networking_config = networks.primary;
    Ok(CreateSpec { body, extra_networks: networks.extra, platform: crate::engine::platform_of(old_image) })
}

/// Docker's default hostname and the alias it adds on user networks: the
/// first 12 characters of the id.
fn short_id(id: &str) -> &str {
    id.get(..12).unwrap_or(id)
}

/// The config part of the request. The struct literal is exhaustive on
/// purpose: a field added by a bollard upgrade must be decided here, not
/// silently defaulted.
fn create_body(
    c: &ContainerConfig,
    img: &ImageConfig,
    host: &HostConfig,
    short_id: &str,
) -> ContainerCreateBody {
    let shares_network = network::is_container_mode(host.network_mode.as_deref());
    let (entrypoint, cmd) = config::command(c, img);
    ContainerCreateBody {
        hostname: config::hostname(c.hostname.as_deref(), short_id, shares_network),
        domainname: config::non_empty(c.domainname.as_deref()),
        user: config::unless_default(c.user.as_deref(), img.user.as_deref()),
        attach_stdin: c.attach_stdin,
        attach_stdout: c.attach_stdout,
        attach_stderr: c.attach_stderr,
        exposed_ports: config::exposed_ports(c, img, host, shares_network),
        tty: c.tty,
        open_stdin: c.open_stdin,
        stdin_once: c.stdin_once,
        env: config::user_entries(c.env.as_deref(), img.env.as_deref()),
        cmd,
        healthcheck: config::healthcheck(c.healthcheck.as_ref(), img.healthcheck.as_ref()),
        // Windows-only, and only ever set by an image's build.
        args_escaped: None,
        image: None,
        volumes: config::user_entries(c.volumes.as_deref(), img.volumes.as_deref()).map(config::sorted),
        working_dir: config::unless_default(c.working_dir.as_deref(), img.working_dir.as_deref()),
        entrypoint,
        network_disabled: c.network_disabled,
        // ONBUILD triggers belong to images, never to containers.
        on_build: None,
        labels: config::user_labels(c.labels.as_ref(), img.labels.as_ref()),
        // The daemon copies the image's STOPSIGNAL into the container config.
        stop_signal: config::unless_default(c.stop_signal.as_deref(), img.stop_signal.as_deref()),
        stop_timeout: c.stop_timeout,
        shell: config::unless_default_list(c.shell.as_deref(), img.shell.as_deref()),
        host_config: None,
        networking_config: None,
    }
}
