//! Campaigns as the admin sees them (the JSON API, the CLI, the page):
//! state, counts, waves, and every agent with its reason and sends.

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;

use super::engine::{self, AgentState, Campaign, Command, Direction, Member, Phase, RollbackState};
use super::spec::Spec;
use super::store::Stored;
use crate::error::db;
use crate::store::{rfc3339, Store};
use crate::FleetError;
use container_upgrader::manifest::edit;
use container_upgrader::reference::ImageRef;

/// One line of the campaign history.
#[derive(Debug, Clone, Serialize)]
pub struct CampaignSummary {
    /// Its id.
    pub id: String,
    /// Its name.
    pub name: String,
    /// `running`, `paused`, `completed`, `aborted`, `rolling_back`, `rolled_back`.
    pub state: &'static str,
    /// Why it paused or stopped.
    pub reason: Option<String>,
    /// The target.
    pub target: String,
    /// The image.
    pub image: String,
    /// Agents per state (`pending`, `sent`, …).
    pub counts: BTreeMap<String, usize>,
    /// Agents per rollback state (`sent`, `done`, `failed`,
    /// `timed_out`): after a rollback, where each agent went back to.
    pub rollback_counts: BTreeMap<String, usize>,
    /// Agents in it.
    pub agents: usize,
    /// Created (RFC 3339).
    pub created_at: String,
    /// Last changed (RFC 3339).
    pub updated_at: String,
}

/// One wave.
#[derive(Debug, Clone, Serialize)]
pub struct WaveView {
    /// `upgrade` or `rollback`.
    pub kind: &'static str,
    /// Its number (0 is the canary when there is one).
    pub wave: u32,
    /// Its agents' ids.
    pub agents: Vec<String>,
    /// Started (RFC 3339), if it did.
    pub started_at: Option<String>,
    /// Done (RFC 3339), if it is.
    pub done_at: Option<String>,
}

/// One agent of a campaign.
#[derive(Debug, Clone, Serialize)]
pub struct AgentView {
    /// Its id.
    pub agent_id: String,
    /// Its name.
    pub name: String,
    /// The target pinned.
    pub target: String,
    /// Its upgrade wave.
    pub wave: u32,
    /// `pending`, `sent`, `upgrading`, `succeeded`, `failed`, `rolled_back`, `timed_out`.
    pub state: AgentState,
    /// Why it failed (the agent's own reason).
    pub reason: Option<String>,
    /// The image it ran before.
    pub previous_image: Option<String>,
    /// When its pin was written (RFC 3339).
    pub sent_at: Option<String>,
    /// When it committed the new image.
    pub committed_at: Option<String>,
    /// Its rollback: `sent`, `done`, `failed`, `timed_out`.
    pub rollback: Option<RollbackState>,
    /// Why its rollback failed.
    pub rollback_reason: Option<String>,
    /// Pins the campaign wrote for it (one per step: at most 2).
    pub sends: i64,
}

/// A campaign in full.
#[derive(Debug, Clone, Serialize)]
pub struct CampaignView {
    /// What the history shows.
    #[serde(flatten)]
    pub summary: CampaignSummary,
    /// What it was asked to do.
    pub spec: Spec,
    /// Failures counted against the ratio so far.
    pub failures: u32,
    /// The failures in words, as a pause reason words them.
    pub failures_text: String,
    /// Agents whose desired state still names the campaign's image once
    /// it stopped upgrading (rolling back, rolled back, aborted), with why.
    pub still_pinned: Vec<StillPinned>,
    /// Waves, upgrade then rollback.
    pub waves: Vec<WaveView>,
    /// Its agents in wave order.
    pub agent_states: Vec<AgentView>,
    /// The admin commands that apply now (`pause`, `resume`, `abort`,
    /// `rollback`): what the page offers as buttons.
    pub commands: Vec<Command>,
    /// What happened, oldest first: created, waves, pauses with their
    /// reasons, commands and who gave them.
    pub timeline: Vec<super::store::TimelineEntry>,
}

/// An agent left pinned to the campaign's image.
#[derive(Debug, Clone, Serialize)]
pub struct StillPinned {
    /// Its id.
    pub agent_id: String,
    /// Its name.
    pub name: String,
    /// The target.
    pub target: String,
    /// Why it is still pinned.
    pub why: String,
}

/// What a campaign would do, before it starts (the API's and the page's
/// preview).
#[derive(Debug, Clone, Serialize)]
pub struct Preview {
    /// The validated campaign.
    pub spec: Spec,
    /// The image every agent would be pinned to.
    pub image: String,
    /// Its agents, in wave order.
    pub agents: Vec<AgentView>,
    /// Its waves.
    pub waves: Vec<WaveView>,
    /// What a start now pins: the image at the digest its registry gives
    /// (the API's preview fills it in).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pins: Option<String>,
    /// Why that digest is unknown (the registry cannot be read).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pin_error: Option<String>,
    /// Its agents that are offline now: they get their pin when they are
    /// back (or `exclude_offline` leaves them out).
    #[serde(default)]
    pub offline: Vec<String>,
}

/// The preview of planned campaign `c`.
pub fn preview(c: &Campaign, names: &HashMap<String, String>) -> Preview {
    Preview {
        spec: c.spec.clone(),
        image: c.spec.image.clone(),
        agents: agents(c, names, &HashMap::new()),
        waves: waves(c),
        pins: None,
        pin_error: None,
        offline: Vec::new(),
    }
}

/// The commands [`engine::command`] would accept for `c` now.
pub fn commands(c: &Campaign) -> Vec<Command> {
    [Command::Pause, Command::Resume, Command::Abort, Command::AbortAndRevert, Command::Rollback]
        .into_iter()
        .filter(|cmd| engine::command(&mut c.clone(), *cmd).is_ok())
        .collect()
}

/// The campaign's state word: the phase, or `rolling_back`.
pub fn state(c: &Campaign) -> &'static str {
    if c.direction == Direction::Rollback && c.phase == Phase::Running {
        "rolling_back"
    } else {
        engine::name(c.phase)
    }
}

fn word<T: Serialize>(v: &T) -> String {
    serde_json::to_value(v).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default()
}

/// The history line of `s`.
pub fn summary(s: &Stored) -> CampaignSummary {
    let c = &s.campaign;
    let (mut counts, mut rollback_counts) = (BTreeMap::new(), BTreeMap::new());
    for m in &c.members {
        *counts.entry(word(&m.state)).or_insert(0) += 1;
        if let Some(r) = m.rollback {
            *rollback_counts.entry(word(&r)).or_insert(0) += 1;
        }
    }
    CampaignSummary {
        id: s.id.clone(),
        name: c.spec.name.clone(),
        state: state(c),
        reason: c.reason.clone(),
        target: c.spec.target.clone(),
        image: c.spec.image.clone(),
        counts,
        rollback_counts,
        agents: c.members.len(),
        created_at: rfc3339(s.created_at),
        updated_at: rfc3339(s.updated_at),
    }
}

/// The waves of `c` (a preview has no times yet).
pub fn waves(c: &Campaign) -> Vec<WaveView> {
    let time = |t: Option<i64>| t.map(rfc3339);
    let mut out = Vec::new();
    for (i, w) in c.waves.iter().enumerate() {
        let wave = u32::try_from(i).unwrap_or(u32::MAX);
        let agents = c.members.iter().filter(|m| m.wave == wave).map(|m| m.agent.clone()).collect();
        out.push(WaveView {
            kind: "upgrade",
            wave,
            agents,
            started_at: time(w.started_at),
            done_at: time(w.done_at),
        });
    }
    for (i, w) in c.rollback_waves.iter().enumerate() {
        let wave = u32::try_from(i).unwrap_or(u32::MAX);
        let agents =
            c.members.iter().filter(|m| m.rollback_wave == Some(wave)).map(|m| m.agent.clone()).collect();
        out.push(WaveView {
            kind: "rollback",
            wave,
            agents,
            started_at: time(w.started_at),
            done_at: time(w.done_at),
        });
    }
    out
}

/// `c`'s agents, with names and send counts.
pub fn agents(c: &Campaign, names: &HashMap<String, String>, sends: &HashMap<String, i64>) -> Vec<AgentView> {
    c.members
        .iter()
        .map(|m| AgentView {
            agent_id: m.agent.clone(),
            name: names.get(&m.agent).cloned().unwrap_or_default(),
            target: m.target.clone(),
            wave: m.wave,
            state: m.state,
            reason: m.reason.clone(),
            previous_image: m.previous.clone(),
            sent_at: m.sent_at.map(rfc3339),
            committed_at: m.committed_at.map(rfc3339),
            rollback: m.rollback,
            rollback_reason: m.rollback_reason.clone(),
            sends: sends.get(&m.agent).copied().unwrap_or(0),
        })
        .collect()
}

/// Why member `m` of `c` still names the campaign's image.
fn still_pinned_why(c: &Campaign, m: &Member) -> String {
    match (m.rollback, &m.rollback_reason) {
        (Some(RollbackState::Failed | RollbackState::TimedOut), Some(why)) => {
            format!("its rollback failed: {why}")
        }
        (Some(_), _) => {
            "pinned to the image again after its rollback was written (by hand or through the API)".into()
        }
        (None, _) if !m.pinned() => "pinned to the image by other means: the campaign never pinned it".into(),
        (None, _) if c.direction == Direction::Rollback => {
            "its pin back is not written yet (a later rollback wave)".into()
        }
        (None, _) => "the campaign was aborted without revert: Roll back sends it back".into(),
    }
}

impl Store {
    /// The ids of `c`'s agents that are offline now.
    pub async fn offline_members(&self, c: &Campaign) -> Result<Vec<String>, FleetError> {
        let filter =
            crate::agents::Filter { status: Some(crate::agents::Status::Offline), ..Default::default() };
        let offline: std::collections::HashSet<String> =
            self.agents(&filter, self.offline_after).await?.into_iter().map(|a| a.id).collect();
        Ok(c.members.iter().filter(|m| offline.contains(&m.agent)).map(|m| m.agent.clone()).collect())
    }

    /// Every agent's name, by id.
    pub async fn agent_names(&self) -> Result<HashMap<String, String>, FleetError> {
        let rows: Vec<(String, String)> = sqlx::query_as("SELECT id, name FROM agents")
            .fetch_all(&self.pool)
            .await
            .map_err(db("reading agents' names"))?;
        Ok(rows.into_iter().collect())
    }

    /// The agents of campaign `id` whose desired state still names its
    /// image, once it no longer upgrades (while it upgrades, that is the
    /// point); empty before.
    pub async fn still_pinned(&self, id: &str, c: &Campaign) -> Result<Vec<StillPinned>, FleetError> {
        let stopped = c.direction == Direction::Rollback || c.phase == Phase::Aborted;
        if !stopped {
            return Ok(Vec::new());
        }
        let image =
            ImageRef::parse(&c.spec.image).map(|r| r.familiar()).unwrap_or_else(|_| c.spec.image.clone());
        let rows: Vec<(String, String, String)> = sqlx::query_as(
            "SELECT d.agent_id, a.name, d.manifest FROM desired d JOIN agents a ON a.id = d.agent_id \
             JOIN campaign_agents ca ON ca.agent_id = d.agent_id WHERE ca.campaign_id = $1",
        )
        .bind(id)
        .fetch_all(&self.pool)
        .await
        .map_err(db("reading a campaign's agents' manifests"))?;
        let mut out = Vec::new();
        for (agent, name, manifest) in rows {
            let Some(m) = c.members.iter().find(|m| m.agent == agent) else { continue };
            let origin = format!("agent {agent}'s manifest");
            let Ok(Some(pinned)) = edit::pinned(&manifest, &origin, &m.target) else { continue };
            if pinned != image {
                continue;
            }
            out.push(StillPinned {
                agent_id: agent,
                name,
                target: m.target.clone(),
                why: still_pinned_why(c, m),
            });
        }
        out.sort_by(|a, b| a.name.cmp(&b.name).then_with(|| a.agent_id.cmp(&b.agent_id)));
        Ok(out)
    }

    /// Campaign `id` in full.
    pub async fn campaign_view(&self, id: &str) -> Result<CampaignView, FleetError> {
        let stored = self.campaign(id).await?;
        let (names, sends) = (self.agent_names().await?, self.campaign_sends(id).await?);
        let c = &stored.campaign;
        Ok(CampaignView {
            summary: summary(&stored),
            spec: c.spec.clone(),
            failures: c.failures(),
            failures_text: c.failures_text(),
            still_pinned: self.still_pinned(id, c).await?,
            waves: waves(c),
            agent_states: agents(c, &names, &sends),
            commands: commands(c),
            timeline: self.timeline(id, c).await?,
        })
    }
}
