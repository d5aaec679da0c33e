//! The swap engine against the real Docker Engine and registry: upgrades
//! commit, bad versions roll back to the very same container, nothing is
//! left behind and the data stays.
#![cfg(feature = "docker-tests")]

mod common;

use std::process::Output;

use common::{ImageSpec, TestRegistry, TestRun};

/// A run with a registry holding `app:1` and `app:2`, and helpers to look
/// at the result of a swap.
struct Fixture {
    run: TestRun,
    _registry: TestRegistry,
    repo: String,
    state: String,
}

impl Fixture {
    fn new(test: &str) -> Self {
        let run = TestRun::new(test);
        let registry = run.registry();
        let repo = registry.repo("app");
        let state = run.write_file("state/.keep", "").parent().expect("dir").display().to_string();
        let f = Fixture { run, _registry: registry, repo, state };
        f.publish("1", &[("TESTBOX_VERSION", "1")], false);
        f.publish("2", &[("TESTBOX_VERSION", "2")], false);
        f
    }

    fn image(&self, tag: &str) -> String {
        format!("{}:{tag}", self.repo)
    }

    fn publish(&self, tag: &str, env: &[(&str, &str)], healthcheck: bool) {
        let image = self.image(tag);
        self.run.build_image(&image, &ImageSpec { env: env.to_vec(), healthcheck, ..Default::default() });
        self.run.push(&image);
    }

    /// A running `app:1` container with a named volume at /data holding a
    /// marker file written from outside the container's own program.
    fn start_web(&self, extra: &[&str]) -> (String, String) {
        let volume = self.run.volume("data");
        let mount = format!("{volume}:/data");
        let mut args = vec!["-v", mount.as_str()];
        args.extend_from_slice(extra);
        let id = self.run.run_container("web", &self.image("1"), &args);
        let name = self.run.name("web");
        let marker = self.run.write_file("marker", "precious data\n");
        self.run.docker(&["cp", marker.to_str().expect("utf-8"), &format!("{name}:/data/marker")]);
        (name, id)
    }

    fn upgrade(&self, name: &str, tag: &str, extra: &[&str]) -> Output {
        let image = self.image(tag);
        let mut args = vec!["upgrade", name, "--image", &image, "--state-dir", &self.state, "--stable", "1s"];
        args.extend_from_slice(extra);
        self.run.cli(&args)
    }

    /// Exactly one container carries `name`; it runs; returns its id.
    fn the_one(&self, name: &str) -> String {
        let filter = format!("name=^/{name}$");
        let ids = self.run.docker(&["ps", "-aq", "--no-trunc", "--filter", &filter]);
        let ids: Vec<&str> = ids.lines().collect();
        assert_eq!(ids.len(), 1, "containers named {name}: {ids:?}");
        assert_eq!(self.run.inspect(name, "{{.State.Running}}"), "true", "{name} is not running");
        ids[0].to_string()
    }

    fn assert_no_leftovers(&self) {
        let names =
            self.run.docker(&["ps", "-a", "--filter", &self.run.label_filter(), "--format", "{{.Names}}"]);
        assert!(!names.contains("--cu-"), "leftover backup/temporary containers: {names}");
    }

    fn data_intact(&self, name: &str) {
        // scratch has no shell: copy the file out of the container.
        let dir = self.run.write_file("out/.keep", "").parent().expect("dir").to_path_buf();
        let dest = dir.join("marker");
        let _ = std::fs::remove_file(&dest);
        self.run.docker(&["cp", &format!("{name}:/data/marker"), dest.to_str().expect("utf-8")]);
        let content = std::fs::read_to_string(&dest).expect("marker copied out");
        assert_eq!(content, "precious data\n", "the volume's data changed");
    }
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn upgrade_commits_keeps_name_and_data_and_leaves_nothing_behind() {
    let f = Fixture::new("upgrade_commits");
    let (name, old_id) = f.start_web(&[]);
    let out = f.upgrade(&name, "2", &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let new_id = f.the_one(&name);
    assert_ne!(new_id, old_id, "a new container");
    assert_eq!(f.run.inspect(&name, "{{.Config.Image}}"), f.image("2"));
    assert!(f.run.logs(&name).contains("testbox 2 started"));
    f.data_intact(&name);
    f.assert_no_leftovers();
    assert!(f.run.try_docker(&["inspect", &old_id]).is_err(), "the backup is removed after commit");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains(&format!("{name}: upgraded")), "{stdout}");

    // Running it again is a no-op.
    let again = f.upgrade(&name, "2", &[]);
    assert_eq!(again.status.code(), Some(0), "{}", stderr(&again));
    assert!(String::from_utf8_lossy(&again.stdout).contains("already runs"));
    assert_eq!(f.the_one(&name), new_id);
}

#[test]
fn rollback_restores_same_container_when_new_exits() {
    let f = Fixture::new("rollback_when_new_exits");
    f.publish("broken", &[("TESTBOX_EXIT_AFTER_MS", "300"), ("TESTBOX_EXIT_CODE", "3")], false);
    let (name, old_id) = f.start_web(&[]);
    let out = f.upgrade(&name, "broken", &[]);
    assert_eq!(out.status.code(), Some(6), "rolled back: {}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("rolled back"), "{err}");
    assert!(err.contains("exited with code 3"), "{err}");
    assert!(err.contains("testbox exiting with 3"), "the last log line: {err}");
    assert_eq!(f.the_one(&name), old_id, "the very same container is back");
    assert_eq!(f.run.inspect(&name, "{{.Config.Image}}"), f.image("1"));
    f.data_intact(&name);
    f.assert_no_leftovers();
}

#[test]
fn rollback_when_the_new_image_healthcheck_fails() {
    let f = Fixture::new("rollback_on_unhealthy");
    f.publish("sick", &[("TESTBOX_HEALTH", "fail")], true);
    let (name, old_id) = f.start_web(&[]);
    let out = f.upgrade(&name, "sick", &["--health-timeout", "30s"]);
    assert_eq!(out.status.code(), Some(6), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("health check failed: health: failing on purpose"), "{err}");
    assert!(err.contains("testbox unknown started") || err.contains("last output"), "{err}");
    assert_eq!(f.the_one(&name), old_id);
    f.data_intact(&name);
    f.assert_no_leftovers();
}

#[test]
fn rollback_when_the_http_probe_answers_500() {
    let f = Fixture::new("rollback_on_http_500");
    f.publish("500", &[("TESTBOX_HTTP_PORT", "8080"), ("TESTBOX_HTTP_STATUS", "500")], false);
    let network = f.run.network("net");
    let (name, old_id) = f.start_web(&["--network", &network]);
    let out = f.upgrade(&name, "500", &["--probe", "http:8080/healthz", "--health-timeout", "4s"]);
    assert_eq!(out.status.code(), Some(6), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("/healthz returned 500, expected 200"), "{err}");
    assert!(err.contains("testbox unknown started"), "last log line: {err}");
    assert_eq!(f.the_one(&name), old_id);
    f.data_intact(&name);
    f.assert_no_leftovers();
}

#[test]
fn http_probe_passes_and_commits() {
    let f = Fixture::new("http_probe_commits");
    f.publish("ok", &[("TESTBOX_HTTP_PORT", "8080")], false);
    let (name, _) = f.start_web(&[]);
    let out = f.upgrade(&name, "ok", &["--probe", "http:8080/healthz"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    f.the_one(&name);
    f.assert_no_leftovers();
}

#[test]
fn engine_refusing_to_start_the_new_container_rolls_back() {
    let f = Fixture::new("start_refused_rolls_back");
    // A user that does not exist in the (empty) image: the engine accepts
    // the create and refuses the start.
    let image = f.image("nostart");
    f.run.build_image(&image, &ImageSpec { user: Some("nobody-here"), ..Default::default() });
    f.run.push(&image);
    let (name, old_id) = f.start_web(&[]);
    let out = f.upgrade(&name, "nostart", &[]);
    assert_eq!(out.status.code(), Some(6), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("starting the new container failed"), "{err}");
    assert!(err.contains("nobody-here"), "{err}");
    assert_eq!(f.the_one(&name), old_id);
    f.data_intact(&name);
    f.assert_no_leftovers();
}

#[test]
fn errors_before_the_swap_change_nothing() {
    let f = Fixture::new("errors_before_swap");
    let (name, old_id) = f.start_web(&[]);
    let out = f.upgrade(&name, "no-such-tag", &[]);
    assert_eq!(out.status.code(), Some(7), "{}", stderr(&out));
    assert!(stderr(&out).contains("nothing changed"), "{}", stderr(&out));
    assert_eq!(f.the_one(&name), old_id);

    let out = f.upgrade(&f.run.name("ghost"), "2", &[]);
    assert_eq!(out.status.code(), Some(7));
    assert!(stderr(&out).contains("no container named"), "{}", stderr(&out));
    f.assert_no_leftovers();
}

#[test]
fn start_first_commits_without_stopping_the_old_until_the_new_passes() {
    let f = Fixture::new("start_first_commits");
    let (name, old_id) = f.start_web(&[]);
    let out = f.upgrade(&name, "2", &["--order", "start-first"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_ne!(f.the_one(&name), old_id);
    f.data_intact(&name);
    f.assert_no_leftovers();

    f.publish("broken", &[("TESTBOX_EXIT_AFTER_MS", "300"), ("TESTBOX_EXIT_CODE", "4")], false);
    let current = f.the_one(&name);
    let started_at = f.run.inspect(&name, "{{.State.StartedAt}}");
    let out = f.upgrade(&name, "broken", &["--order", "start-first"]);
    assert_eq!(out.status.code(), Some(6), "{}", stderr(&out));
    assert_eq!(f.the_one(&name), current);
    assert_eq!(f.run.inspect(&name, "{{.State.StartedAt}}"), started_at, "never stopped: no downtime");
    f.assert_no_leftovers();
}

#[test]
fn start_first_failing_after_the_old_left_its_networks_puts_it_back_with_its_aliases() {
    let f = Fixture::new("start_first_leaves_networks");
    let net = f.run.network("app");
    let (name, old_id) =
        f.start_web(&["--network", &net, "--network-alias", "svc", "--network-alias", "api"]);
    let aliases = format!("{{{{json (index .NetworkSettings.Networks \"{net}\").Aliases}}}}");
    let before = f.run.inspect(&name, &aliases);
    // Something already carries the backup name of this op: renaming the
    // old container fails after it left its networks and stopped.
    let blocker = format!("{name}--cu-backup-leavetest1");
    f.run.docker(&["create", "--name", &blocker, "--label", &f.run.label(), &f.image("1")]);

    let out = f.upgrade(&name, "2", &["--order", "start-first", "--op-id", "leavetest1"]);
    assert_eq!(out.status.code(), Some(6), "{}", stderr(&out));
    assert!(stderr(&out).contains("renaming the old container"), "{}", stderr(&out));
    let journal = std::fs::read_to_string(format!("{}/ops/leavetest1.json", f.state)).unwrap_or_default();
    assert!(journal.contains("\"left_networks\""), "the networks were journaled: {journal}");

    assert_eq!(f.the_one(&name), old_id, "the very same container is back");
    let after = f.run.inspect(&name, &aliases);
    assert!(after.contains("\"svc\"") && after.contains("\"api\""), "aliases {after} (before: {before})");
    f.data_intact(&name);
    f.run.docker(&["rm", "-f", &blocker]);
    f.assert_no_leftovers();
}

#[test]
fn start_first_is_refused_for_a_container_with_host_ports() {
    let f = Fixture::new("start_first_refused_ports");
    let port =
        std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("free port").port();
    let publish = format!("127.0.0.1:{port}:9000");
    let (name, old_id) = f.start_web(&["-p", &publish]);
    let out = f.upgrade(&name, "2", &["--order", "start-first"]);
    assert_eq!(out.status.code(), Some(7), "{}", stderr(&out));
    assert!(stderr(&out).contains("binds host ports; use stop-first"), "{}", stderr(&out));
    assert_eq!(f.the_one(&name), old_id);
}

#[test]
fn stop_first_is_refused_for_an_auto_remove_container() {
    let f = Fixture::new("stop_first_refused_rm");
    let (name, old_id) = f.start_web(&["--rm"]);
    let out = f.upgrade(&name, "2", &[]);
    assert_eq!(out.status.code(), Some(7), "{}", stderr(&out));
    assert!(stderr(&out).contains("--rm (AutoRemove)"), "{}", stderr(&out));
    assert_eq!(f.the_one(&name), old_id, "untouched");
}

#[test]
fn cleanup_removes_the_old_image_only_once_no_container_uses_it() {
    let f = Fixture::new("cleanup_old_image");
    let (name, _) = f.start_web(&[]);
    f.run.run_container("other", &f.image("1"), &[]);
    let other = f.run.name("other");
    let old_image = f.run.inspect(&f.image("1"), "{{.Id}}");

    let out = f.upgrade(&name, "2", &["--cleanup"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(f.run.try_docker(&["image", "inspect", &old_image]).is_ok(), "still used by {other}: kept");

    let out = f.upgrade(&other, "2", &["--cleanup"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(f.run.try_docker(&["image", "inspect", &old_image]).is_err(), "no longer used: removed");
    f.assert_no_leftovers();
}

#[test]
fn a_docker_hub_style_name_stays_as_the_user_writes_it() {
    // Local images under an implied docker.io name; nothing is pulled.
    let run = TestRun::new("hub_style_name");
    let repo = format!("cu-test-{}/app", run.id());
    for tag in ["1", "2"] {
        run.build_image(
            &format!("{repo}:{tag}"),
            &ImageSpec { env: vec![("TESTBOX_VERSION", tag)], ..Default::default() },
        );
    }
    run.run_container("web", &format!("{repo}:1"), &[]);
    let name = run.name("web");
    let state = run.write_file("state/.keep", "").parent().expect("dir").display().to_string();
    let image = format!("{repo}:2");
    let out = run.cli(&[
        "upgrade",
        &name,
        "--image",
        &image,
        "--pull",
        "never",
        "--state-dir",
        &state,
        "--stable",
        "1s",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(run.inspect(&name, "{{.Config.Image}}"), image, "not docker.io/{image}");
}
