//! The gate's rules, one observation at a time.

use super::*;

fn gate(probe: Probe) -> HealthGate {
    HealthGate { timeout: Duration::from_secs(60), stable: Duration::from_secs(5), probe }
}

fn running() -> Sample {
    Sample { status: "running".into(), running: true, ..Sample::default() }
}

fn at(secs: u64) -> Duration {
    Duration::from_secs(secs)
}

fn verdict(
    gate: &HealthGate,
    now: &Sample,
    hc: bool,
    elapsed: Duration,
    probe: Option<Result<(), String>>,
) -> Verdict {
    judge(gate, &Observation { first: &running(), now, has_healthcheck: hc, elapsed, probe })
}

#[test]
fn running_and_stable_passes_only_after_the_stable_period() {
    let g = gate(Probe::Auto);
    assert!(matches!(verdict(&g, &running(), false, at(1), None), Verdict::Wait(_)));
    assert_eq!(verdict(&g, &running(), false, at(5), None), Verdict::Pass);
}

#[test]
fn an_exit_fails_at_once_with_the_code_and_oom() {
    let exited = Sample { status: "exited".into(), running: false, exit_code: 3, ..Sample::default() };
    assert_eq!(
        verdict(&gate(Probe::Auto), &exited, false, at(1), None),
        Verdict::Fail("exited with code 3".into())
    );
    let oom = Sample { exit_code: 137, oom_killed: true, ..exited };
    assert_eq!(
        verdict(&gate(Probe::Running), &oom, false, at(1), None),
        Verdict::Fail("exited with code 137, killed by the kernel OOM killer".into())
    );
}

#[test]
fn a_restart_by_the_restart_policy_fails_even_if_running_again() {
    let restarted = Sample { restart_count: 2, exit_code: 1, ..running() };
    assert_eq!(
        verdict(&gate(Probe::Auto), &restarted, false, at(10), None),
        Verdict::Fail("restarted 2 time(s) by its restart policy; last exit code 1".into())
    );
}

#[test]
fn a_healthcheck_decides_when_present() {
    let g = gate(Probe::Auto);
    let starting = Sample { health: Some("starting".into()), ..running() };
    assert_eq!(verdict(&g, &starting, true, at(30), None), Verdict::Wait("health check starting".into()));
    let healthy = Sample { health: Some("healthy".into()), ..running() };
    assert_eq!(verdict(&g, &healthy, true, at(1), None), Verdict::Pass, "healthy needs no stable period");
    let unhealthy =
        Sample { health: Some("unhealthy".into()), health_output: Some("db down".into()), ..running() };
    assert_eq!(
        verdict(&g, &unhealthy, true, at(1), None),
        Verdict::Fail("health check failed: db down".into())
    );
}

#[test]
fn running_probe_ignores_the_healthcheck() {
    let starting = Sample { health: Some("starting".into()), ..running() };
    assert_eq!(verdict(&gate(Probe::Running), &starting, true, at(6), None), Verdict::Pass);
}

#[test]
fn http_probe_needs_success_and_stability_and_times_out_with_the_last_error() {
    let g = gate(Probe::Http { port: 80, path: "/".into(), status: 200 });
    assert!(matches!(verdict(&g, &running(), false, at(1), Some(Ok(()))), Verdict::Wait(_)));
    assert_eq!(verdict(&g, &running(), false, at(5), Some(Ok(()))), Verdict::Pass);
    let failing = Some(Err("http probe GET http://172.17.0.2:80/ returned 500, expected 200".to_string()));
    assert!(matches!(verdict(&g, &running(), false, at(30), failing.clone()), Verdict::Wait(_)));
    assert_eq!(
        verdict(&g, &running(), false, at(60), failing),
        Verdict::Fail(
            "not healthy within 60s: http probe GET http://172.17.0.2:80/ returned 500, expected 200".into()
        )
    );
}

#[test]
fn a_never_healthy_container_fails_at_the_timeout() {
    let starting = Sample { health: Some("starting".into()), ..running() };
    assert_eq!(
        verdict(&gate(Probe::Auto), &starting, true, at(60), None),
        Verdict::Fail("not healthy within 60s: health check starting".into())
    );
}
