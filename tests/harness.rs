//! Proves the shared harness (`tests/common`) and the testbox fixture
//! against the real daemon, so a failure in an engine test can be trusted
//! to be about the engine.
#![cfg(feature = "docker-tests")]

mod common;

use std::time::{Duration, Instant};

use common::{base64, docker, http_status, try_docker, wait_for, ImageSpec, TestRun};

const WAIT: Duration = Duration::from_secs(20);

fn version_spec(version: &str) -> ImageSpec<'_> {
    ImageSpec {
        env: vec![("TESTBOX_VERSION", version)],
        labels: vec![("org.example.version", version)],
        ..Default::default()
    }
}

#[test]
fn images_pushed_to_the_test_registry_pull_back_and_run() {
    let run = TestRun::new("images_pushed_pull_back_and_run");
    let registry = run.registry();
    let repo = registry.repo("app");
    let (v1, v2) = (format!("{repo}:1"), format!("{repo}:2"));
    let id1 = run.build_image(&v1, &version_spec("1"));
    let id2 = run.build_image(&v2, &version_spec("2"));
    assert_ne!(id1, id2, "different env and labels must give different images");
    run.push(&v1);
    run.push(&v2);

    // Deleting the local copy and pulling it back proves the registry has it.
    run.docker(&["rmi", &v2]);
    run.docker(&["pull", &v2]);
    assert_eq!(run.inspect(&v2, "{{.Id}}"), id2);
    let label = run.inspect(&v2, "{{index .Config.Labels \"org.example.version\"}}");
    assert_eq!(label, "2");

    let container = run.run_container("app", &v1, &[]);
    assert_eq!(run.inspect(&container, "{{.State.Status}}"), "running");
    wait_for("`testbox 1 started` in the logs", WAIT, || run.logs(&container).contains("testbox 1 started"));
}

#[test]
fn testbox_stops_promptly_and_cleanly_on_sigterm() {
    let run = TestRun::new("testbox_stops_on_sigterm");
    let image = run.build_image(&run.name("img:1"), &ImageSpec::default());
    let container = run.run_container("app", &image, &[]);
    wait_for("testbox to start", WAIT, || run.logs(&container).contains("started"));

    // Without a handler PID 1 ignores SIGTERM and `docker stop` would wait
    // its full 10 s before SIGKILL.
    let started = Instant::now();
    run.docker(&["stop", "-t", "10", &container]);
    let took = started.elapsed();
    assert!(took < Duration::from_secs(5), "docker stop took {took:?}");
    assert_eq!(run.inspect(&container, "{{.State.ExitCode}}"), "0");
}

#[test]
fn testbox_exits_with_the_requested_code() {
    let run = TestRun::new("testbox_exits_with_code");
    let image = run.build_image(&run.name("img:1"), &ImageSpec::default());
    let env = ["-e", "TESTBOX_EXIT_AFTER_MS=200", "-e", "TESTBOX_EXIT_CODE=3"];
    let container = run.run_container("app", &image, &env);
    assert_eq!(run.docker(&["wait", &container]), "3");
    assert!(run.logs(&container).contains("testbox exiting with 3"));
}

#[test]
fn failing_healthcheck_makes_the_container_unhealthy() {
    let run = TestRun::new("failing_healthcheck_unhealthy");
    let spec = ImageSpec { env: vec![("TESTBOX_HEALTH", "fail")], healthcheck: true, ..Default::default() };
    let image = run.build_image(&run.name("img:1"), &spec);
    let failing = run.run_container("failing", &image, &[]);
    let passing = run.run_container("passing", &image, &["-e", "TESTBOX_HEALTH=ok"]);

    let health = |id: &str| run.inspect(id, "{{.State.Health.Status}}");
    wait_for("the failing container to be unhealthy", WAIT, || health(&failing) == "unhealthy");
    wait_for("the passing container to be healthy", WAIT, || health(&passing) == "healthy");
    let log = run.inspect(&failing, "{{range .State.Health.Log}}{{.Output}}{{end}}");
    assert!(log.contains("health: failing on purpose"), "health log: {log}");
}

#[test]
fn testbox_serves_http_with_the_requested_status() {
    let run = TestRun::new("testbox_serves_http");
    let image = run.build_image(&run.name("img:1"), &ImageSpec::default());
    let args = ["-e", "TESTBOX_HTTP_PORT=8080", "-e", "TESTBOX_HTTP_STATUS=503", "-p", "127.0.0.1::8080"];
    let container = run.run_container("web", &image, &args);
    let port = run.docker(&["port", &container, "8080/tcp"]);
    let addr = port.lines().next().unwrap_or_default().to_string();
    wait_for("HTTP 503 from testbox", WAIT, || http_status(&addr, "/healthz") == Ok(503));
}

#[test]
fn testbox_writes_the_requested_file_into_a_volume() {
    let run = TestRun::new("testbox_writes_file");
    let image = run.build_image(&run.name("img:1"), &ImageSpec::default());
    let volume = run.volume("data");
    let mount = format!("{volume}:/data");
    let args = ["-v", &mount, "-e", "TESTBOX_WRITE=/data/sub/hello:world"];
    let container = run.run_container("writer", &image, &args);
    wait_for("testbox to start", WAIT, || run.logs(&container).contains("started"));

    let copy = run.write_file("copy/placeholder", "");
    let target = copy.with_file_name("hello");
    let source = format!("{container}:/data/sub/hello");
    run.docker(&["cp", &source, &target.to_string_lossy()]);
    assert_eq!(std::fs::read_to_string(&target).ok().as_deref(), Some("world"));
}

#[test]
fn stopped_registry_refuses_connections_until_restarted() {
    let run = TestRun::new("registry_stop_restart");
    let mut registry = run.registry();
    let addr = registry.addr();
    assert_eq!(http_status(&addr, "/v2/"), Ok(200));
    registry.stop();
    assert!(http_status(&addr, "/v2/").is_err(), "registry still answers");
    registry.restart();
    assert_eq!(http_status(&addr, "/v2/"), Ok(200));
}

#[test]
fn auth_registry_refuses_anonymous_pulls_and_accepts_its_login() {
    let run = TestRun::new("auth_registry_login");
    let mut registry = run.registry_with_auth("alice", "pa55:word");
    let addr = registry.addr();
    assert_eq!(http_status(&addr, "/v2/"), Ok(401), "anonymous requests must be refused");
    let tag = format!("{}:1", registry.repo("app"));
    let id = run.build_image(&tag, &ImageSpec::default());
    registry.push(&tag);

    run.docker(&["rmi", &tag]);
    let anonymous = try_docker(&["pull", &tag]);
    assert!(anonymous.is_err(), "anonymous pull succeeded: {anonymous:?}");
    registry.docker(&["pull", &tag]);
    assert_eq!(run.inspect(&tag, "{{.Id}}"), id);
    registry.restart();
    assert_eq!(http_status(&addr, "/v2/"), Ok(401), "auth must survive a restart");
}

#[test]
fn base64_encodes_logins_as_docker_login_does() {
    assert_eq!(base64(b"alice:s3cret"), "YWxpY2U6czNjcmV0");
    assert_eq!(base64(b"a:b"), "YTpi");
    assert_eq!(base64(b"a:bc"), "YTpiYw==");
    assert_eq!(base64(b"a:bcd"), "YTpiY2Q=");
    assert_eq!(base64(b""), "");
}

#[test]
fn dropping_the_run_removes_everything_it_labelled() {
    let run = TestRun::new("dropping_run_removes_all");
    let filter = run.label_filter();
    let other = TestRun::new("dropping_run_other");
    let other_image = other.build_image(&other.name("img:1"), &ImageSpec::default());
    let bystander = other.run_container("bystander", &other_image, &[]);
    let spec = ImageSpec { volumes: vec!["/anon"], ..Default::default() };
    let image = run.build_image(&run.name("img:1"), &spec);
    let running = run.run_container("running", &image, &[]);
    let exited = ["-e", "TESTBOX_EXIT_AFTER_MS=1", "-e", "TESTBOX_EXIT_CODE=1"];
    run.run_container("exited", &image, &exited);
    let network = run.network("net");
    let volume = run.volume("vol");
    let anonymous = run.inspect(&running, "{{range .Mounts}}{{.Name}}{{end}}");
    assert_eq!(anonymous.len(), 64, "expected one anonymous volume: {anonymous}");

    drop(run);

    let lists: [&[&str]; 4] = [
        &["ps", "-aq", "--filter", &filter],
        &["images", "-aq", "--filter", &filter],
        &["network", "ls", "-q", "--filter", &filter],
        &["volume", "ls", "-q", "--filter", &filter],
    ];
    for list in lists {
        assert_eq!(docker(list), "", "`docker {}` after drop", list.join(" "));
    }
    for gone in [&network, &volume, &anonymous] {
        assert!(try_docker(&["inspect", gone]).is_err(), "{gone} survived the drop");
    }
    // Another run's objects are not ours to remove.
    assert_eq!(other.inspect(&bystander, "{{.State.Status}}"), "running");
}

#[test]
fn run_is_cleaned_up_even_when_the_test_panics() {
    let mut filter = String::new();
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let run = TestRun::new("cleaned_up_on_panic");
        filter = run.label_filter();
        let image = run.build_image(&run.name("img:1"), &ImageSpec::default());
        run.run_container("app", &image, &[]);
        panic!("deliberate failure with a running container");
    }));
    assert!(outcome.is_err());
    assert_eq!(docker(&["ps", "-aq", "--filter", &filter]), "");
    assert_eq!(docker(&["images", "-aq", "--filter", &filter]), "");
}
