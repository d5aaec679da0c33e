//! Crash safety: the upgrader is SIGKILLed right after each journal step,
//! then `recover` runs. Every time, exactly one container carries the
//! target's name, it runs the old or the new image, no backup or temporary
//! container is left, and the volume's data is intact.
#![cfg(all(feature = "docker-tests", feature = "fault-injection"))]

mod common;

use std::process::Stdio;
use std::time::Duration;

use common::{ImageSpec, TestRun};

const STEPS: [&str; 5] = ["prepared", "created", "stopped", "started", "committed"];

struct Case {
    run: TestRun,
    _registry: common::TestRegistry,
    repo: String,
    state: String,
}

fn case(test: &str) -> Case {
    let run = TestRun::new(test);
    let (registry, repo) = run.registry_with_versions();
    let state = run.write_file("state/.keep", "").parent().expect("dir").display().to_string();
    Case { run, _registry: registry, repo, state }
}

impl Case {
    /// A running app:1 container named `suffix` with marker data in a volume.
    fn web(&self, suffix: &str) -> String {
        let volume = self.run.volume(&format!("{suffix}-data"));
        let mount = format!("{volume}:/data");
        self.run.run_container(suffix, &format!("{}:1", self.repo), &["-v", &mount]);
        let name = self.run.name(suffix);
        let marker = self.run.write_file(&format!("{suffix}-marker"), "precious data\n");
        self.run.docker(&["cp", marker.to_str().expect("utf-8"), &format!("{name}:/data/marker")]);
        name
    }

    /// Starts `upgrade` with the fault hook and SIGKILLs it right after `step`.
    fn upgrade_killed_after(&self, name: &str, image: &str, step: &str) {
        let args = ["upgrade", name, "--image", image, "--state-dir", &self.state, "--stable", "1s"];
        let marker = format!("fault-injection: paused after {step}");
        let killed = self.run.cli_killed_at(&args, ("CONTAINER_UPGRADER_FAULT_PAUSE_AFTER", step), &marker);
        assert!(killed, "upgrade never reached {step}");
    }

    fn recover(&self) {
        let out = self.run.cli(&["recover", "--state-dir", &self.state]);
        assert!(
            out.status.success(),
            "recover failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// The invariant. Returns the image the survivor runs.
    fn invariant(&self, name: &str) -> String {
        let filter = format!("name=^/{name}$");
        let ids = self.run.docker(&["ps", "-aq", "--filter", &filter]);
        assert_eq!(ids.lines().count(), 1, "exactly one container named {name}: {ids:?}");
        assert_eq!(self.run.inspect(name, "{{.State.Running}}"), "true", "{name} runs");
        let image = self.run.inspect(name, "{{.Config.Image}}");
        assert!(image == format!("{}:1", self.repo) || image == format!("{}:2", self.repo), "{image}");
        let names =
            self.run.docker(&["ps", "-a", "--filter", &self.run.label_filter(), "--format", "{{.Names}}"]);
        assert!(!names.contains("--cu-"), "leftovers after recover: {names}");
        let dest =
            self.run.write_file(&format!("out-{name}/.keep"), "").parent().expect("dir").join("marker");
        self.run.docker(&["cp", &format!("{name}:/data/marker"), dest.to_str().expect("utf-8")]);
        assert_eq!(std::fs::read_to_string(&dest).expect("marker"), "precious data\n", "data intact");
        image
    }
}

#[test]
fn sigkill_at_every_journal_step_then_recover_keeps_the_invariant() {
    let c = case("sigkill_every_step");
    let image = format!("{}:2", c.repo);
    for step in STEPS {
        let name = c.web(step);
        c.upgrade_killed_after(&name, &image, step);
        c.recover();
        let survivor = c.invariant(&name);
        // Before the commit the old container is restored; after it the new one stays.
        let expected = if step == "committed" { &image } else { &format!("{}:1", c.repo) };
        assert_eq!(&survivor, expected, "after a kill at {step}");
        // A second recover has nothing left to do.
        c.recover();
        c.invariant(&name);
    }
}

#[test]
fn sigkill_during_a_failing_gate_then_recover_restores_the_old_container() {
    let c = case("sigkill_failing_gate");
    let broken = format!("{}:broken", c.repo);
    c.run.build_image(
        &broken,
        &ImageSpec {
            env: vec![("TESTBOX_EXIT_AFTER_MS", "200"), ("TESTBOX_EXIT_CODE", "9")],
            ..Default::default()
        },
    );
    c.run.push(&broken);
    let name = c.web("gate");
    let old = c.run.inspect(&name, "{{.Id}}");
    c.upgrade_killed_after(&name, &broken, "started");
    c.recover();
    c.invariant(&name);
    assert_eq!(c.run.inspect(&name, "{{.Id}}"), old, "the very same old container");
}

#[test]
fn a_port_stolen_mid_swap_is_rolled_back_or_recovered() {
    // The old container publishes a host port. Right after it is stopped,
    // another process takes the port: the engine refuses to start the new
    // container, and the rollback cannot start the old one either. The
    // upgrader says so (exit 8); once the port is free, `recover` restores
    // the old container.
    let c = case("port_stolen_mid_swap");
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let volume = c.run.volume("ported-data");
    let mount = format!("{volume}:/data");
    let publish = format!("127.0.0.1:{port}:8080");
    c.run.run_container("ported", &format!("{}:1", c.repo), &["-v", &mount, "-p", &publish]);
    let name = c.run.name("ported");
    let marker = c.run.write_file("ported-marker", "precious data\n");
    c.run.docker(&["cp", marker.to_str().expect("utf-8"), &format!("{name}:/data/marker")]);
    let old = c.run.inspect(&name, "{{.Id}}");

    let image = format!("{}:2", c.repo);
    let child = c
        .run
        .cli_command()
        .args(["upgrade", &name, "--image", &image, "--state-dir", &c.state, "--stable", "1s"])
        .env("CONTAINER_UPGRADER_FAULT_PAUSE_AFTER", "stopped")
        .env("CONTAINER_UPGRADER_FAULT_PAUSE_MS", "3000")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    // Wait until the old container has stopped, then take its port.
    common::wait_for("the old container to stop", Duration::from_secs(60), || {
        c.run.inspect(&old, "{{.State.Running}}") == "false"
    });
    let thief = std::net::TcpListener::bind(("127.0.0.1", port)).expect("steal the port");
    let out = child.wait_with_output().expect("upgrade finishes");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(8), "needs attention: {err}");
    assert!(err.contains("starting the new container failed"), "{err}");
    assert!(err.contains("run `container-upgrader recover`"), "{err}");
    // The op stays unfinished, with why, for `recover` to finish.
    let status = c.run.cli(&["status", "--state-dir", &c.state, "--output", "json"]);
    let status: serde_json::Value = serde_json::from_slice(&status.stdout).expect("status JSON");
    let op = &status["containers"][0];
    let outcome = op["outcome"].as_str().unwrap_or_default();
    assert!(!["committed", "rolled_back", "failed", "aborted"].contains(&outcome), "unfinished: {op}");
    assert!(op["reason"].as_str().unwrap_or_default().contains("rollback failed"), "{op}");

    drop(thief);
    c.recover();
    c.invariant(&name);
    assert_eq!(c.run.inspect(&name, "{{.Id}}"), old, "the very same old container");
}

#[test]
fn a_container_sharing_the_network_is_brought_back_by_recover_after_a_kill() {
    let c = case("sigkill_with_network_dependent");
    let image = format!("{}:2", c.repo);
    // Killed after `stopped`, recover restores the old peer (a new
    // namespace, same id): the client is restarted into it. Killed after
    // `committed`, the old peer is gone: the client is recreated in the new
    // one's namespace.
    for step in ["stopped", "committed"] {
        let vpn = c.web(&format!("vpn-{step}"));
        let client = c.run.run_in_network_of(&vpn, &format!("client-{step}"), &format!("{}:1", c.repo), &[]);
        c.upgrade_killed_after(&vpn, &image, step);
        c.recover();
        c.invariant(&vpn);
        assert_eq!(c.run.inspect(&client, "{{.State.Running}}"), "true", "after a kill at {step}");
        assert_eq!(c.run.netns(&client), c.run.netns(&vpn), "one namespace again after a kill at {step}");
        // Nothing left for a second recover.
        let out = c.run.cli(&["recover", "--state-dir", &c.state]);
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            "nothing to recover",
            "after a kill at {step}"
        );
    }
}

#[test]
fn start_first_killed_after_the_old_left_its_networks_recovers_it_onto_them() {
    let c = case("sigkill_start_first_networks");
    let image = format!("{}:2", c.repo);
    let net = c.run.network("svc");
    let aliases = format!("{{{{json (index .NetworkSettings.Networks \"{net}\").Aliases}}}}");
    // After `stopping` the intent (with the networks) is journaled; the kill
    // is made to fall after the disconnect by doing it here. After
    // `stopped` the old container really is off its network, stopped and
    // renamed.
    for step in ["stopping", "stopped"] {
        let volume = c.run.volume(&format!("sf-{step}-data"));
        let mount = format!("{volume}:/data");
        let args = ["-v", &mount, "--network", &net, "--network-alias", "svc", "--stop-timeout", "1"];
        c.run.run_container(&format!("sf-{step}"), &format!("{}:1", c.repo), &args);
        let name = c.run.name(&format!("sf-{step}"));
        let marker = c.run.write_file(&format!("sf-{step}-marker"), "precious data\n");
        c.run.docker(&["cp", marker.to_str().expect("utf-8"), &format!("{name}:/data/marker")]);
        let old = c.run.inspect(&name, "{{.Id}}");

        let args = [
            "upgrade",
            &name,
            "--image",
            &image,
            "--state-dir",
            &c.state,
            "--stable",
            "1s",
            "--order",
            "start-first",
        ];
        let marker = format!("fault-injection: paused after {step}");
        let killed = c.run.cli_killed_at(&args, ("CONTAINER_UPGRADER_FAULT_PAUSE_AFTER", step), &marker);
        assert!(killed, "upgrade never reached {step}");
        if step == "stopping" {
            c.run.docker(&["network", "disconnect", &net, &old]);
        }
        let networks = c.run.inspect(&old, "{{json .NetworkSettings.Networks}}");
        assert!(!networks.contains(&format!("\"{net}\"")), "off {net} after a kill at {step}: {networks}");
        c.recover();
        c.invariant(&name);
        assert_eq!(c.run.inspect(&name, "{{.Id}}"), old, "the very same old container after {step}");
        let back = c.run.inspect(&name, &aliases);
        assert!(back.contains("\"svc\""), "on {net} with its alias after a kill at {step}: {back}");
    }
}
