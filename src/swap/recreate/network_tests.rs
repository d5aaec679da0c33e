//! Networks: one endpoint in the body, the rest connected before start,
//! configuration carried and runtime state left behind.

use bollard::models::{EndpointIpamConfig, EndpointSettings};
use serde_json::{json, Value};

use super::fixture::{map, started_endpoint, strings, Case, PEER_ID, SHORT_ID};

fn names(extra: &[(String, EndpointSettings)]) -> Vec<&str> {
    extra.iter().map(|(n, _)| n.as_str()).collect()
}

#[test]
fn two_user_networks_keep_aliases_and_static_addresses_without_runtime_state() {
    let spec = Case::new()
        .host(|h| h.network_mode = Some("front".into()))
        .network("front", started_endpoint(&["web"], Some("10.1.0.10"), Some("fd00::10")))
        .network("back", started_endpoint(&["api"], Some("10.2.0.10"), None))
        .spec();
    let body = serde_json::to_value(&spec.body).expect("serialises");
    let expected = json!({"front": {
        "Aliases": ["web"],
        "IPAMConfig": {"IPv4Address": "10.1.0.10", "IPv6Address": "fd00::10"},
    }});
    assert_eq!(
        body["NetworkingConfig"]["EndpointsConfig"], expected,
        "MAC, short id, ids, addresses dropped"
    );
    let back = EndpointSettings {
        aliases: strings(&["api"]),
        ipam_config: Some(EndpointIpamConfig {
            ipv4_address: Some("10.2.0.10".into()),
            ..Default::default()
        }),
        ..Default::default()
    };
    assert_eq!(spec.extra_networks, vec![("back".to_string(), back)]);
}

#[test]
fn aliases_lose_duplicates_and_what_docker_added() {
    // `--network-alias web --network-alias web` shows twice; Docker added the
    // short id; the container's own name is resolvable without an alias.
    let endpoint = EndpointSettings {
        aliases: strings(&["web", "web", SHORT_ID, "app", "custom-host", "db"]),
        ..Default::default()
    };
    let spec = Case::new()
        .config(|c| c.hostname = Some("custom-host".into()))
        .host(|h| h.network_mode = Some("front".into()))
        .network("front", endpoint)
        .spec();
    let body = serde_json::to_value(&spec.body).expect("serialises");
    let aliases = &body["NetworkingConfig"]["EndpointsConfig"]["front"]["Aliases"];
    assert_eq!(aliases, &json!(["web", "custom-host", "db"]));
}

#[test]
fn links_and_driver_options_on_a_user_network_are_carried() {
    let endpoint = EndpointSettings {
        links: strings(&["db:database"]),
        driver_opts: map(&[("com.example.opt", "1")]),
        ..Default::default()
    };
    let spec =
        Case::new().network("front", endpoint.clone()).network("bridge", EndpointSettings::default()).spec();
    assert_eq!(spec.extra_networks, vec![("front".to_string(), endpoint)]);
}

#[test]
fn empty_static_addresses_and_driver_options_are_not_sent() {
    // A network joined without --ip shows `"IPAMConfig": {}` and `"DriverOpts": {}`.
    let endpoint = EndpointSettings {
        ipam_config: Some(EndpointIpamConfig {
            ipv4_address: Some(String::new()),
            ipv6_address: None,
            link_local_ips: Some(vec![]),
        }),
        driver_opts: map(&[]),
        aliases: strings(&["x"]),
        ..Default::default()
    };
    let spec = Case::new().host(|h| h.network_mode = Some("front".into())).network("front", endpoint).spec();
    let body = serde_json::to_value(&spec.body).expect("serialises");
    assert_eq!(body["NetworkingConfig"]["EndpointsConfig"]["front"], json!({"Aliases": ["x"]}));
}

#[test]
fn the_default_bridge_alone_is_carried_as_network_mode_only() {
    for mode in ["default", "bridge"] {
        let spec = Case::new()
            .host(|h| h.network_mode = Some(mode.into()))
            .network("bridge", started_endpoint(&[], Some("172.17.0.3"), None))
            .spec();
        let host = spec.body.host_config.as_ref().expect("host config");
        assert_eq!(host.network_mode.as_deref(), Some(mode));
        assert_eq!(spec.body.networking_config, None, "{mode}: no endpoint settings");
        assert!(spec.extra_networks.is_empty(), "{mode}: nothing to connect");
    }
}

#[test]
fn user_networks_beside_the_default_bridge_are_connected_after_create() {
    let spec = Case::new()
        .network("bridge", started_endpoint(&[], None, None))
        .network("zeta", EndpointSettings { aliases: strings(&["z"]), ..Default::default() })
        .network("alpha", EndpointSettings { aliases: strings(&["a"]), ..Default::default() })
        .spec();
    assert_eq!(spec.body.networking_config, None);
    assert_eq!(names(&spec.extra_networks), ["alpha", "zeta"], "sorted by name");
}

#[test]
fn the_default_bridge_as_a_second_network_is_connected_with_no_settings() {
    let spec = Case::new()
        .host(|h| h.network_mode = Some("front".into()))
        .network("front", EndpointSettings { aliases: strings(&["web"]), ..Default::default() })
        .network("bridge", started_endpoint(&["ignored"], Some("172.17.0.3"), None))
        .spec();
    assert_eq!(spec.extra_networks, vec![("bridge".to_string(), EndpointSettings::default())]);
}

#[test]
fn host_none_and_container_modes_carry_no_endpoints() {
    let shared = format!("container:{PEER_ID}");
    for (mode, network) in [("host", "host"), ("none", "none"), (shared.as_str(), "bridge")] {
        let spec = Case::new()
            .peer(PEER_ID, "peer")
            .host(|h| h.network_mode = Some(mode.into()))
            .network(network, EndpointSettings::default())
            .spec();
        assert_eq!(spec.body.networking_config, None, "{mode}");
        assert!(spec.extra_networks.is_empty(), "{mode}");
    }
}

#[test]
fn a_network_given_by_id_and_listed_twice_is_joined_once() {
    // `--network c7a09aeaa7e8`, once started, lists the endpoint under the id
    // prefix and under the network's name.
    let endpoint = |id: &str| EndpointSettings {
        aliases: strings(&["x", SHORT_ID]),
        network_id: Some(id.into()),
        ..Default::default()
    };
    let full = "c7a09aeaa7e86a6f70d3dae8dbe61c103b8a25a8c4ca7cb24cefe48c09ac50fa";
    let spec = Case::new()
        .host(|h| h.network_mode = Some("c7a09aeaa7e8".into()))
        .network("c7a09aeaa7e8", endpoint(full))
        .network("appnet", endpoint(full))
        .network("other", endpoint("0ther"))
        .spec();
    let body = serde_json::to_value(&spec.body).expect("serialises");
    assert_eq!(body["NetworkingConfig"]["EndpointsConfig"], json!({"c7a09aeaa7e8": {"Aliases": ["x"]}}));
    assert_eq!(names(&spec.extra_networks), ["other"]);
}

#[test]
fn without_network_settings_only_the_mode_is_carried() {
    let spec = Case::new().host(|h| h.network_mode = Some("front".into())).spec();
    let body = serde_json::to_value(&spec.body).expect("serialises");
    assert_eq!(body["HostConfig"]["NetworkMode"], "front");
    assert_eq!(body["NetworkingConfig"], Value::Null);
}
