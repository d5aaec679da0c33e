//! What a campaign is asked to do: which agents, which target, which
//! image, and how (waves in Swarm's vocabulary, a schedule, a deadline).
//! [`Request`] is what the API and the CLI send; [`Spec::from_request`]
//! validates it into the [`Spec`] the engine runs and the database keeps.

use serde::{Deserialize, Serialize};

use super::schedule::Window;
use container_upgrader::manifest::Dur;

/// Which agents a campaign upgrades.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Selection {
    /// These agent ids.
    Agents(Vec<String>),
    /// Agents with this label (`KEY=VALUE`).
    Label(String),
    /// Agents whose target runs a version below this one.
    Below(String),
    /// The agents a fleet-page filter shows (what "Create campaign for
    /// these N" turns into a selection), evaluated at creation.
    Filter(FleetFilter),
}

/// A fleet-page filter as a campaign's selection: every condition given
/// must hold (AND); the target is the campaign's own.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct FleetFilter {
    /// `KEY=VALUE` labels the agent has, all of them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub labels: Vec<String>,
    /// The repository the target's image comes from (`registry/path`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repo: Option<String>,
    /// The version the target runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// The target's last op failed or was rolled back.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub failing: bool,
    /// The target has an update of this kind: `any`, `patch`, `minor`, `major`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub has_update: Option<String>,
    /// `online` or `offline`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// A substring of the agent's name or the target's image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub q: Option<String>,
}

impl FleetFilter {
    /// Checks every field's shape; the error names the field and what it
    /// accepts.
    pub fn validate(&self) -> Result<(), String> {
        for l in &self.labels {
            if l.split_once('=').is_none_or(|(k, _)| k.is_empty()) {
                return Err(format!("filter.labels `{l}`: expected KEY=VALUE"));
            }
        }
        if let Some(k) = &self.has_update {
            if !["any", "patch", "minor", "major"].contains(&k.as_str()) {
                return Err(format!("filter.has_update `{k}`: expected any, patch, minor or major"));
            }
        }
        if let Some(s) = &self.status {
            if !["online", "offline"].contains(&s.as_str()) {
                return Err(format!(
                    "filter.status `{s}`: expected online or offline (revoked agents are never selected)"
                ));
            }
        }
        Ok(())
    }

    /// The filter in words: "labels region=eu and env=prod, running 1.2.0".
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if !self.labels.is_empty() {
            parts.push(format!("labelled {}", self.labels.join(" and ")));
        }
        if let Some(r) = &self.repo {
            parts.push(format!("from {r}"));
        }
        if let Some(v) = &self.version {
            parts.push(format!("running {v}"));
        }
        if self.failing {
            parts.push("whose last op failed".into());
        }
        if let Some(k) = &self.has_update {
            parts.push(format!("with a {k} update"));
        }
        if let Some(s) = &self.status {
            parts.push(s.clone());
        }
        if let Some(q) = &self.q {
            parts.push(format!("matching “{q}”"));
        }
        if parts.is_empty() {
            "every agent with the target".into()
        } else {
            format!("agents {}", parts.join(", "))
        }
    }
}

/// How many agents one wave after the canary takes.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "snake_case")]
pub enum Batch {
    /// A number of agents.
    Count(u32),
    /// A percentage of the campaign's agents (rounded up, at least one).
    Percent(f64),
}

impl Batch {
    /// Parses `2` or `25%`.
    pub fn parse(s: &str) -> Result<Self, String> {
        let s = s.trim();
        if let Some(p) = s.strip_suffix('%') {
            match p.trim().parse::<f64>() {
                Ok(p) if p > 0.0 && p <= 100.0 => Ok(Self::Percent(p)),
                _ => Err(format!("batch `{s}`: a percentage must be above 0% and at most 100%")),
            }
        } else {
            match s.parse::<u32>() {
                Ok(n) if n > 0 => Ok(Self::Count(n)),
                _ => Err(format!(
                    "batch `{s}`: expected a number of agents (1 or more) or a percentage (`25%`)"
                )),
            }
        }
    }

    /// The wave size for `total` agents.
    pub fn size(self, total: usize) -> usize {
        match self {
            Self::Count(n) => usize::try_from(n).unwrap_or(usize::MAX).max(1),
            // Truncation is fine: the percentage is at most 100 of a count.
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss, clippy::cast_precision_loss)]
            Self::Percent(p) => ((total as f64 * p / 100.0).ceil() as usize).max(1),
        }
    }
}

/// What a campaign does when its failures pass the ratio.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum FailureAction {
    /// Stop sending; an admin resumes, aborts or rolls back.
    Pause,
    /// Send every upgraded agent back to its previous image.
    Rollback,
    /// Carry on.
    Continue,
}

/// The order agents are put into waves.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Order {
    /// By agent name (the default: predictable).
    #[default]
    Name,
    /// At random, drawn once at creation.
    Shuffle,
    /// Round-robin over the values of this label (`region`): every wave
    /// takes from each region in turn, so no wave is one region's outage.
    SpreadBy(String),
}

/// A validated campaign.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Spec {
    /// A name for people.
    pub name: String,
    /// Which agents.
    pub selection: Selection,
    /// The target as the manifest writes it, or a container name; `*`
    /// matches any run of characters (`web-*`).
    pub target: String,
    /// The image every selected agent is pinned to (`repo:tag`).
    pub image: String,
    /// Agents in the first wave.
    pub canary: u32,
    /// Agents per later wave.
    pub batch: Batch,
    /// Time between a wave done and the next one's start (ms).
    pub delay_ms: i64,
    /// How long an agent must stay on the new image after `committed` (ms).
    pub monitor_ms: i64,
    /// Failures over agents above which `failure_action` applies.
    pub max_failure_ratio: f64,
    /// What passing the ratio does.
    pub failure_action: FailureAction,
    /// No wave starts before this (unix ms).
    pub start_at: Option<i64>,
    /// No wave starts outside this window.
    pub window: Option<Window>,
    /// An agent that has not committed this long after its pin is timed out (ms).
    pub deadline_ms: i64,
    /// The order agents are put into waves.
    #[serde(default)]
    pub order: Order,
    /// Pause after the canary until an admin approves (resumes), even
    /// when it succeeded.
    #[serde(default)]
    pub approve_after_canary: bool,
}

/// `POST /v1/fleet/campaigns` (and `…/preview`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Request {
    /// A name; default `campaign`.
    pub name: Option<String>,
    /// Explicit agent ids.
    #[serde(default)]
    pub agents: Vec<String>,
    /// A label selector, `KEY=VALUE`.
    pub label: Option<String>,
    /// Agents whose target runs a version below this.
    pub below: Option<String>,
    /// The agents a fleet filter shows.
    pub filter: Option<FleetFilter>,
    /// Leave out agents that are offline when the campaign is created.
    pub exclude_offline: Option<bool>,
    /// The target (manifest target or container name).
    pub target: String,
    /// The image (`repo:tag`); or give `version`.
    pub image: Option<String>,
    /// A version: the image is the agents' repository at this tag.
    pub version: Option<String>,
    /// Canary agents (default 1).
    pub canary: Option<u32>,
    /// `2` or `25%` (default 1).
    pub batch: Option<serde_json::Value>,
    /// Between waves (default `0s`).
    pub delay: Option<String>,
    /// Monitor window (default `30s`).
    pub monitor: Option<String>,
    /// 0.0–1.0 (default 0).
    pub max_failure_ratio: Option<f64>,
    /// `pause` (default), `rollback`, `continue`.
    pub failure_action: Option<FailureAction>,
    /// RFC 3339.
    pub start_at: Option<String>,
    /// A maintenance window.
    pub window: Option<super::schedule::WindowRequest>,
    /// Per-agent deadline (default `10m`).
    pub deadline: Option<String>,
    /// Pin the image by its digest, read once from the registry (default
    /// `true`); `false` hands agents the tag.
    pub pin_digest: Option<bool>,
    /// Spread each wave across the values of this label (`region`).
    pub spread_by: Option<String>,
    /// Put agents into waves in a random order.
    pub shuffle: Option<bool>,
    /// Pause after the canary for an admin's approval.
    pub approve_after_canary: Option<bool>,
}

/// Longest name.
const MAX_NAME: usize = 200;

fn millis(field: &str, value: Option<&str>, default: &str) -> Result<i64, String> {
    let text = value.unwrap_or(default);
    let d = Dur::parse(text).map_err(|e| format!("{field} `{text}`: {e}"))?;
    Ok(i64::try_from(d.0.as_millis()).unwrap_or(i64::MAX))
}

impl Spec {
    /// Validates `r`; `image` is the image already resolved from a
    /// `version` (the caller knows the agents' repository). Every error
    /// names the field and what it accepts.
    pub fn from_request(r: &Request, image: String) -> Result<Self, String> {
        let selection = match (r.agents.is_empty(), &r.label, &r.below, &r.filter) {
            (false, None, None, None) => Selection::Agents(r.agents.clone()),
            (true, Some(l), None, None) if l.split_once('=').is_some_and(|(k, _)| !k.is_empty()) => {
                Selection::Label(l.clone())
            }
            (true, Some(l), None, None) => return Err(format!("label `{l}`: expected KEY=VALUE")),
            (true, None, Some(v), None) if semver_like(v) => Selection::Below(v.clone()),
            (true, None, Some(v), None) => return Err(format!("below `{v}`: expected a version like 1.2.0")),
            (true, None, None, Some(f)) => {
                f.validate()?;
                Selection::Filter(f.clone())
            }
            _ => {
                return Err(
                    "give exactly one of agents (ids), label (KEY=VALUE), below (a version) or filter (a fleet filter)"
                        .into(),
                )
            }
        };
        if r.target.trim().is_empty() {
            return Err("target: required (the manifest's target or a container name)".into());
        }
        let ratio = r.max_failure_ratio.unwrap_or(0.0);
        if !(0.0..=1.0).contains(&ratio) {
            return Err(format!("max_failure_ratio {ratio}: expected a number from 0 to 1"));
        }
        let batch = match &r.batch {
            None => Batch::Count(1),
            Some(serde_json::Value::Number(n)) => Batch::parse(&n.to_string())?,
            Some(serde_json::Value::String(s)) => Batch::parse(s)?,
            Some(other) => return Err(format!("batch {other}: expected a number or a percentage string")),
        };
        let name = r.name.clone().unwrap_or_else(|| "campaign".into());
        if name.len() > MAX_NAME {
            return Err(format!("name: at most {MAX_NAME} characters"));
        }
        let start_at = match &r.start_at {
            None => None,
            Some(t) => {
                let at = humantime::parse_rfc3339_weak(t)
                    .map_err(|e| format!("start_at `{t}`: {e}; expected RFC 3339 (2026-01-31T22:00:00Z)"))?;
                let ms = at
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_err(|_| format!("start_at `{t}`: before 1970"))?;
                Some(i64::try_from(ms.as_millis()).unwrap_or(i64::MAX))
            }
        };
        let window = r.window.as_ref().map(Window::from_request).transpose()?;
        let order = match (
            r.spread_by.as_deref().map(str::trim).filter(|s| !s.is_empty()),
            r.shuffle.unwrap_or(false),
        ) {
            (Some(_), true) => return Err("spread_by: give spread_by or shuffle, not both".into()),
            (Some(key), false) if key.contains('=') => {
                return Err(format!("spread_by `{key}`: expected a label key (region), not KEY=VALUE"))
            }
            (Some(key), false) => Order::SpreadBy(key.to_string()),
            (None, true) => Order::Shuffle,
            (None, false) => Order::Name,
        };
        let approve_after_canary = r.approve_after_canary.unwrap_or(false);
        if approve_after_canary && r.canary == Some(0) {
            return Err("approve_after_canary: needs a canary (canary 1 or more)".into());
        }
        let deadline_ms = millis("deadline", r.deadline.as_deref(), "10m")?;
        if deadline_ms == 0 {
            return Err("deadline: must be above 0".into());
        }
        Ok(Self {
            name,
            selection,
            target: r.target.trim().to_string(),
            image,
            canary: r.canary.unwrap_or(1),
            batch,
            delay_ms: millis("delay", r.delay.as_deref(), "0s")?,
            monitor_ms: millis("monitor", r.monitor.as_deref(), "30s")?,
            max_failure_ratio: ratio,
            failure_action: r.failure_action.unwrap_or(FailureAction::Pause),
            start_at,
            window,
            deadline_ms,
            order,
            approve_after_canary,
        })
    }
}

/// Whether `v` reads as a version (`1`, `1.2`, `v1.2.3`).
pub fn semver_like(v: &str) -> bool {
    container_upgrader::resolve::tag::TagVersion::parse(v).is_some()
}

/// `a` < `b` as versions; None when either is not one.
pub fn below(a: &str, b: &str) -> Option<bool> {
    let (a, b) = (
        container_upgrader::resolve::tag::TagVersion::parse(a)?,
        container_upgrader::resolve::tag::TagVersion::parse(b)?,
    );
    Some(a.version < b.version)
}
