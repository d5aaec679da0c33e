//! `container-upgrader-server fleet campaign …`: campaigns from the command line,
//! one flag per field of the API's campaign (see the README).

use clap::{Args, Subcommand};
use reqwest::Method;
use serde_json::{json, Map, Value};

use container_upgrader::out;

use super::client::{columns, print, segment, text, Client};
use super::{exit, Failure, Output};

/// A campaign's settings, for `create` and `preview`.
#[derive(Debug, Args)]
pub(super) struct CampaignFlags {
    /// A name for people.
    #[arg(long)]
    name: Option<String>,
    /// An agent id to include. Repeatable.
    #[arg(long = "agent", value_name = "ID", conflicts_with_all = ["label", "below"])]
    agents: Vec<String>,
    /// Agents with this label.
    #[arg(long, value_name = "KEY=VALUE", conflicts_with = "below")]
    label: Option<String>,
    /// Agents whose target runs a version below this one.
    #[arg(long, value_name = "VERSION")]
    below: Option<String>,
    /// Select as the fleet page filters (AND of every --where-* given): the
    /// agent has this label. Repeatable.
    #[arg(long = "where-label", value_name = "KEY=VALUE", conflicts_with_all = ["agents", "label", "below"])]
    where_labels: Vec<String>,
    /// … the target runs exactly this version.
    #[arg(long, value_name = "VERSION", conflicts_with_all = ["agents", "label", "below"])]
    where_version: Option<String>,
    /// … the target has an update of this kind (any, patch, minor, major).
    #[arg(long, value_name = "KIND", conflicts_with_all = ["agents", "label", "below"])]
    where_update: Option<String>,
    /// … the agent is online or offline.
    #[arg(long, value_name = "STATUS", conflicts_with_all = ["agents", "label", "below"])]
    where_status: Option<String>,
    /// … the agent's name or the target's image contains this text.
    #[arg(long, value_name = "TEXT", conflicts_with_all = ["agents", "label", "below"])]
    where_search: Option<String>,
    /// Leave out agents that are offline when the campaign is created.
    #[arg(long)]
    exclude_offline: bool,
    /// The target as the manifest writes it, or a container name.
    #[arg(long)]
    target: String,
    /// The image to pin (`repo:tag`).
    #[arg(long, conflicts_with = "version", required_unless_present = "version")]
    image: Option<String>,
    /// A version: the agents' repository at this tag.
    #[arg(long)]
    version: Option<String>,
    /// Agents in the first (canary) wave.
    #[arg(long, default_value_t = 1)]
    canary: u32,
    /// Agents per later wave: a number or a percentage (`25%`).
    #[arg(long, default_value = "1")]
    batch: String,
    /// Time between waves.
    #[arg(long, value_name = "DURATION", default_value = "0s")]
    delay: String,
    /// How long an agent must stay on the new image after committing.
    #[arg(long, value_name = "DURATION", default_value = "30s")]
    monitor: String,
    /// Failed agents over all agents above which --failure-action applies.
    #[arg(long, default_value_t = 0.0)]
    max_failure_ratio: f64,
    /// pause, rollback or continue.
    #[arg(long, default_value = "pause")]
    failure_action: String,
    /// No wave before this time (RFC 3339).
    #[arg(long, value_name = "TIME")]
    start_at: Option<String>,
    /// Maintenance window hours, `HH:MM-HH:MM` (may wrap midnight).
    #[arg(long, value_name = "HH:MM-HH:MM")]
    window_hours: Option<String>,
    /// Maintenance window days (`mon,tue,…`; default every day).
    #[arg(long, value_name = "DAYS", value_delimiter = ',', requires = "window_hours")]
    window_days: Vec<String>,
    /// The window's fixed UTC offset (`+02:00`).
    #[arg(long, value_name = "+HH:MM", requires = "window_hours", conflicts_with = "time_zone")]
    utc_offset: Option<String>,
    /// The window's IANA time zone (`Europe/Berlin`): its hours stay local
    /// across daylight-saving changes.
    #[arg(long, value_name = "ZONE", requires = "window_hours")]
    time_zone: Option<String>,
    /// Spread each wave across the values of this agent label (`region`).
    #[arg(long, value_name = "LABEL_KEY", conflicts_with = "shuffle")]
    spread_by: Option<String>,
    /// Put agents into waves in a random order.
    #[arg(long)]
    shuffle: bool,
    /// Pause after the canary until `fleet campaign resume` approves.
    #[arg(long)]
    approve_after_canary: bool,
    /// An agent that has not committed this long after its pin is timed out.
    #[arg(long, value_name = "DURATION", default_value = "10m")]
    deadline: String,
    /// Hand agents the tag instead of pinning the image by the digest the
    /// registry gives at creation (for a registry the server cannot reach).
    #[arg(long)]
    no_pin_digest: bool,
}

impl CampaignFlags {
    fn body(&self) -> Value {
        let mut body = Map::new();
        let mut put = |k: &str, v: Value| {
            if !v.is_null() {
                body.insert(k.to_string(), v);
            }
        };
        put("name", json!(self.name));
        if !self.agents.is_empty() {
            put("agents", json!(self.agents));
        }
        put("label", json!(self.label));
        put("below", json!(self.below));
        let filtered = !self.where_labels.is_empty()
            || self.where_version.is_some()
            || self.where_update.is_some()
            || self.where_status.is_some()
            || self.where_search.is_some();
        if filtered {
            let mut f = Map::new();
            if !self.where_labels.is_empty() {
                f.insert("labels".into(), json!(self.where_labels));
            }
            for (k, v) in [
                ("version", &self.where_version),
                ("has_update", &self.where_update),
                ("status", &self.where_status),
                ("q", &self.where_search),
            ] {
                if let Some(v) = v {
                    f.insert(k.into(), json!(v));
                }
            }
            put("filter", Value::Object(f));
        }
        if self.exclude_offline {
            put("exclude_offline", json!(true));
        }
        put("target", json!(self.target));
        put("image", json!(self.image));
        put("version", json!(self.version));
        put("canary", json!(self.canary));
        put("batch", json!(self.batch));
        put("delay", json!(self.delay));
        put("monitor", json!(self.monitor));
        put("max_failure_ratio", json!(self.max_failure_ratio));
        put("failure_action", json!(self.failure_action));
        put("start_at", json!(self.start_at));
        if let Some(hours) = &self.window_hours {
            put(
                "window",
                json!({ "days": self.window_days, "hours": hours, "utc_offset": self.utc_offset, "time_zone": self.time_zone }),
            );
        }
        put("deadline", json!(self.deadline));
        put("spread_by", json!(self.spread_by));
        if self.shuffle {
            put("shuffle", json!(true));
        }
        if self.approve_after_canary {
            put("approve_after_canary", json!(true));
        }
        if self.no_pin_digest {
            put("pin_digest", json!(false));
        }
        Value::Object(body)
    }
}

/// `fleet campaign …`.
#[derive(Debug, Subcommand)]
pub(super) enum CampaignCommand {
    /// Create and start a campaign; prints it (with its id).
    Create {
        #[command(flatten)]
        flags: Box<CampaignFlags>,
        /// Output format.
        #[arg(short, long, value_enum, default_value_t = Output::Table)]
        output: Output,
    },
    /// The waves a campaign would make, without starting it.
    Preview {
        #[command(flatten)]
        flags: Box<CampaignFlags>,
        /// Output format.
        #[arg(short, long, value_enum, default_value_t = Output::Table)]
        output: Output,
    },
    /// Every campaign, newest first.
    List {
        /// Output format.
        #[arg(short, long, value_enum, default_value_t = Output::Table)]
        output: Output,
    },
    /// One campaign: state, waves, agents with reasons.
    Show {
        /// Its id.
        id: String,
        /// Output format.
        #[arg(short, long, value_enum, default_value_t = Output::Table)]
        output: Output,
    },
    /// Stop sending until resumed.
    Pause {
        /// Its id.
        id: String,
    },
    /// Carry on after a pause (the failures so far are accepted).
    Resume {
        /// Its id.
        id: String,
    },
    /// Stop for good. Agents already pinned stay on the new image unless
    /// `--revert` is given.
    Abort {
        /// Its id.
        id: String,
        /// Also send every agent the campaign pinned back to its previous
        /// image (exactly the digest it reported), in waves.
        #[arg(long)]
        revert: bool,
    },
    /// Send every agent it pinned (upgraded, failed, timed out or still
    /// in flight) back to its previous image, in waves.
    Rollback {
        /// Its id.
        id: String,
    },
}

/// Runs a `fleet campaign` subcommand.
pub(super) async fn campaign(client: &Client, command: CampaignCommand) -> Result<u8, Failure> {
    match command {
        CampaignCommand::Create { flags, output } => {
            let c = client.json(Method::POST, "/v1/fleet/campaigns", Some(flags.body())).await?;
            print(&c, output, show_table)
        }
        CampaignCommand::Preview { flags, output } => {
            let p = client.json(Method::POST, "/v1/fleet/campaigns/preview", Some(flags.body())).await?;
            print(&p, output, preview_table)
        }
        CampaignCommand::List { output } => {
            let all = client.json(Method::GET, "/v1/fleet/campaigns", None).await?;
            print(&all, output, list_table)
        }
        CampaignCommand::Show { id, output } => {
            let c = client.json(Method::GET, &format!("/v1/fleet/campaigns/{}", segment(&id)), None).await?;
            print(&c, output, show_table)
        }
        CampaignCommand::Pause { id } => act(client, &id, "pause").await,
        CampaignCommand::Resume { id } => act(client, &id, "resume").await,
        CampaignCommand::Abort { id, revert: false } => act(client, &id, "abort").await,
        CampaignCommand::Abort { id, revert: true } => act(client, &id, "abort-and-revert").await,
        CampaignCommand::Rollback { id } => act(client, &id, "rollback").await,
    }
}

async fn act(client: &Client, id: &str, what: &str) -> Result<u8, Failure> {
    let path = format!("/v1/fleet/campaigns/{}/{what}", segment(id));
    let c = client.json(Method::POST, &path, None).await?;
    out!("{id}: {}", text(&c["state"]));
    Ok(exit::OK)
}

fn counts(c: &Value) -> String {
    c["counts"]
        .as_object()
        .map(|m| m.iter().map(|(k, v)| format!("{k} {v}")).collect::<Vec<_>>().join(", "))
        .unwrap_or_default()
}

fn list_table(all: &Value) -> String {
    let rows = all
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| {
            vec![
                text(&c["id"]),
                text(&c["name"]),
                text(&c["state"]),
                text(&c["image"]),
                counts(c),
                text(&c["created_at"]),
            ]
        })
        .collect();
    columns(&["ID", "NAME", "STATE", "IMAGE", "AGENTS", "CREATED"], rows)
}

fn waves(w: &Value) -> String {
    let rows = w
        .as_array()
        .into_iter()
        .flatten()
        .map(|w| {
            let n = w["agents"].as_array().map_or(0, Vec::len);
            vec![
                text(&w["kind"]),
                text(&w["wave"]),
                n.to_string(),
                text(&w["started_at"]),
                text(&w["done_at"]),
            ]
        })
        .collect();
    columns(&["WAVE", "#", "AGENTS", "STARTED", "DONE"], rows)
}

fn agents(a: &Value) -> String {
    let rows = a
        .as_array()
        .into_iter()
        .flatten()
        .map(|a| {
            vec![
                text(&a["name"]),
                text(&a["agent_id"]),
                text(&a["wave"]),
                text(&a["state"]),
                text(&a["previous_image"]),
                text(&a["rollback"]),
                text(&a["sends"]),
                text(&a["reason"]),
            ]
        })
        .collect();
    columns(&["AGENT", "ID", "WAVE", "STATE", "PREVIOUS", "ROLLBACK", "SENDS", "REASON"], rows)
}

fn show_table(c: &Value) -> String {
    let mut out = format!(
        "{} ({}) {}: {} → {}\n  {}\n",
        text(&c["name"]),
        text(&c["id"]),
        text(&c["state"]),
        text(&c["target"]),
        text(&c["image"]),
        counts(c),
    );
    if let Some(r) = c["reason"].as_str() {
        out.push_str(&format!("  reason: {r}\n"));
    }
    out.push('\n');
    out.push_str(&waves(&c["waves"]));
    out.push('\n');
    out.push_str(&agents(&c["agent_states"]));
    out
}

fn preview_table(p: &Value) -> String {
    let mut out = format!("image {}\n\n", text(&p["image"]));
    out.push_str(&waves(&p["waves"]));
    out.push('\n');
    out.push_str(&agents(&p["agents"]));
    out
}
