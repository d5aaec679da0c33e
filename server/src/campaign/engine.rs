//! The campaign engine: a pure state machine. [`step`] takes a campaign,
//! what its agents reported and the clock, updates the agents' states and
//! returns the pins to send; [`command`] applies an admin's pause, resume,
//! abort or rollback. Nothing here reads a database or a clock: the
//! runner ([`super::runner`]) feeds it and acts on what it returns.
//!
//! Waves are Swarm's: the canary first, then batches; a wave starts only
//! once the one before is done (every agent settled, the succeeded ones
//! healthy for the monitor window) and the delay has passed, inside the
//! schedule. The failure ratio is checked before every wave, so it is
//! never passed by more than one wave's worth. An agent is sent each step
//! (upgrade, rollback) at most once: a send marks it `sent` first.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use super::spec::{FailureAction, Spec};
use container_upgrader::reference::ImageRef;

/// Where a campaign is.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Sending waves (or waiting for the schedule, a delay, a wave).
    Running,
    /// Paused by the admin or by the failure ratio: nothing is sent.
    Paused,
    /// Every wave done.
    Completed,
    /// Stopped for good by the admin.
    Aborted,
    /// Every agent the campaign upgraded was sent back.
    RolledBack,
}

/// Which way a running campaign moves agents.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// To the campaign's image.
    Upgrade,
    /// Back to each agent's previous image.
    Rollback,
}

/// One agent's upgrade.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "snake_case")]
pub enum AgentState {
    /// Not sent yet.
    Pending,
    /// Its pin is written; it has not committed yet.
    Sent,
    /// Committed; within the monitor window.
    Upgrading,
    /// Stayed on the new image through the monitor window.
    Succeeded,
    /// The swap failed.
    Failed,
    /// The agent's health gate rolled the swap back.
    RolledBack,
    /// No commit within the deadline.
    TimedOut,
}

impl AgentState {
    /// Done with, one way or the other.
    pub fn settled(self) -> bool {
        matches!(self, Self::Succeeded | Self::Failed | Self::RolledBack | Self::TimedOut)
    }

    /// Counts against the failure ratio.
    pub fn failure(self) -> bool {
        matches!(self, Self::Failed | Self::RolledBack | Self::TimedOut)
    }
}

/// One agent's trip back to its previous image.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum RollbackState {
    /// Its pin back is written.
    Sent,
    /// It runs its previous image again.
    Done,
    /// The swap back failed, or there is nothing to go back to.
    Failed,
    /// No commit within the deadline.
    TimedOut,
}

/// One agent of a campaign.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Member {
    /// The agent's id.
    pub agent: String,
    /// The target as its manifest writes it (what is pinned).
    pub target: String,
    /// The container it names (what events name).
    pub container: String,
    /// Its upgrade wave (0 = the canary, when there is one).
    pub wave: u32,
    /// Its upgrade's state.
    pub state: AgentState,
    /// Why it failed, from the agent's report.
    pub reason: Option<String>,
    /// The image it ran before (what a rollback sends).
    pub previous: Option<String>,
    /// When its upgrade pin was written (unix ms).
    pub sent_at: Option<i64>,
    /// When it committed the new image.
    pub committed_at: Option<i64>,
    /// The op that committed it, when an event said so.
    #[serde(default)]
    pub committed_op: Option<String>,
    /// Its rollback wave.
    pub rollback_wave: Option<u32>,
    /// Its rollback's state.
    pub rollback: Option<RollbackState>,
    /// Why its rollback failed.
    pub rollback_reason: Option<String>,
    /// When its rollback pin was written.
    pub rollback_sent_at: Option<i64>,
    /// The server could not write its upgrade pin: the campaign changed
    /// nothing on it, so a rollback has nothing to undo there.
    #[serde(default)]
    pub pin_refused: bool,
}

impl Member {
    /// A member not yet sent.
    pub fn new(agent: &str, target: &str, container: &str, previous: Option<String>) -> Self {
        Self {
            agent: agent.into(),
            target: target.into(),
            container: container.into(),
            wave: 0,
            state: AgentState::Pending,
            reason: None,
            previous,
            sent_at: None,
            committed_at: None,
            committed_op: None,
            rollback_wave: None,
            rollback: None,
            rollback_reason: None,
            rollback_sent_at: None,
            pin_refused: false,
        }
    }

    /// The campaign moved it to the new image.
    pub fn upgraded(&self) -> bool {
        self.committed_at.is_some()
    }

    /// The campaign wrote its pin: whatever became of the upgrade (done,
    /// failed, rolled back by the agent's gate, never answered), its
    /// desired state names the campaign's image, so a rollback must send
    /// it back - or it retries the image later, or takes it on reconnect.
    pub fn pinned(&self) -> bool {
        self.sent_at.is_some() && !self.pin_refused
    }
}

/// When a wave started and was done.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct WaveTimes {
    /// Its pins were written (unix ms).
    pub started_at: Option<i64>,
    /// Every agent in it settled.
    pub done_at: Option<i64>,
}

/// A campaign's whole state.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Campaign {
    /// What it was asked to do.
    pub spec: Spec,
    /// Where it is.
    pub phase: Phase,
    /// Which way it moves.
    pub direction: Direction,
    /// Why it paused, completed or stopped.
    pub reason: Option<String>,
    /// Its agents in wave order.
    pub members: Vec<Member>,
    /// Upgrade waves' times, by wave.
    pub waves: Vec<WaveTimes>,
    /// Rollback waves' times, by wave.
    pub rollback_waves: Vec<WaveTimes>,
    /// Failures an admin accepted by resuming; the ratio counts the rest.
    pub accepted_failures: u32,
    /// An admin approved the waves after the canary (a resume once the
    /// canary was done).
    pub approved: bool,
}

/// A pin the runner must write.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Send {
    /// The agent.
    pub agent: String,
    /// The target as its manifest writes it.
    pub target: String,
    /// The image to pin.
    pub image: String,
    /// Which step this is.
    pub step: Step,
}

/// The steps an agent may be sent, each at most once.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    /// To the campaign's image.
    Upgrade,
    /// Back to its previous image.
    Rollback,
}

impl Step {
    /// Its name in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Upgrade => "upgrade",
            Self::Rollback => "rollback",
        }
    }
}

/// How an op the agent reported ended.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The new container passed its health gate.
    Committed,
    /// The health gate failed; the old container is back.
    RolledBack,
    /// The swap failed.
    Failed,
    /// Given up on (counts as a failure).
    Aborted,
}

/// One op event, as the engine needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventSeen {
    /// The op's id.
    pub op_id: String,
    /// The image swapped in.
    pub to: String,
    /// How it ended.
    pub outcome: Outcome,
    /// Why, when it failed.
    pub reason: Option<String>,
    /// When the server received it (unix ms).
    pub at: i64,
}

/// What one agent told the server about the campaign's container.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Observation {
    /// The image its latest report says runs.
    pub running: Option<String>,
    /// The registry digest (`sha256:…`) of what it runs, when known.
    pub running_digest: Option<String>,
    /// When that report arrived (unix ms).
    pub reported_at: Option<i64>,
    /// Its op events for the container, any order.
    pub events: Vec<EventSeen>,
    /// Why the server could not write its upgrade pin.
    pub refused: Option<String>,
    /// Why the server could not write its rollback pin.
    pub rollback_refused: Option<String>,
}

/// How a pause for the admin's approval after the canary begins.
pub const AWAITING_APPROVAL: &str = "the canary succeeded; waiting for an admin's approval";

/// Splits `members` into waves: `canary` first, then `batch`-sized ones.
pub fn plan(members: &mut [Member], spec: &Spec) -> usize {
    let size = spec.batch.size(members.len());
    let canary = usize::try_from(spec.canary).unwrap_or(usize::MAX).min(members.len());
    let mut waves = 0;
    for (i, m) in members.iter_mut().enumerate() {
        let wave = if i < canary { 0 } else { (i - canary) / size + usize::from(canary > 0) };
        m.wave = u32::try_from(wave).unwrap_or(u32::MAX);
        waves = waves.max(wave + 1);
    }
    waves
}

impl Campaign {
    /// A running campaign over `members` (in the order waves take them).
    pub fn new(spec: Spec, mut members: Vec<Member>) -> Self {
        let waves = plan(&mut members, &spec);
        let (phase, reason) = if members.is_empty() {
            (Phase::Completed, Some("no agent matched the selection".to_string()))
        } else {
            (Phase::Running, None)
        };
        Self {
            spec,
            phase,
            direction: Direction::Upgrade,
            reason,
            members,
            waves: vec![WaveTimes::default(); waves],
            rollback_waves: Vec::new(),
            accepted_failures: 0,
            approved: false,
        }
    }

    /// Agents whose upgrade failed (failed, rolled back, timed out).
    pub fn failures(&self) -> u32 {
        u32::try_from(self.members.iter().filter(|m| m.state.failure()).count()).unwrap_or(u32::MAX)
    }

    /// Failures an admin has not accepted by resuming: what the ratio
    /// counts.
    pub fn counted_failures(&self) -> u32 {
        self.failures().saturating_sub(self.accepted_failures)
    }

    /// Whether the failures an admin has not accepted pass the ratio.
    pub fn over_ratio(&self) -> bool {
        let counted = f64::from(self.counted_failures());
        #[allow(clippy::cast_precision_loss)]
        let total = self.members.len().max(1) as f64;
        counted / total > self.spec.max_failure_ratio
    }

    /// The failures in words, the same for a pause reason and the page's
    /// header: "3 of 40 agents failed (1 failed, 2 timed out)", with the
    /// ones accepted on a resume set apart.
    pub fn failures_text(&self) -> String {
        let count = |s: AgentState| self.members.iter().filter(|m| m.state == s).count();
        let kinds: Vec<String> = [
            (AgentState::Failed, "failed"),
            (AgentState::RolledBack, "rolled back"),
            (AgentState::TimedOut, "timed out"),
        ]
        .into_iter()
        .filter_map(|(s, word)| match count(s) {
            0 => None,
            n => Some(format!("{n} {word}")),
        })
        .collect();
        let mut text = format!("{} of {} agents failed", self.failures(), self.members.len());
        if !kinds.is_empty() {
            text.push_str(&format!(" ({})", kinds.join(", ")));
        }
        if self.accepted_failures > 0 {
            text.push_str(&format!(
                "; {} accepted on resume, {} counted against the ratio",
                self.accepted_failures,
                self.counted_failures()
            ));
        }
        text
    }

    fn in_schedule(&self, now: i64) -> bool {
        self.spec.start_at.is_none_or(|t| now >= t)
            && self.spec.window.as_ref().is_none_or(|w| w.contains(now))
    }
}

/// The admin's commands.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Command {
    /// Stop sending until resumed.
    Pause,
    /// Carry on (failures so far are accepted).
    Resume,
    /// Stop for good.
    Abort,
    /// Stop sending upgrades and send every agent pinned so far back.
    AbortAndRevert,
    /// Send every agent the campaign pinned back to its previous image.
    Rollback,
}

/// Applies `cmd`; an error says why it does not apply now.
pub fn command(c: &mut Campaign, cmd: Command) -> Result<(), String> {
    let phase = c.phase;
    let refuse = |what: &str, allowed: &str| {
        Err(format!("cannot {what} a campaign that is {}; {allowed}", name(phase)))
    };
    match cmd {
        Command::Pause if phase == Phase::Running => {
            c.phase = Phase::Paused;
            c.reason = Some("paused by the admin".into());
        }
        Command::Pause => return refuse("pause", "only a running one pauses"),
        Command::Resume if phase == Phase::Paused => {
            c.phase = Phase::Running;
            c.reason = None;
            c.accepted_failures = c.failures();
            if c.waves.first().is_some_and(|w| w.done_at.is_some()) {
                c.approved = true;
            }
        }
        Command::Resume => return refuse("resume", "only a paused one resumes"),
        Command::Abort if matches!(phase, Phase::Running | Phase::Paused) => {
            c.phase = Phase::Aborted;
            c.reason = Some("aborted by the admin".into());
        }
        Command::Abort => return refuse("abort", "only a running or paused one can be aborted"),
        Command::AbortAndRevert if c.direction == Direction::Rollback => {
            return refuse("abort and revert", "it is already rolling back");
        }
        Command::AbortAndRevert if matches!(phase, Phase::Running | Phase::Paused) => {
            start_rollback(c, "aborted and reverted by the admin");
        }
        Command::AbortAndRevert => {
            return refuse("abort and revert", "only a running or paused one; a finished one is rolled back");
        }
        Command::Rollback if c.direction == Direction::Rollback => {
            return refuse("roll back", "it is already rolling back");
        }
        Command::Rollback => start_rollback(c, "rolled back by the admin"),
    }
    Ok(())
}

fn start_rollback(c: &mut Campaign, why: &str) {
    c.direction = Direction::Rollback;
    c.phase = Phase::Running;
    c.reason = Some(why.into());
}

/// The phase's name, as the API writes it.
pub fn name(phase: Phase) -> &'static str {
    match phase {
        Phase::Running => "running",
        Phase::Paused => "paused",
        Phase::Completed => "completed",
        Phase::Aborted => "aborted",
        Phase::RolledBack => "rolled_back",
    }
}

/// One tick: observes every agent, then decides what to send.
pub fn step(c: &mut Campaign, seen: &HashMap<String, Observation>, now: i64) -> Vec<Send> {
    let none = Observation::default();
    let (image, monitor, deadline) = (c.spec.image.clone(), c.spec.monitor_ms, c.spec.deadline_ms);
    for m in &mut c.members {
        let o = seen.get(&m.agent).unwrap_or(&none);
        observe_upgrade(m, o, &image, monitor, deadline, now);
        observe_rollback(m, o, deadline, now);
    }
    if c.phase != Phase::Running {
        return Vec::new();
    }
    match c.direction {
        Direction::Upgrade => upgrade_waves(c, now),
        Direction::Rollback => rollback_waves(c, now),
    }
}

/// Whether a target reported running `image` with `digest` runs `want`:
/// the same reference, or — `want` being pinned `repo:tag@sha256:…` —
/// the same repository at that digest (a host already on the tag keeps
/// its container, which still names the tag).
pub fn runs(image: &str, digest: Option<&str>, want: &str) -> bool {
    if image == want {
        return true;
    }
    let (Ok(running), Ok(wanted)) = (ImageRef::parse(image), ImageRef::parse(want)) else { return false };
    match (wanted.digest(), digest) {
        (Some(pin), Some(d)) => running.name() == wanted.name() && pin.to_string() == d,
        _ => false,
    }
}

/// The first event after `since` that swapped in `image`.
fn event_after<'a>(o: &'a Observation, image: &str, since: i64) -> Option<&'a EventSeen> {
    o.events.iter().filter(|e| e.at >= since && e.to == image).min_by_key(|e| e.at)
}

fn observe_upgrade(m: &mut Member, o: &Observation, image: &str, monitor: i64, deadline: i64, now: i64) {
    let Some(sent) = m.sent_at else { return };
    // Its pin back supersedes the upgrade: the rollback's state tells.
    if m.rollback.is_some() {
        return;
    }
    if m.state == AgentState::Sent {
        if let Some(why) = &o.refused {
            m.state = AgentState::Failed;
            m.pin_refused = true;
            m.reason = Some(format!("the server could not pin it: {why}"));
            return;
        }
        match event_after(o, image, sent) {
            Some(e) if e.outcome == Outcome::Committed => {
                m.state = AgentState::Upgrading;
                m.committed_at = Some(e.at);
                m.committed_op = Some(e.op_id.clone());
            }
            Some(e) => {
                m.state = if e.outcome == Outcome::RolledBack {
                    AgentState::RolledBack
                } else {
                    AgentState::Failed
                };
                m.reason =
                    Some(e.reason.clone().unwrap_or_else(|| format!("the agent reported {:?}", e.outcome)));
                return;
            }
            None => {
                // A report showing the image counts too (it already ran it,
                // or the event is still in the agent's outbox).
                if let (Some(r), Some(at)) = (&o.running, o.reported_at) {
                    if runs(r, o.running_digest.as_deref(), image) && at >= sent {
                        m.state = AgentState::Upgrading;
                        m.committed_at = Some(at);
                    }
                }
            }
        }
        if m.state == AgentState::Sent && now - sent > deadline {
            m.state = AgentState::TimedOut;
            m.reason = Some(format!("no commit of {image} within the deadline of {} s", deadline / 1000));
        }
    }
    if m.state == AgentState::Upgrading {
        let committed = m.committed_at.unwrap_or(sent);
        // Only a later op that committed another image takes the agent off
        // it (one that failed or rolled back left it in place). Reports do
        // not count: a report describes its pass as observed before the
        // swap, so the swap's own report still shows the old image.
        let later = o
            .events
            .iter()
            .filter(|e| e.at > committed && e.to != image && e.outcome == Outcome::Committed)
            .min_by_key(|e| e.at);
        if let Some(e) = later {
            m.state = AgentState::Failed;
            m.reason =
                Some(format!("left {image} within the monitor window: op {} swapped in {}", e.op_id, e.to));
        } else if now - committed >= monitor {
            m.state = AgentState::Succeeded;
        }
    }
}

fn observe_rollback(m: &mut Member, o: &Observation, deadline: i64, now: i64) {
    let (Some(RollbackState::Sent), Some(sent)) = (m.rollback, m.rollback_sent_at) else { return };
    let Some(previous) = m.previous.clone() else { return };
    if let Some(why) = &o.rollback_refused {
        m.rollback = Some(RollbackState::Failed);
        m.rollback_reason = Some(format!("the server could not pin it: {why}"));
        return;
    }
    match event_after(o, &previous, sent) {
        Some(e) if e.outcome == Outcome::Committed => m.rollback = Some(RollbackState::Done),
        Some(e) => {
            m.rollback = Some(RollbackState::Failed);
            m.rollback_reason =
                e.reason.clone().or_else(|| Some(format!("the agent reported {:?}", e.outcome)));
        }
        None if o.running.as_deref().is_some_and(|r| runs(r, o.running_digest.as_deref(), &previous))
            && o.reported_at.is_some_and(|at| at >= sent) =>
        {
            m.rollback = Some(RollbackState::Done);
        }
        None if now - sent > deadline => {
            m.rollback = Some(RollbackState::TimedOut);
            m.rollback_reason = Some(format!("no commit of {previous} within the deadline"));
        }
        None => {}
    }
}

/// Why the failure action applies now, if it does: the canary failed, or
/// the failures an admin has not accepted pass the ratio.
/// Whether `c`'s failures passed its limit (the canary failed, or the
/// ratio): what pauses it or rolls it back on its own, and what a
/// notification calls `campaign.failed`.
pub fn failed(c: &Campaign) -> bool {
    tripped(c).is_some()
}

fn tripped(c: &Campaign) -> Option<String> {
    if c.spec.failure_action == FailureAction::Continue {
        return None;
    }
    let canary_failures = c.members.iter().filter(|m| m.wave == 0 && m.state.failure()).count();
    let canary_failures = u32::try_from(canary_failures).unwrap_or(u32::MAX);
    if c.spec.canary > 0 && canary_failures > c.accepted_failures {
        let why = c.members.iter().find(|m| m.wave == 0 && m.state.failure()).and_then(|m| m.reason.clone());
        return Some(format!("the canary failed: {}", why.unwrap_or_default()));
    }
    c.over_ratio()
        .then(|| format!("{}, above the max failure ratio {}", c.failures_text(), c.spec.max_failure_ratio))
}

fn upgrade_waves(c: &mut Campaign, now: i64) -> Vec<Send> {
    if let Some(why) = tripped(c) {
        match c.spec.failure_action {
            FailureAction::Rollback => {
                start_rollback(c, &why);
                return rollback_waves(c, now);
            }
            FailureAction::Pause | FailureAction::Continue => {
                c.phase = Phase::Paused;
                c.reason = Some(why);
                return Vec::new();
            }
        }
    }
    let Some(current) = c.waves.iter().position(|w| w.done_at.is_none()) else {
        c.phase = Phase::Completed;
        return Vec::new();
    };
    let wave = u32::try_from(current).unwrap_or(u32::MAX);
    if c.waves[current].started_at.is_some() {
        if c.members.iter().filter(|m| m.wave == wave).all(|m| m.state.settled()) {
            c.waves[current].done_at = Some(now);
            if current + 1 == c.waves.len() {
                c.phase = Phase::Completed;
            }
        }
        return Vec::new();
    }
    if current == 1 && c.spec.approve_after_canary && c.spec.canary > 0 && !c.approved {
        c.phase = Phase::Paused;
        c.reason = Some(format!("{AWAITING_APPROVAL}: Resume approves the next waves"));
        return Vec::new();
    }
    let rested = current == 0 || c.waves[current - 1].done_at.is_some_and(|d| now - d >= c.spec.delay_ms);
    if !rested || !c.in_schedule(now) {
        return Vec::new();
    }
    c.waves[current].started_at = Some(now);
    let image = c.spec.image.clone();
    let mut out = Vec::new();
    for m in c.members.iter_mut().filter(|m| m.wave == wave && m.state == AgentState::Pending) {
        m.state = AgentState::Sent;
        m.sent_at = Some(now);
        out.push(Send {
            agent: m.agent.clone(),
            target: m.target.clone(),
            image: image.clone(),
            step: Step::Upgrade,
        });
    }
    out
}

fn rollback_waves(c: &mut Campaign, now: i64) -> Vec<Send> {
    if let Some(last) = c.rollback_waves.len().checked_sub(1) {
        let wave = u32::try_from(last).unwrap_or(u32::MAX);
        let busy = c
            .members
            .iter()
            .any(|m| m.rollback_wave == Some(wave) && m.rollback == Some(RollbackState::Sent));
        if busy {
            return Vec::new();
        }
        if c.rollback_waves[last].done_at.is_none() {
            c.rollback_waves[last].done_at = Some(now);
        }
        if c.rollback_waves[last].done_at.is_some_and(|d| now - d < c.spec.delay_ms) {
            return Vec::new();
        }
    }
    // Every agent pinned to the image goes back, whatever became of its
    // upgrade: one still in flight gets its pin back at once (it swaps
    // back after its swap, or never swaps), one that failed or timed out
    // stops retrying the image, one offline finds the old pin on its return.
    let size = c.spec.batch.size(c.members.len());
    let wave = u32::try_from(c.rollback_waves.len()).unwrap_or(u32::MAX);
    if !c.members.iter().any(|m| m.pinned() && m.rollback.is_none()) {
        c.phase = Phase::RolledBack;
        return Vec::new();
    }
    let mut out = Vec::new();
    for m in c.members.iter_mut().filter(|m| m.pinned() && m.rollback.is_none()).take(size) {
        m.rollback_wave = Some(wave);
        m.rollback_sent_at = Some(now);
        match m.previous.clone() {
            Some(previous) => {
                m.rollback = Some(RollbackState::Sent);
                out.push(Send {
                    agent: m.agent.clone(),
                    target: m.target.clone(),
                    image: previous,
                    step: Step::Rollback,
                });
            }
            None => {
                m.rollback = Some(RollbackState::Failed);
                m.rollback_reason = Some("its previous image was not known when the campaign started".into());
            }
        }
    }
    c.rollback_waves.push(WaveTimes { started_at: Some(now), done_at: None });
    out
}
