//! `reconcile --once` against the real engine and registry.
#![cfg(feature = "docker-tests")]

mod common;

use common::{ImageSpec, TestRun};

fn publish(run: &TestRun, image: &str, env: Vec<(&str, &str)>) {
    run.build_image(image, &ImageSpec { env, ..Default::default() });
    run.push(image);
}

#[test]
fn reconcile_upgrades_twenty_containers_and_a_failing_one_rolls_back_alone() {
    let run = TestRun::new("reconcile_twenty");
    let registry = run.registry();
    let (app, bad) = (registry.repo("app"), registry.repo("bad"));
    publish(&run, &format!("{app}:1"), vec![("TESTBOX_VERSION", "1")]);
    publish(&run, &format!("{app}:2"), vec![("TESTBOX_VERSION", "2")]);
    publish(&run, &format!("{bad}:1"), vec![("TESTBOX_VERSION", "bad-1")]);
    publish(&run, &format!("{bad}:2"), vec![("TESTBOX_EXIT_AFTER_MS", "300"), ("TESTBOX_EXIT_CODE", "5")]);

    let mut manifest =
        String::from("version: 1\ndefaults:\n  health: {stable: 1s, timeout: 30s}\ntargets:\n");
    for i in 0..20 {
        run.run_container(&format!("w{i}"), &format!("{app}:1"), &[]);
        manifest.push_str(&format!("  - container: {}\n    image: {app}:2\n", run.name(&format!("w{i}"))));
    }
    let bad_id = run.run_container("bad", &format!("{bad}:1"), &[]);
    manifest.push_str(&format!("  - container: {}\n    image: {bad}:2\n", run.name("bad")));
    let file = run.write_file("desired-state.yaml", &manifest);
    let state = run.write_file("state/.keep", "").parent().expect("dir").display().to_string();

    let out = run.cli(&["reconcile", "-f", file.to_str().expect("utf-8"), "--once", "--state-dir", &state]);
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.status.code(), Some(6), "one target rolled back\n{stdout}\n{stderr}");
    assert!(stdout.contains("Reconciled: 20 upgraded, 1 rolled back, 0 held, 0 errors"), "{stdout}");
    for i in 0..20 {
        let name = run.name(&format!("w{i}"));
        assert_eq!(run.inspect(&name, "{{.Config.Image}}"), format!("{app}:2"), "{name}");
        assert_eq!(run.inspect(&name, "{{.State.Running}}"), "true", "{name}");
    }
    let bad_name = run.name("bad");
    assert_eq!(run.inspect(&bad_name, "{{.Id}}"), bad_id, "the failing target is back on its old container");
    assert_eq!(run.inspect(&bad_name, "{{.State.Running}}"), "true");
    assert!(stderr.contains("exited with code 5"), "{stderr}");

    // The next pass does not retry the image that just failed: it is held.
    let out = run.cli(&["reconcile", "-f", file.to_str().expect("utf-8"), "--once", "--state-dir", &state]);
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.status.code(), Some(7), "held\n{stdout}\n{stderr}");
    assert!(
        stdout.contains("Reconciled: 0 upgraded, 0 rolled back, 1 held, 0 errors, 20 up to date."),
        "{stdout}"
    );
    assert!(stderr.contains("held: upgrade to") && stderr.contains("failed 1 time(s)"), "{stderr}");
    assert_eq!(run.inspect(&bad_name, "{{.Id}}"), bad_id, "not touched while held");
    let names = run.docker(&["ps", "-a", "--filter", &run.label_filter(), "--format", "{{.Names}}"]);
    assert!(!names.contains("--cu-"), "leftovers: {names}");
}

#[test]
fn a_pass_upgrading_a_peer_and_its_network_client_leaves_them_in_one_namespace() {
    let run = TestRun::new("reconcile_network_pair");
    let registry = run.registry();
    let app = registry.repo("app");
    run.publish_versions(&app);
    run.run_container("vpn", &format!("{app}:1"), &[]);
    let vpn = run.name("vpn");
    let client = run.run_in_network_of(&vpn, "client", &format!("{app}:1"), &[]);
    // The client comes first in the file: the pass still swaps it after
    // its peer, not side by side with it.
    let manifest = format!(
        "version: 1\ndefaults:\n  health: {{stable: 1s, timeout: 30s}}\ntargets:\n  - container: {client}\n    image: {app}:2\n  - container: {vpn}\n    image: {app}:2\n"
    );
    let file = run.write_file("desired-state.yaml", &manifest);
    let state = run.write_file("state/.keep", "").parent().expect("dir").display().to_string();
    let out = run.cli(&["reconcile", "-f", file.to_str().expect("utf-8"), "--once", "--state-dir", &state]);
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    assert!(stdout.contains("Reconciled: 2 upgraded"), "{stdout}");
    for name in [&vpn, &client] {
        assert_eq!(run.inspect(name, "{{.Config.Image}}"), format!("{app}:2"), "{name}");
        assert_eq!(run.inspect(name, "{{.State.Running}}"), "true", "{name}");
    }
    let vpn_id = run.inspect(&vpn, "{{.Id}}");
    assert_eq!(run.inspect(&client, "{{.HostConfig.NetworkMode}}"), format!("container:{vpn_id}"));
    assert_eq!(run.netns(&client), run.netns(&vpn), "one namespace");
    // Nothing is left to do.
    let out = run.cli(&["reconcile", "-f", file.to_str().expect("utf-8"), "--once", "--state-dir", &state]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("2 up to date"));
}

#[test]
fn with_parallel_one_a_swap_in_its_gate_does_not_hold_up_the_next() {
    let run = TestRun::new("reconcile_gate_no_slot");
    let registry = run.registry();
    let app = registry.repo("app");
    run.publish_versions(&app);
    let mut manifest =
        String::from("version: 1\ndefaults:\n  health: {stable: 3s, timeout: 30s}\ntargets:\n");
    for i in 0..3 {
        run.run_container(&format!("g{i}"), &format!("{app}:1"), &[]);
        manifest.push_str(&format!("  - container: {}\n    image: {app}:2\n", run.name(&format!("g{i}"))));
    }
    let file = run.write_file("desired-state.yaml", &manifest);
    let state = run.write_file("state/.keep", "").parent().expect("dir").display().to_string();
    let file = file.to_str().expect("utf-8");
    let out = run.cli(&["reconcile", "-f", file, "--once", "--state-dir", &state, "--parallel", "1"]);
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    assert!(stdout.contains("Reconciled: 3 upgraded"), "{stdout}");

    // One engine slot, yet every new container started before any gate
    // ended: the gates waited side by side, without the slot.
    let mut started = Vec::new();
    let mut committed = Vec::new();
    for entry in std::fs::read_dir(format!("{state}/ops")).expect("journal") {
        let text = std::fs::read_to_string(entry.expect("entry").path()).expect("record");
        let op: serde_json::Value = serde_json::from_str(&text).expect("record JSON");
        let at = |step: &str| -> String {
            let steps = op["steps"].as_array().expect("steps");
            let s = steps.iter().find(|s| s["step"] == step).unwrap_or_else(|| panic!("no {step}: {op}"));
            s["at"].as_str().expect("time").to_string()
        };
        started.push(at("started"));
        committed.push(at("committed"));
    }
    assert_eq!(started.len(), 3, "three ops");
    let last_start = started.iter().max().expect("starts");
    let first_commit = committed.iter().min().expect("commits");
    assert!(last_start < first_commit, "started {started:?}, committed {committed:?}");
}
