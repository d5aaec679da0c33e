//! `HostConfig`: carried whole, with Docker's inspect-only forms rewritten
//! and anonymous volumes pinned by name.

use bollard::models::{
    DeviceMapping, DeviceRequest, HostConfig, HostConfigCgroupnsModeEnum, HostConfigIsolationEnum,
    HostConfigLogConfig, Mount, MountBindOptions, MountBindOptionsPropagationEnum, MountType, PortBinding,
    ResourcesUlimits, RestartPolicy, RestartPolicyNameEnum, ThrottleDevice,
};
use serde_json::{json, Value};

use super::fixture::{map, strings, volume_point, Case, PEER_ID};
use super::{Namespace, RecreateError};

type SetHost = fn(&mut HostConfig);

#[test]
fn every_host_config_field_the_user_set_is_carried() {
    let rows: &[(&str, SetHost)] = &[
        ("Binds", |h| h.binds = strings(&["data:/data", "/srv/conf:/conf:ro,rslave", "/logs:/logs:z"])),
        ("Mounts", |h| {
            h.mounts = Some(vec![Mount {
                target: Some("/m".into()),
                source: Some("/host".into()),
                typ: Some(MountType::BIND),
                read_only: Some(true),
                bind_options: Some(MountBindOptions {
                    propagation: Some(MountBindOptionsPropagationEnum::RSHARED),
                    ..Default::default()
                }),
                ..Default::default()
            }])
        }),
        ("Tmpfs", |h| h.tmpfs = map(&[("/scratch", "size=1m")])),
        ("PortBindings", |h| {
            let b = PortBinding { host_ip: Some("127.0.0.1".into()), host_port: Some("8080".into()) };
            h.port_bindings = Some([("80/tcp".to_string(), Some(vec![b]))].into())
        }),
        ("PublishAllPorts", |h| h.publish_all_ports = Some(true)),
        ("RestartPolicy", |h| {
            h.restart_policy = Some(RestartPolicy {
                name: Some(RestartPolicyNameEnum::ON_FAILURE),
                maximum_retry_count: Some(3),
            })
        }),
        ("Memory", |h| h.memory = Some(64 << 20)),
        ("MemoryReservation", |h| h.memory_reservation = Some(32 << 20)),
        ("MemorySwap", |h| h.memory_swap = Some(128 << 20)),
        ("MemorySwappiness", |h| h.memory_swappiness = Some(10)),
        ("NanoCpus", |h| h.nano_cpus = Some(500_000_000)),
        ("CpuShares", |h| h.cpu_shares = Some(512)),
        ("CpuQuota", |h| h.cpu_quota = Some(50_000)),
        ("CpuPeriod", |h| h.cpu_period = Some(100_000)),
        ("CpusetCpus", |h| h.cpuset_cpus = Some("0-1".into())),
        ("CpusetMems", |h| h.cpuset_mems = Some("0".into())),
        ("PidsLimit", |h| h.pids_limit = Some(100)),
        ("BlkioWeight", |h| h.blkio_weight = Some(300)),
        ("BlkioDeviceReadBps", |h| {
            h.blkio_device_read_bps =
                Some(vec![ThrottleDevice { path: Some("/dev/sda".into()), rate: Some(1 << 20) }])
        }),
        ("CapAdd", |h| h.cap_add = strings(&["CAP_NET_ADMIN"])),
        ("CapDrop", |h| h.cap_drop = strings(&["CAP_MKNOD"])),
        ("Devices", |h| {
            h.devices = Some(vec![DeviceMapping {
                path_on_host: Some("/dev/fuse".into()),
                path_in_container: Some("/dev/fuse".into()),
                cgroup_permissions: Some("rwm".into()),
            }])
        }),
        ("DeviceCgroupRules", |h| h.device_cgroup_rules = strings(&["c 10:229 rwm"])),
        ("DeviceRequests", |h| {
            h.device_requests = Some(vec![DeviceRequest {
                driver: Some("nvidia".into()),
                count: Some(-1),
                capabilities: Some(vec![vec!["gpu".into()]]),
                ..Default::default()
            }])
        }),
        ("Ulimits", |h| {
            h.ulimits = Some(vec![ResourcesUlimits {
                name: Some("nofile".into()),
                soft: Some(1024),
                hard: Some(2048),
            }])
        }),
        ("LogConfig", |h| {
            h.log_config = Some(HostConfigLogConfig {
                typ: Some("json-file".into()),
                config: map(&[("max-size", "1m")]),
            })
        }),
        ("ExtraHosts", |h| h.extra_hosts = strings(&["db.local:10.1.2.3"])),
        ("Dns", |h| h.dns = strings(&["10.0.0.53"])),
        ("DnsSearch", |h| h.dns_search = strings(&["example.test"])),
        ("DnsOptions", |h| h.dns_options = strings(&["ndots:2"])),
        ("Sysctls", |h| h.sysctls = map(&[("net.ipv4.ip_forward", "1")])),
        ("SecurityOpt", |h| h.security_opt = strings(&["no-new-privileges"])),
        ("Init", |h| h.init = Some(true)),
        ("Privileged", |h| h.privileged = Some(true)),
        ("ReadonlyRootfs", |h| h.readonly_rootfs = Some(true)),
        ("IpcMode", |h| h.ipc_mode = Some("shareable".into())),
        ("PidMode", |h| h.pid_mode = Some("host".into())),
        ("UTSMode", |h| h.uts_mode = Some("host".into())),
        ("UsernsMode", |h| h.userns_mode = Some("host".into())),
        ("CgroupnsMode", |h| h.cgroupns_mode = Some(HostConfigCgroupnsModeEnum::PRIVATE)),
        ("CgroupParent", |h| h.cgroup_parent = Some("/custom".into())),
        ("ShmSize", |h| h.shm_size = Some(32 << 20)),
        ("GroupAdd", |h| h.group_add = strings(&["123"])),
        ("OomScoreAdj", |h| h.oom_score_adj = Some(100)),
        ("OomKillDisable", |h| h.oom_kill_disable = Some(true)),
        ("Runtime", |h| h.runtime = Some("runc".into())),
        ("Isolation", |h| h.isolation = Some(HostConfigIsolationEnum::DEFAULT)),
        ("AutoRemove", |h| h.auto_remove = Some(true)),
        ("MaskedPaths", |h| h.masked_paths = strings(&[])),
        ("ReadonlyPaths", |h| h.readonly_paths = strings(&[])),
        ("StorageOpt", |h| h.storage_opt = map(&[("size", "10G")])),
        ("NetworkMode", |h| h.network_mode = Some("host".into())),
    ];
    for (field, set) in rows {
        let case = Case::new().host(*set);
        let (old, new) = (case.old_host_json(), case.body_json());
        assert_ne!(old[field], Value::Null, "{field}: the row sets it");
        assert_eq!(new["HostConfig"][field], old[field], "HostConfig.{field} is carried");
    }
}

#[test]
fn shared_namespaces_follow_the_peer_by_name() {
    let rows: [(&str, SetHost); 3] = [
        ("NetworkMode", |h| h.network_mode = Some(format!("container:{PEER_ID}"))),
        ("IpcMode", |h| h.ipc_mode = Some(format!("container:{PEER_ID}"))),
        ("PidMode", |h| h.pid_mode = Some(format!("container:{PEER_ID}"))),
    ];
    for (field, set) in rows {
        let body = Case::new().peer(PEER_ID, "/db").host(set).body_json();
        assert_eq!(body["HostConfig"][field], "container:db", "{field}");
    }
}

#[test]
fn a_shared_namespace_with_an_unknown_peer_is_refused() {
    let rows: [(Namespace, SetHost); 3] = [
        (Namespace::Network, |h| h.network_mode = Some(format!("container:{PEER_ID}"))),
        (Namespace::Ipc, |h| h.ipc_mode = Some(format!("container:{PEER_ID}"))),
        (Namespace::Pid, |h| h.pid_mode = Some(format!("container:{PEER_ID}"))),
    ];
    for (namespace, set) in rows {
        let error = Case::new().peer("someone-else", "other").host(set).error();
        let expected =
            RecreateError::UnknownPeer { container: "app".into(), namespace, peer_id: PEER_ID.into() };
        assert_eq!(error, expected);
    }
}

#[test]
fn legacy_links_are_sent_in_the_form_create_accepts() {
    // Inspect shows `--link db:database` as `/db:/app/database`.
    let body =
        Case::new().host(|h| h.links = strings(&["/db:/app/database", "/cache:/app/cache"])).body_json();
    assert_eq!(body["HostConfig"]["Links"], json!(["db:database", "cache:cache"]));
}

#[test]
fn a_link_that_followed_its_peer_into_a_backup_names_the_peer_again() {
    let backup = crate::swap::backup_name("db", "k3x9");
    let body = Case::new().host(|h| h.links = strings(&[&format!("/{backup}:/app/database")])).body_json();
    assert_eq!(body["HostConfig"]["Links"], json!(["db:database"]));
}

#[test]
fn volumes_from_keeps_names_and_modes_and_turns_known_ids_into_names() {
    let body = Case::new()
        .peer(PEER_ID, "/store")
        .host(|h| h.volumes_from = strings(&["config:ro", &format!("{PEER_ID}:rw"), "plain"]))
        .body_json();
    assert_eq!(body["HostConfig"]["VolumesFrom"], json!(["config:ro", "store:rw", "plain"]));
}

#[test]
fn anonymous_volumes_are_carried_by_name_so_their_data_follows() {
    // The old image's VOLUME /data and the user's `-v /cache` are anonymous
    // volumes, both listed in Config.Volumes; a read-only one stays so.
    let body = Case::new()
        .old_image(|i| i.volumes = strings(&["/data"]))
        .config(|c| c.volumes = strings(&["/data", "/cache"]))
        .mount(volume_point("aaaa", "/data", true))
        .mount(volume_point("bbbb", "/cache", false))
        .body_json();
    assert_eq!(body["HostConfig"]["Binds"], json!(["aaaa:/data", "bbbb:/cache:ro"]));
    assert_eq!(body["Volumes"], json!({"/cache": {}}), "the image's VOLUME is not repeated");
}

#[test]
fn named_volumes_binds_and_tmpfs_are_carried_without_extra_binds() {
    let body = Case::new()
        .old_image(|i| i.volumes = strings(&["/data", "/tmpdata", "/conf"]))
        .config(|c| c.volumes = strings(&["/data", "/tmpdata", "/conf"]))
        .host(|h| {
            h.binds = strings(&["appdata:/data:rw", "/etc/app:/conf:ro"]);
            h.tmpfs = map(&[("/tmpdata", "size=1m")]);
        })
        .mount(volume_point("appdata", "/data", true))
        .body_json();
    assert_eq!(body["HostConfig"]["Binds"], json!(["appdata:/data:rw", "/etc/app:/conf:ro"]));
    assert_eq!(body["HostConfig"]["Tmpfs"], json!({"/tmpdata": "size=1m"}));
}

#[test]
fn an_anonymous_mount_gets_its_volume_as_source() {
    // `--mount type=volume,target=/m` shows no Source in HostConfig.Mounts.
    let anonymous = Mount { target: Some("/m".into()), typ: Some(MountType::VOLUME), ..Default::default() };
    let named = Mount { source: Some("keep".into()), target: Some("/k".into()), ..anonymous.clone() };
    let body = Case::new()
        .host(|h| h.mounts = Some(vec![anonymous, named]))
        .mount(volume_point("cccc", "/m", true))
        .mount(volume_point("keep", "/k", true))
        .body_json();
    let expected = json!([
        {"Type": "volume", "Target": "/m", "Source": "cccc"},
        {"Type": "volume", "Target": "/k", "Source": "keep"},
    ]);
    assert_eq!(body["HostConfig"]["Mounts"], expected);
    assert_eq!(body["HostConfig"]["Binds"], Value::Null, "mounts are not also bound");
}

#[test]
fn volumes_only_volumes_from_brings_are_left_to_volumes_from() {
    let body = Case::new()
        .host(|h| h.volumes_from = strings(&["store"]))
        .mount(volume_point("dddd", "/shared", true))
        .body_json();
    assert_eq!(body["HostConfig"]["Binds"], Value::Null);
    assert_eq!(body["HostConfig"]["VolumesFrom"], json!(["store"]));
}
