//! `upgrade`, `reconcile --once` and `recover`: the commands that act.

use std::path::Path;

use clap::Args;

use container_upgrader::controller::{Controller, Own, Pass};
use container_upgrader::engine::Engine;
use container_upgrader::manifest::{Dur, HealthGate, Manifest, Order, Probe, PullPolicy, Settings};
use container_upgrader::plan::Action;
use container_upgrader::reconcile::{self, Applied};
use container_upgrader::reference::ImageRef;
use container_upgrader::summary::{Severity, Summary};
use container_upgrader::swap::backoff::Hold;
use container_upgrader::swap::journal::Journal;
use container_upgrader::swap::recover::Recovered;
use container_upgrader::swap::{Outcome, SwapError, SwapRequest, Swapper};
use container_upgrader::types::{Digest, OpId};

use super::{exit, Failure};
use container_upgrader::{err, out};

/// `upgrade CONTAINER --image REF …`
#[derive(Debug, Args)]
pub struct UpgradeArgs {
    /// The container, by name or id.
    container: String,
    /// The image to run (a tag, or name@sha256:…). Required (optional only
    /// for the internal `helper --recover-only`).
    #[arg(long)]
    image: Option<String>,
    /// stop-first, or start-first (no downtime; not with host ports or static IPs).
    #[arg(long, value_parser = parse_order, default_value = "stop-first")]
    order: Order,
    /// When to pull: always, if-missing, never.
    #[arg(long, value_parser = parse_pull, default_value = "always")]
    pull: PullPolicy,
    /// Time the new container has to pass the gate.
    #[arg(long, default_value = "60s", value_name = "DURATION")]
    health_timeout: Dur,
    /// How long it must stay running, restart count unchanged.
    #[arg(long, default_value = "5s", value_name = "DURATION")]
    stable: Dur,
    /// What the gate checks: auto, running, http:PORT[/PATH][=STATUS], tcp:PORT.
    #[arg(long, value_parser = parse_probe, default_value = "auto")]
    probe: Probe,
    /// Keep a failing new container instead of restoring the old one.
    #[arg(long)]
    no_rollback: bool,
    /// Remove the old image after the commit (when nothing else uses it).
    #[arg(long)]
    cleanup: bool,
    /// The op id to journal the swap under (set by a controller for its helper).
    #[arg(long, hide = true)]
    op_id: Option<String>,
    /// The digest the controller planned (set for its helper): pulled and
    /// created exactly, whatever the tag points at by then.
    #[arg(long, hide = true)]
    planned_digest: Option<String>,
    #[command(flatten)]
    state: super::StateArg,
}

fn parse_order(s: &str) -> Result<Order, String> {
    match s {
        "stop-first" => Ok(Order::StopFirst),
        "start-first" => Ok(Order::StartFirst),
        _ => Err(format!("`{s}`: expected stop-first or start-first")),
    }
}

fn parse_pull(s: &str) -> Result<PullPolicy, String> {
    match s {
        "always" => Ok(PullPolicy::Always),
        "if-missing" => Ok(PullPolicy::IfMissing),
        "never" => Ok(PullPolicy::Never),
        _ => Err(format!("`{s}`: expected always, if-missing or never")),
    }
}

fn parse_probe(s: &str) -> Result<Probe, String> {
    let port =
        |p: &str| p.parse::<u16>().ok().filter(|p| *p > 0).ok_or(format!("`{p}` is not a port (1-65535)"));
    match s.split_once(':') {
        None if s == "auto" => Ok(Probe::Auto),
        None if s == "running" => Ok(Probe::Running),
        Some(("tcp", p)) => Ok(Probe::Tcp { port: port(p)? }),
        Some(("http", rest)) => {
            let (rest, status) = match rest.split_once('=') {
                Some((r, st)) => (r, st.parse::<u16>().map_err(|_| format!("`{st}` is not an HTTP status"))?),
                None => (rest, 200),
            };
            let (p, path) =
                rest.split_once('/').map_or((rest, "/".to_string()), |(p, path)| (p, format!("/{path}")));
            Ok(Probe::Http { port: port(p)?, path, status })
        }
        _ => Err(format!("`{s}`: expected auto, running, http:PORT[/PATH][=STATUS] or tcp:PORT")),
    }
}

async fn swapper(state_dir: &Path) -> Result<Swapper, Failure> {
    let journal =
        Journal::open(state_dir).map_err(|e| Failure::new(exit::UNCHANGED, format!("error: {e}")))?;
    let engine = Engine::connect().await.map_err(|e| Failure::new(exit::ENGINE, format!("error: {e}")))?;
    Ok(Swapper::new(engine, journal))
}

/// Finishes interrupted swaps before anything new is done.
async fn recover_first(swapper: &Swapper) -> Result<(), Failure> {
    for r in recover_all(swapper).await? {
        err!("{}", describe(&r));
    }
    Ok(())
}

/// Finishes or undoes every interrupted swap; an op that could not be
/// finished, or a damaged journal record, needs attention (what was done
/// is still printed).
async fn recover_all(swapper: &Swapper) -> Result<Vec<Recovered>, Failure> {
    let recovery = reconcile::recover(swapper.engine(), swapper.journal(), |_| false)
        .await
        .map_err(|e| Failure::new(exit::ATTENTION, format!("error: recovering interrupted swaps: {e}")))?;
    if recovery.problems.is_empty() {
        return Ok(recovery.done);
    }
    for r in &recovery.done {
        err!("{}", describe(r));
    }
    let mut message: Vec<String> = recovery.problems.iter().map(|p| format!("error: {p}")).collect();
    message.push("error: needs attention; `container-upgrader recover` tries again".into());
    Err(Failure::new(exit::ATTENTION, message.join("\n")))
}

/// `recovered web (op …): restored the old container`.
fn describe(r: &Recovered) -> String {
    format!("recovered {} (op {}): {}", r.op.container, r.op.op_id, r.action)
}

fn request(args: UpgradeArgs) -> Result<SwapRequest, Failure> {
    let image =
        args.image.as_deref().ok_or_else(|| Failure::new(exit::USAGE, "error: --image REF is required"))?;
    let image =
        ImageRef::parse(image).map_err(|e| Failure::new(exit::USAGE, format!("error: --image: {e}")))?;
    if args.stable.0 >= args.health_timeout.0 {
        return Err(Failure::new(exit::USAGE, "error: --stable must be shorter than --health-timeout"));
    }
    let settings = Settings {
        pull: args.pull,
        order: args.order,
        rollback: !args.no_rollback,
        cleanup: args.cleanup,
        health: HealthGate { timeout: args.health_timeout.0, stable: args.stable.0, probe: args.probe },
        update: Default::default(),
        hooks: Default::default(),
    };
    let op_id = args
        .op_id
        .map(|id| OpId::parse(&id).map_err(|e| Failure::new(exit::USAGE, format!("error: --op-id: {e}"))))
        .transpose()?;
    let planned = args
        .planned_digest
        .map(|d| {
            Digest::parse(&d).map_err(|e| Failure::new(exit::USAGE, format!("error: --planned-digest: {e}")))
        })
        .transpose()?;
    Ok(SwapRequest { container: args.container, image, planned, settings, op_id, service: false })
}

pub async fn upgrade(args: UpgradeArgs) -> Result<u8, Failure> {
    let state_dir = args.state.state_dir.clone();
    // Bad arguments are refused before anything acts, recovery included.
    let request = request(args)?;
    let swapper = swapper(&state_dir).await?;
    recover_first(&swapper).await?;
    let result = swapper.swap(&request).await;
    report(&result);
    Ok(code(&result))
}

/// The controller's own identity flag, for `reconcile` and `run`.
#[derive(Debug, Args)]
pub struct SelfArg {
    /// This controller's own container id, when detection cannot find it.
    #[arg(long = "self-id", env = "CONTAINER_UPGRADER_SELF_ID")]
    self_id: Option<String>,
}

pub async fn controller(
    state_dir: &Path,
    self_arg: &SelfArg,
    parallel: usize,
    registry: &super::RegistryArgs,
) -> Result<Controller, Failure> {
    let swapper = swapper(state_dir).await?;
    Controller::new(
        swapper,
        state_dir,
        self_arg.self_id.as_deref(),
        parallel,
        registry.insecure.clone(),
        registry.registry_timeout.0,
    )
    .await
    .map_err(|e| Failure::new(exit::ENGINE, format!("error: {e}")))
}

pub async fn reconcile(controller: &Controller, manifest: &Manifest) -> Result<u8, Failure> {
    let pass = controller.pass(manifest).await.map_err(|e| match e {
        reconcile::ReconcileError::Engine(e) => Failure::new(exit::ENGINE, format!("error: {e}")),
        other => Failure::new(exit::ATTENTION, format!("error: {other}")),
    })?;
    Ok(print_pass(&pass))
}

/// Prints a pass's outcomes and its summary; returns the exit code of the
/// most serious one.
pub fn print_pass(pass: &Pass) -> u8 {
    let report = &pass.report;
    for r in &report.recovered {
        err!("{}", describe(r));
    }
    for (entry, applied) in &report.applied {
        let container = entry.container.as_deref().unwrap_or("-");
        match applied {
            Applied::Swapped(o) => print_outcome(o),
            Applied::Held(h) => print_held(container, entry, h),
            Applied::Error(e) => err!("error: {e}"),
        }
    }
    if let Some(news) = &pass.own_news {
        out!("{news}");
    }
    if let Some(own) = &pass.own {
        print_own(own);
    }
    let problems = report.plan.actions.iter().filter(|e| !matches!(e.action, Action::Upgrade | Action::None));
    for e in problems {
        err!("{}: {}: {}", e.container.as_deref().unwrap_or(&e.target), e.action, e.reason);
    }
    let summary = Summary::of(pass);
    out!("{summary}");
    severity_code(summary.severity)
}

/// The exit code for a pass's worst result.
pub fn severity_code(severity: Severity) -> u8 {
    match severity {
        Severity::Ok => exit::OK,
        Severity::Unchanged => exit::UNCHANGED,
        Severity::RolledBack => exit::ROLLED_BACK,
        Severity::Attention => exit::ATTENTION,
    }
}

fn print_held(container: &str, entry: &container_upgrader::plan::PlanEntry, h: &Hold) {
    let until = humantime::format_rfc3339_seconds(h.until);
    let image = entry.desired.as_ref().map_or("", |d| d.image.as_str());
    err!(
        "{container}: held: upgrade to {image} failed {} time(s), last: {}; next attempt after {until}",
        h.failures,
        h.reason
    );
}

fn print_own(own: &Own) {
    match own {
        Own::HelperStarted { helper, image } => {
            out!(
                "this controller: upgrading itself to {image} through helper {}",
                &helper[..helper.len().min(12)]
            );
        }
        Own::InProgress => {
            out!("this controller: a helper is already upgrading it");
        }
        Own::Held(h) => {
            let until = humantime::format_rfc3339_seconds(h.until);
            err!(
                "this controller: held: its upgrade failed {} time(s), last: {}; next attempt after {until}",
                h.failures,
                h.reason
            );
        }
        Own::Failed(e) => err!("this controller: nothing changed: {e}"),
    }
}

/// `helper`: run inside a helper container started by a controller.
#[derive(Debug, Args)]
pub struct HelperArgs {
    /// Only finish or undo an interrupted swap of the container, then exit.
    #[arg(long)]
    recover_only: bool,
    #[command(flatten)]
    upgrade: UpgradeArgs,
}

/// The helper: finishes an interrupted swap of the controller (when it was
/// restarted after dying mid-swap) or performs the swap it was started
/// for. It exits 0 for every definitive outcome — committed, rolled back,
/// refused — so its restart policy only brings it back after a crash, and
/// then it recovers.
pub async fn helper(args: HelperArgs) -> Result<u8, Failure> {
    let container = args.upgrade.container.clone();
    let swapper = swapper(&args.upgrade.state.state_dir).await?;
    let ops = swapper.journal().ops().map_err(|e| Failure::new(exit::ATTENTION, format!("error: {e}")))?;
    let interrupted = ops.iter().any(|op| op.container == container && !op.is_finished());
    // Restarted after its swap had begun: never start a second one.
    let begun = args.upgrade.op_id.as_deref().is_some_and(|id| ops.iter().any(|op| op.op_id.as_str() == id));
    if interrupted || begun || args.recover_only {
        for r in recover_all(&swapper).await? {
            out!("{}", describe(&r));
        }
        return Ok(exit::OK);
    }
    let request = request(args.upgrade)?;
    let result = swapper.swap(&request).await;
    report(&result);
    Ok(match result {
        Err(SwapError::Stuck { .. } | SwapError::Journal(_)) => exit::ATTENTION,
        _ => exit::OK,
    })
}

pub async fn recover(state_dir: &Path) -> Result<u8, Failure> {
    let swapper = swapper(state_dir).await?;
    let done = recover_all(&swapper).await?;
    for r in &done {
        out!("{}", describe(r));
    }
    // Containers left in a replaced container's network (a crash between a
    // commit and their recreation) follow it now.
    let rejoined = swapper
        .rejoin_orphans(&Settings::default())
        .await
        .map_err(|e| Failure::new(exit::ATTENTION, format!("error: {e}")))?;
    let mut code = exit::OK;
    for r in &rejoined {
        match &r.result {
            Ok(what) => out!("{}: {what}", r.container),
            Err(e) => {
                err!("error: {} could not rejoin {}'s network: {e}", r.container, r.peer);
                code = exit::ATTENTION;
            }
        }
    }
    if done.is_empty() && rejoined.is_empty() {
        out!("nothing to recover");
    }
    Ok(code)
}

fn report(result: &Result<Outcome, SwapError>) {
    match result {
        Ok(o) => print_outcome(o),
        Err(e) => err!("error: {e}"),
    }
}

/// Successes on stdout, failures on stderr.
fn print_outcome(o: &Outcome) {
    if outcome_code(o) == exit::OK {
        out!("{o}");
    } else {
        err!("{o}");
    }
}

fn code(result: &Result<Outcome, SwapError>) -> u8 {
    match result {
        Ok(o) => outcome_code(o),
        Err(e) => error_code(e),
    }
}

fn outcome_code(o: &Outcome) -> u8 {
    match o {
        Outcome::Committed(_) | Outcome::AlreadyCurrent { .. } => exit::OK,
        Outcome::RolledBack(_) => exit::ROLLED_BACK,
        Outcome::Failed(_) => exit::ATTENTION,
    }
}

fn error_code(e: &SwapError) -> u8 {
    match e {
        SwapError::Unchanged { .. } => exit::UNCHANGED,
        SwapError::Stuck { .. } | SwapError::Journal(_) | SwapError::DamagedRecord { .. } => exit::ATTENTION,
    }
}
