//! Self-upgrade end to end, in real containers: a controller container
//! upgrades its siblings and then itself through a helper container, rolls
//! itself back from a broken version, and survives its helper being killed
//! at every journal step.
#![cfg(all(feature = "docker-tests", feature = "fault-injection"))]

mod common;

use std::time::Duration;

use common::{wait_for, ImageSpec, TestRegistry, TestRun};
use serde_json::Value;

const STATE: &str = "/var/lib/container-upgrader";
const MANIFEST_DIR: &str = "/etc/container-upgrader";

struct Setup {
    run: TestRun,
    _registry: TestRegistry,
    ctl: String,
    app: String,
    state_volume: String,
    manifest_dir: std::path::PathBuf,
}

fn setup(test: &str) -> Setup {
    let run = TestRun::new(test);
    let registry = run.registry();
    let (ctl, app) = (registry.repo("ctl"), registry.repo("app"));
    for tag in ["1", "2"] {
        run.build_upgrader_image(&format!("{ctl}:{tag}"), &[&format!("LABEL version={tag}")]);
        run.push(&format!("{ctl}:{tag}"));
        run.build_image(
            &format!("{app}:{tag}"),
            &ImageSpec { env: vec![("TESTBOX_VERSION", tag)], ..Default::default() },
        );
        run.push(&format!("{app}:{tag}"));
    }
    // A controller build whose entrypoint exits at once.
    run.build_upgrader_image(
        &format!("{ctl}:broken"),
        &[r#"ENTRYPOINT ["/container-upgrader", "no-such-command"]"#],
    );
    run.push(&format!("{ctl}:broken"));
    let state_volume = run.volume("state");
    let manifest_dir = run.write_file("manifest/.keep", "").parent().expect("dir").to_path_buf();
    Setup { run, _registry: registry, ctl, app, state_volume, manifest_dir }
}

impl Setup {
    fn manifest(&self, targets: &[(&str, String)]) {
        let mut text = String::from(
            "version: 1\ndefaults:\n  drift_interval: 2s\n  health: {stable: 2s, timeout: 30s}\ntargets:\n",
        );
        for (container, image) in targets {
            text.push_str(&format!("  - container: {container}\n    image: {image}\n"));
        }
        let tmp = self.manifest_dir.join(".desired-state.yaml.tmp");
        std::fs::write(&tmp, text).expect("write manifest");
        std::fs::rename(&tmp, self.manifest_dir.join("desired-state.yaml")).expect("rename manifest");
    }

    /// `docker run` of the controller from `ctl:TAG`, as the README documents it.
    fn start_controller(&self, tag: &str, env: &[&str]) -> String {
        self.start_controller_from(&format!("{}:{tag}", self.ctl), env)
    }

    /// `docker run` of the controller from `image`.
    fn start_controller_from(&self, image: &str, env: &[&str]) -> String {
        let state = format!("{}:{STATE}", self.state_volume);
        let manifest = format!("{}:{MANIFEST_DIR}:ro", self.manifest_dir.display());
        let mut options = vec!["--label", "role=controller"];
        for e in env {
            options.extend(["-e", e]);
        }
        self.run.controller_container(&self.ctl_name(), image, &[&state, &manifest], &options, &[])
    }

    fn ctl_name(&self) -> String {
        self.run.name("ctl")
    }

    fn image_of(&self, name: &str) -> String {
        self.run.try_docker(&["inspect", "-f", "{{.Config.Image}}", name]).unwrap_or_default()
    }

    fn running(&self, name: &str) -> bool {
        self.run.try_docker(&["inspect", "-f", "{{.State.Running}}", name]).is_ok_and(|s| s == "true")
    }

    /// `status --output json` through the state volume, from a throwaway
    /// container of the controller image.
    fn status(&self) -> Value {
        let state = format!("{}:{STATE}", self.state_volume);
        let label = self.run.label();
        let image = format!("{}:1", self.ctl);
        let out = self
            .run
            .docker(&["run", "--rm", "--label", &label, "-v", &state, &image, "status", "--output", "json"]);
        serde_json::from_str(&out).expect("status JSON")
    }

    fn status_of(&self, container: &str) -> Value {
        let s = self.status();
        s["containers"]
            .as_array()
            .and_then(|a| a.iter().find(|c| c["container"] == container).cloned())
            .unwrap_or(Value::Null)
    }

    fn leftovers(&self) -> Vec<String> {
        let names =
            self.run.docker(&["ps", "-a", "--filter", &self.run.label_filter(), "--format", "{{.Names}}"]);
        names.lines().filter(|n| n.contains("--cu-")).map(str::to_string).collect()
    }
}

#[test]
fn controller_upgrades_siblings_first_then_itself_and_keeps_its_config() {
    let s = setup("self_upgrade_commits");
    let sibling = s.run.name("app");
    s.run.run_container("app", &format!("{}:1", s.app), &[]);
    let ctl = s.ctl_name();
    s.manifest(&[(&sibling, format!("{}:2", s.app)), (&ctl, format!("{}:2", s.ctl))]);
    let old_id = s.start_controller("1", &[]);
    let before: Value = serde_json::from_str(&s.run.docker(&["inspect", &ctl])).expect("inspect");

    wait_for("the controller to run :2", Duration::from_secs(180), || {
        s.image_of(&ctl) == format!("{}:2", s.ctl)
            && s.running(&ctl)
            && s.status_of(&ctl)["outcome"] == "committed"
    });
    wait_for("helpers and backups to be gone", Duration::from_secs(60), || s.leftovers().is_empty());
    let after: Value = serde_json::from_str(&s.run.docker(&["inspect", &ctl])).expect("inspect");
    assert_ne!(after[0]["Id"], old_id.as_str());
    assert_eq!(s.image_of(&sibling), format!("{}:2", s.app));

    // Siblings before itself.
    let (sib, me) = (s.status_of(&sibling), s.status_of(&ctl));
    assert_eq!(sib["outcome"], "committed");
    assert!(
        sib["updated_at"].as_str() < me["started_at"].as_str(),
        "sibling committed {sib} before the self-upgrade began {me}"
    );

    // Its own container keeps name, networks, mounts, restart policy, labels.
    let (b, a) = (&before[0], &after[0]);
    assert_eq!(a["Name"], b["Name"]);
    assert_eq!(a["HostConfig"]["NetworkMode"], b["HostConfig"]["NetworkMode"]);
    assert_eq!(a["HostConfig"]["Binds"], b["HostConfig"]["Binds"]);
    assert_eq!(a["HostConfig"]["RestartPolicy"], b["HostConfig"]["RestartPolicy"]);
    assert_eq!(a["Config"]["Cmd"], b["Config"]["Cmd"]);
    assert_eq!(a["Config"]["Labels"]["role"], "controller");
    assert_eq!(a["Config"]["Labels"]["version"], "2", "the new image's label");

    // The new controller reports the committed op of its own upgrade.
    let logs = s.run.logs(&ctl);
    assert!(logs.contains("last self-upgrade:") && logs.contains("committed"), "{logs}");
}

#[test]
fn broken_self_upgrade_rolls_back_to_the_same_container_and_is_not_retried() {
    let s = setup("self_upgrade_rolls_back");
    let ctl = s.ctl_name();
    s.manifest(&[(&ctl, format!("{}:broken", s.ctl))]);
    let id = s.start_controller("2", &[]);
    wait_for("the failed self-upgrade to be recorded", Duration::from_secs(180), || {
        s.status_of(&ctl)["outcome"] == "rolled_back"
    });
    wait_for("the controller to be back", Duration::from_secs(60), || s.running(&ctl));
    assert_eq!(s.run.inspect(&ctl, "{{.Id}}"), id, "the very same container");
    let st = s.status_of(&ctl);
    let reason = st["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("exited with code 2") || reason.contains("restarted"), "{st}");
    assert!(st["held_until"].is_string(), "held off the broken image: {st}");

    // Several drift intervals (2 s) later: no new attempt.
    std::thread::sleep(Duration::from_secs(8));
    assert_eq!(s.status_of(&ctl)["op_id"], st["op_id"], "no new op while held");
    assert_eq!(s.run.inspect(&ctl, "{{.Id}}"), id);
    wait_for("helpers and backups to be gone", Duration::from_secs(60), || s.leftovers().is_empty());
    let logs = s.run.logs(&ctl);
    assert!(logs.contains("held"), "{logs}");
}

#[test]
fn helper_killed_at_every_journal_step_leaves_one_running_controller() {
    for step in ["prepared", "created", "stopped", "started"] {
        let s = setup(&format!("helper_killed_{step}"));
        let ctl = s.ctl_name();
        s.manifest(&[(&ctl, format!("{}:2", s.ctl))]);
        let pause = format!("CONTAINER_UPGRADER_FAULT_PAUSE_AFTER={step}");
        s.start_controller("1", &[&pause]);
        // The helper announces the step in its log, then stops dead.
        let helper_filter = format!("label=container-upgrader.helper-for={ctl}");
        let mut helper = String::new();
        wait_for(&format!("the helper to pause after {step}"), Duration::from_secs(180), || {
            helper = s.run.docker(&["ps", "-q", "--filter", &helper_filter]);
            !helper.is_empty()
                && s.run
                    .logs(helper.lines().next().unwrap_or_default())
                    .contains(&format!("paused after {step}"))
        });
        let helper = helper.lines().next().unwrap_or_default().to_string();
        // A crash, not a `docker kill`: the engine restarts the helper
        // (restart policy on-failure), and the restarted helper recovers.
        let pid = s.run.inspect(&helper, "{{.State.Pid}}");
        let killed = std::process::Command::new("kill").args(["-9", &pid]).status().expect("kill");
        assert!(killed.success());

        wait_for(&format!("recovery after a kill at {step}"), Duration::from_secs(180), || {
            let outcome = s.status_of(&ctl)["outcome"].clone();
            (outcome == "rolled_back" || outcome == "committed")
                && s.leftovers().is_empty()
                && s.running(&ctl)
        });
        let filter = format!("name=^/{ctl}$");
        assert_eq!(s.run.docker(&["ps", "-aq", "--filter", &filter]).lines().count(), 1, "one controller");
        let image = s.image_of(&ctl);
        assert!(image == format!("{}:1", s.ctl) || image == format!("{}:2", s.ctl), "{image}");
    }
}

#[test]
fn self_upgrade_with_pull_never_uses_the_locally_built_image_and_asks_no_registry() {
    let s = setup("self_upgrade_pull_never");
    // Built here, never pushed: no registry knows this repository.
    let local = format!("cu-local-{}/ctl", s.run.id());
    for tag in ["1", "2"] {
        s.run.build_upgrader_image(&format!("{local}:{tag}"), &[&format!("LABEL version={tag}")]);
    }
    let ctl = s.ctl_name();
    let text = format!(
        "version: 1\ndefaults:\n  pull: never\n  drift_interval: 2s\n  health: {{stable: 2s, timeout: 30s}}\ntargets:\n  - container: {ctl}\n    image: {local}:2\n"
    );
    std::fs::write(s.manifest_dir.join("desired-state.yaml"), text).expect("manifest");
    s.start_controller_from(&format!("{local}:1"), &[]);
    wait_for("the controller to run its local :2", Duration::from_secs(180), || {
        s.image_of(&ctl) == format!("{local}:2")
            && s.running(&ctl)
            && s.status_of(&ctl)["outcome"] == "committed"
    });
    wait_for("helpers and backups to be gone", Duration::from_secs(60), || s.leftovers().is_empty());
    let logs = s.run.logs(&ctl);
    assert!(!logs.contains("pulling"), "no pull was attempted: {logs}");
    assert!(logs.contains("last self-upgrade:") && logs.contains("committed"), "{logs}");
}

#[test]
fn the_controller_moves_itself_only_to_a_signed_image_when_signatures_are_required() {
    use common::cosign::{sign_image, Key};
    let s = setup("self_upgrade_verify");
    let ctl = s.ctl_name();
    let key = Key::p256();
    std::fs::write(s.manifest_dir.join("key.pub"), key.public_pem()).expect("key");
    let text = format!(
        "version: 1\ndefaults:\n  drift_interval: 2s\n  health: {{stable: 2s, timeout: 30s}}\npolicy:\n  verify:\n    keys: [key.pub]\n    require: true\ntargets:\n  - container: {ctl}\n    image: {}:2\n",
        s.ctl
    );
    let tmp = s.manifest_dir.join(".desired-state.yaml.tmp");
    std::fs::write(&tmp, text).expect("manifest");
    std::fs::rename(&tmp, s.manifest_dir.join("desired-state.yaml")).expect("rename manifest");
    let id = s.start_controller("1", &[]);

    // Its own new image unsigned: refused with the reason, no helper started.
    wait_for("the refusal in the controller's log", Duration::from_secs(90), || {
        s.run.logs(&ctl).contains("no signature")
    });
    std::thread::sleep(Duration::from_secs(5));
    assert_eq!(s.run.inspect(&ctl, "{{.Id}}"), id, "the controller did not replace itself");
    assert_eq!(s.image_of(&ctl), format!("{}:1", s.ctl));
    assert!(s.leftovers().is_empty(), "no helper: {:?}", s.leftovers());

    // Signed: it upgrades itself.
    let digest = s.run.registry_digest(&format!("{}:2", s.ctl));
    sign_image(&s._registry, &s.ctl, &digest, &key);
    wait_for("the controller to run the signed :2", Duration::from_secs(180), || {
        s.image_of(&ctl) == format!("{}:2", s.ctl)
            && s.running(&ctl)
            && s.status_of(&ctl)["outcome"] == "committed"
    });
}
