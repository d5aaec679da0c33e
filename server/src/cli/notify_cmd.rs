//! `container-upgrader-server fleet notifications …`: the notification
//! sinks from the command line (`/v1/fleet/notifications`). A secret is
//! read from a file, never taken on the command line.

use std::path::PathBuf;

use clap::Subcommand;
use reqwest::Method;
use serde_json::{json, Value};

use container_upgrader::cli_support::{read_secret, SecretFile};
use container_upgrader::{err, out};

use super::client::{columns, print, segment, text, Client};
use super::{exit, Failure, Output};

#[derive(Debug, Subcommand)]
pub(super) enum NotifyCommand {
    /// List the sinks with their queues (never their secrets).
    List {
        /// Output format.
        #[arg(short, long, value_enum, default_value_t = Output::Table)]
        output: Output,
    },
    /// Add a sink.
    Add {
        /// A unique name (letters, digits, `-`, `_`, `.`).
        name: String,
        /// webhook (signed JSON), slack or ntfy.
        #[arg(long, value_name = "KIND")]
        kind: String,
        /// Where events are POSTed (http:// or https://).
        #[arg(long, value_name = "URL")]
        url: String,
        /// A file whose first line is the webhook's HMAC key (required
        /// for a webhook, 16+ characters) or ntfy's bearer token.
        #[arg(long, value_name = "PATH")]
        secret_file: Option<PathBuf>,
        /// An event kind it gets (campaign.failed, agent.offline, …).
        /// Repeatable; default: all.
        #[arg(long = "event", value_name = "KIND")]
        events: Vec<String>,
    },
    /// Remove a sink added on the page or the CLI, with its waiting events.
    Remove {
        /// Its id.
        id: String,
    },
    /// Queue a test event for a sink (behind what it is still waiting for).
    Test {
        /// Its id.
        id: String,
    },
}

/// Runs a `fleet notifications` subcommand.
pub(super) async fn notifications(client: &Client, command: NotifyCommand) -> Result<u8, Failure> {
    match command {
        NotifyCommand::List { output } => {
            let sinks = client.json(Method::GET, "/v1/fleet/notifications", None).await?;
            print(&sinks, output, sinks_table)
        }
        NotifyCommand::Add { name, kind, url, secret_file, events } => {
            let secret = match &secret_file {
                Some(path) => {
                    let kind = SecretFile { what: "secret", min_len: 1, trim: true };
                    Some(read_secret(path, "--secret-file", &kind)?)
                }
                None => None,
            };
            let body = json!({ "name": name, "kind": kind, "url": url, "secret": secret, "events": events });
            let sink = client.json(Method::POST, "/v1/fleet/notifications", Some(body)).await?;
            out!("{}", text(&sink["id"]));
            err!("sink {} added ({}, {})", text(&sink["name"]), text(&sink["kind"]), text(&sink["url"]));
            Ok(exit::OK)
        }
        NotifyCommand::Remove { id } => {
            client.send(Method::DELETE, &format!("/v1/fleet/notifications/{}", segment(&id)), None).await?;
            out!("sink {id}: removed");
            Ok(exit::OK)
        }
        NotifyCommand::Test { id } => {
            let path = format!("/v1/fleet/notifications/{}/test", segment(&id));
            let answer = client.json(Method::POST, &path, None).await?;
            out!("sink {id}: test event {} queued", text(&answer["event"]));
            Ok(exit::OK)
        }
    }
}

fn sinks_table(sinks: &Value) -> String {
    let rows = sinks
        .as_array()
        .into_iter()
        .flatten()
        .map(|s| {
            let events = match s["events"].as_array() {
                Some(e) if !e.is_empty() => e.iter().map(text).collect::<Vec<_>>().join(","),
                _ => "all".into(),
            };
            vec![
                text(&s["id"]),
                text(&s["name"]),
                text(&s["kind"]),
                text(&s["url"]),
                text(&s["source"]),
                events,
                text(&s["backlog"]),
                text(&s["last_delivered_at"]),
                text(&s["last_error"]),
            ]
        })
        .collect();
    columns(
        &["ID", "NAME", "KIND", "URL", "SOURCE", "EVENTS", "BACKLOG", "LAST DELIVERED", "LAST ERROR"],
        rows,
    )
}
