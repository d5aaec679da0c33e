//! Label selectors against the real engine: an op's backups, temporaries
//! and helpers copy their container's labels, yet a selector never plans or
//! touches them.
#![cfg(feature = "docker-tests")]

mod common;

use std::path::Path;
use std::process::Output;

use common::{ImageSpec, TestRun};
use serde_json::Value;

const HELPER_LABEL: &str = "container-upgrader.helper-for";

/// A label unique to the run, so the selector sees no other test's containers.
fn pick(run: &TestRun) -> String {
    format!("pick={}", run.id())
}

fn manifest(run: &TestRun, image: &str, extra: &str) -> String {
    format!(
        "version: 1\ndefaults:\n  health: {{stable: 1s, timeout: 30s}}\n{extra}targets:\n  - selector: {{label: \"{}\"}}\n    image: {image}\n",
        pick(run)
    )
}

fn cli(run: &TestRun, command: &str, file: &Path, state: &str, extra: &[&str]) -> Output {
    let mut args = vec![command, "-f", file.to_str().expect("utf-8 path"), "--state-dir", state];
    args.extend_from_slice(extra);
    run.cli(&args)
}

fn text(out: &Output) -> String {
    format!("{}\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

/// The containers `plan --output json` lists.
fn planned(run: &TestRun, file: &Path, state: &str) -> Vec<String> {
    let out = cli(run, "plan", file, state, &["--output", "json"]);
    assert!(out.status.success(), "plan: {}", text(&out));
    let plan: Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("plan JSON ({e}): {}", text(&out)));
    plan["actions"]
        .as_array()
        .map(|a| a.iter().filter_map(|e| e["container"].as_str().map(str::to_string)).collect())
        .unwrap_or_default()
}

/// Id, image and running state: what touching a container would change.
fn fingerprint(run: &TestRun, name: &str) -> String {
    run.inspect(name, "{{.Id}} {{.Config.Image}} {{.State.Running}} {{.State.StartedAt}}")
}

/// `docker create`/`run` of `name` exactly (no run prefix: the name's shape
/// is the point), with the run label, the selected label and `extra`.
fn container(run: &TestRun, verb: &str, name: &str, image: &str, extra: &[&str]) {
    let (label, pick) = (run.label(), pick(run));
    let mut args = vec![verb, "--name", name, "--label", &label, "--label", &pick];
    if verb == "run" {
        args.insert(1, "-d");
    }
    args.extend_from_slice(extra);
    args.push(image);
    run.docker(&args);
}

#[test]
fn a_selector_never_plans_or_touches_backups_temporaries_or_helpers() {
    let run = TestRun::new("selector_skips_scaffolding");
    let registry = run.registry();
    let app = registry.repo("app");
    run.publish_versions(&app);
    let v1 = format!("{app}:1");
    let web = run.name("web");
    container(&run, "run", &web, &v1, &[]);
    // What ops leave beside a container, all carrying its labels: a
    // stopped backup, a temporary, a helper known by name, and one known
    // only by its label.
    let backup = format!("{web}--cu-backup-1a2b3c4d5e6f");
    let temporary = format!("{web}--cu-new-1a2b3c4d5e6f");
    let named_helper = format!("{web}--cu-helper-1a2b3c4d5e6f");
    let labelled_helper = run.name("helper");
    container(&run, "create", &backup, &v1, &[]);
    container(&run, "run", &temporary, &v1, &[]);
    container(&run, "run", &named_helper, &v1, &[]);
    container(&run, "run", &labelled_helper, &v1, &["--label", &format!("{HELPER_LABEL}={web}")]);
    let scaffolding = [&backup, &temporary, &named_helper, &labelled_helper];
    let before: Vec<String> = scaffolding.iter().map(|n| fingerprint(&run, n)).collect();

    let file = run.write_file("desired-state.yaml", manifest(&run, &format!("{app}:2"), ""));
    let state = run.empty_dir("state").display().to_string();
    assert_eq!(planned(&run, &file, &state), [web.as_str()], "plan lists the real container only");

    let out = cli(&run, "reconcile", &file, &state, &["--once"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("Reconciled: 1 upgraded"), "{}", text(&out));
    assert_eq!(run.inspect(&web, "{{.Config.Image}}"), format!("{app}:2"));
    let after: Vec<String> = scaffolding.iter().map(|n| fingerprint(&run, n)).collect();
    assert_eq!(after, before, "backup, temporary and helpers untouched");
}

#[test]
fn a_kept_backup_renamed_by_hand_is_still_never_a_target() {
    let run = TestRun::new("selector_skips_renamed_backup");
    let registry = run.registry();
    let app = registry.repo("app");
    run.publish(
        &format!("{app}:1"),
        &ImageSpec { env: vec![("TESTBOX_VERSION", "1")], ..Default::default() },
    );
    let broken = ImageSpec {
        env: vec![("TESTBOX_EXIT_AFTER_MS", "300"), ("TESTBOX_EXIT_CODE", "5")],
        ..Default::default()
    };
    run.publish(&format!("{app}:2"), &broken);
    let web = run.name("web");
    container(&run, "run", &web, &format!("{app}:1"), &[]);

    // Rollback disabled: the failed new container stays, the old one is
    // kept stopped as the backup — the operator's way back.
    let file =
        run.write_file("desired-state.yaml", manifest(&run, &format!("{app}:2"), "  rollback: false\n"));
    let state = run.empty_dir("state").display().to_string();
    let out = cli(&run, "reconcile", &file, &state, &["--once"]);
    assert_eq!(out.status.code(), Some(8), "failed without rollback\n{}", text(&out));
    let filter = format!("name={web}--cu-backup-");
    let backup = run.docker(&["ps", "-a", "--filter", &filter, "--format", "{{.Names}}"]);
    assert!(!backup.is_empty() && !backup.contains('\n'), "one kept backup: {backup:?}");

    // Renamed by hand, its name no longer says what it is; the journal does.
    let renamed = run.name("web-previous");
    run.docker(&["rename", &backup, &renamed]);
    let before = fingerprint(&run, &renamed);
    assert_eq!(planned(&run, &file, &state), [web.as_str()], "plan does not list the backup");
    let out = cli(&run, "reconcile", &file, &state, &["--once"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("0 upgraded"), "{}", text(&out));
    assert_eq!(fingerprint(&run, &renamed), before, "the rollback point is untouched");
    assert_eq!(run.inspect(&renamed, "{{.Config.Image}}"), format!("{app}:1"));
}
