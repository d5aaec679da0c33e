//! Without any system CA certificate — a bare `FROM scratch` image — the
//! registry and webhook clients still work: plain HTTP needs none, and
//! HTTPS falls back to the bundled web PKI roots. Never a panic message.
#![cfg(feature = "docker-tests")]

mod common;

use std::net::TcpListener;
use std::process::Output;
use std::time::Duration;

use common::{receiver, wait_for, TestRun};

fn text(out: &Output) -> String {
    format!("{}\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

fn no_panic(what: &str, output: &str) {
    assert!(!output.to_lowercase().contains("panic"), "{what} printed a panic:\n{output}");
}

#[test]
fn plan_and_reconcile_reach_a_plain_http_registry_without_ca_certificates() {
    let run = TestRun::new("no_ca_certificates_cli");
    let registry = run.registry();
    let app = registry.repo("app");
    run.publish_versions(&app);
    run.run_container("web", &format!("{app}:1"), &[]);
    let web = run.name("web");
    let manifest = format!(
        "version: 1\ndefaults:\n  health: {{stable: 1s, timeout: 30s}}\ntargets:\n  - container: {web}\n    image: {app}:2\n"
    );
    let file = run.write_file("desired-state.yaml", manifest);
    let file = file.to_str().expect("utf-8 path");
    let state = run.empty_dir("state").display().to_string();
    // The system store, as the TLS stack reads it, is empty.
    let empty_file = run.write_file("no-certs.pem", "").display().to_string();
    let empty_dir = run.empty_dir("no-certs").display().to_string();
    let env = [("SSL_CERT_FILE", empty_file.as_str()), ("SSL_CERT_DIR", empty_dir.as_str())];

    let out = run.cli_with_env(&["plan", "-f", file, "--state-dir", &state, "--output", "json"], &env);
    assert!(out.status.success(), "{}", text(&out));
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).expect("plan JSON");
    assert_eq!(plan["actions"][0]["action"], "upgrade", "{plan:#}");
    assert!(plan["actions"][0]["desired"]["digest"].as_str().is_some_and(|d| d.starts_with("sha256:")));
    no_panic("plan", &text(&out));

    let out = run.cli_with_env(&["reconcile", "-f", file, "--once", "--state-dir", &state], &env);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(run.inspect(&web, "{{.Config.Image}}"), format!("{app}:2"));
    no_panic("reconcile", &text(&out));
}

#[test]
fn a_from_scratch_controller_without_ca_certificates_reconciles_and_reports() {
    let run = TestRun::new("no_ca_certificates_image");
    let registry = run.registry();
    let app = registry.repo("app");
    run.publish_versions(&app);
    let ctl_image = registry.repo("ctl") + ":bare";
    run.build_upgrader_image_without_ca_certificates(&ctl_image, &[]);
    run.run_container("web", &format!("{app}:1"), &[]);
    let web = run.name("web");

    // The webhook is plain HTTP on loopback, like the registry.
    let listener = TcpListener::bind("127.0.0.1:0").expect("receiver");
    let port = listener.local_addr().expect("port").port();
    let reports = receiver(listener);
    let manifest = format!(
        "version: 1\ndefaults:\n  health: {{stable: 1s, timeout: 30s}}\nreport: {{webhook: \"http://127.0.0.1:{port}/events\"}}\ntargets:\n  - container: {web}\n    image: {app}:2\n"
    );
    let dir = run.write_file("manifest/desired-state.yaml", manifest);
    let dir = dir.parent().expect("manifest dir").display().to_string();
    let (ctl, label) = (run.name("ctl"), run.label());
    let state = format!("{}:/var/lib/container-upgrader", run.volume("state"));
    let manifest_mount = format!("{dir}:/etc/container-upgrader:ro");
    // As the README runs the controller.
    let mut args = vec!["run", "-d", "--name", &ctl, "--label", &label, "--network", "host"];
    args.extend(["-v", "/var/run/docker.sock:/var/run/docker.sock", "-v", &state, "-v", &manifest_mount]);
    args.extend([ctl_image.as_str(), "run", "-f", "/etc/container-upgrader/desired-state.yaml", "-v"]);
    run.docker(&args);
    let certs = run.try_docker(&["cp", &format!("{ctl}:/etc/ssl"), "-"]);
    assert!(certs.is_err(), "the image has no /etc/ssl at all");

    wait_for("the controller to upgrade web", Duration::from_secs(90), || {
        run.try_docker(&["inspect", "-f", "{{.Config.Image}}", &web]).is_ok_and(|i| i == format!("{app}:2"))
    });
    wait_for("the op's report", Duration::from_secs(60), || reports.lock().is_ok_and(|r| !r.is_empty()));
    let event: serde_json::Value =
        serde_json::from_str(&reports.lock().expect("reports")[0]).expect("report JSON");
    assert_eq!(event["outcome"], "committed", "{event:#}");
    assert_eq!(event["to"], format!("{app}:2"));

    run.docker(&["stop", "-t", "20", &ctl]);
    let logs = run.logs(&ctl);
    assert_eq!(run.inspect(&ctl, "{{.State.ExitCode}}"), "0", "{logs}");
    no_panic("the controller", &logs);
    assert!(logs.contains("trusting the bundled web PKI roots"), "the fallback was taken:\n{logs}");
    assert!(!logs.contains("cannot build"), "{logs}");
}
