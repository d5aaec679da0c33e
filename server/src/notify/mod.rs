//! Notifications (DESIGN.md §10 "Accountability"): what the server tells
//! people - a campaign started, paused (with its reason), failed,
//! completed, rolled back; an agent offline for longer than
//! `--notify-offline-after`; an agent's op failed - sent to sinks (a
//! signed JSON webhook, Slack-compatible, ntfy) from a durable outbox.
//!
//! One concern per file: this one names the events and builds them from
//! what changed; [`outbox`] writes them, in the transaction of the change
//! they tell of; [`catalog`] keeps the sinks; [`sinks`] turns one into a request
//! (payload formats, signature); [`deliver`] sends each sink's events in
//! order with retries; [`offline`] notices agents gone quiet; [`config`]
//! reads `--notifications-file`; [`api`] is the admin's JSON routes.

pub mod api;
pub mod catalog;
pub mod config;
pub mod deliver;
pub mod offline;
pub mod outbox;
pub mod sinks;

use serde::{Deserialize, Serialize};

use crate::campaign::engine::{self, Campaign, Direction, Phase};
use crate::store::rfc3339;
use crate::FleetError;
use container_upgrader::report::OpEvent;
use container_upgrader::swap::journal::OpOutcome;

/// What happened: a sink subscribes to some of these (all by default).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Kind {
    /// A "send test" from the page, the API or the CLI.
    #[serde(rename = "test")]
    Test,
    /// A campaign was created and runs.
    #[serde(rename = "campaign.started")]
    CampaignStarted,
    /// Paused: by an admin, or waiting for approval after the canary.
    #[serde(rename = "campaign.paused")]
    CampaignPaused,
    /// Resumed by an admin.
    #[serde(rename = "campaign.resumed")]
    CampaignResumed,
    /// Failures passed its limit: it paused or started rolling back.
    #[serde(rename = "campaign.failed")]
    CampaignFailed,
    /// Every wave done.
    #[serde(rename = "campaign.completed")]
    CampaignCompleted,
    /// Stopped for good by an admin.
    #[serde(rename = "campaign.aborted")]
    CampaignAborted,
    /// An admin started sending its agents back.
    #[serde(rename = "campaign.rolling_back")]
    CampaignRollingBack,
    /// Every agent it upgraded is back on its previous image.
    #[serde(rename = "campaign.rolled_back")]
    CampaignRolledBack,
    /// Not seen for longer than `--notify-offline-after`.
    #[serde(rename = "agent.offline")]
    AgentOffline,
    /// Seen again after an offline notice.
    #[serde(rename = "agent.online")]
    AgentOnline,
    /// An op ended failed or rolled back.
    #[serde(rename = "agent.op_failed")]
    AgentOpFailed,
}

impl Kind {
    /// Every kind, in the order the README lists them.
    pub const ALL: [Kind; 12] = [
        Kind::Test,
        Kind::CampaignStarted,
        Kind::CampaignPaused,
        Kind::CampaignResumed,
        Kind::CampaignFailed,
        Kind::CampaignCompleted,
        Kind::CampaignAborted,
        Kind::CampaignRollingBack,
        Kind::CampaignRolledBack,
        Kind::AgentOffline,
        Kind::AgentOnline,
        Kind::AgentOpFailed,
    ];

    /// Its name on the wire and in files (`campaign.failed`).
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Test => "test",
            Kind::CampaignStarted => "campaign.started",
            Kind::CampaignPaused => "campaign.paused",
            Kind::CampaignResumed => "campaign.resumed",
            Kind::CampaignFailed => "campaign.failed",
            Kind::CampaignCompleted => "campaign.completed",
            Kind::CampaignAborted => "campaign.aborted",
            Kind::CampaignRollingBack => "campaign.rolling_back",
            Kind::CampaignRolledBack => "campaign.rolled_back",
            Kind::AgentOffline => "agent.offline",
            Kind::AgentOnline => "agent.online",
            Kind::AgentOpFailed => "agent.op_failed",
        }
    }

    /// The kind named `s`, or what the names are.
    pub fn parse(s: &str) -> Result<Kind, String> {
        Kind::ALL.into_iter().find(|k| k.as_str() == s).ok_or_else(|| {
            let names: Vec<&str> = Kind::ALL.iter().map(|k| k.as_str()).collect();
            format!("unknown event kind `{s}`; the kinds are {}", names.join(", "))
        })
    }

    /// Worth waking someone for: ntfy's high priority and a warning tag.
    pub fn urgent(self) -> bool {
        matches!(self, Kind::CampaignFailed | Kind::AgentOffline | Kind::AgentOpFailed)
    }
}

/// A campaign as an event tells of it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CampaignInfo {
    /// Its id.
    pub id: String,
    /// Its name.
    pub name: String,
    /// `running`, `paused`, `completed`, `aborted`, `rolled_back`.
    pub phase: String,
    /// `upgrade` or `rollback`.
    pub direction: String,
    /// Why it is where it is (a pause's or failure's reason).
    pub reason: Option<String>,
    /// The target it upgrades.
    pub target: String,
    /// The image it hands out.
    pub image: String,
    /// Its agents.
    pub agents: usize,
    /// Those whose upgrade failed.
    pub failures: u32,
}

/// An agent as an event tells of it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentInfo {
    /// Its id.
    pub id: String,
    /// Its name.
    pub name: String,
    /// When the server last heard from it (RFC 3339).
    pub last_seen: String,
}

/// An agent's op as an event tells of it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OpInfo {
    /// The op's id.
    pub op_id: String,
    /// The container.
    pub container: String,
    /// From this image.
    pub from: String,
    /// To this one.
    pub to: String,
    /// `failed` or `rolled_back`.
    pub outcome: String,
    /// Why.
    pub reason: Option<String>,
}

/// One event: the JSON a webhook gets, and what every other format is
/// made from. `id` is its idempotency key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Unique, the same on every retry (also the `Idempotency-Key`).
    pub id: String,
    /// What happened.
    pub kind: Kind,
    /// When (RFC 3339).
    pub at: String,
    /// One sentence for people.
    pub summary: String,
    /// The campaign, for `campaign.*`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub campaign: Option<CampaignInfo>,
    /// The agent, for `agent.*`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<AgentInfo>,
    /// The op, for `agent.op_failed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub op: Option<OpInfo>,
    /// The sink tested, for `test`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sink: Option<String>,
}

impl Event {
    fn new(kind: Kind, at_ms: i64, summary: String) -> Result<Self, FleetError> {
        Ok(Self {
            id: crate::secret::new_id()?,
            kind,
            at: rfc3339(at_ms),
            summary,
            campaign: None,
            agent: None,
            op: None,
            sink: None,
        })
    }

    /// A test event for the sink `name`.
    pub fn test(name: &str, at_ms: i64) -> Result<Self, FleetError> {
        let summary = format!("Test notification from container-upgrader-server to sink `{name}`.");
        Ok(Self { sink: Some(name.to_string()), ..Self::new(Kind::Test, at_ms, summary)? })
    }
}

/// What a campaign's change from `before` to `after` tells, if anything:
/// one event per change, so a failure that pauses is `campaign.failed`
/// (with its reason), not also `campaign.paused`.
pub fn campaign_kind(before: Option<&Campaign>, after: &Campaign) -> Option<Kind> {
    let Some(before) = before else {
        return Some(match after.phase {
            Phase::Completed => Kind::CampaignCompleted,
            _ => Kind::CampaignStarted,
        });
    };
    if after.direction == Direction::Rollback && before.direction != Direction::Rollback {
        return Some(if engine::failed(after) { Kind::CampaignFailed } else { Kind::CampaignRollingBack });
    }
    if after.phase == before.phase {
        return None;
    }
    Some(match after.phase {
        Phase::Paused if engine::failed(after) => Kind::CampaignFailed,
        Phase::Paused => Kind::CampaignPaused,
        Phase::Running => Kind::CampaignResumed,
        Phase::Completed => Kind::CampaignCompleted,
        Phase::Aborted => Kind::CampaignAborted,
        Phase::RolledBack => Kind::CampaignRolledBack,
    })
}

/// The event for campaign `id` reaching `c` (a change [`campaign_kind`]
/// named `kind`).
pub fn campaign_event(kind: Kind, id: &str, c: &Campaign, at_ms: i64) -> Result<Event, FleetError> {
    let name = &c.spec.name;
    let reason = c.reason.as_deref().map(|r| format!(": {r}")).unwrap_or_default();
    let summary = match kind {
        Kind::CampaignStarted => format!(
            "Campaign `{name}` started: {} agent(s) to {} on target `{}`.",
            c.members.len(),
            c.spec.image,
            c.spec.target
        ),
        Kind::CampaignPaused => format!("Campaign `{name}` paused{reason}."),
        Kind::CampaignResumed => format!("Campaign `{name}` resumed."),
        Kind::CampaignFailed if c.direction == Direction::Rollback => {
            format!("Campaign `{name}` failed and is rolling back{reason}.")
        }
        Kind::CampaignFailed => format!("Campaign `{name}` failed and paused{reason}."),
        Kind::CampaignCompleted => format!("Campaign `{name}` completed{reason}."),
        Kind::CampaignAborted => format!("Campaign `{name}` aborted{reason}."),
        Kind::CampaignRollingBack => format!("Campaign `{name}` is rolling back{reason}."),
        Kind::CampaignRolledBack => format!("Campaign `{name}` rolled back{reason}."),
        other => format!("Campaign `{name}`: {}.", other.as_str()),
    };
    let info = CampaignInfo {
        id: id.to_string(),
        name: name.clone(),
        phase: engine::name(c.phase).to_string(),
        direction: word(&c.direction),
        reason: c.reason.clone(),
        target: c.spec.target.clone(),
        image: c.spec.image.clone(),
        agents: c.members.len(),
        failures: c.failures(),
    };
    Ok(Event { campaign: Some(info), ..Event::new(kind, at_ms, summary)? })
}

/// Whether an op that ended `outcome` is a failure worth telling.
pub fn op_failed(outcome: OpOutcome) -> bool {
    matches!(outcome, OpOutcome::Failed | OpOutcome::RolledBack)
}

/// `agent.op_failed` for `event` of agent `agent`.
pub fn op_event(agent: AgentInfo, event: &OpEvent, at_ms: i64) -> Result<Event, FleetError> {
    let outcome = word(&event.outcome);
    let why = event.reason.as_deref().map(|r| format!(": {r}")).unwrap_or_default();
    let summary = format!(
        "Agent `{}`: upgrading `{}` to {} {}{why}.",
        agent.name,
        event.container,
        event.to,
        outcome.replace('_', " ")
    );
    let op = OpInfo {
        op_id: event.op_id.clone(),
        container: event.container.clone(),
        from: event.from.clone(),
        to: event.to.clone(),
        outcome,
        reason: event.reason.clone(),
    };
    Ok(Event { agent: Some(agent), op: Some(op), ..Event::new(Kind::AgentOpFailed, at_ms, summary)? })
}

/// `agent.offline` (after `quiet`) or `agent.online` for `agent`.
pub fn presence_event(
    agent: AgentInfo,
    online: bool,
    quiet: std::time::Duration,
    at_ms: i64,
) -> Result<Event, FleetError> {
    let (kind, summary) = if online {
        (Kind::AgentOnline, format!("Agent `{}` is back online.", agent.name))
    } else {
        let quiet = humantime::format_duration(std::time::Duration::from_secs(quiet.as_secs()));
        (
            Kind::AgentOffline,
            format!(
                "Agent `{}` has not been seen for more than {quiet} (last seen {}).",
                agent.name, agent.last_seen
            ),
        )
    };
    Ok(Event { agent: Some(agent), ..Event::new(kind, at_ms, summary)? })
}

/// A unit enum's serde name (`rolled_back`).
fn word<T: Serialize>(value: &T) -> String {
    serde_json::to_value(value).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default()
}

#[cfg(test)]
mod tests;
