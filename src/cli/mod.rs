//! Argument parsing and the commands.

mod daemon;
mod output;
mod status;
mod swap_cmd;

use std::path::{Path, PathBuf};

use clap::{Args, Parser, Subcommand, ValueEnum};

use container_upgrader::cli_support::read_token;
pub use container_upgrader::cli_support::{exit, init_logging, Failure, Global};
use container_upgrader::out;

use container_upgrader::engine::Engine;
use container_upgrader::manifest::{edit, write, Dur, Manifest};
use container_upgrader::plan::{self, Action, Plan};
use container_upgrader::registry::{self, Registry};
use container_upgrader::swap::journal::Journal;
use container_upgrader::swap::scaffold::Scaffolding;
use container_upgrader::{observe, resolve};

const EXIT_CODES: &str = "\
Exit codes:
  0  success (validate: valid; plan: computed; upgrade/reconcile: committed or already current)
  1  the manifest is invalid (the problems are printed on stderr; nothing was done)
  2  bad command-line usage
  3  the Docker Engine could not be reached or failed
  4  plan --detailed-exitcode: at least one container would be upgraded
  5  plan --detailed-exitcode: at least one target is in error, refused or missing
  6  upgrade/reconcile: a new container failed its health gate and was rolled back
  7  upgrade/reconcile: nothing changed because of an error before the swap
     (container not found, pull failed, create refused, lock held, held by backoff,
     a target in error or refused by the policy)
  8  needs attention: a swap stopped half-way or failed without rollback;
     run `container-upgrader recover`
 70  internal error";

/// Keeps Docker containers on the image versions a manifest pins.
#[derive(Debug, Parser)]
#[command(name = "container-upgrader", version, about, after_help = EXIT_CODES)]
pub struct Cli {
    /// Options every command takes.
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    command: Command,
}

// Parsed once per process: `run`'s many flags make it the largest variant,
// which costs nothing worth boxing for.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
enum Command {
    /// Check a manifest and report every problem with file:line:column.
    #[command(after_help = "Exit codes: 0 valid, 1 invalid (problems on stderr), 2 usage.")]
    Validate {
        #[command(flatten)]
        file: FileArg,
    },
    /// Show what a reconcile would do: the manifest diffed against what runs.
    #[command(after_help = EXIT_CODES)]
    Plan {
        #[command(flatten)]
        file: FileArg,
        #[command(flatten)]
        registry: RegistryArgs,
        /// Read (never written) for the journal's record of backups and
        /// temporaries, which are never targets.
        #[command(flatten)]
        state: StateArg,
        /// Output format.
        #[arg(short, long, value_enum, default_value_t = Output::Table)]
        output: Output,
        /// Exit 4 when upgrades are pending and 5 when a target is in
        /// error, refused or missing (0 only when everything is up to date).
        #[arg(long)]
        detailed_exitcode: bool,
    },
    /// Swap one container onto another image, now: pull, stop, recreate
    /// with the same configuration, health gate, commit or roll back.
    #[command(after_help = EXIT_CODES)]
    Upgrade(swap_cmd::UpgradeArgs),
    /// Apply the manifest: plan, then swap every container that needs it.
    #[command(after_help = EXIT_CODES)]
    Reconcile {
        #[command(flatten)]
        pass: PassArgs,
        /// One pass, then exit (the continuous controller is `run`).
        #[arg(long, required = true)]
        once: bool,
    },
    /// The controller: finish interrupted swaps, then reconcile the manifest
    /// on every trigger (file change, drift timer, Docker events, API push,
    /// SIGHUP) until SIGTERM/SIGINT.
    #[command(after_help = EXIT_CODES)]
    Run {
        #[command(flatten)]
        pass: PassArgs,
        /// POST each op outcome as JSON to this URL (overrides the
        /// manifest's `report.webhook`).
        #[arg(long, value_name = "URL")]
        report_webhook: Option<String>,
        /// Serve the agent HTTP API on this address (off by default; keep it
        /// on loopback unless the token and network are trusted).
        #[arg(long, value_name = "ADDR", default_missing_value = "127.0.0.1:9191", num_args = 0..=1)]
        listen: Option<std::net::SocketAddr>,
        /// A file holding the bearer token that `PUT /v1/desired` requires
        /// (without it the API is read-only). Never pass the token itself.
        #[arg(long, value_name = "PATH", requires = "listen")]
        token_file: Option<PathBuf>,
        /// A file holding a second bearer token that may only read
        /// `/v1/status` and `/metrics` (for a monitoring scraper). With
        /// either token configured, reads need one of them.
        #[arg(long, value_name = "PATH", requires = "listen")]
        read_token_file: Option<PathBuf>,
        /// Let `PUT /v1/desired` write when the manifest has no
        /// `policy.allowed_images` (without it such a file makes the API
        /// refuse every write): a token holder may then run any image.
        #[arg(long, requires = "listen")]
        allow_any_image: bool,
        #[command(flatten)]
        fleet: FleetLinkArgs,
        #[command(flatten)]
        git: GitArgs,
    },
    /// Pin one target to an image in the manifest file: validates, checks
    /// the policy, and rewrites the file atomically, keeping the rest of it
    /// (other targets, comments) as it was. A running controller applies it.
    #[command(after_help = "Exit codes: 0 written, 1 refused (the file is unchanged), 2 usage.")]
    Set {
        /// The target as `plan` shows it: a container name, or `label KEY=VALUE`.
        target: String,
        /// The image to pin (a tag, or name@sha256:…).
        image: String,
        #[command(flatten)]
        file: FileArg,
    },
    /// Remove a target from the manifest file (same guarantees as `set`).
    #[command(after_help = "Exit codes: 0 written, 1 refused (the file is unchanged), 2 usage.")]
    Unset {
        /// The target as `plan` shows it.
        target: String,
        #[command(flatten)]
        file: FileArg,
    },
    /// What the journal says: the last swap of each container, and holds.
    Status {
        #[command(flatten)]
        state: StateArg,
        /// Output format.
        #[arg(short, long, value_enum, default_value_t = Output::Table)]
        output: Output,
    },
    /// Internal: run by a helper container to swap (or recover) the
    /// controller's own container.
    #[command(hide = true)]
    Helper(swap_cmd::HelperArgs),
    /// Finish or undo swaps a crash interrupted, and remove their leftovers.
    #[command(after_help = EXIT_CODES)]
    Recover {
        #[command(flatten)]
        state: StateArg,
    },
    /// Moved: the fleet server is its own binary, `container-upgrader-server`.
    #[command(hide = true)]
    Server(Moved),
    /// Moved: `container-upgrader-server fleet …`.
    #[command(hide = true)]
    Fleet(Moved),
}

/// The arguments of a command that moved to another binary, taken whole so
/// the answer can say where it went instead of what clap did not expect.
#[derive(Debug, Args)]
struct Moved {
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, hide = true)]
    args: Vec<String>,
}

/// `server` and `fleet` before the split: where they are now. The
/// controller on every host carries no server (no database driver, no
/// password hashing, no pages).
fn moved(command: &str, args: &[String]) -> Result<u8, Failure> {
    let rest = if args.is_empty() { String::new() } else { format!(" {}", args.join(" ")) };
    let now = match command {
        "server" => format!("container-upgrader-server{rest}"),
        _ => format!("container-upgrader-server fleet{rest}"),
    };
    Err(Failure::new(
        exit::USAGE,
        format!(
            "error: `container-upgrader {command}` moved to the fleet server's own binary: run `{now}` \
             (build it with `cargo build --release -p container-upgrader-server`, or use its image)"
        ),
    ))
}

/// `run --server`: the agent's link to a fleet server.
#[derive(Debug, Args)]
struct FleetLinkArgs {
    /// A fleet server to take this host's desired manifest from and report
    /// to (`http(s)://HOST:PORT`). Its manifest replaces the file's content
    /// (a local edit lasts until the server's next version); the file's
    /// `policy` still binds it.
    #[arg(long = "server", value_name = "URL", env = "CONTAINER_UPGRADER_SERVER")]
    server: Option<String>,
    /// The enrolment token's file, for the first start with `--server`
    /// (the credential it buys is kept in STATE_DIR/fleet/agent.json).
    #[arg(long, value_name = "PATH", env = "CONTAINER_UPGRADER_ENROL_TOKEN_FILE", requires = "server")]
    enrol_token_file: Option<PathBuf>,
    /// The name the server shows for this agent (default: the controller's
    /// container name, else the host name).
    #[arg(long, value_name = "NAME", requires = "server")]
    agent_name: Option<String>,
    /// How long the server may hold one desired-state poll open.
    #[arg(long, value_name = "DURATION", default_value = "30s", requires = "server")]
    server_poll: Dur,
}

/// `run --git`: the desired state from a file in a Git repository.
#[derive(Debug, Args)]
struct GitArgs {
    /// A Git repository to take the manifest from (`https://…` or
    /// `http://…`): the file at --git-path of the ref's newest commit is
    /// written to the manifest file (validated; the file's `policy` still
    /// binds it; an invalid commit changes nothing). SIGHUP or `POST
    /// /v1/git/refresh` looks at once. With --server too, the agent
    /// reports to the server (with the commit) but never applies the
    /// server's desired state: Git is the one source.
    #[arg(long = "git", value_name = "URL", env = "CONTAINER_UPGRADER_GIT")]
    git: Option<String>,
    /// The branch, tag or full ref name to follow (default: the
    /// repository's HEAD).
    #[arg(long, value_name = "REF", requires = "git")]
    git_ref: Option<String>,
    /// The manifest's path inside the repository.
    #[arg(long, value_name = "PATH", default_value = "desired-state.yaml", requires = "git")]
    git_path: String,
    /// How often to look at the repository (less up to a quarter at random,
    /// so many hosts do not fetch in the same second).
    #[arg(long, value_name = "DURATION", default_value = "1m", requires = "git")]
    git_interval: Dur,
    /// A file holding the HTTPS token (`TOKEN`, sent as user
    /// `x-access-token`, or `USER:TOKEN`); re-read on every fetch.
    #[arg(long, value_name = "PATH", env = "CONTAINER_UPGRADER_GIT_TOKEN_FILE", requires = "git")]
    git_token_file: Option<PathBuf>,
    /// An OpenSSH `allowed_signers` file: only a commit with an SSH
    /// signature by a key it lists is applied (re-read on every look).
    #[arg(long, value_name = "PATH", requires = "git")]
    git_verify_ssh_signers: Option<PathBuf>,
    /// For an SSH URL (`ssh://git@host/repo.git`, `git@host:repo.git`):
    /// the private key to authenticate with (mode 0600). Needs the `ssh`
    /// client on the host.
    #[arg(long, value_name = "PATH", requires = "git")]
    git_ssh_key: Option<PathBuf>,
    /// For an SSH URL: the known_hosts file the server's host key must be
    /// in (checked strictly: an unknown or changed key is refused, never
    /// learned).
    #[arg(long, value_name = "PATH", requires = "git")]
    git_known_hosts: Option<PathBuf>,
}

/// What `reconcile` and `run` share: the manifest, registries, state,
/// parallelism and the controller's own identity.
#[derive(Debug, Args)]
struct PassArgs {
    #[command(flatten)]
    file: FileArg,
    #[command(flatten)]
    registry: RegistryArgs,
    #[command(flatten)]
    state: StateArg,
    /// Swaps asking the engine for work (pull, create, start, stop,
    /// rename, remove) at once; a swap in its health gate holds no slot.
    #[arg(long, default_value_t = container_upgrader::reconcile::DEFAULT_PARALLEL)]
    parallel: usize,
    #[command(flatten)]
    me: swap_cmd::SelfArg,
}

#[derive(Debug, Args)]
struct StateArg {
    /// The state directory: the journal of swaps and the locks.
    #[arg(long, env = "CONTAINER_UPGRADER_STATE_DIR", default_value = "/var/lib/container-upgrader")]
    state_dir: PathBuf,
}

#[derive(Debug, Args)]
struct FileArg {
    /// The desired-state manifest.
    #[arg(short = 'f', long = "file", env = "CONTAINER_UPGRADER_FILE", default_value = "desired-state.yaml")]
    path: PathBuf,
}

#[derive(Debug, Args)]
pub(crate) struct RegistryArgs {
    /// A registry (host[:port]) to reach over plain HTTP. Loopback
    /// registries always are, as with the Docker daemon. Repeatable.
    #[arg(long = "insecure-registry", value_name = "HOST[:PORT]")]
    pub(crate) insecure: Vec<String>,
    /// Time one registry request may take.
    #[arg(long, default_value = "15s", value_name = "DURATION")]
    pub(crate) registry_timeout: Dur,
}

/// Plan output formats.
#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
enum Output {
    /// An aligned table for people.
    Table,
    /// `{"actions": [...], "summary": {...}}` for machines.
    Json,
}

/// Runs the parsed command; returns the exit code on success.
pub async fn run(cli: Cli) -> Result<u8, Failure> {
    match cli.command {
        Command::Validate { file } => validate(&file),
        Command::Plan { file, registry, state, output, detailed_exitcode } => {
            let plan = compute_plan(&file, &registry, &state.state_dir).await?;
            output::print_plan(&plan, output == Output::Json).map_err(|e| Failure::new(exit::INTERNAL, e))?;
            Ok(if detailed_exitcode { detailed(&plan) } else { exit::OK })
        }
        Command::Upgrade(args) => swap_cmd::upgrade(args).await,
        Command::Reconcile { pass, once: _ } => {
            let manifest = load(&pass.file)?;
            let controller =
                swap_cmd::controller(&pass.state.state_dir, &pass.me, pass.parallel, &pass.registry).await?;
            swap_cmd::reconcile(&controller, &manifest).await
        }
        Command::Run {
            pass,
            report_webhook,
            listen,
            token_file,
            read_token_file,
            allow_any_image,
            fleet,
            git,
        } => {
            let token = token_file.as_deref().map(|p| read_token(p, "--token-file")).transpose()?;
            let read_token =
                read_token_file.as_deref().map(|p| read_token(p, "--read-token-file")).transpose()?;
            let controller =
                swap_cmd::controller(&pass.state.state_dir, &pass.me, pass.parallel, &pass.registry).await?;
            let options = daemon::Options {
                manifest: &pass.file.path,
                webhook: report_webhook,
                listen,
                token,
                read_token,
                allow_any_image,
                fleet: fleet.server.map(|server| daemon::FleetLink {
                    server,
                    enrol_token_file: fleet.enrol_token_file,
                    name: fleet.agent_name,
                    state_dir: pass.state.state_dir.clone(),
                    wait: fleet.server_poll.0,
                }),
                git: git.git.map(|url| container_upgrader::gitsource::Config {
                    url,
                    reference: git.git_ref,
                    path: git.git_path,
                    interval: git.git_interval.0,
                    token_file: git.git_token_file,
                    signers_file: git.git_verify_ssh_signers,
                    ssh_key: git.git_ssh_key,
                    known_hosts: git.git_known_hosts,
                    manifest: pass.file.path.clone(),
                    state_dir: pass.state.state_dir.clone(),
                }),
            };
            daemon::run(&controller, options).await
        }
        Command::Set { target, image, file } => {
            let origin = file.path.display().to_string();
            let edit = |text: &str| edit::set_image(text, &origin, &target, &image);
            write::update(&file.path, edit)
                .map_err(|e| Failure::new(exit::INVALID, format!("error: {e}")))?;
            out!("{origin}: {target} → {image}");
            Ok(exit::OK)
        }
        Command::Unset { target, file } => {
            let origin = file.path.display().to_string();
            let edit = |text: &str| edit::unset(text, &origin, &target);
            write::update(&file.path, edit)
                .map_err(|e| Failure::new(exit::INVALID, format!("error: {e}")))?;
            out!("{origin}: {target} removed");
            Ok(exit::OK)
        }
        Command::Status { state, output } => status::status(&state.state_dir, output == Output::Json),
        Command::Helper(args) => swap_cmd::helper(args).await,
        Command::Recover { state } => swap_cmd::recover(&state.state_dir).await,
        Command::Server(Moved { args }) => moved("server", &args),
        Command::Fleet(Moved { args }) => moved("fleet", &args),
    }
}

/// The registry client for `manifest`: plain HTTP for loopback,
/// `--insecure-registry` and the engine's own insecure registries.
async fn registry_for(engine: &Engine, manifest: &Manifest, args: &RegistryArgs) -> Registry {
    let seen = manifest.targets.iter().map(|t| t.want.image());
    let plain = registry::plain_http_for(engine, &args.insecure, seen).await;
    Registry::with_plain_http(plain, args.registry_timeout.0)
}

fn load(file: &FileArg) -> Result<Manifest, Failure> {
    Manifest::load(&file.path).map_err(|e| {
        Failure::new(exit::INVALID, format!("{e}\nerror: the manifest is invalid; nothing was done"))
    })
}

fn validate(file: &FileArg) -> Result<u8, Failure> {
    let manifest = load(file)?;
    out!("{}: valid ({} targets)", manifest.origin, manifest.targets.len());
    Ok(exit::OK)
}

async fn compute_plan(file: &FileArg, args: &RegistryArgs, state_dir: &Path) -> Result<Plan, Failure> {
    let manifest = load(file)?;
    let engine = Engine::connect().await.map_err(|e| Failure::new(exit::ENGINE, format!("error: {e}")))?;
    let observed = observe::observe(&engine, &manifest, &scaffolding(state_dir))
        .await
        .map_err(|e| Failure::new(exit::ENGINE, format!("error: {e}")))?;
    let needed = plan::needs_resolution(&manifest, &observed);
    let registry = registry_for(&engine, &manifest, args).await;
    let resolved = resolve::resolve(&manifest, &observed, &registry, &engine, &needed).await;
    Ok(plan::plan(&manifest, &observed, &resolved))
}

/// What the journal in `state_dir` knows of ops' backups and temporaries,
/// so `plan` leaves out exactly what a pass would. `plan` only reads: no
/// journal there (none yet, or not readable by this user) means none is
/// known, and the names and labels of ops' containers still tell them.
fn scaffolding(state_dir: &Path) -> Scaffolding {
    if !state_dir.join("ops").is_dir() {
        return Scaffolding::default();
    }
    match Journal::open(state_dir).and_then(|journal| journal.ops()) {
        Ok(ops) => Scaffolding::from_journal(&ops),
        Err(e) => {
            tracing::warn!(error = %e, "reading the journal; backups and temporaries are told by name only");
            Scaffolding::default()
        }
    }
}

fn detailed(plan: &Plan) -> u8 {
    if plan.actions.iter().any(|e| matches!(e.action, Action::Error | Action::Refused | Action::Missing)) {
        exit::PROBLEMS
    } else if plan.count(Action::Upgrade) > 0 {
        exit::CHANGES
    } else {
        exit::OK
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_command_line_definition_is_consistent() {
        <super::Cli as clap::CommandFactory>::command().debug_assert();
    }

    #[test]
    fn server_and_fleet_say_where_they_moved_with_the_arguments_given() {
        let args = vec!["--listen".to_string(), "0.0.0.0:8080".to_string()];
        let failure = super::moved("server", &args).expect_err("moved");
        assert_eq!(failure.code, super::exit::USAGE);
        assert!(
            failure.to_string().contains("`container-upgrader-server --listen 0.0.0.0:8080`"),
            "{failure}"
        );
        let failure = super::moved("fleet", &["agents".to_string()]).expect_err("moved");
        assert!(failure.to_string().contains("`container-upgrader-server fleet agents`"), "{failure}");
        let parsed =
            <super::Cli as clap::Parser>::try_parse_from(["container-upgrader", "server", "--db", "x"]);
        assert!(parsed.is_ok(), "the old flags reach the message instead of a clap error");
    }
}
