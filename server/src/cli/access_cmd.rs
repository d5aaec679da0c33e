//! `fleet whoami`, `fleet user …`, `fleet api-token …`, `fleet audit`:
//! users, their API tokens and the audit log from a terminal. Secrets
//! made by the server (a setup code, a token) go alone to stdout (`>
//! file` keeps them); what they are goes to stderr.

use std::path::PathBuf;

use clap::Subcommand;
use reqwest::Method;
use serde_json::{json, Value};

use container_upgrader::cli_support::{read_secret, SecretFile};
use container_upgrader::{err, out};

use super::client::{columns, print, segment, text, Client};
use super::{exit, Failure, Output};

#[derive(Debug, Subcommand)]
pub(crate) enum UserCommand {
    /// Add a user. Without --password-file it prints a one-time setup
    /// code: the user logs in on the page with their name and the code,
    /// then chooses a password.
    Add {
        /// The login name (letters, digits, `.`, `_`, `@`, `-`).
        name: String,
        /// What they may do: viewer (read), operator (also pins and
        /// campaigns), admin (also users, tokens, enrolment, revocation).
        #[arg(long, value_name = "ROLE")]
        role: String,
        /// A file whose first line is the password (at least 12
        /// characters); the server keeps only its argon2 hash.
        #[arg(long, value_name = "PATH")]
        password_file: Option<PathBuf>,
    },
    /// List users.
    List {
        /// Output format.
        #[arg(short, long, value_enum, default_value_t = Output::Table)]
        output: Output,
    },
    /// Change a user's role (their page sessions end).
    Role {
        /// The user.
        name: String,
        /// viewer, operator or admin.
        role: String,
    },
    /// Forget a user's password and print a new setup code.
    Reset {
        /// The user.
        name: String,
    },
    /// Remove a user, their API tokens and sessions.
    Remove {
        /// The user.
        name: String,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum ApiTokenCommand {
    /// Make an API token; prints only the token (`> fleet.token` works).
    Create {
        /// Its name (unique per user), e.g. `ci-deploy`.
        name: String,
        /// Its role, at most the user's (default: the user's).
        #[arg(long, value_name = "ROLE")]
        role: Option<String>,
        /// How long it is valid (at most 366d).
        #[arg(long, value_name = "DURATION", default_value = "30d")]
        expires_in: String,
        /// Whose token (an admin's choice; default: yours).
        #[arg(long, value_name = "NAME")]
        user: Option<String>,
    },
    /// List API tokens (never their secrets): yours, or everyone's for an
    /// admin.
    List {
        /// Only this user's.
        #[arg(long, value_name = "NAME")]
        user: Option<String>,
        /// Output format.
        #[arg(short, long, value_enum, default_value_t = Output::Table)]
        output: Output,
    },
    /// Revoke an API token.
    Revoke {
        /// Its id (`fleet api-token list`).
        id: String,
    },
}

/// `fleet audit`'s filters.
#[derive(Debug, clap::Args)]
pub(crate) struct AuditArgs {
    /// Only this actor (a user name).
    #[arg(long, value_name = "NAME")]
    actor: Option<String>,
    /// Only actions starting with this (`campaign`, `user.add`, `login`).
    #[arg(long, value_name = "PREFIX")]
    action: Option<String>,
    /// Only objects containing this (an agent or campaign id).
    #[arg(long, value_name = "TEXT")]
    object: Option<String>,
    /// Only this outcome: ok or failed.
    #[arg(long, value_name = "OUTCOME")]
    outcome: Option<String>,
    /// Only rows since this: RFC 3339, or a duration back (`24h`).
    #[arg(long, value_name = "WHEN")]
    since: Option<String>,
    /// Only rows before this: RFC 3339, or a duration back.
    #[arg(long, value_name = "WHEN")]
    until: Option<String>,
    /// Rows older than this cursor (the `next` a previous page printed).
    #[arg(long, value_name = "CURSOR")]
    before: Option<String>,
    /// Rows per page (at most 1000).
    #[arg(long, value_name = "N", default_value_t = 100)]
    limit: i64,
    /// Output format.
    #[arg(short, long, value_enum, default_value_t = Output::Table)]
    output: Output,
}

/// `fleet whoami`.
pub(crate) async fn whoami(client: &Client) -> Result<u8, Failure> {
    let me = client.json(Method::GET, "/v1/fleet/me", None).await?;
    out!("{} ({}, {})", text(&me["actor"]), text(&me["role"]), text(&me["via"]));
    Ok(exit::OK)
}

/// `fleet user …`.
pub(crate) async fn user(client: &Client, command: UserCommand) -> Result<u8, Failure> {
    match command {
        UserCommand::Add { name, role, password_file } => {
            let password = match &password_file {
                Some(path) => Some(read_secret(
                    path,
                    "--password-file",
                    &SecretFile { what: "password", min_len: 12, trim: false },
                )?),
                None => None,
            };
            let body = json!({ "name": name, "role": role, "password": password });
            let added = client.json(Method::POST, "/v1/fleet/users", Some(body)).await?;
            setup_code(&added, &name, &role);
            Ok(exit::OK)
        }
        UserCommand::List { output } => {
            let users = client.json(Method::GET, "/v1/fleet/users", None).await?;
            print(&users, output, users_table)
        }
        UserCommand::Role { name, role } => {
            let path = format!("/v1/fleet/users/{}/role", segment(&name));
            let user = client.json(Method::PUT, &path, Some(json!({ "role": role }))).await?;
            out!("{name}: {}", text(&user["role"]));
            Ok(exit::OK)
        }
        UserCommand::Reset { name } => {
            let path = format!("/v1/fleet/users/{}/reset", segment(&name));
            let reset = client.json(Method::POST, &path, None).await?;
            setup_code(&reset, &name, &text(&reset["user"]["role"]));
            Ok(exit::OK)
        }
        UserCommand::Remove { name } => {
            client.send(Method::DELETE, &format!("/v1/fleet/users/{}", segment(&name)), None).await?;
            out!("{name}: removed");
            Ok(exit::OK)
        }
    }
}

/// Prints a new user's setup code (stdout) and how to use it (stderr).
fn setup_code(answer: &Value, name: &str, role: &str) {
    match answer["setup_code"].as_str() {
        Some(code) => {
            out!("{code}");
            err!(
                "user {name} ({role}): give them this setup code; they log in on the page with their name and \
                 it, then choose a password (valid until {})",
                text(&answer["setup_expires_at"])
            );
        }
        None => err!("user {name} ({role}) added with the password from the file"),
    }
}

/// `fleet api-token …`.
pub(crate) async fn api_token(client: &Client, command: ApiTokenCommand) -> Result<u8, Failure> {
    match command {
        ApiTokenCommand::Create { name, role, expires_in, user } => {
            let body = json!({ "name": name, "role": role, "expires_in": expires_in, "user": user });
            let made = client.json(Method::POST, "/v1/fleet/api-tokens", Some(body)).await?;
            out!("{}", text(&made["token"]));
            let info = &made["info"];
            err!(
                "API token {} `{}` of {} ({}) expires {}; shown once: keep it in a file for --token-file",
                text(&info["id"]),
                text(&info["name"]),
                text(&info["user"]),
                text(&info["role"]),
                text(&info["expires_at"])
            );
            Ok(exit::OK)
        }
        ApiTokenCommand::List { user, output } => {
            let path = match user {
                Some(user) => format!("/v1/fleet/api-tokens?user={}", segment(&user)),
                None => "/v1/fleet/api-tokens".into(),
            };
            let tokens = client.json(Method::GET, &path, None).await?;
            print(&tokens, output, api_tokens_table)
        }
        ApiTokenCommand::Revoke { id } => {
            client.send(Method::DELETE, &format!("/v1/fleet/api-tokens/{}", segment(&id)), None).await?;
            out!("API token {id}: revoked");
            Ok(exit::OK)
        }
    }
}

/// `fleet audit`.
pub(crate) async fn audit(client: &Client, args: AuditArgs) -> Result<u8, Failure> {
    let query: Vec<String> = [
        ("actor", args.actor),
        ("action", args.action),
        ("object", args.object),
        ("outcome", args.outcome),
        ("since", args.since),
        ("until", args.until),
        ("before", args.before),
        ("limit", Some(args.limit.to_string())),
    ]
    .into_iter()
    .filter_map(|(k, v)| v.map(|v| format!("{k}={}", segment(&v))))
    .collect();
    let page = client.json(Method::GET, &format!("/v1/fleet/audit?{}", query.join("&")), None).await?;
    let code = print(&page, args.output, audit_table)?;
    if args.output == Output::Table {
        if let Some(next) = page["next"].as_str() {
            err!("older rows: fleet audit --before {next} (with the same filters)");
        }
    }
    Ok(code)
}

fn users_table(users: &Value) -> String {
    let rows = users
        .as_array()
        .into_iter()
        .flatten()
        .map(|u| {
            ["name", "role", "status", "tokens", "created_at", "created_by"]
                .iter()
                .map(|k| text(&u[*k]))
                .collect()
        })
        .collect();
    columns(&["NAME", "ROLE", "STATUS", "TOKENS", "CREATED", "BY"], rows)
}

fn api_tokens_table(tokens: &Value) -> String {
    let rows = tokens
        .as_array()
        .into_iter()
        .flatten()
        .map(|t| {
            ["id", "user", "name", "role", "status", "expires_at", "last_used_at"]
                .iter()
                .map(|k| text(&t[*k]))
                .collect()
        })
        .collect();
    columns(&["ID", "USER", "NAME", "ROLE", "STATUS", "EXPIRES", "LAST USED"], rows)
}

fn audit_table(page: &Value) -> String {
    let rows = page["entries"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| {
            ["at", "actor", "via", "source", "action", "object", "summary", "outcome"]
                .iter()
                .map(|k| text(&e[*k]))
                .collect()
        })
        .collect();
    columns(&["WHEN", "WHO", "VIA", "FROM", "ACTION", "OBJECT", "WHAT", "OUTCOME"], rows)
}
