//! What a pass did, counted and named: the one source for the CLI's
//! `Reconciled: …` line, its exit code, `/v1/status` and the metrics, so
//! none of them can forget a kind of failure the others show.
//!
//! Pure: built from a [`Pass`] and nothing else.

use std::fmt;
use std::time::SystemTime;

use serde::Serialize;

use crate::controller::{Own, Pass};
use crate::plan::{Action, PlanEntry};
use crate::reconcile::Applied;
use crate::swap::journal::OpRecord;
use crate::swap::{Outcome, SwapError};

/// How serious a pass's worst result is, least serious first. The CLI maps
/// it to its exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// Everything is as the manifest says (or on its way: a helper started).
    #[default]
    Ok,
    /// Something was not done, and nothing changed for it (pull failed,
    /// registry down, image refused by the policy, held by the backoff).
    Unchanged,
    /// A new container failed its gate and the old one is back.
    RolledBack,
    /// A swap stopped half-way or failed without rollback.
    Attention,
}

/// What went wrong for one target or container.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// The new container failed its gate; the old one is back.
    RolledBack,
    /// The new container failed its gate and stays (rollback disabled).
    Failed,
    /// A swap stopped half-way; `recover` finishes it.
    Stuck,
    /// Not retried yet: the same image failed recently.
    Held,
    /// Nothing was done: the desired image is unknown, the pull or the
    /// helper failed, the lock was held, ….
    Error,
    /// The policy does not allow the target's image.
    Refused,
}

impl Kind {
    /// Every kind, for metrics that must show each series from zero.
    pub const ALL: [Kind; 6] =
        [Kind::RolledBack, Kind::Failed, Kind::Stuck, Kind::Held, Kind::Error, Kind::Refused];

    /// The snake_case name used in JSON and metric labels.
    pub fn name(self) -> &'static str {
        match self {
            Kind::RolledBack => "rolled_back",
            Kind::Failed => "failed",
            Kind::Stuck => "stuck",
            Kind::Held => "held",
            Kind::Error => "error",
            Kind::Refused => "refused",
        }
    }

    fn severity(self) -> Severity {
        match self {
            Kind::RolledBack => Severity::RolledBack,
            Kind::Failed | Kind::Stuck => Severity::Attention,
            Kind::Held | Kind::Error | Kind::Refused => Severity::Unchanged,
        }
    }
}

/// One named failure.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Failure {
    /// The target as written.
    pub target: String,
    /// The container, when the target selects one.
    pub container: Option<String>,
    /// What kind of failure.
    pub kind: Kind,
    /// Why, in words a person reads.
    pub reason: String,
    /// When a held or rolled-back upgrade may be tried again (the hold
    /// derived from the journal), so the loop can wake for it.
    #[serde(skip)]
    pub retry_at: Option<SystemTime>,
}

impl Failure {
    /// The container's name, else the target's.
    pub fn who(&self) -> &str {
        self.container.as_deref().unwrap_or(&self.target)
    }
}

/// How many containers ended which way.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    /// Swaps committed.
    pub upgraded: usize,
    /// Swaps whose new container failed (rolled back or, without
    /// rollback, kept failed).
    pub rolled_back: usize,
    /// Upgrades not tried because the same image failed recently.
    pub held: usize,
    /// Targets or containers where nothing could be done (see [`Kind`]).
    pub errors: usize,
    /// Containers already on their desired image.
    pub up_to_date: usize,
    /// Targets that select no container (not a failure: a selector may
    /// match nothing yet).
    pub missing: usize,
}

/// A pass, counted and named.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    /// The counts.
    #[serde(flatten)]
    pub counts: Counts,
    /// Every failure, in plan order (the controller's own last).
    pub failures: Vec<Failure>,
    /// The worst of them.
    pub severity: Severity,
}

impl Summary {
    /// Counts and names every result of `pass`.
    pub fn of(pass: &Pass) -> Self {
        let mut s = Summary::default();
        let plan = &pass.report.plan;
        s.counts.up_to_date = plan.count(Action::None);
        s.counts.missing = plan.count(Action::Missing);
        for e in &plan.actions {
            match e.action {
                Action::Error => s.fail(e, Kind::Error, e.reason.clone(), None),
                Action::Refused => s.fail(e, Kind::Refused, e.reason.clone(), None),
                Action::Upgrade | Action::None | Action::Missing => {}
            }
        }
        for (entry, applied) in &pass.report.applied {
            s.applied(entry, applied, &pass.journal);
        }
        if let Some(own) = &pass.own {
            s.own(pass.own_entry.as_ref().unwrap_or(&own_entry()), own);
        }
        s
    }

    /// Nothing failed.
    pub fn is_clean(&self) -> bool {
        self.failures.is_empty()
    }

    /// The failure of `container` in this pass, if any.
    pub fn failure_of(&self, container: &str) -> Option<&Failure> {
        self.failures.iter().find(|f| f.container.as_deref() == Some(container))
    }

    fn applied(&mut self, entry: &PlanEntry, applied: &Applied, journal: &[OpRecord]) {
        match applied {
            Applied::Swapped(o) => match &**o {
                Outcome::Committed(_) => self.counts.upgraded += 1,
                Outcome::AlreadyCurrent { .. } => self.counts.up_to_date += 1,
                Outcome::RolledBack(op) => {
                    self.fail(entry, Kind::RolledBack, reason(op), hold_end(journal, op))
                }
                Outcome::Failed(op) => self.fail(entry, Kind::Failed, reason(op), hold_end(journal, op)),
            },
            Applied::Held(h) => self.fail(entry, Kind::Held, held(h), Some(h.until)),
            Applied::Error(SwapError::Unchanged { cause, .. }) => {
                self.fail(entry, Kind::Error, cause.to_string(), None)
            }
            Applied::Error(e) => self.fail(entry, Kind::Stuck, e.to_string(), None),
        }
    }

    fn own(&mut self, entry: &PlanEntry, own: &Own) {
        match own {
            Own::HelperStarted { .. } | Own::InProgress => {}
            Own::Held(h) => self.fail(entry, Kind::Held, held(h), Some(h.until)),
            Own::Failed(reason) => self.fail(entry, Kind::Error, reason.clone(), None),
        }
    }

    fn fail(&mut self, entry: &PlanEntry, kind: Kind, reason: String, retry_at: Option<SystemTime>) {
        match kind {
            Kind::RolledBack | Kind::Failed => self.counts.rolled_back += 1,
            Kind::Held => self.counts.held += 1,
            Kind::Stuck | Kind::Error | Kind::Refused => self.counts.errors += 1,
        }
        self.severity = self.severity.max(kind.severity());
        let (target, container) = (entry.target.clone(), entry.container.clone());
        self.failures.push(Failure { target, container, kind, reason, retry_at });
    }
}

/// Stands in for the controller's plan entry when a pass did not keep it.
fn own_entry() -> PlanEntry {
    PlanEntry {
        target: "this controller".into(),
        target_index: 0,
        container: None,
        current: None,
        desired: None,
        action: Action::Upgrade,
        reason: String::new(),
    }
}

/// When the hold a failed op puts on its image ends: the journal's hold as
/// of the op's own end.
fn hold_end(journal: &[OpRecord], op: &OpRecord) -> Option<SystemTime> {
    let ended = humantime::parse_rfc3339(op.updated_at()).ok()?;
    crate::swap::backoff::hold(journal, &op.container, &op.new_image, ended).map(|h| h.until)
}

fn reason(op: &OpRecord) -> String {
    format!("upgrade to {} failed: {}", op.new_image, op.reason.as_deref().unwrap_or("no reason recorded"))
}

fn held(h: &crate::swap::backoff::Hold) -> String {
    format!(
        "upgrade failed {} time(s), last: {}; next attempt after {}",
        h.failures,
        h.reason,
        humantime::format_rfc3339_seconds(h.until)
    )
}

/// `Reconciled: 1 upgraded, 0 rolled back, 0 held, 1 errors, 3 up to date.`
/// then, when something failed, `Failed: web (rolled_back), agent (error).`
impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = &self.counts;
        write!(
            f,
            "Reconciled: {} upgraded, {} rolled back, {} held, {} errors, {} up to date.",
            c.upgraded, c.rolled_back, c.held, c.errors, c.up_to_date
        )?;
        if c.missing > 0 {
            write!(f, " {} missing.", c.missing)?;
        }
        if !self.failures.is_empty() {
            let named: Vec<String> =
                self.failures.iter().map(|x| format!("{} ({})", x.who(), x.kind.name())).collect();
            write!(f, " Failed: {}.", named.join(", "))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::Plan;
    use crate::reconcile::Report;
    use crate::swap::backoff::Hold;

    fn entry(name: &str, action: Action, reason: &str) -> PlanEntry {
        PlanEntry {
            target: name.into(),
            target_index: 0,
            container: (action != Action::Missing).then(|| name.into()),
            current: None,
            desired: None,
            action,
            reason: reason.into(),
        }
    }

    fn pass(plan: Vec<PlanEntry>, applied: Vec<(PlanEntry, Applied)>, own: Option<Own>) -> Pass {
        let own_entry = own.as_ref().map(|_| entry("agent", Action::Upgrade, "tag 1 → 2"));
        let report = Report {
            recovered: Vec::new(),
            plan: Plan { actions: plan, refusals: Vec::new() },
            applied,
            own: None,
        };
        Pass { report, own, own_news: None, journal: Vec::new(), own_entry }
    }

    fn rolled_back(name: &str) -> Applied {
        let op = OpRecord { reason: Some("exited with code 4".into()), ..OpRecord::sample(name) };
        Applied::Swapped(Box::new(Outcome::RolledBack(op)))
    }

    #[test]
    fn a_pass_whose_only_target_is_the_controller_failing_to_pull_counts_one_error() {
        let p = pass(
            vec![entry("agent", Action::Upgrade, "tag 1 → 2")],
            Vec::new(),
            Some(Own::Failed("pulling registry.local/agent:2: connection refused".into())),
        );
        let s = Summary::of(&p);
        assert_eq!(s.counts.errors, 1);
        assert_eq!(s.severity, Severity::Unchanged);
        assert_eq!(s.failures[0].kind, Kind::Error);
        assert!(s.failures[0].reason.contains("connection refused"));
        assert_eq!(
            s.to_string(),
            "Reconciled: 0 upgraded, 0 rolled back, 0 held, 1 errors, 0 up to date. Failed: agent (error)."
        );
    }

    #[test]
    fn every_kind_of_result_is_counted_named_and_the_worst_wins() {
        let hold = Hold { failures: 2, until: std::time::SystemTime::UNIX_EPOCH, reason: "exited".into() };
        let unchanged = SwapError::unchanged("c", crate::swap::NoChange::NotAllowed("pull failed".into()));
        let committed = Applied::Swapped(Box::new(Outcome::Committed(OpRecord::sample("a"))));
        let p = pass(
            vec![
                entry("a", Action::Upgrade, ""),
                entry("b", Action::Upgrade, ""),
                entry("c", Action::Upgrade, ""),
                entry("d", Action::Upgrade, ""),
                entry("e", Action::None, ""),
                entry("f", Action::Error, "registry unreachable: 127.0.0.1:5000"),
                entry("g", Action::Refused, "outside policy.allowed_images"),
                entry("label tier=edge", Action::Missing, "no container matches"),
            ],
            vec![
                (entry("a", Action::Upgrade, ""), committed),
                (entry("b", Action::Upgrade, ""), rolled_back("b")),
                (entry("c", Action::Upgrade, ""), Applied::Error(unchanged)),
                (entry("d", Action::Upgrade, ""), Applied::Held(hold.clone())),
            ],
            Some(Own::Held(hold)),
        );
        let s = Summary::of(&p);
        let c = &s.counts;
        assert_eq!(
            (c.upgraded, c.rolled_back, c.held, c.errors, c.up_to_date, c.missing),
            (1, 1, 2, 3, 1, 1)
        );
        assert_eq!(s.severity, Severity::RolledBack);
        let named: Vec<(&str, Kind)> = s.failures.iter().map(|f| (f.who(), f.kind)).collect();
        assert_eq!(
            named,
            [
                ("f", Kind::Error),
                ("g", Kind::Refused),
                ("b", Kind::RolledBack),
                ("c", Kind::Error),
                ("d", Kind::Held),
                ("agent", Kind::Held),
            ]
        );
        assert!(s.to_string().ends_with(
            " 1 missing. Failed: f (error), g (refused), b (rolled_back), c (error), d (held), agent (held)."
        ));
        assert_eq!(s.failure_of("b").map(|f| f.kind), Some(Kind::RolledBack));
        assert!(s.failure_of("a").is_none());
    }

    #[test]
    fn a_clean_pass_and_a_started_self_upgrade_are_not_failures() {
        let helper = Own::HelperStarted { helper: "abc".into(), image: "agent:2".into() };
        let s = Summary::of(&pass(vec![entry("agent", Action::Upgrade, "")], Vec::new(), Some(helper)));
        assert!(s.is_clean());
        assert_eq!(s.severity, Severity::Ok);
        assert_eq!(s.to_string(), "Reconciled: 0 upgraded, 0 rolled back, 0 held, 0 errors, 0 up to date.");
    }
}
