//! Lifecycle hooks against the real engine and registry, through
//! `reconcile --once`: a `pre_upgrade` dump lands in the volume before the
//! swap, a failing one leaves the container untouched with its (masked)
//! output as the reason, a failing `post_upgrade` rolls back after
//! `pre_rollback` ran, and controller-side `run` hooks see the swap.
#![cfg(feature = "docker-tests")]

mod common;

use std::path::PathBuf;
use std::process::Output;
use std::time::{Duration, Instant};

use common::{ImageSpec, TestRegistry, TestRun};

const SECRET: &str = "hunter2-very-secret";

struct Fixture {
    run: TestRun,
    _registry: TestRegistry,
    repo: String,
    state: String,
}

impl Fixture {
    fn new(test: &str) -> Self {
        let run = TestRun::new(test);
        let (registry, repo) = run.registry_with_versions();
        let state = run.write_file("state/.keep", "").parent().expect("dir").display().to_string();
        Fixture { run, _registry: registry, repo, state }
    }

    /// A running `app:1` container with a named volume at /data and a
    /// secret in its environment; returns its name and id.
    fn web(&self) -> (String, String) {
        let volume = self.run.volume("data");
        let mount = format!("{volume}:/data");
        let env = format!("DB_PASSWORD={SECRET}");
        let id = self.run.run_container("web", &format!("{}:1", self.repo), &["-v", &mount, "-e", &env]);
        (self.run.name("web"), id)
    }

    /// `reconcile --once` of `web` to `image` with these `hooks:` lines.
    fn reconcile(&self, name: &str, image: &str, hooks: &str) -> Output {
        let manifest = format!(
            "version: 1\ndefaults:\n  health: {{stable: 1s, timeout: 30s}}\ntargets:\n  - container: {name}\n    image: {image}\n    hooks:\n{hooks}"
        );
        let file = self.run.write_file("desired-state.yaml", &manifest);
        self.run.cli(&[
            "reconcile",
            "-f",
            file.to_str().expect("utf-8"),
            "--once",
            "--state-dir",
            &self.state,
        ])
    }

    /// The text of `path` inside `container` (scratch has no `cat`).
    fn read(&self, container: &str, path: &str) -> String {
        let dest = self.run.write_file(&format!("out/{}", path.replace('/', "_")), "");
        self.run.docker(&["cp", &format!("{container}:{path}"), dest.to_str().expect("utf-8")]);
        std::fs::read_to_string(&dest).expect("copied out")
    }

    /// `status --output json`'s row for `name`.
    fn status(&self, name: &str) -> serde_json::Value {
        let out = self.run.cli(&["status", "--state-dir", &self.state, "--output", "json"]);
        let status: serde_json::Value = serde_json::from_slice(&out.stdout).expect("status JSON");
        status["containers"]
            .as_array()
            .and_then(|rows| rows.iter().find(|r| r["container"] == name).cloned())
            .unwrap_or_else(|| panic!("no status row for {name}: {status}"))
    }

    /// Every journal record, as text.
    fn journal_text(&self) -> String {
        let dir = PathBuf::from(&self.state).join("ops");
        std::fs::read_dir(&dir)
            .expect("ops dir")
            .flatten()
            .map(|e| std::fs::read_to_string(e.path()).expect("record"))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

fn text(out: &Output) -> (String, String) {
    (String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn pre_upgrade_writes_a_dump_into_the_volume_that_the_new_container_sees() {
    let f = Fixture::new("hooks_pre_upgrade_dump");
    let (name, old_id) = f.web();
    let marker = f.run.write_file("controller-side", "");
    let hooks = format!(
        "      pre_upgrade: {{exec: [/testbox, write, /data/dump.sql, dump of version, $TESTBOX_VERSION], timeout: 30s}}\n      post_upgrade: {{run: [sh, -c, 'echo \"$CONTAINER_UPGRADER_HOOK $CONTAINER_UPGRADER_NEW_IMAGE\" > {}']}}\n",
        marker.display()
    );
    let out = f.reconcile(&name, &format!("{}:2", f.repo), &hooks);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    let new_id = f.run.inspect(&name, "{{.Id}}");
    assert_ne!(new_id, old_id, "swapped");
    assert_eq!(f.run.inspect(&name, "{{.Config.Image}}"), format!("{}:2", f.repo));
    // Written by the old container before it stopped, read in the new one.
    let dump = f.read(&name, "/data/dump.sql");
    assert!(dump.starts_with("dump of version 1\n"), "taken in the old container: {dump}");
    assert!(dump.contains("CONTAINER_UPGRADER_HOOK=pre_upgrade"), "{dump}");
    assert!(dump.contains(&format!("CONTAINER_UPGRADER_CONTAINER={name}")), "{dump}");
    assert!(dump.contains(&format!("CONTAINER_UPGRADER_NEW_IMAGE={}:2", f.repo)), "{dump}");
    // The controller-side hook ran after the gate, knowing the new image.
    let written = std::fs::read_to_string(&marker).expect("marker");
    assert_eq!(written.trim(), format!("post_upgrade {}:2", f.repo));
    // Both are on record, with their output.
    let row = f.status(&name);
    assert_eq!(row["outcome"], "committed", "{row}");
    let hooks = row["hooks"].as_array().expect("hooks in status");
    assert_eq!(hooks.len(), 2, "{row}");
    assert_eq!((hooks[0]["phase"].as_str(), hooks[0]["ok"].as_bool()), (Some("pre_upgrade"), Some(true)));
    assert!(hooks[0]["output"].as_str().unwrap_or_default().contains("wrote /data/dump.sql"), "{row}");
    assert_eq!((hooks[1]["phase"].as_str(), hooks[1]["place"].as_str()), (Some("post_upgrade"), Some("run")));
}

#[test]
fn a_failing_pre_upgrade_leaves_the_container_untouched_with_its_masked_output_as_the_reason() {
    let f = Fixture::new("hooks_pre_upgrade_fails");
    let (name, old_id) = f.web();
    let hooks = "      pre_upgrade: {exec: [/testbox, fail, 'pg_dump: password', $DB_PASSWORD, rejected]}\n";
    let out = f.reconcile(&name, &format!("{}:2", f.repo), hooks);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(7), "nothing changed\n{stdout}\n{stderr}");
    assert_eq!(f.run.inspect(&name, "{{.Id}}"), old_id, "the very same container");
    assert_eq!(f.run.inspect(&name, "{{.Config.Image}}"), format!("{}:1", f.repo));
    assert_eq!(f.run.inspect(&name, "{{.State.Running}}"), "true");
    let shown = format!("{stdout}{stderr}");
    assert!(
        shown.contains("pre_upgrade hook (exec) failed: exit code 3: pg_dump: password *** rejected"),
        "{shown}"
    );
    assert!(!shown.contains(SECRET), "the secret leaked into the report: {shown}");
    let journal = f.journal_text();
    assert!(journal.contains("pg_dump: password *** rejected"), "{journal}");
    assert!(!journal.contains(SECRET), "the secret leaked into the journal: {journal}");
    let row = f.status(&name);
    assert_eq!(row["outcome"], "aborted", "{row}");
    assert!(row["reason"].as_str().unwrap_or_default().contains("pre_upgrade hook"), "{row}");

    // The next pass holds the image instead of dumping again.
    let out = f.reconcile(&name, &format!("{}:2", f.repo), hooks);
    let (stdout, stderr) = text(&out);
    assert!(stdout.contains("1 held"), "{stdout}\n{stderr}");
    assert_eq!(f.run.inspect(&name, "{{.Id}}"), old_id);
    let names = f.run.docker(&["ps", "-a", "--filter", &f.run.label_filter(), "--format", "{{.Names}}"]);
    assert!(!names.contains("--cu-"), "leftovers: {names}");
}

#[test]
fn a_hook_past_its_timeout_fails_and_changes_nothing() {
    let f = Fixture::new("hooks_timeout");
    let (name, old_id) = f.web();
    let started = Instant::now();
    let out = f.reconcile(
        &name,
        &format!("{}:2", f.repo),
        "      pre_upgrade: {exec: [/testbox, pause, '60000'], timeout: 1s}\n",
    );
    let (stdout, stderr) = text(&out);
    assert!(started.elapsed() < Duration::from_secs(50), "did not wait the command out");
    assert_eq!(out.status.code(), Some(7), "{stdout}\n{stderr}");
    assert!(stderr.contains("pre_upgrade hook (exec) failed: timed out after"), "{stderr}");
    assert_eq!(f.run.inspect(&name, "{{.Id}}"), old_id, "the very same container");
    assert_eq!(f.run.inspect(&name, "{{.State.Running}}"), "true");
}

#[test]
fn a_failing_post_upgrade_rolls_back_after_pre_rollback_ran_in_the_new_container() {
    let f = Fixture::new("hooks_post_upgrade_fails");
    let (name, old_id) = f.web();
    let hooks = "      post_upgrade: {exec: [/testbox, fail, migration 7 failed]}\n      pre_rollback: {exec: [/testbox, write, /data/rollback, undo, $TESTBOX_VERSION]}\n";
    let out = f.reconcile(&name, &format!("{}:2", f.repo), hooks);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(6), "rolled back\n{stdout}\n{stderr}");
    assert!(stderr.contains("post_upgrade hook (exec) failed: exit code 3: migration 7 failed"), "{stderr}");
    assert_eq!(f.run.inspect(&name, "{{.Id}}"), old_id, "the very same old container is back");
    assert_eq!(f.run.inspect(&name, "{{.State.Running}}"), "true");
    // pre_rollback ran in the new container (it shares the volume).
    let undo = f.read(&name, "/data/rollback");
    assert!(undo.starts_with("undo 2\n"), "{undo}");
    assert!(undo.contains("CONTAINER_UPGRADER_HOOK=pre_rollback"), "{undo}");
    let row = f.status(&name);
    assert_eq!(row["outcome"], "rolled_back", "{row}");
    let phases: Vec<&str> =
        row["hooks"].as_array().expect("hooks").iter().filter_map(|h| h["phase"].as_str()).collect();
    assert_eq!(phases, ["post_upgrade", "pre_rollback"], "{row}");
    let names = f.run.docker(&["ps", "-a", "--filter", &f.run.label_filter(), "--format", "{{.Names}}"]);
    assert!(!names.contains("--cu-"), "leftovers: {names}");
}

#[test]
fn pre_rollback_runs_on_the_controller_when_the_gate_fails() {
    let f = Fixture::new("hooks_pre_rollback_gate");
    let broken = format!("{}:broken", f.repo);
    f.run.build_image(
        &broken,
        &ImageSpec {
            env: vec![("TESTBOX_EXIT_AFTER_MS", "300"), ("TESTBOX_EXIT_CODE", "5")],
            ..Default::default()
        },
    );
    f.run.push(&broken);
    let (name, old_id) = f.web();
    let marker = f.run.write_file("notified", "");
    let hooks = format!(
        "      pre_rollback: {{run: [sh, -c, 'echo \"rolling back $CONTAINER_UPGRADER_CONTAINER from $CONTAINER_UPGRADER_NEW_IMAGE\" > {}; echo token=abc123secret']}}\n",
        marker.display()
    );
    let out = f.reconcile(&name, &broken, &hooks);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(6), "rolled back\n{stdout}\n{stderr}");
    assert!(stderr.contains("exited with code 5"), "{stderr}");
    assert_eq!(f.run.inspect(&name, "{{.Id}}"), old_id, "the very same old container is back");
    let written = std::fs::read_to_string(&marker).expect("marker");
    assert_eq!(written.trim(), format!("rolling back {name} from {broken}"));
    let row = f.status(&name);
    let hook = &row["hooks"][0];
    assert_eq!((hook["phase"].as_str(), hook["ok"].as_bool()), (Some("pre_rollback"), Some(true)), "{row}");
    // An assignment in a hook's output is masked like a container's log.
    assert!(!f.journal_text().contains("abc123secret"), "token kept in the journal");
    assert!(hook["output"].as_str().unwrap_or_default().contains("token=***"), "{row}");
}

#[test]
fn start_first_runs_post_upgrade_in_the_new_container_and_rolls_back_when_it_fails() {
    let f = Fixture::new("hooks_start_first_post_upgrade");
    let (name, old_id) = f.web();
    let hooks = "      post_upgrade: {exec: [/testbox, say, smoke, test, on, version, $TESTBOX_VERSION, passed], timeout: 10s}\n      pre_rollback: {exec: [/testbox, write, /data/rollback, undo]}\n";
    // The target's order, given through the same manifest.
    let hooks = format!("{hooks}    order: start-first\n");
    let out = f.reconcile(&name, &format!("{}:2", f.repo), &hooks);
    let (stdout, stderr) = text(&out);
    // `say` exits 0: the hook passes, in the new container, and the swap commits.
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    assert_ne!(f.run.inspect(&name, "{{.Id}}"), old_id);
    let row = f.status(&name);
    let output = row["hooks"][0]["output"].as_str().unwrap_or_default().to_string();
    assert!(output.contains("smoke test on version 2 passed"), "{row}");

    // Back to 1 with a post_upgrade that fails: the old (app:2) container returns.
    let current = f.run.inspect(&name, "{{.Id}}");
    let hooks = "      post_upgrade: {exec: [/testbox, fail, smoke test failed]}\n      pre_rollback: {exec: [/testbox, write, /data/rollback, undo]}\n    order: start-first\n";
    let out = f.reconcile(&name, &format!("{}:1", f.repo), hooks);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(6), "rolled back\n{stdout}\n{stderr}");
    assert_eq!(f.run.inspect(&name, "{{.Id}}"), current, "the very same container is back");
    assert_eq!(f.run.inspect(&name, "{{.State.Running}}"), "true");
    assert!(f.read(&name, "/data/rollback").contains("CONTAINER_UPGRADER_HOOK=pre_rollback"));
    let names = f.run.docker(&["ps", "-a", "--filter", &f.run.label_filter(), "--format", "{{.Names}}"]);
    assert!(!names.contains("--cu-"), "leftovers: {names}");
}

#[test]
fn an_exec_hook_whose_program_is_missing_fails_and_changes_nothing() {
    let f = Fixture::new("hooks_missing_program");
    let (name, old_id) = f.web();
    let out =
        f.reconcile(&name, &format!("{}:2", f.repo), "      pre_upgrade: {exec: [/usr/bin/pg_dump, app]}\n");
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(7), "{stdout}\n{stderr}");
    assert!(stderr.contains("pre_upgrade hook (exec) failed"), "{stderr}");
    assert!(stderr.contains("/usr/bin/pg_dump"), "says which program: {stderr}");
    assert_eq!(f.run.inspect(&name, "{{.Id}}"), old_id, "the very same container");
}
