//! The networks: the one named by the network mode goes into the create body
//! (API 1.41 takes a single endpoint there: "Container cannot be connected to
//! network endpoints: a, b"), the others are connected before start.

use std::collections::{BTreeSet, HashMap};

use bollard::models::{EndpointIpamConfig, EndpointSettings, HostConfig, NetworkSettings, NetworkingConfig};

use super::config::non_empty;

/// What Docker itself adds to a container's aliases on user networks.
pub(super) struct Identity<'a> {
    /// The first 12 characters of the old id, added on connect and at start.
    pub short_id: &'a str,
    /// The container's name (resolvable on user networks anyway).
    pub name: &'a str,
}

/// The endpoints of the new container.
#[derive(Debug, Default)]
pub(super) struct Networks {
    /// The network mode's own endpoint, when it has settings to carry.
    pub primary: Option<NetworkingConfig>,
    /// Every other network, sorted by name.
    pub extra: Vec<(String, EndpointSettings)>,
}

/// `container:<peer>`: the network namespace is another container's.
pub(super) fn is_container_mode(mode: Option<&str>) -> bool {
    mode.is_some_and(|m| m.starts_with("container:"))
}

/// The default bridge takes no aliases, static addresses or links.
fn is_default_bridge(network: &str) -> bool {
    matches!(network, "bridge" | "default")
}

/// Splits the old container's endpoints into the create body's one and the
/// rest. Host, none and `container:` modes have no endpoints of their own.
pub(super) fn split(host: &HostConfig, settings: Option<&NetworkSettings>, who: &Identity<'_>) -> Networks {
    let mode = host.network_mode.as_deref().unwrap_or("default");
    if matches!(mode, "host" | "none") || is_container_mode(Some(mode)) {
        return Networks::default();
    }
    let mut endpoints: Vec<(&String, &EndpointSettings)> =
        settings.and_then(|s| s.networks.as_ref()).into_iter().flatten().collect();
    endpoints.sort_by(|a, b| a.0.cmp(b.0));
    let primary = primary_key(mode, &endpoints);
    // With `--network <id>` a started container lists the same endpoint
    // under the id and under the network's name; connecting it twice fails.
    let mut seen: BTreeSet<&str> = primary.and_then(|(_, e)| network_id(e)).into_iter().collect();
    let mut networks = Networks::default();
    for (name, endpoint) in endpoints {
        if primary.is_some_and(|(p, _)| p == name) {
            if !is_default_bridge(name) {
                let config = HashMap::from([(name.clone(), carried(endpoint, who))]);
                networks.primary = Some(NetworkingConfig { endpoints_config: Some(config) });
            }
        } else if network_id(endpoint).is_none_or(|id| seen.insert(id)) {
            let carried =
                if is_default_bridge(name) { EndpointSettings::default() } else { carried(endpoint, who) };
            networks.extra.push((name.clone(), carried));
        }
    }
    networks
}

/// The endpoint the network mode names: by name, or by (a prefix of) the
/// network id when the container was created with `--network <id>`.
fn primary_key<'a>(
    mode: &str,
    endpoints: &[(&'a String, &'a EndpointSettings)],
) -> Option<(&'a String, &'a EndpointSettings)> {
    let mode = if is_default_bridge(mode) { "bridge" } else { mode };
    let by_name = endpoints.iter().find(|(name, _)| name.as_str() == mode);
    let by_id = || endpoints.iter().find(|(_, e)| network_id(e).is_some_and(|id| id.starts_with(mode)));
    by_name.or_else(by_id).copied()
}

/// The network's id; empty until the container first starts.
fn network_id(endpoint: &EndpointSettings) -> Option<&str> {
    endpoint.network_id.as_deref().filter(|id| !id.is_empty())
}

/// The endpoint's configuration without its runtime state: the endpoint
/// and network ids, gateway, addresses and prefix lengths, DNS names, and
/// the MAC address (API 1.41 takes a user MAC only as `Config.MacAddress`;
/// the endpoint's is the one the engine generated).
fn carried(endpoint: &EndpointSettings, who: &Identity<'_>) -> EndpointSettings {
    EndpointSettings {
        ipam_config: endpoint.ipam_config.as_ref().and_then(static_addresses),
        links: endpoint.links.clone().filter(|l| !l.is_empty()),
        aliases: aliases(endpoint.aliases.as_deref(), who),
        driver_opts: endpoint.driver_opts.clone().filter(|o| !o.is_empty()),
        gw_priority: endpoint.gw_priority.filter(|&p| p != 0),
        ..EndpointSettings::default()
    }
}

/// Static addresses; inspect shows `{}` or `null` for none.
fn static_addresses(ipam: &EndpointIpamConfig) -> Option<EndpointIpamConfig> {
    let kept = EndpointIpamConfig {
        ipv4_address: non_empty(ipam.ipv4_address.as_deref()),
        ipv6_address: non_empty(ipam.ipv6_address.as_deref()),
        link_local_ips: ipam.link_local_ips.clone().filter(|l| !l.is_empty()),
    };
    (kept != EndpointIpamConfig::default()).then_some(kept)
}

/// The user's aliases, once each, in their order (Docker keeps a repeated
/// `--network-alias` twice). Docker adds the short id (and, on 20.10, a
/// custom hostname) on connect and at start; the short id would name the old
/// container, so it is dropped, as is the container's own name, which user
/// networks resolve anyway.
fn aliases(aliases: Option<&[String]>, who: &Identity<'_>) -> Option<Vec<String>> {
    let mut seen = BTreeSet::new();
    let kept: Vec<String> = aliases
        .unwrap_or_default()
        .iter()
        .filter(|a| !a.is_empty() && a.as_str() != who.short_id && a.as_str() != who.name)
        .filter(|a| seen.insert(a.as_str()))
        .cloned()
        .collect();
    (!kept.is_empty()).then_some(kept)
}
