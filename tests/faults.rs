//! The promise under every fault: the upgrader is frozen just after each
//! mutating Engine request it sends (create, connect, disconnect, stop,
//! rename, start, remove — request 1, 2, 3, … of the swap, until one run
//! finishes without reaching the next), SIGKILLed there, and `recover`
//! runs. Every time, each point three times, stop-first and start-first,
//! committing and rolling back: exactly one container carries the name,
//! it runs — and still runs once a stop the engine had accepted would have
//! finished — on the old or the new image, on both its networks, with no
//! leftover, and its volume's data intact.
//!
//! The app takes a second to stop: a kill just after the stop request is
//! the race where the engine finishes the stop after `recover` has looked.
#![cfg(all(feature = "docker-tests", feature = "fault-injection"))]

mod common;

use std::time::Duration;

use common::{ImageSpec, TestRun};

const REPETITIONS: usize = 3;

struct Case {
    run: TestRun,
    _registry: common::TestRegistry,
    repo: String,
    state: String,
    network: String,
}

fn case(test: &str) -> Case {
    let run = TestRun::new(test);
    let (registry, repo) = run.registry_with_versions();
    let broken = ImageSpec {
        env: vec![("TESTBOX_EXIT_AFTER_MS", "300"), ("TESTBOX_EXIT_CODE", "9")],
        ..Default::default()
    };
    run.publish(&format!("{repo}:broken"), &broken);
    let state = run.write_file("state/.keep", "").parent().expect("dir").display().to_string();
    let network = run.network("second");
    Case { run, _registry: registry, repo, state, network }
}

/// How one frozen run went.
enum Run {
    /// Frozen after the request and killed.
    Killed,
    /// The upgrade ended before sending that many requests.
    Finished,
}

impl Case {
    /// A running app:1 container, slow to stop, on two networks, with
    /// marker data in a volume; returns its name.
    fn app(&self, suffix: &str) -> String {
        let volume = self.run.volume(&format!("{suffix}-data"));
        let mount = format!("{volume}:/data");
        let args = ["-v", &mount, "-e", "TESTBOX_STOP_DELAY_MS=1000", "--stop-timeout", "4"];
        self.run.run_container(suffix, &format!("{}:1", self.repo), &args);
        let name = self.run.name(suffix);
        self.run.docker(&["network", "connect", &self.network, &name]);
        let marker = self.run.write_file(&format!("{suffix}-marker"), "precious data\n");
        self.run.docker(&["cp", marker.to_str().expect("utf-8"), &format!("{name}:/data/marker")]);
        name
    }

    /// Runs `upgrade` frozen after its `n`-th mutating request; SIGKILLs it there.
    fn upgrade_frozen_at(&self, name: &str, image: &str, order: &str, n: usize) -> Run {
        let args = ["upgrade", name, "--image", image, "--order", order, "--state-dir", &self.state];
        let args = [&args[..], &["--stable", "1s", "--health-timeout", "20s"]].concat();
        let at = n.to_string();
        let marker = format!("fault-injection: froze after request {n} ");
        match self.run.cli_killed_at(&args, ("CONTAINER_UPGRADER_FAULT_FREEZE_AT_REQUEST", &at), &marker) {
            true => Run::Killed,
            false => Run::Finished,
        }
    }

    fn recover(&self, what: &str) {
        let out = self.run.cli(&["recover", "--state-dir", &self.state]);
        assert!(
            out.status.success(),
            "recover failed {what}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// The invariant; returns the tag the survivor runs.
    fn invariant(&self, name: &str, what: &str) -> String {
        let filter = format!("name=^/{name}$");
        let ids = self.run.docker(&["ps", "-aq", "--filter", &filter]);
        assert_eq!(ids.lines().count(), 1, "exactly one container named {name} {what}: {ids:?}");
        // Past the app's 1 s shutdown: a stop the engine accepted before the
        // kill has finished by now if recover did not wait it out.
        std::thread::sleep(Duration::from_millis(1500));
        assert_eq!(self.run.inspect(name, "{{.State.Running}}"), "true", "{name} runs {what}");
        let image = self.run.inspect(name, "{{.Config.Image}}");
        let tag = image.rsplit(':').next().unwrap_or_default().to_string();
        assert!(tag == "1" || tag == "2", "{image} {what}");
        let networks = self.run.inspect(name, "{{range $n, $_ := .NetworkSettings.Networks}}{{$n}} {{end}}");
        assert!(
            networks.contains(&self.network) && networks.contains("bridge"),
            "networks {what}: {networks}"
        );
        let names =
            self.run.docker(&["ps", "-a", "--filter", &self.run.label_filter(), "--format", "{{.Names}}"]);
        assert!(!names.contains("--cu-"), "leftovers {what}: {names}");
        let dest =
            self.run.write_file(&format!("out-{name}/.keep"), "").parent().expect("dir").join("marker");
        self.run.docker(&["cp", &format!("{name}:/data/marker"), dest.to_str().expect("utf-8")]);
        assert_eq!(std::fs::read_to_string(&dest).expect("marker"), "precious data\n", "data intact {what}");
        tag
    }

    /// Kills the upgrade after every request in turn, `REPETITIONS` times
    /// each; returns the number of points and the tags that survived.
    fn every_point(&self, order: &str, tag: &str) -> (usize, Vec<String>) {
        let image = format!("{}:{tag}", self.repo);
        let mut survivors = Vec::new();
        for n in 1.. {
            for rep in 0..REPETITIONS {
                let name = self.app(&format!("{order}-{tag}-{n}-{rep}"));
                let what = format!("after a kill at request {n} ({order} to {tag}, run {rep})");
                match self.upgrade_frozen_at(&name, &image, order, n) {
                    Run::Finished => {
                        assert_eq!(rep, 0, "request {n} was reached once but not {what}");
                        self.run.docker(&["rm", "-f", &name]);
                        return (n - 1, survivors);
                    }
                    Run::Killed => {}
                }
                self.recover(&what);
                survivors.push(self.invariant(&name, &what));
                // Nothing is left for a second recover.
                let again = self.run.cli(&["recover", "--state-dir", &self.state]);
                assert_eq!(String::from_utf8_lossy(&again.stdout).trim(), "nothing to recover", "{what}");
                self.run.docker(&["rm", "-f", &name]);
            }
        }
        unreachable!("the loop returns")
    }
}

#[test]
fn a_kill_after_any_request_of_a_stop_first_upgrade_keeps_the_invariant() {
    let c = case("faults_stop_first_commit");
    let (points, survivors) = c.every_point("stop-first", "2");
    // create, connect, stop, rename, rename, start, remove the backup.
    assert_eq!(points, 7, "{survivors:?}");
    assert!(survivors.iter().any(|t| t == "1") && survivors.iter().any(|t| t == "2"), "{survivors:?}");
}

#[test]
fn a_kill_after_any_request_of_a_start_first_upgrade_keeps_the_invariant() {
    let c = case("faults_start_first_commit");
    let (points, survivors) = c.every_point("start-first", "2");
    // create, connect, start, take the old one off the second network
    // (recover connects it again), stop, rename, rename, remove the backup.
    assert_eq!(points, 8, "{survivors:?}");
    assert!(survivors.iter().any(|t| t == "2"), "{survivors:?}");
}

#[test]
fn a_kill_after_any_request_of_a_stop_first_rollback_keeps_the_old_container() {
    let c = case("faults_stop_first_rollback");
    let (points, survivors) = c.every_point("stop-first", "broken");
    // create, connect, stop, rename, rename, start, then the rollback:
    // remove the new container, rename the old one back, start it.
    assert_eq!(points, 9, "{survivors:?}");
    assert!(survivors.iter().all(|t| t == "1"), "{survivors:?}");
}

#[test]
fn a_kill_after_any_request_of_a_start_first_rollback_keeps_the_old_container() {
    let c = case("faults_start_first_rollback");
    let (points, survivors) = c.every_point("start-first", "broken");
    // create, connect, start the new one; it fails: remove it.
    assert_eq!(points, 4, "{survivors:?}");
    assert!(survivors.iter().all(|t| t == "1"), "{survivors:?}");
}
