//! The campaign form's fields as the browser sends them, and their
//! translation into the API's [`Request`]. Only what a form adds is
//! checked here (which of the three selections counts, numbers typed as
//! text, a window without hours); the rest is the API's own validation,
//! run by the caller through [`crate::campaign::runner::plan`].

use crate::campaign::schedule::WindowRequest;
use crate::campaign::spec::{FailureAction, FleetFilter, Request};

/// The form as the browser sends it: every value a string, as typed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CampaignForm {
    /// A name for people.
    pub name: String,
    /// `agents`, `label`, `below` or `filter`: which selection counts.
    pub selection: String,
    /// The fleet filter's labels (`KEY=VALUE`, all of them).
    pub filter_labels: Vec<String>,
    /// The fleet filter's running version.
    pub filter_version: String,
    /// The fleet filter's repository.
    pub filter_repo: String,
    /// `1`: the fleet filter's "last op failed".
    pub filter_failing: String,
    /// The fleet filter's update kind.
    pub filter_has_update: String,
    /// The fleet filter's status.
    pub filter_status: String,
    /// The fleet filter's search text.
    pub filter_q: String,
    /// `yes`: leave agents offline now out.
    pub exclude_offline: String,
    /// Ticked agent ids.
    pub agents: Vec<String>,
    /// `KEY=VALUE`.
    pub label: String,
    /// A version.
    pub below: String,
    /// The target or container name (`*` globs).
    pub target: String,
    /// `version` or `image`.
    pub by: String,
    /// A tag of the agents' repository.
    pub version: String,
    /// `repo:tag`.
    pub image: String,
    /// Agents in the canary wave.
    pub canary: String,
    /// `2` or `25%`.
    pub batch: String,
    /// Between waves.
    pub delay: String,
    /// Monitor window.
    pub monitor: String,
    /// 0–1.
    pub max_failure_ratio: String,
    /// `pause`, `rollback`, `continue`.
    pub failure_action: String,
    /// Per-agent deadline.
    pub deadline: String,
    /// RFC 3339, or empty.
    pub start_at: String,
    /// Ticked weekdays.
    pub window_days: Vec<String>,
    /// `HH:MM-HH:MM`, or empty for no window.
    pub window_hours: String,
    /// `+HH:MM`.
    pub utc_offset: String,
    /// An IANA time zone (`Europe/Berlin`), or an offset (`+02:00`).
    pub time_zone: String,
    /// `name`, `shuffle` or `spread`.
    pub order: String,
    /// The label key waves spread across (with `order=spread`).
    pub spread_by: String,
    /// `yes` when ticked.
    pub approve_after_canary: String,
    /// `yes` when "pin by digest" is ticked.
    pub pin_digest: String,
    /// `1` when the form showed the pin-by-digest switch (an unticked box
    /// sends nothing).
    pub pin_digest_shown: String,
    /// The image the preview showed Start would pin (`repo:tag@sha256:…`).
    pub previewed_image: String,
    /// The session's CSRF token.
    pub csrf: Option<String>,
    /// `preview` or `start`.
    pub action: String,
    /// The fingerprint of the settings last previewed.
    pub previewed: String,
}

impl Default for CampaignForm {
    /// The API's defaults, spelled out so the admin sees them.
    fn default() -> Self {
        Self {
            name: String::new(),
            selection: "label".into(),
            filter_labels: Vec::new(),
            filter_version: String::new(),
            filter_repo: String::new(),
            filter_failing: String::new(),
            filter_has_update: String::new(),
            filter_status: String::new(),
            filter_q: String::new(),
            exclude_offline: String::new(),
            agents: Vec::new(),
            label: String::new(),
            below: String::new(),
            target: String::new(),
            by: "version".into(),
            version: String::new(),
            image: String::new(),
            canary: "1".into(),
            batch: "1".into(),
            delay: "0s".into(),
            monitor: "30s".into(),
            max_failure_ratio: "0".into(),
            failure_action: "pause".into(),
            deadline: "10m".into(),
            start_at: String::new(),
            window_days: Vec::new(),
            window_hours: String::new(),
            utc_offset: String::new(),
            time_zone: String::new(),
            order: "name".into(),
            spread_by: String::new(),
            approve_after_canary: String::new(),
            pin_digest: "yes".into(),
            pin_digest_shown: String::new(),
            previewed_image: String::new(),
            csrf: None,
            action: String::new(),
            previewed: String::new(),
        }
    }
}

fn optional(s: &str) -> Option<String> {
    let s = s.trim();
    (!s.is_empty()).then(|| s.to_string())
}

impl CampaignForm {
    /// From the posted pairs (repeated keys for the ticked agents and days);
    /// unknown keys are ignored.
    pub fn from_pairs(pairs: Vec<(String, String)>) -> Self {
        let mut f = Self { agents: Vec::new(), window_days: Vec::new(), ..Self::default() };
        let ticked = pairs.iter().any(|(k, v)| k == "pin_digest" && v == "yes");
        for (k, v) in pairs {
            let slot = match k.as_str() {
                "agents" => {
                    if !f.agents.contains(&v) {
                        f.agents.push(v);
                    }
                    continue;
                }
                "window_days" => {
                    f.window_days.push(v);
                    continue;
                }
                "filter_labels" => {
                    if !v.trim().is_empty() && !f.filter_labels.contains(&v) {
                        f.filter_labels.push(v);
                    }
                    continue;
                }
                "filter_version" => &mut f.filter_version,
                "filter_repo" => &mut f.filter_repo,
                "filter_failing" => &mut f.filter_failing,
                "filter_has_update" => &mut f.filter_has_update,
                "filter_status" => &mut f.filter_status,
                "filter_q" => &mut f.filter_q,
                "exclude_offline" => &mut f.exclude_offline,
                "csrf" => {
                    f.csrf = Some(v);
                    continue;
                }
                "name" => &mut f.name,
                "selection" => &mut f.selection,
                "label" => &mut f.label,
                "below" => &mut f.below,
                "target" => &mut f.target,
                "by" => &mut f.by,
                "version" => &mut f.version,
                "image" => &mut f.image,
                "canary" => &mut f.canary,
                "batch" => &mut f.batch,
                "delay" => &mut f.delay,
                "monitor" => &mut f.monitor,
                "max_failure_ratio" => &mut f.max_failure_ratio,
                "failure_action" => &mut f.failure_action,
                "deadline" => &mut f.deadline,
                "start_at" => &mut f.start_at,
                "window_hours" => &mut f.window_hours,
                "utc_offset" => &mut f.utc_offset,
                "time_zone" => &mut f.time_zone,
                "order" => &mut f.order,
                "spread_by" => &mut f.spread_by,
                "approve_after_canary" => &mut f.approve_after_canary,
                "pin_digest" => &mut f.pin_digest,
                "pin_digest_shown" => &mut f.pin_digest_shown,
                "previewed_image" => &mut f.previewed_image,
                "action" => &mut f.action,
                "previewed" => &mut f.previewed,
                _ => continue,
            };
            *slot = v;
        }
        if f.pin_digest_shown == "1" && !ticked {
            f.pin_digest = String::new();
        }
        f
    }

    /// The fleet filter the form carries.
    pub fn fleet_filter(&self) -> FleetFilter {
        FleetFilter {
            labels: self.filter_labels.clone(),
            repo: optional(&self.filter_repo),
            version: optional(&self.filter_version),
            failing: self.filter_failing == "1",
            has_update: optional(&self.filter_has_update),
            status: optional(&self.filter_status),
            q: optional(&self.filter_q),
        }
    }

    /// The API's request for this form. Only what a form adds is checked
    /// here (which selection, numbers typed as text); everything else is
    /// the API's own validation, done by [`runner::plan`]. Each error
    /// names the field as the API does.
    pub fn request(&self) -> Result<Request, String> {
        let mut r = Request {
            name: optional(&self.name),
            target: self.target.trim().to_string(),
            ..Request::default()
        };
        match self.selection.as_str() {
            "agents" if self.agents.is_empty() => {
                return Err(
                    "agents: tick at least one agent (here, or on the fleet page before “Create campaign”)"
                        .into(),
                )
            }
            "agents" => r.agents = self.agents.clone(),
            "label" => {
                r.label = Some(
                    optional(&self.label).ok_or("label: required when selecting by label, as KEY=VALUE")?,
                )
            }
            "below" => {
                r.below = Some(
                    optional(&self.below)
                        .ok_or("below: required when selecting by version, as a version like 1.2.0")?,
                )
            }
            "filter" => {
                r.filter = Some(self.fleet_filter());
            }
            other => return Err(format!("selection `{other}`: expected agents, label, below or filter")),
        }
        match self.by.as_str() {
            "version" => {
                r.version = Some(
                    optional(&self.version)
                        .ok_or("version: pick one of the registry's tags (or choose an image)")?,
                )
            }
            "image" => r.image = Some(optional(&self.image).ok_or("image: required, as REPOSITORY:TAG")?),
            other => return Err(format!("by `{other}`: expected version or image")),
        }
        if let Some(c) = optional(&self.canary) {
            r.canary = Some(
                c.parse()
                    .map_err(|_| format!("canary `{c}`: expected a whole number of agents (0 or more)"))?,
            );
        }
        r.batch = optional(&self.batch).map(serde_json::Value::String);
        r.delay = optional(&self.delay);
        r.monitor = optional(&self.monitor);
        r.deadline = optional(&self.deadline);
        if let Some(m) = optional(&self.max_failure_ratio) {
            r.max_failure_ratio = Some(
                m.parse().map_err(|_| format!("max_failure_ratio `{m}`: expected a number from 0 to 1"))?,
            );
        }
        r.failure_action = match self.failure_action.trim() {
            "" => None,
            "pause" => Some(FailureAction::Pause),
            "rollback" => Some(FailureAction::Rollback),
            "continue" => Some(FailureAction::Continue),
            other => return Err(format!("failure_action `{other}`: expected pause, rollback or continue")),
        };
        r.start_at = optional(&self.start_at);
        // One field takes a zone name or an offset; `utc_offset` is still
        // read from older forms.
        let (utc_offset, time_zone) = match optional(&self.time_zone) {
            Some(z) if z.starts_with(['+', '-']) => (Some(z), None),
            Some(z) => (optional(&self.utc_offset), Some(z)),
            None => (optional(&self.utc_offset), None),
        };
        r.window = match (optional(&self.window_hours), self.window_days.is_empty(), utc_offset.is_some() || time_zone.is_some()) {
            (None, true, false) => None,
            (None, _, _) => {
                return Err("window.hours: required for a maintenance window, as HH:MM-HH:MM (leave the days and the time zone empty for none)".into())
            }
            (Some(hours), _, _) => {
                Some(WindowRequest { days: self.window_days.clone(), hours, utc_offset, time_zone })
            }
        };
        match self.order.trim() {
            "" | "name" => {}
            "shuffle" => r.shuffle = Some(true),
            "spread" => {
                r.spread_by = Some(
                    optional(&self.spread_by)
                        .ok_or("spread_by: required to spread waves, as a label key (region)")?,
                )
            }
            other => return Err(format!("order `{other}`: expected name, shuffle or spread")),
        }
        r.approve_after_canary = (self.approve_after_canary == "yes").then_some(true);
        r.exclude_offline = (self.exclude_offline == "yes").then_some(true);
        r.pin_digest = (self.pin_digest != "yes").then_some(false);
        Ok(r)
    }
}

/// A fingerprint of `r`: what "Start campaign" carries from its preview.
pub fn fingerprint(r: &Request) -> String {
    crate::secret::hash(&serde_json::to_string(r).unwrap_or_default())
}

/// The form field an error message is about (its first word, as the API
/// names fields), to mark that input.
pub fn field_of(message: &str) -> &str {
    let word = message.split([' ', ':']).next().unwrap_or("");
    match word {
        "window.hours" => "window_hours",
        "window.days" => "window_days",
        "window.utc_offset" | "window.time_zone" | "window:" => "time_zone",
        "give" if message.contains("image") => "by",
        "give" => "selection",
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(extra: &[(&str, &str)]) -> CampaignForm {
        let mut all: Vec<(String, String)> = [
            ("selection", "label"),
            ("label", "env=prod"),
            ("target", " web "),
            ("by", "version"),
            ("version", "1.2.0"),
            ("image", "ignored:1"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        all.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        CampaignForm::from_pairs(all)
    }

    #[test]
    fn only_the_chosen_selection_and_source_reach_the_request() {
        let r = pairs(&[("agents", "a1"), ("below", "2.0.0")]).request().expect("valid");
        assert_eq!((r.label.as_deref(), r.agents.len(), r.below), (Some("env=prod"), 0, None));
        assert_eq!((r.version.as_deref(), r.image), (Some("1.2.0"), None));
        assert_eq!(r.target, "web");
        let r = pairs(&[("selection", "agents"), ("agents", "a1"), ("agents", "a2"), ("agents", "a1")])
            .request()
            .expect("valid");
        assert_eq!(r.agents, ["a1", "a2"], "a row per target ticks an agent once");
        let r = pairs(&[("by", "image")]).request().expect("valid");
        assert_eq!((r.image.as_deref(), r.version), (Some("ignored:1"), None));
    }

    #[test]
    fn empty_fields_take_the_apis_defaults_and_typed_ones_are_passed_on() {
        let r = pairs(&[("canary", ""), ("batch", " "), ("failure_action", ""), ("max_failure_ratio", "")])
            .request()
            .expect("valid");
        assert_eq!((r.canary, r.batch, r.failure_action, r.max_failure_ratio), (None, None, None, None));
        let r = pairs(&[
            ("canary", "2"),
            ("batch", "25%"),
            ("max_failure_ratio", "0.1"),
            ("failure_action", "rollback"),
            ("window_hours", "22:00-04:00"),
            ("window_days", "sat"),
            ("window_days", "sun"),
        ])
        .request()
        .expect("valid");
        assert_eq!(r.canary, Some(2));
        assert_eq!(r.batch, Some(serde_json::Value::String("25%".into())));
        assert_eq!(r.max_failure_ratio, Some(0.1));
        assert_eq!(r.failure_action, Some(FailureAction::Rollback));
        let w = r.window.expect("a window");
        assert_eq!(
            (w.days, w.hours.as_str(), w.utc_offset),
            (vec!["sat".to_string(), "sun".into()], "22:00-04:00", None)
        );
    }

    #[test]
    fn what_a_form_adds_is_refused_naming_the_field() {
        let cases: [(&[(&str, &str)], &str); 8] = [
            (&[("selection", "agents")], "agents: tick at least one agent"),
            (&[("label", "")], "label: required"),
            (&[("selection", "below")], "below: required"),
            (&[("selection", "everyone")], "selection `everyone`"),
            (&[("version", "")], "version: pick one"),
            (&[("canary", "-1")], "canary `-1`: expected a whole number"),
            (&[("max_failure_ratio", "ten percent")], "max_failure_ratio `ten percent`"),
            (&[("utc_offset", "+02:00")], "window.hours: required"),
        ];
        for (extra, want) in cases {
            let e = pairs(extra).request().expect_err("invalid");
            assert!(e.starts_with(want), "{extra:?}: {e}");
        }
        assert_eq!(field_of("window.hours: required"), "window_hours");
        assert_eq!(field_of("batch `0`: expected"), "batch");
        assert_eq!(field_of("give exactly one of image (repo:tag) or version (a tag)"), "by");
    }
}
