//! Running docker (and other commands) with a deadline, and bounded waits.

use std::io::Read;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// Generous: the legacy builder on fuse-overlayfs is slow, and a timeout only
/// has to catch a wedged daemon, not a slow one.
pub(super) const DOCKER_TIMEOUT: Duration = Duration::from_secs(180);

/// Polls `done` every 100 ms; panics naming `what` after `timeout`.
pub fn wait_for(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !done() {
        assert!(Instant::now() < deadline, "timed out after {timeout:?} waiting for {what}");
        thread::sleep(Duration::from_millis(100));
    }
}

/// Runs docker; panics with the command and stderr on failure; returns
/// trimmed stdout.
pub fn docker(args: &[&str]) -> String {
    try_docker(args).unwrap_or_else(|e| panic!("{e}"))
}

/// Runs docker; `Err` holds the command and its stderr.
pub fn try_docker(args: &[&str]) -> Result<String, String> {
    run_docker(args, &[])
}

pub(super) fn run_docker(args: &[&str], envs: &[(&str, &str)]) -> Result<String, String> {
    let mut cmd = Command::new("docker");
    cmd.args(args).envs(envs.iter().copied());
    let shown = format!("docker {}", args.join(" "));
    let out = run_bounded(&mut cmd, DOCKER_TIMEOUT).map_err(|e| format!("`{shown}` {e}"))?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        return Err(format!("`{shown}` failed ({}): {}", out.status, stderr.trim()));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// `docker build -q --force-rm -t TAG CONTEXT` with the legacy builder
/// (there is no buildx here, and no internet to fetch BuildKit's
/// frontend); returns the image id.
///
/// With other tests building at the same time on fuse-overlayfs, the
/// legacy builder now and then loses the image its previous step just made
/// ("unable to find image sha256:…" at the step after `FROM scratch`; seen
/// in the fleet and crash suites): a build that failed that way is run
/// again, up to twice more. Any other failure fails at once.
pub(super) fn docker_build(tag: &str, context: &Path) -> String {
    let context = context.to_string_lossy();
    let args = ["build", "-q", "--force-rm", "-t", tag, &context];
    let mut attempt = 1;
    loop {
        match run_docker(&args, &[("DOCKER_BUILDKIT", "0")]) {
            Ok(out) => return out.lines().last().unwrap_or_default().to_string(),
            Err(e) if e.contains("unable to find image") && attempt < 3 => {
                eprintln!("docker build of {tag} lost an intermediate image (attempt {attempt}); again: {e}");
                attempt += 1;
                std::thread::sleep(Duration::from_millis(500));
            }
            Err(e) => panic!("{e}"),
        }
    }
}

pub(super) fn expect_success(cmd: &mut Command, shown: &str, timeout: Duration) -> Output {
    let out = run_bounded(cmd, timeout).unwrap_or_else(|e| panic!("`{shown}` {e}"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "`{shown}` failed ({}): {}", out.status, stderr.trim());
    out
}

/// `Command::output` with a deadline: the child is killed when it passes.
pub(super) fn run_bounded(cmd: &mut Command, timeout: Duration) -> Result<Output, String> {
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().map_err(|e| format!("could not start: {e}"))?;
    // Drained on threads so a chatty child cannot block on a full pipe.
    let stdout = drain(child.stdout.take());
    let stderr = drain(child.stderr.take());
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait().map_err(|e| format!("waiting: {e}"))? {
            Some(status) => break status,
            None if Instant::now() < deadline => thread::sleep(Duration::from_millis(10)),
            None => {
                let _ = child.kill();
                let _ = child.wait();
                let stderr = String::from_utf8_lossy(&stderr.join().unwrap_or_default()).into_owned();
                return Err(format!("timed out after {timeout:?}; stderr: {}", stderr.trim()));
            }
        }
    };
    let stdout = stdout.join().unwrap_or_default();
    let stderr = stderr.join().unwrap_or_default();
    Ok(Output { status, stdout, stderr })
}

fn drain(pipe: Option<impl Read + Send + 'static>) -> thread::JoinHandle<Vec<u8>> {
    thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(mut pipe) = pipe {
            let _ = pipe.read_to_end(&mut buf);
        }
        buf
    })
}
