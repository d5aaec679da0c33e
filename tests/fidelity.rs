//! Faithful recreation, proven on the real engine: a container carrying
//! every kind of setting is upgraded to an image whose ENV, LABEL, CMD,
//! WORKDIR and EXPOSE differ. Every setting the user made is equal in
//! `docker inspect` before and after; what only the old image set is gone;
//! the new image's defaults apply; the volume's data is intact.
#![cfg(feature = "docker-tests")]

mod common;

use serde_json::Value;

use common::{ImageSpec, TestRun};

fn inspect(run: &TestRun, name: &str) -> Value {
    let text = run.docker(&["inspect", name]);
    let all: Value = serde_json::from_str(&text).expect("inspect is JSON");
    all[0].clone()
}

/// A user network with an IPv4 and an IPv6 subnet picked from the run id,
/// retried past subnets other runs hold.
fn network(run: &TestRun, suffix: &str, seed: u32) -> (String, String, String) {
    let name = run.name(suffix);
    let label = run.label();
    for attempt in 0..20u32 {
        let n = (seed + attempt * 7) % 250 + 1;
        let (v4, v6) = (format!("10.213.{n}.0/24"), format!("fd42:213:{n:x}::/64"));
        let created = run.try_docker(&[
            "network", "create", "--label", &label, "--ipv6", "--subnet", &v4, "--subnet", &v6, &name,
        ]);
        if created.is_ok() {
            return (name, format!("10.213.{n}.10"), format!("fd42:213:{n:x}::10"));
        }
    }
    panic!("no free test subnet for {name}");
}

fn strings(v: &Value) -> Vec<String> {
    let mut s: Vec<String> =
        v.as_array().into_iter().flatten().filter_map(|x| x.as_str().map(str::to_string)).collect();
    s.sort();
    s
}

#[test]
fn every_user_setting_survives_and_image_defaults_follow_the_new_image() {
    let run = TestRun::new("fidelity_every_setting");
    let registry = run.registry();
    let repo = registry.repo("app");
    let (old, new) = (format!("{repo}:1"), format!("{repo}:2"));
    run.build_image(
        &old,
        &ImageSpec {
            env: vec![("SHARED", "from-old-image"), ("OLD_ONLY", "x")],
            labels: vec![("old.label", "1"), ("shared.label", "old")],
            cmd: vec!["sleep"],
            workdir: Some("/old"),
            expose: vec!["7000"],
            ..Default::default()
        },
    );
    run.build_image(
        &new,
        &ImageSpec {
            env: vec![("SHARED", "from-new-image"), ("NEW_ONLY", "y")],
            labels: vec![("new.label", "2"), ("shared.label", "new")],
            workdir: Some("/new"),
            expose: vec!["7001"],
            ..Default::default()
        },
    );
    run.push(&old);
    run.push(&new);

    let seed = std::process::id() % 200;
    let (net_a, ip_a, ip6_a) = network(&run, "net-a", seed);
    let (net_b, ip_b, _) = network(&run, "net-b", seed + 101);
    let volume = run.volume("data");
    let bind_dir = run.write_file("bind/hello", "from the host\n");
    let bind = format!("{}:/bind:ro", bind_dir.parent().expect("dir").display());
    let vol = format!("{volume}:/data");
    let name = run.name("full");
    let label = run.label();
    let args = [
        "create",
        "--name",
        &name,
        "--label",
        &label,
        "--network",
        &net_a,
        "--ip",
        &ip_a,
        "--ip6",
        &ip6_a,
        "--network-alias",
        "alpha",
        "-v",
        &vol,
        "-v",
        &bind,
        "--tmpfs",
        "/scratch:size=1m",
        "-p",
        "127.0.0.1::8080",
        "--restart",
        "on-failure:3",
        "--memory",
        "64m",
        "--cpus",
        "0.5",
        "--pids-limit",
        "100",
        "--cap-add",
        "NET_ADMIN",
        "--cap-drop",
        "MKNOD",
        "--ulimit",
        "nofile=1024:2048",
        "--add-host",
        "db.local:10.1.2.3",
        "--dns",
        "10.0.0.53",
        "--dns-search",
        "example.test",
        "--hostname",
        "custom-host",
        "--log-opt",
        "max-size=1m",
        "--log-opt",
        "max-file=2",
        "--stop-signal",
        "SIGINT",
        "--stop-timeout",
        "7",
        "--init",
        "--security-opt",
        "no-new-privileges",
        "--health-cmd",
        "/testbox health",
        "--health-interval",
        "1s",
        "--health-retries",
        "2",
        "-e",
        "SHARED=set-by-user",
        "-e",
        "USER_ONLY=u",
        "--label",
        "user.label=u",
        "--label",
        "shared.label=user",
        &old,
    ];
    run.docker(&args);
    run.docker(&["network", "connect", "--ip", &ip_b, "--alias", "beta", &net_b, &name]);
    run.docker(&["start", &name]);
    let marker = run.write_file("marker", "precious data\n");
    run.docker(&["cp", marker.to_str().expect("utf-8"), &format!("{name}:/data/marker")]);
    let before = inspect(&run, &name);

    let state = run.write_file("state/.keep", "").parent().expect("dir").display().to_string();
    // The healthcheck override is a CMD-SHELL (all the docker CLI can make)
    // and scratch has no shell: gate on "running"; the override itself must
    // still be carried.
    let out = run.cli(&[
        "upgrade",
        &name,
        "--image",
        &new,
        "--state-dir",
        &state,
        "--stable",
        "1s",
        "--probe",
        "running",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let after = inspect(&run, &name);
    assert_ne!(before["Id"], after["Id"]);
    assert_eq!(after["Config"]["Image"], new.as_str());

    // Every user setting equal before and after.
    let host_fields = [
        "Binds",
        "Tmpfs",
        "PortBindings",
        "RestartPolicy",
        "Memory",
        "NanoCpus",
        "PidsLimit",
        "CapAdd",
        "CapDrop",
        "Ulimits",
        "ExtraHosts",
        "Dns",
        "DnsSearch",
        "LogConfig",
        "Init",
        "SecurityOpt",
        "NetworkMode",
        "Privileged",
        "ReadonlyRootfs",
        "ShmSize",
        "Mounts",
    ];
    for field in host_fields {
        assert_eq!(after["HostConfig"][field], before["HostConfig"][field], "HostConfig.{field}");
    }
    for field in ["Hostname", "StopSignal", "StopTimeout", "Healthcheck", "User", "Tty", "OpenStdin"] {
        assert_eq!(after["Config"][field], before["Config"][field], "Config.{field}");
    }
    assert_eq!(after["Config"]["Hostname"], "custom-host");
    for (net, ip, alias) in [(&net_a, &ip_a, "alpha"), (&net_b, &ip_b, "beta")] {
        let (b, a) =
            (&before["NetworkSettings"]["Networks"][net], &after["NetworkSettings"]["Networks"][net]);
        assert_eq!(a["IPAMConfig"], b["IPAMConfig"], "{net} static addresses");
        assert_eq!(a["IPAddress"], ip.as_str(), "{net} runs on its static IPv4");
        let aliases = strings(&a["Aliases"]);
        assert!(aliases.contains(&alias.to_string()), "{net} aliases {aliases:?}");
        let old_short = &before["Id"].as_str().expect("id")[..12];
        assert!(
            !aliases.iter().any(|x| x == old_short),
            "the old short-id alias is not carried: {aliases:?}"
        );
    }
    assert_eq!(after["NetworkSettings"]["Networks"][&net_a]["GlobalIPv6Address"], ip6_a.as_str());
    let mounts = |v: &Value| {
        let mut m: Vec<(String, String)> = v["Mounts"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|m| {
                (
                    m["Destination"].as_str().unwrap_or("").to_string(),
                    m["Name"].as_str().unwrap_or(m["Source"].as_str().unwrap_or("")).to_string(),
                )
            })
            .collect();
        m.sort();
        m
    };
    assert_eq!(mounts(&after), mounts(&before), "the same volumes and binds");

    // Env and labels: the user's kept (also where they shadow an image
    // default), the old image's gone, the new image's present.
    let env = strings(&after["Config"]["Env"]);
    for kept in ["SHARED=set-by-user", "USER_ONLY=u", "NEW_ONLY=y"] {
        assert!(env.contains(&kept.to_string()), "{kept} in {env:?}");
    }
    assert!(!env.iter().any(|e| e.starts_with("OLD_ONLY=")), "old image env gone: {env:?}");
    let labels = &after["Config"]["Labels"];
    assert_eq!(labels["user.label"], "u");
    assert_eq!(labels["shared.label"], "user");
    assert_eq!(labels["new.label"], "2");
    assert!(labels.get("old.label").is_none(), "old image label gone: {labels}");

    // CMD, WORKDIR, EXPOSE follow the new image; the published port stays exposed.
    assert_eq!(after["Config"]["Cmd"], Value::Null, "old image CMD gone");
    assert_eq!(after["Config"]["WorkingDir"], "/new");
    let exposed: Vec<String> =
        after["Config"]["ExposedPorts"].as_object().map(|o| o.keys().cloned().collect()).unwrap_or_default();
    assert!(exposed.contains(&"7001/tcp".to_string()), "{exposed:?}");
    assert!(exposed.contains(&"8080/tcp".to_string()), "published port stays exposed: {exposed:?}");
    assert!(!exposed.contains(&"7000/tcp".to_string()), "old image EXPOSE gone: {exposed:?}");

    // Data intact, and the new container runs the new image's program.
    let dest = run.write_file("out/.keep", "").parent().expect("dir").join("marker");
    run.docker(&["cp", &format!("{name}:/data/marker"), dest.to_str().expect("utf-8")]);
    assert_eq!(std::fs::read_to_string(&dest).expect("marker"), "precious data\n");
    assert_eq!(run.inspect(&name, "{{.State.Running}}"), "true");
}

#[test]
fn container_network_mode_follows_its_peer_by_name() {
    let run = TestRun::new("fidelity_container_netmode");
    let (_registry, repo) = run.registry_with_versions();
    run.run_container("peer", &format!("{repo}:1"), &[]);
    let peer = run.name("peer");
    let side = run.run_in_network_of(&peer, "side", &format!("{repo}:1"), &[]);
    let state = run.write_file("state/.keep", "").parent().expect("dir").display().to_string();
    let upgrade = |name: &str| {
        let image = format!("{repo}:2");
        let out = run.cli(&["upgrade", name, "--image", &image, "--state-dir", &state, "--stable", "1s"]);
        assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    };
    // The peer is swapped first: its old id is gone when the side container
    // is recreated, which must still find the peer by its name.
    upgrade(&peer);
    upgrade(&side);
    let peer_id = run.inspect(&peer, "{{.Id}}");
    assert_eq!(
        run.inspect(&side, "{{.HostConfig.NetworkMode}}"),
        format!("container:{peer_id}"),
        "joined the new peer"
    );
    assert_eq!(run.inspect(&side, "{{.State.Running}}"), "true");
}

#[test]
fn containers_sharing_the_network_follow_the_upgrade_and_the_rollback() {
    let run = TestRun::new("fidelity_network_dependents");
    let (_registry, repo) = run.registry_with_versions();
    let broken = ImageSpec {
        env: vec![("TESTBOX_EXIT_AFTER_MS", "300"), ("TESTBOX_EXIT_CODE", "3")],
        ..Default::default()
    };
    run.publish(&format!("{repo}:broken"), &broken);
    run.run_container("vpn", &format!("{repo}:1"), &[]);
    let vpn = run.name("vpn");
    let volume = run.name("data");
    run.docker(&["volume", "create", "--label", &run.label(), &volume]);
    let mount = format!("{volume}:/data");
    let client = run.run_in_network_of(&vpn, "client", &format!("{repo}:1"), &["-v", &mount]);
    assert_eq!(run.netns(&client), run.netns(&vpn), "set-up: one namespace");
    let state = run.write_file("state/.keep", "").parent().expect("dir").display().to_string();
    let upgrade = |tag: &str| {
        let image = format!("{repo}:{tag}");
        run.cli(&["upgrade", &vpn, "--image", &image, "--state-dir", &state, "--stable", "1s"])
    };

    // Upgraded: the client is recreated (same image, same volume) inside
    // the new container's namespace, not left with loopback only.
    let out = upgrade("2");
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let vpn_id = run.inspect(&vpn, "{{.Id}}");
    assert_eq!(run.inspect(&client, "{{.HostConfig.NetworkMode}}"), format!("container:{vpn_id}"));
    assert_eq!(run.inspect(&client, "{{.State.Running}}"), "true");
    assert_eq!(run.inspect(&client, "{{.Config.Image}}"), format!("{repo}:1"), "the client keeps its image");
    assert_eq!(run.inspect(&client, "{{range .Mounts}}{{.Name}}{{end}}"), volume, "and its volume");
    assert_eq!(run.netns(&client), run.netns(&vpn), "the client shares the new namespace");
    // Its recreation is an op of its own, and says why.
    let out = run.cli(&["status", "--state-dir", &state, "--output", "json"]);
    let status: Value = serde_json::from_slice(&out.stdout).expect("status is JSON");
    let rows = status["containers"].as_array().cloned().unwrap_or_default();
    let row = rows.iter().find(|r| r["container"] == client.as_str()).expect("the client has an op");
    assert_eq!(row["outcome"], "committed", "{row}");
    assert_eq!(row["follows"], vpn.as_str(), "{row}");

    // Rolled back: the old container is back with its id, and the client is
    // restarted into its fresh namespace.
    let client_id = run.inspect(&client, "{{.Id}}");
    let out = upgrade("broken");
    assert_eq!(out.status.code(), Some(6), "rolled back: {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(run.inspect(&vpn, "{{.Id}}"), vpn_id);
    assert_eq!(run.inspect(&client, "{{.Id}}"), client_id, "a restart is enough");
    assert_eq!(run.inspect(&client, "{{.State.Running}}"), "true");
    assert_eq!(run.netns(&client), run.netns(&vpn), "the client shares the restored namespace");

    let names =
        run.docker(&["ps", "-a", "--filter", &format!("label={}", run.label()), "--format", "{{.Names}}"]);
    assert!(!names.contains("--cu-"), "no temporary or backup containers left: {names}");
}
