//! Test builders: each test reads "the old container had X, its old image
//! had Y, the new image has Z → the request has W". The starting point is
//! what `docker inspect` shows for `docker create app:1` on the default
//! bridge, from an image with an empty config.

use std::collections::HashMap;

use bollard::models::{
    ContainerConfig, ContainerInspectResponse, EndpointSettings, HostConfig, ImageConfig, ImageInspect,
    MountPoint, NetworkSettings,
};
use serde_json::Value;

use super::{recreate, CreateSpec, RecreateError};

/// The old container's id; Docker's default hostname is its first 12 chars.
pub const OLD_ID: &str = "0123456789ab0123456789ab0123456789ab0123456789ab0123456789abcdef";
/// `OLD_ID[..12]`.
pub const SHORT_ID: &str = "0123456789ab";
/// A peer container's id, for `container:<id>` modes.
pub const PEER_ID: &str = "feedfacefeedfacefeedfacefeedfacefeedfacefeedfacefeedfacefeedface";
/// The image the new container is created from.
pub const NEW_REF: &str = "registry.local/app:2";

/// `Some(vec![..])` of owned strings.
pub fn strings(items: &[&str]) -> Option<Vec<String>> {
    Some(items.iter().map(|s| s.to_string()).collect())
}

/// `Some(map)` of owned strings.
pub fn map(pairs: &[(&str, &str)]) -> Option<HashMap<String, String>> {
    Some(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect())
}

/// A volume mount point as inspect's top-level `Mounts` shows it.
pub fn volume_point(name: &str, destination: &str, rw: bool) -> MountPoint {
    MountPoint {
        typ: Some("volume".into()),
        name: Some(name.into()),
        source: Some(format!("/var/lib/docker/volumes/{name}/_data")),
        destination: Some(destination.into()),
        driver: Some("local".into()),
        mode: Some(String::new()),
        rw: Some(rw),
        propagation: Some(String::new()),
    }
}

/// One recreation's inputs.
#[derive(Clone)]
pub struct Case {
    pub old: ContainerInspectResponse,
    pub old_image: ImageInspect,
    pub new_image: ImageInspect,
    pub peers: HashMap<String, String>,
}

impl Case {
    pub fn new() -> Self {
        let config = ContainerConfig {
            hostname: Some(SHORT_ID.into()),
            domainname: Some(String::new()),
            user: Some(String::new()),
            image: Some("app:1".into()),
            working_dir: Some(String::new()),
            ..Default::default()
        };
        let host = HostConfig { network_mode: Some("default".into()), ..Default::default() };
        let old = ContainerInspectResponse {
            id: Some(OLD_ID.into()),
            name: Some("/app".into()),
            image: Some("sha256:old".into()),
            config: Some(config),
            host_config: Some(host),
            ..Default::default()
        };
        let image = |id: &str| ImageInspect {
            id: Some(id.into()),
            config: Some(ImageConfig::default()),
            ..Default::default()
        };
        Case { old, old_image: image("sha256:old"), new_image: image("sha256:new"), peers: HashMap::new() }
    }

    /// The old container's `Config` as inspect shows it (image values merged in).
    pub fn config(mut self, f: impl FnOnce(&mut ContainerConfig)) -> Self {
        f(self.old.config.get_or_insert_with(Default::default));
        self
    }

    /// The old container's `HostConfig`.
    pub fn host(mut self, f: impl FnOnce(&mut HostConfig)) -> Self {
        f(self.old.host_config.get_or_insert_with(Default::default));
        self
    }

    /// The config of the image the old container was created from.
    pub fn old_image(mut self, f: impl FnOnce(&mut ImageConfig)) -> Self {
        f(self.old_image.config.get_or_insert_with(Default::default));
        self
    }

    /// The config of the image to run.
    pub fn new_image(mut self, f: impl FnOnce(&mut ImageConfig)) -> Self {
        f(self.new_image.config.get_or_insert_with(Default::default));
        self
    }

    /// An endpoint in `NetworkSettings.Networks`.
    pub fn network(mut self, name: &str, endpoint: EndpointSettings) -> Self {
        let settings = self.old.network_settings.get_or_insert_with(NetworkSettings::default);
        settings.networks.get_or_insert_with(HashMap::new).insert(name.into(), endpoint);
        self
    }

    /// A top-level mount point.
    pub fn mount(mut self, point: MountPoint) -> Self {
        self.old.mounts.get_or_insert_with(Vec::new).push(point);
        self
    }

    /// A known container (id → name) for `container:<id>` references.
    pub fn peer(mut self, id: &str, name: &str) -> Self {
        self.peers.insert(id.into(), name.into());
        self
    }

    pub fn try_spec(&self) -> Result<CreateSpec, RecreateError> {
        recreate(&self.old, &self.old_image, &self.new_image, NEW_REF, &self.peers)
    }

    pub fn spec(&self) -> CreateSpec {
        self.try_spec().expect("the case recreates")
    }

    pub fn error(&self) -> RecreateError {
        self.try_spec().expect_err("the case must not recreate")
    }

    /// The create body as the daemon receives it (Docker's field names).
    pub fn body_json(&self) -> Value {
        serde_json::to_value(self.spec().body).expect("the body serialises")
    }

    /// The old container's config as inspect shows it (Docker's field names).
    pub fn old_config_json(&self) -> Value {
        serde_json::to_value(&self.old.config).expect("the config serialises")
    }

    /// The old container's host config (Docker's field names).
    pub fn old_host_json(&self) -> Value {
        serde_json::to_value(&self.old.host_config).expect("the host config serialises")
    }
}

/// A user-network endpoint as a started container's inspect shows it:
/// configuration plus the runtime state and Docker's short-id alias.
pub fn started_endpoint(aliases: &[&str], ipv4: Option<&str>, ipv6: Option<&str>) -> EndpointSettings {
    let mut all = strings(aliases).unwrap_or_default();
    all.push(SHORT_ID.into());
    EndpointSettings {
        ipam_config: Some(bollard::models::EndpointIpamConfig {
            ipv4_address: ipv4.map(str::to_string),
            ipv6_address: ipv6.map(str::to_string),
            link_local_ips: None,
        }),
        aliases: Some(all),
        network_id: Some(format!("net-{}", aliases.first().unwrap_or(&"x"))),
        endpoint_id: Some("ep-1".into()),
        gateway: Some("10.1.0.1".into()),
        ip_address: Some(ipv4.unwrap_or("10.1.0.9").into()),
        ip_prefix_len: Some(24),
        mac_address: Some("02:42:0a:01:00:09".into()),
        global_ipv6_address: ipv6.map(str::to_string),
        global_ipv6_prefix_len: Some(64),
        ..Default::default()
    }
}
