//! `Config`: what the user set is kept, what the old image set is dropped.

use bollard::models::{ContainerConfig, HealthConfig, ImageConfig, PortBinding};
use serde_json::{json, Value};

use super::fixture::{map, strings, Case, NEW_REF, PEER_ID, SHORT_ID};
use super::RecreateError;

fn health(test: &[&str], interval: i64) -> HealthConfig {
    HealthConfig { test: strings(test), interval: Some(interval), ..Default::default() }
}

type SetConfig = fn(&mut ContainerConfig);

#[test]
fn every_user_set_config_field_is_kept() {
    // The old image sets nothing: every value the container has is the user's.
    let rows: &[(&str, SetConfig)] = &[
        ("Env", |c| c.env = strings(&["A=1", "B=2"])),
        ("Cmd", |c| c.cmd = strings(&["serve", "--port", "80"])),
        ("Entrypoint", |c| c.entrypoint = strings(&["/bin/app"])),
        ("Labels", |c| c.labels = map(&[("team", "core")])),
        ("User", |c| c.user = Some("1000:1000".into())),
        ("WorkingDir", |c| c.working_dir = Some("/srv".into())),
        ("Hostname", |c| c.hostname = Some("custom-host".into())),
        ("Domainname", |c| c.domainname = Some("example.test".into())),
        ("Tty", |c| c.tty = Some(true)),
        ("OpenStdin", |c| c.open_stdin = Some(true)),
        ("StdinOnce", |c| c.stdin_once = Some(true)),
        ("AttachStdin", |c| c.attach_stdin = Some(true)),
        ("AttachStdout", |c| c.attach_stdout = Some(true)),
        ("AttachStderr", |c| c.attach_stderr = Some(false)),
        ("StopSignal", |c| c.stop_signal = Some("SIGINT".into())),
        ("StopTimeout", |c| c.stop_timeout = Some(7)),
        ("Healthcheck", |c| c.healthcheck = Some(health(&["CMD", "/app", "health"], 1_000_000_000))),
        ("NetworkDisabled", |c| c.network_disabled = Some(true)),
        ("Volumes", |c| c.volumes = strings(&["/anon"])),
        ("ExposedPorts", |c| c.exposed_ports = strings(&["9000/tcp"])),
        ("Shell", |c| c.shell = strings(&["/bin/bash", "-c"])),
    ];
    for (field, set) in rows {
        let case = Case::new().config(*set);
        let (old, new) = (case.old_config_json(), case.body_json());
        assert_ne!(old[field], Value::Null, "{field}: the row sets it");
        assert_eq!(new[field], old[field], "{field} is carried");
    }
}

#[test]
fn values_the_old_image_set_are_dropped_so_the_new_image_defaults_apply() {
    // Each row: the old image set the value, so inspect shows it on the container too.
    let rows = [
        ("Env", json!(["PATH=/bin", "MODE=old"])),
        ("Labels", json!({"version": "1"})),
        ("Cmd", json!(["serve"])),
        ("Entrypoint", json!(["/app"])),
        ("WorkingDir", json!("/old")),
        ("User", json!("app")),
        ("ExposedPorts", json!({"7000/tcp": {}})),
        ("Volumes", json!({"/data": {}})),
        ("Healthcheck", json!({"Test": ["CMD", "probe"], "Interval": 5_000_000_000_i64})),
        ("StopSignal", json!("SIGUSR1")),
        ("Shell", json!(["/bin/sh", "-c"])),
    ];
    for (field, value) in rows {
        let image: ImageConfig = serde_json::from_value(json!({ field: value })).expect("image config");
        let container: ContainerConfig = serde_json::from_value(json!({ field: value })).expect("config");
        let body = Case::new()
            .old_image(|i| *i = image)
            .config(|c| *c = container)
            .new_image(|i| i.working_dir = Some("/new".into()))
            .body_json();
        assert_eq!(body[field], Value::Null, "{field} came from the old image");
    }
}

#[test]
fn user_env_shadowing_an_image_default_is_kept_even_when_the_new_image_changes_it() {
    let body = Case::new()
        .old_image(|i| i.env = strings(&["PATH=/bin", "MODE=image", "OLD_ONLY=x"]))
        .config(|c| c.env = strings(&["MODE=user", "EXTRA=1", "PATH=/bin", "OLD_ONLY=x"]))
        .new_image(|i| i.env = strings(&["PATH=/usr/bin", "MODE=new-image"]))
        .body_json();
    assert_eq!(body["Env"], json!(["MODE=user", "EXTRA=1"]), "user entries, in their order");
}

#[test]
fn user_label_on_an_image_key_is_kept_and_image_labels_are_dropped() {
    let body = Case::new()
        .old_image(|i| i.labels = map(&[("shared", "image"), ("old.only", "1")]))
        .config(|c| c.labels = map(&[("shared", "user"), ("old.only", "1"), ("mine", "u")]))
        .body_json();
    assert_eq!(body["Labels"], json!({"shared": "user", "mine": "u"}));
}

#[test]
fn user_cmd_under_the_image_entrypoint_is_kept_alone() {
    let body = Case::new()
        .old_image(|i| (i.entrypoint, i.cmd) = (strings(&["/app"]), strings(&["serve"])))
        .config(|c| (c.entrypoint, c.cmd) = (strings(&["/app"]), strings(&["migrate"])))
        .body_json();
    assert_eq!((&body["Entrypoint"], &body["Cmd"]), (&Value::Null, &json!(["migrate"])));
}

#[test]
fn cmd_is_kept_with_a_user_entrypoint_even_when_it_equals_the_image_cmd() {
    // Docker does not take the image's CMD under a user --entrypoint, so this
    // CMD was the user's: dropping it would run the new image's.
    let body = Case::new()
        .old_image(|i| (i.entrypoint, i.cmd) = (strings(&["/app"]), strings(&["serve"])))
        .config(|c| (c.entrypoint, c.cmd) = (strings(&["/other"]), strings(&["serve"])))
        .body_json();
    assert_eq!((&body["Entrypoint"], &body["Cmd"]), (&json!(["/other"]), &json!(["serve"])));
}

#[test]
fn user_entrypoint_equal_to_the_image_one_shows_as_a_reset_cmd_and_is_kept() {
    // `--entrypoint /app` on an image with ENTRYPOINT /app and CMD serve: inspect
    // shows Cmd null. Leaving Entrypoint unset would bring the image's CMD back.
    let body = Case::new()
        .old_image(|i| (i.entrypoint, i.cmd) = (strings(&["/app"]), strings(&["serve"])))
        .config(|c| (c.entrypoint, c.cmd) = (strings(&["/app"]), None))
        .body_json();
    assert_eq!((&body["Entrypoint"], &body["Cmd"]), (&json!(["/app"]), &Value::Null));
}

#[test]
fn entrypoint_cleared_by_the_user_is_sent_as_docker_no_entrypoint() {
    // `--entrypoint "" app:1 /bin/run`: inspect shows Entrypoint null.
    let body = Case::new()
        .old_image(|i| (i.entrypoint, i.cmd) = (strings(&["/app"]), strings(&["serve"])))
        .config(|c| (c.entrypoint, c.cmd) = (None, strings(&["/bin/run"])))
        .body_json();
    assert_eq!((&body["Entrypoint"], &body["Cmd"]), (&json!([""]), &json!(["/bin/run"])));
}

#[test]
fn healthcheck_override_of_one_field_keeps_the_new_image_test() {
    let body = Case::new()
        .old_image(|i| i.healthcheck = Some(health(&["CMD", "old-probe"], 5_000_000_000)))
        .config(|c| c.healthcheck = Some(health(&["CMD", "old-probe"], 1_000_000_000)))
        .body_json();
    assert_eq!(body["Healthcheck"], json!({"Interval": 1_000_000_000}));
}

#[test]
fn healthcheck_disabled_by_the_user_stays_disabled() {
    let body = Case::new()
        .old_image(|i| i.healthcheck = Some(health(&["CMD", "probe"], 5)))
        .config(|c| c.healthcheck = Some(HealthConfig { test: strings(&["NONE"]), ..Default::default() }))
        .body_json();
    assert_eq!(body["Healthcheck"], json!({"Test": ["NONE"]}));
}

#[test]
fn hostname_is_kept_only_when_it_is_not_docker_default() {
    let rows = [
        (SHORT_ID, "default", Value::Null),
        ("custom", "default", json!("custom")),
        ("", "default", Value::Null),
    ];
    // Sharing a peer's network namespace, inspect shows the own short id and
    // the daemon refuses any hostname.
    let peer = format!("container:{PEER_ID}");
    let shared = [("custom", peer.as_str(), Value::Null)];
    for (hostname, mode, expected) in rows.into_iter().chain(shared) {
        let body = Case::new()
            .peer(PEER_ID, "peer")
            .config(|c| c.hostname = Some(hostname.into()))
            .host(|h| h.network_mode = Some(mode.into()))
            .body_json();
        assert_eq!(body["Hostname"], expected, "hostname {hostname:?} in mode {mode}");
    }
}

#[test]
fn a_published_port_stays_exposed_even_when_only_the_old_image_exposed_it() {
    let binding = |port: &str| Some(vec![PortBinding { host_ip: None, host_port: Some(port.into()) }]);
    let body = Case::new()
        .old_image(|i| i.exposed_ports = strings(&["7000/tcp", "7001/tcp"]))
        .config(|c| c.exposed_ports = strings(&["9000/udp", "7001/tcp", "7000/tcp", "8080/tcp"]))
        .host(|h| {
            h.port_bindings =
                Some([("7000/tcp".to_string(), binding("7000")), ("8080/tcp".into(), binding(""))].into())
        })
        .body_json();
    assert_eq!(body["ExposedPorts"], json!({"7000/tcp": {}, "8080/tcp": {}, "9000/udp": {}}));
}

#[test]
fn exposed_ports_are_not_sent_in_a_shared_network_namespace() {
    // The daemon refuses them there; inspect shows only the image's.
    let body = Case::new()
        .peer(PEER_ID, "peer")
        .config(|c| c.exposed_ports = strings(&["9000/tcp"]))
        .host(|h| h.network_mode = Some(format!("container:{PEER_ID}")))
        .body_json();
    assert_eq!(body["ExposedPorts"], Value::Null);
}

#[test]
fn the_new_container_runs_the_new_reference_and_its_image_decides_defaults() {
    let case = Case::new().new_image(|i| i.env = strings(&["NEW=1"]));
    let body = case.body_json();
    assert_eq!(body["Image"], NEW_REF);
    assert_eq!(body["Env"], Value::Null, "the daemon merges the new image's ENV itself");
}

#[test]
fn inspect_data_without_id_config_or_host_config_is_refused() {
    type Remove = fn(&mut Case);
    let rows: [(&str, Remove); 3] = [
        ("Id", |c| c.old.id = None),
        ("Config", |c| c.old.config = None),
        ("HostConfig", |c| c.old.host_config = None),
    ];
    for (part, remove) in rows {
        let mut case = Case::new();
        remove(&mut case);
        assert_eq!(case.error(), RecreateError::Missing { container: "app".into(), part }, "{part}");
    }
}
