//! The command line without Docker: exit codes and messages a script or a
//! person relies on.

use std::process::{Command, Output};

fn cli(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_container-upgrader"));
    cmd.args(args).envs(env.iter().copied());
    cmd.output().expect("the binary runs")
}

fn write(dir: &tempfile::TempDir, name: &str, text: &str) -> String {
    let path = dir.path().join(name);
    std::fs::write(&path, text).expect("write manifest");
    path.to_str().expect("utf-8 path").to_string()
}

#[test]
fn validate_accepts_the_example_with_exit_0() {
    let out = cli(&["validate", "-f", "desired-state.example.yaml"], &[]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "desired-state.example.yaml: valid (2 targets)\n");
}

#[test]
fn validate_refuses_with_exit_1_and_every_problem_positioned_on_stderr() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = write(
        &dir,
        "bad.yaml",
        "version: 1\ntargets:\n  - container: web\n    image: Web:1\n  - container: web\n    image: web:2\n",
    );
    let out = cli(&["validate", "-f", &file], &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty(), "nothing on stdout for an invalid manifest");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("{file}:4:12: targets[0].image: invalid image reference `Web:1`: repository name must be lowercase")),
        "{stderr}"
    );
    assert!(stderr.contains(&format!("{file}:5:16: targets[1].container: duplicate target")), "{stderr}");
    assert!(stderr.contains("nothing was done"), "{stderr}");
}

#[test]
fn plan_with_an_invalid_manifest_exits_1_before_touching_docker() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = write(&dir, "bad.yaml", "version: 1\ntargets: {}\n");
    // An unreachable engine proves the manifest is checked first.
    let out = cli(&["plan", "-f", &file], &[("DOCKER_HOST", "unix:///nonexistent/docker.sock")]);
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn plan_without_an_engine_exits_3_naming_where_it_looked() {
    let out = cli(
        &["plan", "-f", "desired-state.example.yaml"],
        &[("DOCKER_HOST", "unix:///nonexistent/docker.sock")],
    );
    assert_eq!(out.status.code(), Some(3));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("cannot connect to the Docker Engine (unix:///nonexistent/docker.sock)"),
        "{stderr}"
    );
}

#[test]
fn usage_errors_exit_2_and_help_documents_exit_codes() {
    assert_eq!(cli(&["plan", "--output", "yaml"], &[]).status.code(), Some(2));
    let help = cli(&["plan", "--help"], &[]);
    let text = String::from_utf8_lossy(&help.stdout);
    for needle in
        ["Exit codes:", "1  the manifest is invalid", "3  the Docker Engine", "4  plan --detailed-exitcode"]
    {
        assert!(text.contains(needle), "missing {needle:?} in:\n{text}");
    }
}

#[test]
fn the_agent_example_manifest_validates() {
    let out = cli(&["validate", "-f", "examples/agent/desired-state.yaml"], &[]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
}

/// `run` with `args`, against an engine that does not exist (so a run that
/// got past its options exits 3 at once); killed after 10 s: `None`.
fn run_briefly(args: &[&str]) -> (Option<i32>, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_container-upgrader"))
        .arg("run")
        .args(args)
        .env("DOCKER_HOST", "unix:///nonexistent/docker.sock")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("the binary runs");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let code = loop {
        if let Ok(Some(status)) = child.try_wait() {
            break status.code();
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    let mut stderr = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = std::io::Read::read_to_string(&mut e, &mut stderr);
    }
    (code, stderr)
}

#[test]
fn a_token_file_is_read_only_when_it_is_a_small_regular_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let fifo = dir.path().join("fifo");
    let made = Command::new("mkfifo").arg(&fifo).status().expect("mkfifo");
    assert!(made.success());
    let big = write(&dir, "big", &"t".repeat(64 * 1024));
    let cases = [
        ("/dev/zero".to_string(), "not a regular file"),
        (fifo.to_str().expect("utf-8").to_string(), "not a regular file"),
        (big, "limit"),
        (write(&dir, "short", "short\n"), "at least 16 characters"),
    ];
    for (path, says) in cases {
        let (code, stderr) = run_briefly(&["--listen", "127.0.0.1:0", "--token-file", &path]);
        assert_eq!(code, Some(2), "{path}: {stderr}");
        assert!(stderr.contains(says) && stderr.contains("--token-file"), "{path}: {stderr}");
    }
}

#[test]
fn a_token_file_others_can_read_is_warned_about() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("tempdir");
    let token = write(&dir, "token", "0123456789abcdef0123\n");
    std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let (code, stderr) = run_briefly(&["--listen", "127.0.0.1:0", "--token-file", &token]);
    assert_eq!(code, Some(3), "it goes on to the engine: {stderr}");
    assert!(stderr.contains("readable by group or others"), "{stderr}");
    std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let (_, stderr) = run_briefly(&["--listen", "127.0.0.1:0", "--token-file", &token]);
    assert!(!stderr.contains("readable by group or others"), "{stderr}");
}

#[test]
fn api_options_without_listen_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let token = write(&dir, "token", "0123456789abcdef0123\n");
    for args in [
        vec!["--token-file", token.as_str()],
        vec!["--read-token-file", token.as_str()],
        vec!["--allow-any-image"],
    ] {
        let (code, stderr) = run_briefly(&args);
        assert_eq!(code, Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains("--listen"), "{args:?}: {stderr}");
    }
}

#[test]
fn a_closed_output_pipe_is_never_a_panic() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bad = write(&dir, "bad.yaml", "version: 1\ntargets:\n  - container: web\n    image: Web:1\n");
    let good = write(&dir, "good.yaml", "version: 1\ntargets:\n  - container: web\n    image: app:1\n");
    let cases: [(&[&str], i32); 4] = [
        (&["validate", "-f", &bad], 1),
        (&["validate", "-f", &good], 0),
        (&["set", "web", "app:2", "-f", &good], 0),
        (&["set", "web", "UPPER:2", "-f", &good], 1),
    ];
    for (args, code) in cases {
        for _ in 0..10 {
            // Both streams into a pipe whose reader is already gone, as
            // `… 2>&1 | head -0` leaves them.
            let (reader, writer) = std::io::pipe().expect("pipe");
            drop(reader);
            let status = Command::new(env!("CARGO_BIN_EXE_container-upgrader"))
                .args(args)
                .stdout(writer.try_clone().expect("clone"))
                .stderr(writer)
                .status()
                .expect("the binary runs");
            assert_eq!(status.code(), Some(code), "{args:?}");
        }
    }
}

#[test]
fn validate_refuses_names_longer_than_the_engine_takes_without_echoing_them() {
    let dir = tempfile::tempdir().expect("tempdir");
    let name = "a".repeat(70_000);
    let file =
        write(&dir, "long.yaml", &format!("version: 1\ntargets:\n  - container: {name}\n    image: app:1\n"));
    let out = cli(&["validate", "-f", &file], &[]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("targets[0].container: container name"), "{stderr}");
    assert!(stderr.contains("at most 253 characters") && stderr.contains("(70000 characters)"), "{stderr}");
    assert!(stderr.len() < 1000, "the name was echoed whole: {} bytes", stderr.len());
}
