//! `set` and `unset`: editing the manifest from the command line, no Docker
//! needed. The contract: the one value (or entry) changes and every other
//! byte stays; a refusal exits 1 with the reason on stderr and leaves the
//! file exactly as it was; concurrent writers never lose an edit.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const MANIFEST: &str = r#"# desired-state.yaml for the edge box
version: 1

policy:
  allowed_images:
    - app                       # docker.io/library/app
    - registry.local:5000/*

targets:
  # the web front
  - container: web
    image: app:1                # pinned by ops

  - container: db
    image: 'registry.local:5000/db:15'

  - {container: cache, image: "app:7"}
  - selector: {label: "tier=edge"}
    image: registry.local:5000/edge:1.4
  - container: tracker
    track: {image: app, semver: "^1"}
"#;

fn cli(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_container-upgrader")).args(args).output().expect("the binary runs")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A manifest file with `text`, mode 0640, in a fresh directory.
fn manifest(text: &str) -> (tempfile::TempDir, PathBuf, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("desired-state.yaml");
    fs::write(&path, text).expect("write manifest");
    fs::set_permissions(&path, fs::Permissions::from_mode(0o640)).expect("chmod");
    let display = path.to_str().expect("utf-8 path").to_string();
    (dir, path, display)
}

/// The lines that differ, as (1-based line, old, new); the line count must not change.
fn changed_lines(old: &str, new: &str) -> Vec<(usize, String, String)> {
    assert_eq!(old.lines().count(), new.lines().count(), "line count changed:\n{new}");
    old.lines()
        .zip(new.lines())
        .enumerate()
        .filter(|(_, (a, b))| a != b)
        .map(|(i, (a, b))| (i + 1, a.to_string(), b.to_string()))
        .collect()
}

/// Nothing but the manifest and its lock file: no temporary file left.
fn assert_no_leftovers(dir: &Path) {
    for entry in fs::read_dir(dir).expect("read dir") {
        let name = entry.expect("entry").file_name().to_string_lossy().into_owned();
        assert!(
            name == "desired-state.yaml" || name == ".desired-state.yaml.lock",
            "unexpected file left behind: {name}"
        );
    }
}

fn assert_validates(file: &str) {
    let out = cli(&["validate", "-f", file]);
    assert_eq!(out.status.code(), Some(0), "validate after the edit: {}", stderr(&out));
}

#[test]
fn set_changes_only_that_image_line_and_the_file_still_validates() {
    let (dir, path, file) = manifest(MANIFEST);
    let out = cli(&["set", "web", "app:2", "-f", &file]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout), format!("{file}: web → app:2\n"));
    let after = fs::read_to_string(&path).expect("read");
    assert_eq!(
        changed_lines(MANIFEST, &after),
        [(
            12,
            "    image: app:1                # pinned by ops".into(),
            "    image: app:2                # pinned by ops".into()
        )]
    );
    assert_eq!(fs::metadata(&path).expect("meta").permissions().mode() & 0o7777, 0o640, "mode kept");
    assert_no_leftovers(dir.path());
    assert_validates(&file);
}

#[test]
fn set_keeps_quoting_and_finds_label_and_flow_targets() {
    let (_dir, path, file) = manifest(MANIFEST);
    let edits = [
        ("db", "registry.local:5000/db:16", 15, "    image: 'registry.local:5000/db:16'"),
        ("cache", "app:8", 17, r#"  - {container: cache, image: "app:8"}"#),
        ("label tier=edge", "registry.local:5000/edge:1.5", 19, "    image: registry.local:5000/edge:1.5"),
    ];
    for (target, image, line, expected) in edits {
        let before = fs::read_to_string(&path).expect("read");
        let out = cli(&["set", target, image, "-f", &file]);
        assert_eq!(out.status.code(), Some(0), "{target}: {}", stderr(&out));
        assert_eq!(String::from_utf8_lossy(&out.stdout), format!("{file}: {target} → {image}\n"));
        let after = fs::read_to_string(&path).expect("read");
        assert_eq!(
            changed_lines(&before, &after),
            [(line, before.lines().nth(line - 1).expect("line").into(), expected.into())]
        );
    }
    assert_validates(&file);
}

#[test]
fn set_refusals_exit_1_and_leave_the_file_untouched() {
    let (dir, path, file) = manifest(MANIFEST);
    let cases = [
        ("web", "App:1", "invalid image reference `App:1`: repository name must be lowercase"),
        ("web", "app:1@sha256:00", "invalid image reference"),
        ("nope", "app:2", "no target `nope`"),
        ("nope", "app:2", "`web`, `db`, `cache`, `label tier=edge`, `tracker`"),
        ("web", "evil.io/app:2", "outside policy.allowed_images [app, registry.local:5000/*]"),
        ("tracker", "app:2", "`tracker` follows a semver range (`track:`)"),
    ];
    let mtime = fs::metadata(&path).expect("meta").modified().expect("mtime");
    for (target, image, needle) in cases {
        let out = cli(&["set", target, image, "-f", &file]);
        assert_eq!(out.status.code(), Some(1), "{target} {image}: {}", stderr(&out));
        assert!(out.stdout.is_empty(), "{target} {image}: nothing on stdout");
        assert!(stderr(&out).contains(needle), "{target} {image}: missing {needle:?} in:\n{}", stderr(&out));
        assert_eq!(fs::read_to_string(&path).expect("read"), MANIFEST, "{target} {image}: file untouched");
    }
    assert_eq!(fs::metadata(&path).expect("meta").modified().expect("mtime"), mtime, "never rewritten");
    assert_no_leftovers(dir.path());
}

#[test]
fn set_on_an_invalid_manifest_exits_1_with_its_problems_positioned() {
    let text = "version: 1\ntargets:\n  - container: web\n    image: app:1\n    colour: blue\n";
    let (_dir, path, file) = manifest(text);
    let out = cli(&["set", "web", "app:2", "-f", &file]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(&format!("{file}:5:5: targets[0].colour: unknown field `colour`")),
        "{}",
        stderr(&out)
    );
    assert_eq!(fs::read_to_string(&path).expect("read"), text);
}

#[test]
fn set_on_a_missing_file_exits_1_naming_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("absent.yaml");
    let file = file.to_str().expect("utf-8 path");
    let out = cli(&["set", "web", "app:2", "-f", file]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains(file), "{}", stderr(&out));
    assert!(!Path::new(file).exists(), "set does not create a manifest");
}

#[test]
fn unset_removes_the_entry_with_its_comment_and_the_file_still_validates() {
    let (dir, path, file) = manifest(MANIFEST);
    let out = cli(&["unset", "web", "-f", &file]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("web"), "{}", String::from_utf8_lossy(&out.stdout));
    let expected = MANIFEST.replace(
        "  # the web front\n  - container: web\n    image: app:1                # pinned by ops\n\n",
        "",
    );
    assert_eq!(fs::read_to_string(&path).expect("read"), expected);
    assert_eq!(fs::metadata(&path).expect("meta").permissions().mode() & 0o7777, 0o640, "mode kept");
    assert_no_leftovers(dir.path());
    assert_validates(&file);

    let out = cli(&["unset", "label tier=edge", "-f", &file]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let expected = expected
        .replace("  - selector: {label: \"tier=edge\"}\n    image: registry.local:5000/edge:1.4\n", "");
    assert_eq!(fs::read_to_string(&path).expect("read"), expected);
    assert_validates(&file);
}

#[test]
fn unset_refusals_exit_1_and_leave_the_file_untouched() {
    let (_dir, path, file) = manifest(MANIFEST);
    let out = cli(&["unset", "nope", "-f", &file]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("no target `nope`"), "{}", stderr(&out));
    assert_eq!(fs::read_to_string(&path).expect("read"), MANIFEST);

    let flow = "version: 1\ntargets: [{container: aa, image: app:1}, {container: bb, image: app:2}]\n";
    fs::write(&path, flow).expect("write");
    let out = cli(&["unset", "aa", "-f", &file]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("flow sequence"), "{}", stderr(&out));
    assert_eq!(fs::read_to_string(&path).expect("read"), flow);
}

#[test]
fn concurrent_set_processes_never_lose_an_edit() {
    let n = 8;
    let mut text = String::from("version: 1\ntargets:\n");
    for i in 0..n {
        text.push_str(&format!("  - container: c{i}   # target {i}\n    image: app:1\n"));
    }
    let (dir, path, file) = manifest(&text);
    let children: Vec<_> = (0..n)
        .map(|i| {
            Command::new(env!("CARGO_BIN_EXE_container-upgrader"))
                .args(["set", &format!("c{i}"), &format!("app:{}", i + 2), "-f", &file])
                .stdout(std::process::Stdio::null())
                .spawn()
                .expect("spawn")
        })
        .collect();
    for mut child in children {
        assert!(child.wait().expect("wait").success());
    }
    let after = fs::read_to_string(&path).expect("read");
    let mut expected = String::from("version: 1\ntargets:\n");
    for i in 0..n {
        expected.push_str(&format!("  - container: c{i}   # target {i}\n    image: app:{}\n", i + 2));
    }
    assert_eq!(after, expected);
    assert_no_leftovers(dir.path());
}
