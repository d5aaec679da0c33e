//! A damaged or forged journal never costs a container. The record of a
//! swap interrupted mid-way is truncated, garbled, given wrong types,
//! emptied, replaced by a symlink, a FIFO or an oversized file: `recover`
//! exits 8 naming the file, moves it aside (not deleted), finds the op's
//! leftovers by name and restores the old container; a container the tool
//! did not create — even one named like a backup — is never touched.
//! A forged record naming a user's container is refused the same way.
#![cfg(all(feature = "docker-tests", feature = "fault-injection"))]

mod common;

use std::fs;
use std::path::{Path, PathBuf};

use common::TestRun;

struct Case {
    run: TestRun,
    _registry: common::TestRegistry,
    repo: String,
}

fn case(test: &str) -> Case {
    let run = TestRun::new(test);
    let (registry, repo) = run.registry_with_versions();
    Case { run, _registry: registry, repo }
}

impl Case {
    fn state(&self, name: &str) -> PathBuf {
        self.run.write_file(&format!("{name}/.keep"), "").parent().expect("dir").to_path_buf()
    }

    /// A running app:1 container with marker data; interrupted after
    /// `stopped` (old renamed to its backup, new one created); returns
    /// its name and the op's record file.
    fn interrupted(&self, suffix: &str, state: &Path) -> (String, PathBuf) {
        let volume = self.run.volume(&format!("{suffix}-data"));
        self.run.run_container(suffix, &format!("{}:1", self.repo), &["-v", &format!("{volume}:/data")]);
        let name = self.run.name(suffix);
        let marker = self.run.write_file(&format!("{suffix}-marker"), "precious data\n");
        self.run.docker(&["cp", marker.to_str().expect("utf-8"), &format!("{name}:/data/marker")]);
        let image = format!("{}:2", self.repo);
        let state_arg = state.display().to_string();
        let args = ["upgrade", &name, "--image", &image, "--state-dir", &state_arg, "--stable", "1s"];
        let env = ("CONTAINER_UPGRADER_FAULT_PAUSE_AFTER", "stopped");
        assert!(self.run.cli_killed_at(&args, env, "fault-injection: paused after stopped"));
        let record = fs::read_dir(state.join("ops"))
            .expect("ops dir")
            .filter_map(Result::ok)
            .map(|e| e.path())
            .find(|p| p.extension().is_some_and(|x| x == "json"))
            .expect("the op's record");
        let names = self.names();
        assert!(names.contains(&format!("{name}--cu-backup-")), "a backup to recover: {names}");
        (name, record)
    }

    fn names(&self) -> String {
        self.run.docker(&["ps", "-a", "--filter", &self.run.label_filter(), "--format", "{{.Names}}"])
    }

    fn recover(&self, state: &Path) -> std::process::Output {
        self.run.cli(&["recover", "--state-dir", &state.display().to_string()])
    }

    /// The old container is back under its name, running, with its data.
    fn restored(&self, name: &str, what: &str) {
        assert_eq!(self.run.inspect(name, "{{.State.Running}}"), "true", "{name} runs {what}");
        assert_eq!(self.run.inspect(name, "{{.Config.Image}}"), format!("{}:1", self.repo), "{what}");
        let dest =
            self.run.write_file(&format!("out-{name}/.keep"), "").parent().expect("dir").join("marker");
        self.run.docker(&["cp", &format!("{name}:/data/marker"), dest.to_str().expect("utf-8")]);
        assert_eq!(fs::read_to_string(&dest).expect("marker"), "precious data\n", "data intact {what}");
    }
}

fn damage(record: &Path, how: &str) {
    let write = |bytes: &[u8]| fs::write(record, bytes).expect("damage the record");
    match how {
        "truncated" => {
            let bytes = fs::read(record).expect("record");
            write(&bytes[..bytes.len() / 2]);
        }
        "garbage" => write(b"\x00\xffthis is not json at all"),
        "wrong types" => {
            let mut value: serde_json::Value =
                serde_json::from_slice(&fs::read(record).expect("record")).expect("json");
            value["steps"] = serde_json::json!(42);
            value["was_running"] = serde_json::json!("yes");
            write(&serde_json::to_vec(&value).expect("json"));
        }
        "empty" => write(b""),
        "symlink" => {
            fs::remove_file(record).expect("rm");
            std::os::unix::fs::symlink("/etc/hostname", record).expect("symlink");
        }
        "fifo" => {
            fs::remove_file(record).expect("rm");
            let made = std::process::Command::new("mkfifo").arg(record).status().expect("mkfifo");
            assert!(made.success());
        }
        "oversized" => write(&vec![b' '; 4 * 1024 * 1024]),
        other => panic!("unknown damage {other}"),
    }
}

#[test]
fn a_damaged_record_needs_attention_and_its_leftovers_are_resolved_by_name() {
    let c = case("journal_damage");
    // Not the tool's: named like a backup, but no journal here made it.
    c.run.run_container("bystander--cu-backup-1a2b3c4d5e6f", &format!("{}:1", c.repo), &[]);
    let bystander = c.run.name("bystander--cu-backup-1a2b3c4d5e6f");
    for how in ["truncated", "garbage", "wrong types", "empty", "symlink", "fifo", "oversized"] {
        let state = c.state(&format!("state-{}", how.replace(' ', "-")));
        let (name, record) = c.interrupted(&how.replace(' ', "-"), &state);
        damage(&record, how);

        let out = c.recover(&state);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(8), "{how}: needs attention: {err}");
        assert!(err.contains(&record.display().to_string()), "{how}: names the file: {err}");
        assert!(err.contains("moved aside to"), "{how}: {err}");
        // The op's record is rebuilt (same op id) from Docker's state.
        let rebuilt = fs::read_to_string(&record).unwrap_or_default();
        assert!(rebuilt.contains("rebuilt from Docker's state"), "{how}: {rebuilt}");
        let kept = fs::read_dir(state.join("damaged")).expect("damaged dir").count();
        assert_eq!(kept, 1, "{how}: kept, not deleted");
        c.restored(&name, how);
        let names = c.names();
        assert!(!names.contains(&format!("{name}--cu-")), "{how}: leftovers resolved: {names}");
        assert!(names.contains(&bystander), "{how}: a container this journal did not make stays");
        assert_eq!(c.run.inspect(&bystander, "{{.State.Running}}"), "true", "{how}");

        let again = c.recover(&state);
        assert!(again.status.success(), "{how}: {}", String::from_utf8_lossy(&again.stderr));
        c.restored(&name, how);
    }
}

#[test]
fn a_forged_record_never_removes_a_users_container() {
    let c = case("journal_forged");
    c.run.run_container("users-db", &format!("{}:1", c.repo), &[]);
    let user = c.run.name("users-db");
    let user_id = c.run.inspect(&user, "{{.Id}}");
    let state = c.state("state");
    fs::create_dir_all(state.join("ops")).expect("ops");
    let record = |id: &str, container: &str, old_id: &str, new_id: &str, backup: &str, steps: &[&str]| {
        serde_json::json!({
            "op_id": id, "container": container, "old_id": old_id, "old_image": "x", "old_image_id": "x",
            "new_image": "y", "new_image_id": "y", "was_running": true, "order": "stop-first",
            "backup_name": backup, "temp_name": format!("{container}--cu-new-abc"),
            "new_id": new_id, "reason": null,
            "steps": steps.iter().map(|s| serde_json::json!({"step": s, "at": "2026-01-01T00:00:00.000Z"})).collect::<Vec<_>>(),
        })
    };
    let forgeries = [
        // An unfinished swap whose "new container" is the user's.
        record(
            "f1",
            "ghost",
            "no-such-container",
            &user_id,
            "ghost--cu-backup-abc",
            &["prepared", "started"],
        ),
        // A committed swap whose "backup" is the user's container by id and name.
        record("f2", "x", &user_id, "", &user, &["prepared", "committed"]),
        // The same with the tool's naming but the user's id.
        record("f3", &user, &user_id, "", &format!("{user}--cu-backup-abc"), &["prepared", "committed"]),
    ];
    for (i, f) in forgeries.iter().enumerate() {
        let path = state.join("ops").join(format!("f{}.json", i + 1));
        fs::write(&path, serde_json::to_vec(f).expect("json")).expect("write");
    }
    let out = c.recover(&state);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(8), "needs attention: {err}");
    assert!(err.contains("f2.json"), "the record naming a user's container as backup is refused: {err}");
    assert_eq!(c.run.inspect(&user, "{{.Id}}"), user_id, "the user's container is untouched");
    assert_eq!(c.run.inspect(&user, "{{.State.Running}}"), "true");
}
