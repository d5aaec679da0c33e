//! The admin's view of agents: who they are, whether they are online, what
//! their targets run and which newer versions exist, and the filters of
//! `GET /v1/fleet/agents`.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use super::enrolment::{offline_threshold_ms, Labels};
use super::error::db;
use super::reports::repository_of;
use super::signatures::Signed;
use super::store::{now_ms, rfc3339, Store};
use super::versions::{updates, RepositoryTags, Updates};
use super::FleetError;
use container_upgrader::protocol::GitReport;
use container_upgrader::reference::ImageRef;

/// The most events an agent's history shows.
pub const HISTORY: i64 = 100;

/// Whether an agent is heard from.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Polled within the threshold.
    Online,
    /// Missed more polls than `--offline-after`.
    Offline,
    /// Its credential was revoked.
    Revoked,
}

/// Online unless `offline_after` polls passed
/// since `last_seen`, plus a margin.
pub fn status(last_seen: i64, revoked: bool, offline_after: u32, now: i64) -> Status {
    let threshold = offline_threshold_ms(offline_after);
    if revoked {
        Status::Revoked
    } else if now.saturating_sub(last_seen) > threshold {
        Status::Offline
    } else {
        Status::Online
    }
}

/// Which kind of update `has_update` asks for.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum UpdateKind {
    /// Any of the three.
    Any,
    /// A patch release.
    Patch,
    /// A minor release.
    Minor,
    /// A major release.
    Major,
}

impl UpdateKind {
    /// Whether `u` has an update of this kind.
    pub fn in_(&self, u: &Updates) -> bool {
        match self {
            Self::Any => u.any(),
            Self::Patch => u.patch.is_some(),
            Self::Minor => u.minor.is_some(),
            Self::Major => u.major.is_some(),
        }
    }
}

/// Whether a last op's outcome counts as failing.
pub fn failing(outcome: Option<&str>) -> bool {
    matches!(outcome, Some("failed" | "rolled_back"))
}

/// Which rows of the fleet — an agent with one of its targets — a fleet
/// view or a campaign keeps; every given field must match. One definition
/// for the fleet page, the campaign form's count and the campaign runner,
/// so the hosts a filter shows are the hosts a campaign over it moves.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RowFilter {
    /// `(key, value)`: the agent has every one of these labels.
    pub labels: Vec<(String, String)>,
    /// The target's name.
    pub target: Option<String>,
    /// The repository of the target's image (`registry/path`).
    pub repo: Option<String>,
    /// The version the target runs.
    pub version: Option<String>,
    /// The agent's status.
    pub status: Option<Status>,
    /// The target has an update of this kind.
    pub has_update: Option<UpdateKind>,
    /// The target's last op failed or rolled back.
    pub failing: bool,
    /// A substring of the agent's name or the target's image, lower case.
    pub search: Option<String>,
}

impl RowFilter {
    /// Whether the agent itself passes (its labels and status).
    pub fn agent_passes(&self, a: &AgentSummary) -> bool {
        let labels = self.labels.iter().all(|(k, v)| a.labels.get(k).is_some_and(|have| have == v));
        labels && self.status.is_none_or(|s| s == a.status)
    }

    /// Whether the row of `a` and its target `t` passes (`None`: an agent
    /// without targets, which fails every target condition given).
    pub fn passes(&self, a: &AgentSummary, t: Option<&TargetView>) -> bool {
        let image = t.and_then(|t| t.image.as_deref());
        let target = self.target.as_deref().is_none_or(|n| t.is_some_and(|t| t.target == n));
        let repo =
            self.repo.as_deref().is_none_or(|r| image.and_then(repository_of).is_some_and(|have| have == r));
        let version = self.version.as_deref().is_none_or(|v| t.and_then(|t| t.version.as_deref()) == Some(v));
        let update = self.has_update.is_none_or(|k| t.is_some_and(|t| k.in_(&t.updates)));
        let fails = !self.failing || t.is_some_and(|t| failing(t.last_outcome.as_deref()));
        let found = self.search.as_deref().is_none_or(|q| {
            a.name.to_lowercase().contains(q) || image.is_some_and(|i| i.to_lowercase().contains(q))
        });
        self.agent_passes(a) && target && repo && version && update && fails && found
    }
}

/// The query of `GET /v1/fleet/agents`; every given field must match.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Filter {
    /// `KEY=VALUE`: the agent has this label.
    pub label: Option<String>,
    /// The controller version it reported.
    pub version: Option<String>,
    /// Its status.
    pub status: Option<Status>,
    /// At least one target has an update of this kind.
    pub has_update: Option<UpdateKind>,
}

impl Filter {
    /// Whether `agent` passes.
    pub fn matches(&self, agent: &AgentSummary) -> bool {
        let label = self.label.as_deref().is_none_or(|l| {
            let (k, v) = l.split_once('=').unwrap_or((l, ""));
            agent.labels.get(k).is_some_and(|have| have == v)
        });
        let version = self.version.as_deref().is_none_or(|v| agent.controller_version.as_deref() == Some(v));
        let status = self.status.is_none_or(|s| s == agent.status);
        let update = self.has_update.is_none_or(|k| agent.targets.iter().any(|t| k.in_(&t.updates)));
        label && version && status && update
    }
}

/// One target as the admin sees it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct TargetView {
    /// The target as the manifest writes it.
    pub target: String,
    /// Its container (empty for none).
    pub container: String,
    /// The image it runs.
    pub image: Option<String>,
    /// Its digest.
    pub digest: Option<String>,
    /// The version its tag spells.
    pub version: Option<String>,
    /// What the manifest wants.
    pub desired: Option<String>,
    /// The last pass's decision.
    pub action: String,
    /// Why.
    pub reason: String,
    /// Its last op's id and outcome.
    pub last_op_id: Option<String>,
    /// `committed`, `rolled_back`, …
    pub last_outcome: Option<String>,
    /// Why the last op failed.
    pub last_reason: Option<String>,
    /// What went wrong in the last pass.
    pub failure: Option<String>,
    /// Newer versions in its repository.
    pub updates: Updates,
    /// Why newer versions are unknown, when they are: its registry could
    /// not be read at the last check (`registry unreachable: …`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub updates_unknown: Option<String>,
    /// With `serve --verify-key`: whether the version it runs (by its
    /// digest) and each newer one offered is signed by one of the keys, by
    /// tag; only what the version checker has judged.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub signatures: BTreeMap<String, Signed>,
}

/// An agent in the fleet table.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct AgentSummary {
    /// Its id.
    pub id: String,
    /// Its name (the host name by default).
    pub name: String,
    /// Its labels (from its enrolment token).
    pub labels: Labels,
    /// Online, offline or revoked.
    pub status: Status,
    /// When it was last heard from (RFC 3339).
    pub last_seen: String,
    /// When it enrolled (RFC 3339).
    pub enrolled_at: String,
    /// The controller version it reported.
    pub controller_version: Option<String>,
    /// The controller's own image.
    pub controller_image: Option<String>,
    /// When it last reported (RFC 3339).
    pub reported_at: Option<String>,
    /// Its targets.
    pub targets: Vec<TargetView>,
    /// With `run --git`: the repository and commit its manifest comes
    /// from (the server does not pin such an agent).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub git: Option<GitReport>,
}

/// One op from an agent's history.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct EventView {
    /// The op.
    pub op_id: String,
    /// Its container.
    pub container: String,
    /// The image it replaced.
    pub from: String,
    /// The image it swapped in.
    pub to: String,
    /// How it ended.
    pub outcome: String,
    /// Why it rolled back or failed.
    pub reason: Option<String>,
    /// When it began and ended (RFC 3339, as the agent sent them).
    pub started_at: String,
    /// When it ended.
    pub ended_at: String,
}

/// One agent in full.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct AgentDetail {
    /// What the table shows.
    #[serde(flatten)]
    pub agent: AgentSummary,
    /// The desired manifest's revision.
    pub desired_revision: i64,
    /// Errors of its last report (manifest invalid, pass failed).
    pub manifest_error: Option<String>,
    /// Why its last pass could not run.
    pub pass_error: Option<String>,
    /// Images held after failed upgrades, as last reported.
    pub holds: Vec<super::protocol::HoldReport>,
    /// Its ops, newest first (at most [`HISTORY`]).
    pub history: Vec<EventView>,
    /// How many ops its history holds in all (the page shows
    /// [`HISTORY`] at a time).
    pub history_total: i64,
}

type AgentRow = (
    String,
    String,
    String,
    i64,
    i64,
    Option<i64>,
    Option<String>,
    Option<String>,
    Option<i64>,
    Option<String>,
);
type TargetRow = (
    String,
    String,
    String,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    String,
    String,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
);

type EventRow = (String, String, String, String, String, Option<String>, String, String);

const AGENT_COLUMNS: &str = "id, name, labels, enrolled_at, last_seen, revoked_at, controller_version, \
                             controller_image, reported_at, git";
const TARGET_COLUMNS: &str = "agent_id, target, container, image, digest, version, desired, action, reason, \
                              last_op_id, last_outcome, last_reason, failure";

/// The update marks of `image` among its repository's tags.
fn marks(image: &str, tags: &HashMap<String, Vec<String>>) -> Option<Updates> {
    let tag = ImageRef::parse(image).ok()?.tag()?.to_string();
    Some(updates(&tag, tags.get(&repository_of(image)?)?))
}

/// [`marks`] once per distinct image: a fleet of thousands runs a handful
/// of images, and each mark compares a tag with all of its repository's.
#[derive(Default)]
struct Marks(HashMap<String, Updates>);

impl Marks {
    fn of(&mut self, image: Option<&str>, tags: &HashMap<String, Vec<String>>) -> Updates {
        let Some(image) = image else { return Updates::default() };
        if let Some(known) = self.0.get(image) {
            return known.clone();
        }
        let found = marks(image, tags).unwrap_or_default();
        self.0.insert(image.to_string(), found.clone());
        found
    }
}

fn target_view(row: TargetRow, tags: &RepositoryTags, memo: &mut Marks) -> (String, TargetView) {
    let (
        agent,
        target,
        container,
        image,
        digest,
        version,
        desired,
        action,
        reason,
        op,
        outcome,
        why,
        failure,
    ) = row;
    let marks = memo.of(image.as_deref(), &tags.tags);
    let updates_unknown = image
        .as_deref()
        .and_then(repository_of)
        .and_then(|r| tags.errors.get(&r))
        .map(|e| if e.starts_with("not allowed") { e.clone() } else { format!("registry unreachable: {e}") });
    let signatures = match image.as_deref().and_then(|i| Some((repository_of(i)?, ImageRef::parse(i).ok()?)))
    {
        Some((repository, reference)) if !tags.signatures.is_empty() => {
            let offered = [&marks.patch, &marks.minor, &marks.major];
            let offered: Vec<&String> = offered.into_iter().flatten().collect();
            let running = reference.tag().map(|t| (t, digest.as_deref()));
            tags.signatures.for_target(&repository, running, &offered)
        }
        _ => BTreeMap::new(),
    };
    let view = TargetView {
        target,
        container,
        image,
        digest,
        version,
        desired,
        action,
        reason,
        last_op_id: op,
        last_outcome: outcome,
        last_reason: why,
        failure,
        updates: marks,
        updates_unknown,
        signatures,
    };
    (agent, view)
}

fn summary(
    row: AgentRow,
    targets: Vec<TargetView>,
    offline_after: u32,
    now: i64,
) -> Result<AgentSummary, FleetError> {
    let (id, name, labels, enrolled_at, last_seen, revoked_at, version, image, reported_at, git) = row;
    let labels = serde_json::from_str(&labels)
        .map_err(|e| FleetError::Corrupt(format!("agent `{id}`'s labels are not a JSON object: {e}")))?;
    Ok(AgentSummary {
        status: status(last_seen, revoked_at.is_some(), offline_after, now),
        id,
        name,
        labels,
        last_seen: rfc3339(last_seen),
        enrolled_at: rfc3339(enrolled_at),
        controller_version: version,
        controller_image: image,
        reported_at: reported_at.map(rfc3339),
        targets,
        git: git.and_then(|g| serde_json::from_str(&g).ok()),
    })
}

impl Store {
    /// Page `page` (0 = the newest) of `id`'s ops, [`HISTORY`] a page,
    /// newest first, and how many there are in all.
    pub async fn history(&self, id: &str, page: usize) -> Result<(Vec<EventView>, i64), FleetError> {
        let offset = i64::try_from(page).unwrap_or(i64::MAX / HISTORY).saturating_mul(HISTORY);
        let events: Vec<EventRow> = sqlx::query_as(
            "SELECT op_id, container, from_image, to_image, outcome, reason, started_at, ended_at FROM events \
             WHERE agent_id = $1 ORDER BY received_at DESC, op_id DESC LIMIT $2 OFFSET $3",
        )
        .bind(id)
        .bind(HISTORY)
        .bind(offset)
        .fetch_all(&self.pool)
        .await
        .map_err(db("reading an agent's history"))?;
        let (total,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM events WHERE agent_id = $1")
            .bind(id)
            .fetch_one(&self.pool)
            .await
            .map_err(db("counting an agent's history"))?;
        let history = events
            .into_iter()
            .map(|(op_id, container, from, to, outcome, reason, started_at, ended_at)| EventView {
                op_id,
                container,
                from,
                to,
                outcome,
                reason,
                started_at,
                ended_at,
            })
            .collect();
        Ok((history, total))
    }

    /// Every agent (with targets and update marks) that passes `filter`.
    pub async fn agents(&self, filter: &Filter, offline_after: u32) -> Result<Vec<AgentSummary>, FleetError> {
        let tags = self.repository_tags().await?;
        let agents: Vec<AgentRow> =
            sqlx::query_as(&format!("SELECT {AGENT_COLUMNS} FROM agents ORDER BY name, id"))
                .fetch_all(&self.pool)
                .await
                .map_err(db("listing agents"))?;
        let rows: Vec<TargetRow> = sqlx::query_as(&format!(
            "SELECT {TARGET_COLUMNS} FROM targets ORDER BY agent_id, target, container"
        ))
        .fetch_all(&self.pool)
        .await
        .map_err(db("listing targets"))?;
        let mut by_agent: HashMap<String, Vec<TargetView>> = HashMap::new();
        let mut memo = Marks::default();
        for row in rows {
            let (agent, view) = target_view(row, &tags, &mut memo);
            by_agent.entry(agent).or_default().push(view);
        }
        let now = now_ms();
        let mut out = Vec::new();
        for row in agents {
            let targets = by_agent.remove(&row.0).unwrap_or_default();
            let agent = summary(row, targets, offline_after, now)?;
            if filter.matches(&agent) {
                out.push(agent);
            }
        }
        Ok(out)
    }

    /// One agent in full.
    pub async fn agent(&self, id: &str, offline_after: u32) -> Result<AgentDetail, FleetError> {
        let row: Option<AgentRow> =
            sqlx::query_as(&format!("SELECT {AGENT_COLUMNS} FROM agents WHERE id = $1"))
                .bind(id)
                .fetch_optional(&self.pool)
                .await
                .map_err(db("reading an agent"))?;
        let Some(row) = row else {
            return Err(FleetError::NotFound(format!("no agent `{id}`; `fleet agents` lists them")));
        };
        let tags = self.repository_tags().await?;
        let rows: Vec<TargetRow> = sqlx::query_as(&format!(
            "SELECT {TARGET_COLUMNS} FROM targets WHERE agent_id = $1 ORDER BY target, container"
        ))
        .bind(id)
        .fetch_all(&self.pool)
        .await
        .map_err(db("reading an agent's targets"))?;
        let mut memo = Marks::default();
        let targets = rows.into_iter().map(|r| target_view(r, &tags, &mut memo).1).collect();
        let agent = summary(row, targets, offline_after, now_ms())?;
        let (history, history_total) = self.history(id, 0).await?;
        let report: Option<(Option<String>,)> =
            sqlx::query_as("SELECT last_report FROM agents WHERE id = $1")
                .bind(id)
                .fetch_optional(&self.pool)
                .await
                .map_err(db("reading an agent's report"))?;
        let report: Option<super::protocol::Report> =
            report.and_then(|(r,)| r).and_then(|r| serde_json::from_str(&r).ok());
        Ok(AgentDetail {
            agent,
            desired_revision: self.desired(id).await?.revision,
            manifest_error: report.as_ref().and_then(|r| r.manifest_error.clone()),
            pass_error: report.as_ref().and_then(|r| r.pass_error.clone()),
            holds: report.map(|r| r.holds).unwrap_or_default(),
            history,
            history_total,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn agent(labels: &[(&str, &str)], version: &str, status: Status, patch: bool) -> AgentSummary {
        let updates = Updates { patch: patch.then(|| "1.0.1".to_string()), ..Updates::default() };
        AgentSummary {
            id: "a".into(),
            name: "a".into(),
            labels: labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            status,
            last_seen: String::new(),
            enrolled_at: String::new(),
            controller_version: Some(version.into()),
            controller_image: None,
            reported_at: None,
            git: None,
            targets: vec![TargetView {
                target: "web".into(),
                container: "web".into(),
                image: None,
                digest: None,
                version: None,
                desired: None,
                action: "up_to_date".into(),
                reason: String::new(),
                last_op_id: None,
                last_outcome: None,
                last_reason: None,
                failure: None,
                updates,
                updates_unknown: None,
                signatures: BTreeMap::new(),
            }],
        }
    }

    #[test]
    fn an_agent_goes_offline_after_the_missed_polls_plus_a_margin() {
        let poll = 30_000;
        assert_eq!(status(0, false, 3, 3 * poll), Status::Online);
        assert_eq!(status(0, false, 3, offline_threshold_ms(3) + 1), Status::Offline);
        assert_eq!(status(0, true, 3, 0), Status::Revoked);
    }

    #[test]
    fn a_row_filter_keeps_a_row_only_when_every_given_condition_holds() {
        let mut a = agent(&[("tier", "edge"), ("dc", "fra")], "0.1.0", Status::Online, true);
        a.name = "Edge-07".into();
        a.targets[0].image = Some("registry.example/team/web:1.2.0".into());
        a.targets[0].version = Some("1.2.0".into());
        a.targets[0].last_outcome = Some("rolled_back".into());
        let t = Some(&a.targets[0]);
        let all = RowFilter::default();
        assert!(all.passes(&a, t) && all.passes(&a, None) && all.agent_passes(&a));
        let label = |k: &str, v: &str| (k.to_string(), v.to_string());
        let full = RowFilter {
            labels: vec![label("tier", "edge"), label("dc", "fra")],
            target: Some("web".into()),
            repo: Some("registry.example/team/web".into()),
            version: Some("1.2.0".into()),
            status: Some(Status::Online),
            has_update: Some(UpdateKind::Patch),
            failing: true,
            search: Some("edge-0".into()),
        };
        assert!(full.passes(&a, t));
        // Each condition alone can drop the row.
        let misses = [
            RowFilter { labels: vec![label("tier", "edge"), label("dc", "ams")], ..full.clone() },
            RowFilter { target: Some("db".into()), ..full.clone() },
            RowFilter { repo: Some("registry.example/team/db".into()), ..full.clone() },
            RowFilter { version: Some("1.3.0".into()), ..full.clone() },
            RowFilter { status: Some(Status::Offline), ..full.clone() },
            RowFilter { has_update: Some(UpdateKind::Major), ..full.clone() },
            RowFilter { search: Some("core".into()), ..full.clone() },
        ];
        for f in &misses {
            assert!(!f.passes(&a, t), "{f:?}");
        }
        // The search reads the image too; an agent without targets fails
        // every target condition but passes on its own ones.
        assert!(RowFilter { search: Some("team/web".into()), ..all.clone() }.passes(&a, t));
        assert!(!RowFilter { version: Some("1.2.0".into()), ..all.clone() }.passes(&a, None));
        assert!(RowFilter { labels: vec![label("tier", "edge")], ..all.clone() }.passes(&a, None));
        a.targets[0].last_outcome = Some("committed".into());
        assert!(!RowFilter { failing: true, ..all }.passes(&a, Some(&a.targets[0])));
    }

    #[test]
    fn filters_match_every_given_field() {
        let a = agent(&[("tier", "edge")], "0.1.0", Status::Online, true);
        let all = Filter::default();
        assert!(all.matches(&a));
        let f = |label: Option<&str>,
                 version: Option<&str>,
                 status: Option<Status>,
                 has: Option<UpdateKind>| Filter {
            label: label.map(str::to_string),
            version: version.map(str::to_string),
            status,
            has_update: has,
        };
        assert!(
            f(Some("tier=edge"), Some("0.1.0"), Some(Status::Online), Some(UpdateKind::Patch)).matches(&a)
        );
        assert!(!f(Some("tier=core"), None, None, None).matches(&a));
        assert!(!f(Some("tier"), None, None, None).matches(&a));
        assert!(!f(None, Some("0.2.0"), None, None).matches(&a));
        assert!(!f(None, None, Some(Status::Offline), None).matches(&a));
        assert!(!f(None, None, None, Some(UpdateKind::Major)).matches(&a));
        assert!(f(None, None, None, Some(UpdateKind::Any)).matches(&a));
        let none = agent(&[], "0.1.0", Status::Online, false);
        assert!(!f(None, None, None, Some(UpdateKind::Any)).matches(&none));
    }
}
