//! `container-upgrader-server fleet …`: the fleet server's admin API from the
//! command line, so an operator never needs curl. Tables for people,
//! `-o json` for machines.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Subcommand};
use reqwest::Method;
use serde_json::{json, Value};

use container_upgrader::cli_support::read_token;
use container_upgrader::{err, out};

use super::access_cmd as access;
use super::campaign_cmd as campaign;
use super::client::{columns, print, segment, text, Client};
use super::{exit, state, Failure, Output};

/// Time one admin request may take.
const TIMEOUT: Duration = Duration::from_secs(30);

pub(crate) const EXIT: &str = "Exit codes: 0 done, 1 the server refused (its reason on stderr), 2 usage, 70 the server could not be reached.";

/// `fleet`'s global flags and subcommand.
#[derive(Debug, Args)]
pub(crate) struct FleetArgs {
    /// The fleet server.
    #[arg(
        long,
        value_name = "URL",
        env = "CONTAINER_UPGRADER_SERVER",
        default_value = "http://127.0.0.1:8080"
    )]
    server: String,
    /// A file holding the admin token (the server's --admin-token-file).
    /// Default: the token a server on this machine made in its state
    /// directory (CONTAINER_UPGRADER_SERVER_STATE_DIR, else the default
    /// one), when it is there.
    #[arg(long, value_name = "PATH", env = "CONTAINER_UPGRADER_ADMIN_TOKEN_FILE")]
    admin_token_file: Option<PathBuf>,
    /// A file holding your API token (`fleet api-token create`): the
    /// server then knows who you are, and your role decides what you may
    /// do. Taken before --admin-token-file (break-glass) when both are
    /// set.
    #[arg(long, value_name = "PATH", env = "CONTAINER_UPGRADER_TOKEN_FILE")]
    token_file: Option<PathBuf>,
    /// A PEM CA certificate to trust for the server, besides the system's
    /// (a private CA).
    #[arg(long, value_name = "PATH", env = "CONTAINER_UPGRADER_SERVER_CA")]
    ca_cert: Option<PathBuf>,
    #[command(subcommand)]
    command: FleetCommand,
}

#[derive(Debug, Subcommand)]
enum FleetCommand {
    /// List agents, with filters.
    Agents {
        /// Only agents with this label (KEY=VALUE).
        #[arg(long, value_name = "KEY=VALUE")]
        label: Option<String>,
        /// Only agents in this state: online, offline, revoked.
        #[arg(long, value_name = "STATUS")]
        status: Option<String>,
        /// Only agents a newer version is available for (any, or patch,
        /// minor, major).
        #[arg(long, value_name = "KIND", num_args = 0..=1, default_missing_value = "any")]
        has_update: Option<String>,
        /// Only agents running this controller version.
        #[arg(long, value_name = "VERSION")]
        version: Option<String>,
        /// Output format.
        #[arg(short, long, value_enum, default_value_t = Output::Table)]
        output: Output,
    },
    /// One agent: targets, updates, history.
    Agent {
        /// The agent's id.
        id: String,
        /// Output format.
        #[arg(short, long, value_enum, default_value_t = Output::Table)]
        output: Output,
    },
    /// Pin one target of an agent's manifest to an image.
    Pin {
        /// The agent's id.
        agent: String,
        /// The target as the manifest writes it (`web`, `label tier=edge`).
        target: String,
        /// The image (a tag, or name@sha256:…).
        image: String,
    },
    /// Print an agent's desired manifest.
    Manifest {
        /// The agent's id.
        agent: String,
    },
    /// Revoke an agent's credential (it must enrol again).
    Revoke {
        /// The agent's id.
        agent: String,
    },
    /// The repositories the fleet runs and their newest versions.
    Repos {
        /// Output format.
        #[arg(short, long, value_enum, default_value_t = Output::Table)]
        output: Output,
    },
    /// Enrolment tokens.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Campaigns: upgrade many agents in waves.
    #[command(subcommand)]
    Campaign(campaign::CampaignCommand),
    /// Who the token is: user, role, how.
    Whoami,
    /// Users and their roles (admin).
    #[command(subcommand)]
    User(access::UserCommand),
    /// API tokens of users (yours; everyone's for an admin).
    #[command(subcommand)]
    ApiToken(access::ApiTokenCommand),
    /// The audit log: who changed what, when, from where.
    Audit(access::AuditArgs),
    /// Notification sinks: webhook, Slack, ntfy.
    #[command(subcommand)]
    Notifications(super::notify_cmd::NotifyCommand),
}

#[derive(Debug, Subcommand)]
enum TokenCommand {
    /// Create a token; prints only the token (`> enrol.token` works).
    Create {
        /// Enrolments it allows.
        #[arg(long, default_value_t = 1)]
        uses: i64,
        /// How long it is valid (at most 7d).
        #[arg(long, value_name = "DURATION", default_value = "24h")]
        expires_in: String,
        /// A label agents enrolled with it get (KEY=VALUE). Repeatable.
        #[arg(long, value_name = "KEY=VALUE")]
        label: Vec<String>,
    },
    /// List tokens (never their secrets).
    List {
        /// Output format.
        #[arg(short, long, value_enum, default_value_t = Output::Table)]
        output: Output,
    },
    /// Revoke a token.
    Revoke {
        /// Its id (the part before the dot).
        id: String,
    },
}

/// Runs a `fleet` subcommand.
pub(crate) async fn fleet(args: FleetArgs) -> Result<u8, Failure> {
    let (path, flag) = match (args.token_file, args.admin_token_file) {
        (Some(path), _) => (path, "--token-file"),
        (None, Some(path)) => (path, "--admin-token-file"),
        (None, None) => {
            let dir = std::env::var_os("CONTAINER_UPGRADER_SERVER_STATE_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(state::default_state_dir);
            let local = dir.join(state::ADMIN_TOKEN_FILE);
            if !local.exists() {
                return Err(Failure::new(
                    exit::USAGE,
                    format!(
                        "error: fleet needs --token-file PATH (your API token, CONTAINER_UPGRADER_TOKEN_FILE) or \
                         --admin-token-file PATH (break-glass, CONTAINER_UPGRADER_ADMIN_TOKEN_FILE); \
                         no server on this machine made one in {}",
                        local.display()
                    ),
                ));
            }
            (local, "--admin-token-file")
        }
    };
    let token = read_token(&path, flag)?;
    if !(args.server.starts_with("http://") || args.server.starts_with("https://")) {
        return Err(Failure::new(
            exit::USAGE,
            "error: --server: expected http://HOST:PORT or https://HOST:PORT",
        ));
    }
    let ca = match &args.ca_cert {
        None => None,
        Some(path) => {
            let pem = std::fs::read(path).map_err(|e| {
                Failure::new(exit::USAGE, format!("error: --ca-cert {}: {e}", path.display()))
            })?;
            let cert = reqwest::Certificate::from_pem(&pem).map_err(|e| {
                Failure::new(
                    exit::USAGE,
                    format!("error: --ca-cert {}: {e}; expected a PEM certificate", path.display()),
                )
            })?;
            Some(cert)
        }
    };
    let http = container_upgrader::tls::http_client("fleet client", |b| {
        let b = b.timeout(TIMEOUT);
        match &ca {
            Some(ca) => b.add_root_certificate(ca.clone()),
            None => b,
        }
    })
    .map_err(|e| Failure::new(exit::INTERNAL, format!("error: {e}")))?;
    let client = Client { http, base: args.server.trim_end_matches('/').to_string(), token };
    match args.command {
        FleetCommand::Agents { label, status, has_update, version, output } => {
            let query: Vec<String> =
                [("label", label), ("status", status), ("has_update", has_update), ("version", version)]
                    .into_iter()
                    .filter_map(|(k, v)| v.map(|v| format!("{k}={}", segment(&v))))
                    .collect();
            let path = if query.is_empty() {
                "/v1/fleet/agents".to_string()
            } else {
                format!("/v1/fleet/agents?{}", query.join("&"))
            };
            let agents = client.json(Method::GET, &path, None).await?;
            print(&agents, output, agents_table)
        }
        FleetCommand::Agent { id, output } => {
            let agent = client.json(Method::GET, &format!("/v1/fleet/agents/{}", segment(&id)), None).await?;
            print(&agent, output, agent_table)
        }
        FleetCommand::Pin { agent, target, image } => {
            let path = format!("/v1/fleet/agents/{}/targets/{}", segment(&agent), segment(&target));
            let answer = client.json(Method::PUT, &path, Some(json!({ "image": image }))).await?;
            out!("{agent}: {target} → {image} (revision {})", answer["revision"]);
            Ok(exit::OK)
        }
        FleetCommand::Manifest { agent } => {
            let (_, text) = client
                .send(Method::GET, &format!("/v1/fleet/agents/{}/manifest", segment(&agent)), None)
                .await?;
            out!("{}", text.trim_end());
            Ok(exit::OK)
        }
        FleetCommand::Revoke { agent } => {
            client.send(Method::POST, &format!("/v1/fleet/agents/{}/revoke", segment(&agent)), None).await?;
            out!("{agent}: revoked");
            Ok(exit::OK)
        }
        FleetCommand::Repos { output } => {
            let repos = client.json(Method::GET, "/v1/fleet/repositories", None).await?;
            print(&repos, output, repos_table)
        }
        FleetCommand::Token(TokenCommand::Create { uses, expires_in, label }) => {
            let mut labels = serde_json::Map::new();
            for l in &label {
                let (k, v) = l.split_once('=').ok_or_else(|| {
                    Failure::new(exit::USAGE, format!("error: --label {l}: expected KEY=VALUE"))
                })?;
                labels.insert(k.to_string(), Value::String(v.to_string()));
            }
            let body = json!({ "uses": uses, "expires_in": expires_in, "labels": labels });
            let token = client.json(Method::POST, "/v1/fleet/enrolment-tokens", Some(body)).await?;
            let secret = token["token"].as_str().unwrap_or_default();
            out!("{secret}");
            err!(
                "token {} expires {}, {} use(s)",
                text(&token["id"]),
                text(&token["expires_at"]),
                token["uses_left"]
            );
            Ok(exit::OK)
        }
        FleetCommand::Token(TokenCommand::List { output }) => {
            let tokens = client.json(Method::GET, "/v1/fleet/enrolment-tokens", None).await?;
            print(&tokens, output, tokens_table)
        }
        FleetCommand::Campaign(command) => campaign::campaign(&client, command).await,
        FleetCommand::Whoami => access::whoami(&client).await,
        FleetCommand::User(command) => access::user(&client, command).await,
        FleetCommand::ApiToken(command) => access::api_token(&client, command).await,
        FleetCommand::Audit(args) => access::audit(&client, args).await,
        FleetCommand::Notifications(command) => super::notify_cmd::notifications(&client, command).await,
        FleetCommand::Token(TokenCommand::Revoke { id }) => {
            client
                .send(Method::DELETE, &format!("/v1/fleet/enrolment-tokens/{}", segment(&id)), None)
                .await?;
            out!("token {id}: revoked");
            Ok(exit::OK)
        }
    }
}

fn updates(u: &Value) -> String {
    let marks: Vec<String> = ["patch", "minor", "major"]
        .iter()
        .filter_map(|k| u.get(*k).and_then(Value::as_str).map(|v| format!("{k} {v}")))
        .collect();
    if marks.is_empty() {
        "-".into()
    } else {
        marks.join(", ")
    }
}

fn labels(l: &Value) -> String {
    let all: Vec<String> = l
        .as_object()
        .map(|m| m.iter().map(|(k, v)| format!("{k}={}", text(v))).collect())
        .unwrap_or_default();
    if all.is_empty() {
        "-".into()
    } else {
        all.join(",")
    }
}

fn agents_table(agents: &Value) -> String {
    let rows = agents
        .as_array()
        .into_iter()
        .flatten()
        .map(|a| {
            let targets = a["targets"].as_array().map_or(0, Vec::len);
            let with_updates = a["targets"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|t| t["updates"].as_object().is_some_and(|u| !u.is_empty()))
                .count();
            vec![
                text(&a["id"]),
                text(&a["name"]),
                text(&a["status"]),
                text(&a["controller_version"]),
                text(&a["last_seen"]),
                labels(&a["labels"]),
                targets.to_string(),
                with_updates.to_string(),
            ]
        })
        .collect();
    columns(&["ID", "NAME", "STATUS", "VERSION", "LAST SEEN", "LABELS", "TARGETS", "UPDATES"], rows)
}

fn agent_table(a: &Value) -> String {
    let mut out = format!(
        "{} ({}) {}\n  labels: {}\n  controller: {} {}\n  last seen: {}, desired revision {}\n",
        text(&a["name"]),
        text(&a["id"]),
        text(&a["status"]),
        labels(&a["labels"]),
        text(&a["controller_version"]),
        text(&a["controller_image"]),
        text(&a["last_seen"]),
        text(&a["desired_revision"]),
    );
    for key in ["manifest_error", "pass_error"] {
        if let Some(e) = a[key].as_str() {
            out.push_str(&format!("  {}: {e}\n", key.replace('_', " ")));
        }
    }
    out.push('\n');
    let targets = a["targets"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|t| {
            vec![
                text(&t["target"]),
                text(&t["container"]),
                text(&t["image"]),
                text(&t["action"]),
                text(&t["last_outcome"]),
                updates(&t["updates"]),
            ]
        })
        .collect();
    out.push_str(&columns(&["TARGET", "CONTAINER", "IMAGE", "ACTION", "LAST OP", "UPDATES"], targets));
    let holds: Vec<Vec<String>> = a["holds"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|h| vec![text(&h["container"]), text(&h["image"]), text(&h["until"]), text(&h["reason"])])
        .collect();
    if !holds.is_empty() {
        out.push('\n');
        out.push_str(&columns(&["HELD", "IMAGE", "UNTIL", "REASON"], holds));
    }
    let history: Vec<Vec<String>> = a["history"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| {
            vec![
                text(&e["ended_at"]),
                text(&e["container"]),
                format!("{} → {}", text(&e["from"]), text(&e["to"])),
                text(&e["outcome"]),
                text(&e["reason"]),
            ]
        })
        .collect();
    if !history.is_empty() {
        out.push('\n');
        out.push_str(&columns(&["ENDED", "CONTAINER", "CHANGE", "OUTCOME", "REASON"], history));
    }
    out
}

fn repos_table(repos: &Value) -> String {
    let rows = repos
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| {
            vec![
                text(&r["repository"]),
                text(&r["versions"]),
                text(&r["newest"]),
                text(&r["targets"]),
                text(&r["checked_at"]),
                text(&r["error"]),
            ]
        })
        .collect();
    columns(&["REPOSITORY", "VERSIONS", "NEWEST", "TARGETS", "CHECKED", "ERROR"], rows)
}

fn tokens_table(tokens: &Value) -> String {
    let rows = tokens
        .as_array()
        .into_iter()
        .flatten()
        .map(|t| {
            vec![
                text(&t["id"]),
                text(&t["status"]),
                text(&t["uses_left"]),
                text(&t["expires_at"]),
                labels(&t["labels"]),
            ]
        })
        .collect();
    columns(&["ID", "STATUS", "USES LEFT", "EXPIRES", "LABELS"], rows)
}
