//! Swarm services for the service tests: created labelled (the service
//! and its task containers), waited on, sampled, and removed with the run.
//! [`TestRun::on_swarm`] makes the engine a single-node Swarm manager for
//! the test process and leaves it as it found it.

use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use super::process::try_docker;
use super::{wait_for, TestRun};

/// How long a service may take to reach its replica count.
pub const CONVERGE: Duration = Duration::from_secs(90);

impl TestRun {
    /// [`TestRun::new`] on an engine that is a Swarm manager: the first
    /// call of the process makes an engine in no swarm a single-node
    /// manager (`docker swarm init --advertise-addr 127.0.0.1`) and starts
    /// a watcher that makes it leave again once this process has ended —
    /// also after a panic — so the engine is left as it was found. An
    /// engine already in a swarm is used as it is and never left.
    pub fn on_swarm(test: &str) -> TestRun {
        static NODE: OnceLock<Result<(), String>> = OnceLock::new();
        if let Err(e) = NODE.get_or_init(swarm_manager) {
            panic!("{e}");
        }
        TestRun::new(test)
    }

    /// `docker service create` of `replicas` tasks of `image` named
    /// `<name(suffix)>`, the service and its containers carrying the run
    /// label; waits until every task runs. Returns the service name.
    pub fn service(&self, suffix: &str, image: &str, replicas: u32, extra_args: &[&str]) -> String {
        self.service_running(suffix, image, &[], replicas, extra_args)
    }

    /// [`TestRun::service`] with `command` as the tasks' arguments.
    pub fn service_running(
        &self,
        suffix: &str,
        image: &str,
        command: &[&str],
        replicas: u32,
        extra_args: &[&str],
    ) -> String {
        let (name, label, replicas_arg) = (self.name(suffix), self.label(), replicas.to_string());
        let mut args = vec!["service", "create", "--detach", "--name", &name, "--label", &label];
        args.extend(["--container-label", &label, "--replicas", &replicas_arg]);
        // Quick to stop: the tests replace tasks many times.
        args.extend(["--stop-grace-period", "2s"]);
        args.extend_from_slice(extra_args);
        args.push(image);
        args.extend_from_slice(command);
        self.docker(&args);
        self.wait_running(&name, replicas as usize);
        name
    }

    /// Waits until `service` has `replicas` running tasks, and no other.
    pub fn wait_running(&self, service: &str, replicas: usize) {
        wait_for(&format!("{replicas} running tasks of {service}"), CONVERGE, || {
            // Swarm's own count lags its containers a little; both agree
            // once the service has settled.
            let counted = try_docker(&[
                "service",
                "ls",
                "--filter",
                &format!("name={service}"),
                "--format",
                "{{.Name}} {{.Replicas}}",
            ]);
            let settled =
                counted.is_ok_and(|c| c.lines().any(|l| l == format!("{service} {replicas}/{replicas}")));
            settled && self.running_tasks(service) == replicas
        });
    }

    /// How many of `service`'s task containers run now.
    pub fn running_tasks(&self, service: &str) -> usize {
        running_tasks(service)
    }

    /// The image `service`'s spec names (`repo:tag@sha256:…`).
    pub fn service_image(&self, service: &str) -> String {
        self.docker(&["service", "inspect", "-f", "{{.Spec.TaskTemplate.ContainerSpec.Image}}", service])
    }

    /// `UpdateStatus.State` and `StartedAt` (empty before any update).
    pub fn update_status(&self, service: &str) -> (String, String) {
        let format = "{{if .UpdateStatus}}{{.UpdateStatus.State}} {{.UpdateStatus.StartedAt}}{{end}}";
        let out = self.docker(&["service", "inspect", "-f", format, service]);
        let (state, started) = out.split_once(' ').unwrap_or((&out, ""));
        (state.to_string(), started.to_string())
    }

    /// The registry digest of `image` (`repo:tag`), as the engine pushed it.
    pub fn registry_digest(&self, image: &str) -> String {
        let digests = self.inspect(image, "{{range .RepoDigests}}{{.}} {{end}}");
        let digests: Vec<&str> = digests.split_whitespace().collect();
        let repo = image.rsplit_once(':').map_or(image, |(r, _)| r);
        let found = digests.iter().find_map(|d| d.strip_prefix(&format!("{repo}@")));
        found.unwrap_or_else(|| panic!("{image} has no digest of {repo}: {digests:?}")).to_string()
    }
}

/// How many of `service`'s task containers run now (0 when docker fails:
/// a sampler must not panic on its thread).
pub fn running_tasks(service: &str) -> usize {
    let filter = format!("label=com.docker.swarm.service.name={service}");
    let out =
        try_docker(&["ps", "-q", "--filter", &filter, "--filter", "status=running"]).unwrap_or_default();
    out.lines().count()
}

/// Samples `probe` every `every` on a thread until the returned guard is
/// finished; the samples come back in order.
pub struct Sampler<T: Send + 'static> {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<Vec<(Duration, T)>>>,
}

impl<T: Send + 'static> Sampler<T> {
    /// Starts sampling.
    pub fn start(every: Duration, mut probe: impl FnMut() -> T + Send + 'static) -> Self {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stopping = stop.clone();
        let thread = std::thread::spawn(move || {
            let start = Instant::now();
            let mut samples = Vec::new();
            while !stopping.load(std::sync::atomic::Ordering::SeqCst) {
                samples.push((start.elapsed(), probe()));
                std::thread::sleep(every);
            }
            samples
        });
        Self { stop, thread: Some(thread) }
    }

    /// Stops and returns every sample with its time since the start.
    pub fn finish(mut self) -> Vec<(Duration, T)> {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        self.thread
            .take()
            .map(|t| t.join().unwrap_or_else(|_| panic!("the sampler panicked")))
            .unwrap_or_default()
    }
}

impl<T: Send + 'static> Drop for Sampler<T> {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

/// Removes the services labelled `filter` (before their containers, or
/// Swarm would start new ones) and waits for their tasks to go. Nothing
/// to do on an engine that is not a manager.
pub(super) fn remove_services(filter: &str, failures: &mut Vec<String>) {
    let listed = match try_docker(&["service", "ls", "--filter", filter, "--format", "{{.Name}}"]) {
        Ok(listed) => listed,
        // Not a manager: there can be no service to remove.
        Err(e) if e.contains("not a swarm manager") => return,
        Err(e) => {
            failures.push(e);
            return;
        }
    };
    let names: Vec<&str> = listed.split_whitespace().collect();
    if names.is_empty() {
        return;
    }
    let args: Vec<&str> = ["service", "rm"].into_iter().chain(names.iter().copied()).collect();
    if let Err(e) = try_docker(&args) {
        failures.push(e);
    }
    // Task containers go asynchronously; the container pass that follows
    // removes any still there, and must not race Swarm re-creating them.
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        let left = names.iter().any(|name| {
            let filter = format!("label=com.docker.swarm.service.name={name}");
            !try_docker(&["ps", "-aq", "--filter", &filter]).unwrap_or_default().is_empty()
        });
        if !left {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn swarm_manager() -> Result<(), String> {
    let state = try_docker(&["info", "--format", "{{.Swarm.LocalNodeState}}"])?;
    match state.trim() {
        "active" => Ok(()),
        "inactive" => {
            // `swarm init` makes this network and `swarm leave` keeps it:
            // removed after leaving when the init made it.
            let had_bridge = try_docker(&["network", "inspect", "docker_gwbridge"]).is_ok();
            try_docker(&["swarm", "init", "--advertise-addr", "127.0.0.1"])?;
            leave_when_done(!had_bridge)
        }
        other => Err(format!(
            "the engine's swarm state is {other:?}: the Swarm tests need an engine in no swarm (they make it \
             a single-node manager and leave again) or one that is a manager"
        )),
    }
}

/// A detached shell that waits for this process to end, then takes the
/// engine out of the Swarm this process made: Rust's test harness has no
/// hook after the last test, and a panic must not leave the engine a
/// manager.
fn leave_when_done(remove_bridge: bool) -> Result<(), String> {
    let bridge = if remove_bridge { "; docker network rm docker_gwbridge >/dev/null 2>&1" } else { "" };
    let script = format!(
        "while kill -0 {pid} 2>/dev/null; do sleep 0.5; done; docker swarm leave --force >/dev/null 2>&1{bridge}",
        pid = std::process::id()
    );
    Command::new("setsid")
        .args(["sh", "-c", &script])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map(drop)
        .map_err(|e| format!("starting the watcher that leaves the Swarm after the tests: {e}"))
}
