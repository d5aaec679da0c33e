//! `run`: wires the library's controller loop ([`container_upgrader::daemon`])
//! to the process — signals, the file and Docker watches, the API — and
//! prints what it reports.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, RwLock};

use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::mpsc;

use container_upgrader::api::{self, ApiConfig};
use container_upgrader::controller::Controller;
use container_upgrader::daemon::{self, Daemon, Event, Exit, Inputs};
use container_upgrader::gitsource::{self, GitSource};
use container_upgrader::link;
use container_upgrader::metrics::Metrics;
use container_upgrader::status::{SharedSnapshot, Snapshot};
use container_upgrader::trigger::{Trigger, Triggers};
use container_upgrader::watch;

use super::{exit, swap_cmd, Failure};
use container_upgrader::err;

/// What `run` was given besides the controller.
pub struct Options<'a> {
    pub manifest: &'a Path,
    pub webhook: Option<String>,
    /// Serve the agent API here.
    pub listen: Option<SocketAddr>,
    /// The bearer token state-changing API calls need (read from a file).
    pub token: Option<String>,
    /// The read-only token (read from `--read-token-file`).
    pub read_token: Option<String>,
    /// `--allow-any-image`: the API writes even without `policy.allowed_images`.
    pub allow_any_image: bool,
    /// `--server`: the link to a fleet server.
    pub fleet: Option<FleetLink>,
    /// `--git`: the manifest from a Git repository.
    pub git: Option<gitsource::Config>,
}

/// `run --server …`.
pub struct FleetLink {
    pub server: String,
    pub enrol_token_file: Option<std::path::PathBuf>,
    /// `--agent-name`.
    pub name: Option<String>,
    pub state_dir: std::path::PathBuf,
    pub wait: std::time::Duration,
}

pub async fn run(controller: &Controller, options: Options<'_>) -> Result<u8, Failure> {
    let (tx, triggers) = mpsc::channel::<Trigger>(64);
    let snapshot: SharedSnapshot = Arc::new(RwLock::new(Snapshot::default()));
    let metrics = Arc::new(Metrics::new());
    let git = match options.git.clone() {
        Some(config) => Some(
            GitSource::start(config, snapshot.clone(), metrics.clone())
                .map_err(|e| Failure::new(exit::USAGE, format!("error: {e}")))?,
        ),
        None => None,
    };
    let refresh = git.as_ref().map(GitSource::refresh);
    let stops = forward_signals(tx.clone(), refresh.clone())?;
    let current: watch::Current = Arc::new(RwLock::new(None));
    let _watcher = watch::watch_file(options.manifest, tx.clone()).map_err(|e| {
        Failure::new(exit::INTERNAL, format!("error: watching {}: {e}", options.manifest.display()))
    })?;
    tokio::spawn(watch::watch_docker(controller.swapper().engine().clone(), current.clone(), tx.clone()));
    let (api_stop, api_stopped) = tokio::sync::oneshot::channel::<()>();
    let api = match options.listen {
        Some(addr) => {
            let api_inputs = (tx.clone(), refresh);
            Some(start_api(addr, &options, snapshot.clone(), api_inputs, metrics.clone(), api_stopped).await?)
        }
        None => None,
    };
    let _link = match options.fleet {
        Some(fleet) => {
            let name = fleet.name.clone().unwrap_or_else(|| default_name(controller));
            let config = link::Config {
                server: fleet.server.clone(),
                enrol_token_file: fleet.enrol_token_file.clone(),
                name,
                manifest: options.manifest.to_path_buf(),
                state_dir: fleet.state_dir.clone(),
                wait: fleet.wait,
                reports_only: options.git.is_some(),
            };
            let started = link::Link::start(config, snapshot.clone(), metrics.clone())
                .map_err(|e| Failure::new(exit::USAGE, format!("error: {e}")))?;
            Some(started)
        }
        None => None,
    };
    let daemon_options =
        daemon::Options { manifest: options.manifest.to_path_buf(), webhook: options.webhook.clone() };
    let mut daemon = Daemon::start(controller, daemon_options, current, snapshot, metrics, print).await;
    let on_stop = || {
        controller.stop();
        err!("stopping: no new swap starts; waiting for the swaps in flight (signal again to force)");
    };
    let ended =
        daemon::run(&mut daemon, on_stop, Inputs { triggers, stops }, daemon::Config::default()).await;
    controller.stop();
    if ended == Exit::Forced {
        err!("stopping: forced; a swap cut short is finished by the next start or `container-upgrader recover`");
        return Ok(exit::ATTENTION);
    }
    let _ = api_stop.send(());
    if let Some(api) = api {
        let _ = api.await;
    }
    err!("stopping: no swap in flight");
    Ok(exit::OK)
}

/// The controller's container name, else the host name.
fn default_name(controller: &Controller) -> String {
    if let Some(me) = controller.me() {
        return me.name.clone();
    }
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "agent".to_string())
}

/// What the daemon reports, on stdout and stderr.
fn print(event: Event<'_>) {
    match event {
        Event::Note(note) => err!("{note}"),
        Event::Pass(pass) => {
            swap_cmd::print_pass(pass);
        }
        Event::PassFailed(e) => err!("error: {e}"),
    }
}

/// SIGHUP becomes a trigger (and a look at the Git source); each SIGTERM
/// or SIGINT one stop request.
fn forward_signals(
    triggers: Triggers,
    git: Option<gitsource::Refresh>,
) -> Result<mpsc::Receiver<()>, Failure> {
    let fail =
        |e: std::io::Error| Failure::new(exit::INTERNAL, format!("error: installing signal handlers: {e}"));
    let mut term = signal(SignalKind::terminate()).map_err(fail)?;
    let mut int = signal(SignalKind::interrupt()).map_err(fail)?;
    let mut hup = signal(SignalKind::hangup()).map_err(fail)?;
    let (stop, stops) = mpsc::channel(4);
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = term.recv() => { let _ = stop.try_send(()); }
                _ = int.recv() => { let _ = stop.try_send(()); }
                _ = hup.recv() => {
                    let _ = triggers.try_send(Trigger::Hangup);
                    if let Some(git) = &git {
                        git.now();
                    }
                }
            }
        }
    });
    Ok(stops)
}

/// Binds and serves the API on its own task; it stops when `stopped` fires.
async fn start_api(
    addr: SocketAddr,
    options: &Options<'_>,
    snapshot: SharedSnapshot,
    (triggers, git_refresh): (Triggers, Option<gitsource::Refresh>),
    metrics: Arc<Metrics>,
    stopped: tokio::sync::oneshot::Receiver<()>,
) -> Result<tokio::task::JoinHandle<()>, Failure> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| Failure::new(exit::USAGE, format!("error: cannot listen on {addr}: {e}")))?;
    let config = ApiConfig {
        listen: addr,
        token: options.token.clone(),
        read_token: options.read_token.clone(),
        manifest_path: options.manifest.to_path_buf(),
        allow_any_image: options.allow_any_image,
        git_refresh,
    };
    let shutdown = async {
        let _ = stopped.await;
    };
    Ok(tokio::spawn(async move {
        if let Err(e) = api::serve(listener, config, snapshot, triggers, metrics, shutdown).await {
            tracing::error!(error = %e, "the API stopped");
        }
    }))
}
