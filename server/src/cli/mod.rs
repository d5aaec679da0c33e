//! The server's command line: with no command (or `serve`) it serves;
//! `fleet …` is the admin API from a terminal.
//!
//! The admin CLI lives in this binary rather than the controller's: it is
//! the server's API the operator drives, and its types are the server's.
//! The controller on every host holds the Docker socket and stays small; no
//! host needs admin tooling to be an agent.

mod access_cmd;
mod campaign_cmd;
mod client;
mod fleet_cmd;
mod notify_cmd;
mod serve;
mod state;

use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};

pub use container_upgrader::cli_support::{exit, init_logging, Failure, Global};

const ABOUT: &str = "\
The fleet server of container-upgrader: every host's versions on one page, \
campaigns in waves, agents (`container-upgrader run --server URL`) that pull \
their desired state and report back.

With no command it serves: `container-upgrader-server` alone starts on \
127.0.0.1:8080 with a SQLite database and an admin token it creates in its \
state directory (it prints where, once).";

/// The fleet server and its admin CLI.
#[derive(Debug, Parser)]
#[command(name = "container-upgrader-server", version, about = ABOUT, args_conflicts_with_subcommands = true)]
pub struct Cli {
    /// Options every command takes.
    #[command(flatten)]
    pub global: Global,
    /// `serve`'s flags, given without the word.
    #[command(flatten)]
    serve: serve::ServeArgs,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve (the default): agents enrol, poll their desired manifest and
    /// report; the page and the admin API manage them.
    Serve(serve::ServeArgs),
    /// Manage a fleet server: agents, pins, manifests, enrolment tokens,
    /// campaigns.
    #[command(after_help = fleet_cmd::EXIT)]
    Fleet(fleet_cmd::FleetArgs),
    /// Exit 0 when a server answers `/healthz`, 1 otherwise: the image's
    /// HEALTHCHECK (it has no shell or curl).
    Healthcheck {
        /// The server's health route.
        #[arg(long, value_name = "URL", default_value = "http://127.0.0.1:8080/healthz")]
        url: String,
    },
}

/// Output formats of the admin CLI.
#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
enum Output {
    /// An aligned table for people.
    Table,
    /// The API's JSON, for machines.
    Json,
}

/// Runs the parsed command; returns the exit code on success.
pub async fn run(cli: Cli) -> Result<u8, Failure> {
    match cli.command {
        None => serve::serve(cli.serve).await,
        Some(Command::Serve(args)) => serve::serve(args).await,
        Some(Command::Fleet(args)) => fleet_cmd::fleet(args).await,
        Some(Command::Healthcheck { url }) => healthcheck(&url).await,
    }
}

/// One GET of `url` within 5 s: 200 is healthy.
async fn healthcheck(url: &str) -> Result<u8, Failure> {
    let shown = container_upgrader::redact::url(url);
    let http = container_upgrader::tls::http_client("healthcheck", |b| b.timeout(Duration::from_secs(5)))
        .map_err(|e| Failure::new(exit::INTERNAL, format!("error: {e}")))?;
    match http.get(url).send().await {
        Ok(answer) if answer.status() == reqwest::StatusCode::OK => Ok(exit::OK),
        Ok(answer) => {
            Err(Failure::new(exit::INVALID, format!("unhealthy: {shown} answered {}", answer.status())))
        }
        Err(e) => Err(Failure::new(exit::INVALID, format!("unhealthy: {shown}: {e}"))),
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::{Cli, Command};

    #[test]
    fn the_command_line_definition_is_consistent() {
        <Cli as clap::CommandFactory>::command().debug_assert();
    }

    #[test]
    fn no_command_serves_and_serve_flags_work_without_the_word() {
        let cli =
            Cli::try_parse_from(["container-upgrader-server", "--listen", "127.0.0.1:9"]).expect("parses");
        assert!(cli.command.is_none());
        let cli = Cli::try_parse_from(["container-upgrader-server", "fleet", "agents"]).expect("parses");
        assert!(matches!(cli.command, Some(Command::Fleet(_))));
        assert!(Cli::try_parse_from([
            "container-upgrader-server",
            "--listen",
            "127.0.0.1:9",
            "fleet",
            "agents"
        ])
        .is_err());
    }
}
