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
