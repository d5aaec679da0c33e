//! The engine's table tests and properties.

use std::collections::{HashMap, HashSet};

use proptest::prelude::*;

use super::engine::{
    command, runs, step, AgentState, Campaign, Command, EventSeen, Member, Observation, Outcome, Phase,
    RollbackState, Send, Step,
};
use super::spec::{Batch, FailureAction, Selection, Spec};

const NEW: &str = "reg/app:2";
const OLD: &str = "reg/app:1";

fn spec(canary: u32, batch: Batch, ratio: f64, action: FailureAction) -> Spec {
    Spec {
        name: "t".into(),
        selection: Selection::Label("env=test".into()),
        target: "app".into(),
        image: NEW.into(),
        canary,
        batch,
        delay_ms: 1000,
        monitor_ms: 2000,
        max_failure_ratio: ratio,
        failure_action: action,
        start_at: None,
        window: None,
        deadline_ms: 60_000,
        order: super::spec::Order::Name,
        approve_after_canary: false,
    }
}

fn campaign(n: usize, spec: Spec) -> Campaign {
    let members = (0..n).map(|i| Member::new(&format!("a{i}"), "app", "app", Some(OLD.into()))).collect();
    Campaign::new(spec, members)
}

/// A little fleet: each agent answers a pin after one tick, committing
/// unless it is in `bad`; the simulation runs the engine to quiescence.
struct Sim {
    c: Campaign,
    now: i64,
    seen: HashMap<String, Observation>,
    bad: HashSet<String>,
    sent: Vec<(Send, i64)>,
}

impl Sim {
    fn new(c: Campaign, bad: &[usize]) -> Self {
        Self {
            c,
            now: 0,
            seen: HashMap::new(),
            bad: bad.iter().map(|i| format!("a{i}")).collect(),
            sent: Vec::new(),
        }
    }

    fn tick(&mut self) -> Vec<Send> {
        self.now += 500;
        let out = step(&mut self.c, &self.seen, self.now);
        for s in &out {
            self.sent.push((s.clone(), self.now));
            let o = self.seen.entry(s.agent.clone()).or_default();
            let fail = self.bad.contains(&s.agent) && s.step == Step::Upgrade;
            o.events.push(EventSeen {
                op_id: format!("op-{}-{:?}", s.agent, s.step),
                to: s.image.clone(),
                outcome: if fail { Outcome::RolledBack } else { Outcome::Committed },
                reason: fail.then(|| "health: exited with 4".to_string()),
                at: self.now + 100,
            });
            if !fail {
                o.running = Some(s.image.clone());
                o.reported_at = Some(self.now + 100);
            }
        }
        out
    }

    fn run(&mut self, ticks: usize) {
        for _ in 0..ticks {
            self.tick();
        }
    }

    fn waves_sent(&self) -> Vec<Vec<String>> {
        let mut by_time: Vec<(i64, Vec<String>)> = Vec::new();
        for (s, t) in self.sent.iter().filter(|(s, _)| s.step == Step::Upgrade) {
            match by_time.last_mut() {
                Some((at, agents)) if at == t => agents.push(s.agent.clone()),
                _ => by_time.push((*t, vec![s.agent.clone()])),
            }
        }
        by_time.into_iter().map(|(_, a)| a).collect()
    }
}

#[test]
fn a_good_campaign_goes_canary_then_batches_and_completes() {
    let mut sim = Sim::new(campaign(6, spec(1, Batch::Count(2), 0.3, FailureAction::Pause)), &[]);
    sim.run(100);
    assert_eq!(sim.c.phase, Phase::Completed, "{:?}", sim.c);
    assert_eq!(sim.waves_sent(), vec![vec!["a0"], vec!["a1", "a2"], vec!["a3", "a4"], vec!["a5"]]);
    assert!(sim.c.members.iter().all(|m| m.state == AgentState::Succeeded));
}

#[test]
fn a_failed_canary_pauses_and_nobody_else_is_sent() {
    let mut sim = Sim::new(campaign(6, spec(1, Batch::Count(2), 0.3, FailureAction::Pause)), &[0]);
    sim.run(100);
    assert_eq!(sim.c.phase, Phase::Paused);
    assert!(sim.c.reason.as_deref().is_some_and(|r| r.contains("exited with 4")), "{:?}", sim.c.reason);
    assert_eq!(sim.sent.len(), 1);
    assert_eq!(sim.c.members[0].state, AgentState::RolledBack);
    assert!(sim.c.members[1..].iter().all(|m| m.state == AgentState::Pending));
    // Resuming accepts the failure and carries on.
    command(&mut sim.c, Command::Resume).expect("resume");
    sim.bad.clear();
    sim.run(100);
    assert_eq!(sim.c.phase, Phase::Completed);
    assert_eq!(sim.sent.len(), 6, "a0 is not sent again");
}

#[test]
fn the_ratio_pauses_after_the_wave_that_passes_it() {
    let mut sim = Sim::new(campaign(10, spec(0, Batch::Count(2), 0.2, FailureAction::Pause)), &[2, 3, 4]);
    sim.run(100);
    assert_eq!(sim.c.phase, Phase::Paused);
    assert_eq!(sim.c.failures(), 3);
    assert_eq!(sim.sent.len(), 6, "waves a0-1, a2-3, a4-5: 3/10 > 0.2 only after the third");
}

#[test]
fn failure_action_rollback_sends_the_upgraded_agents_back_in_waves() {
    let mut sim = Sim::new(campaign(6, spec(0, Batch::Count(2), 0.1, FailureAction::Rollback)), &[3]);
    sim.run(200);
    assert_eq!(sim.c.phase, Phase::RolledBack, "{:?}", sim.c.reason);
    let back: Vec<&str> =
        sim.sent.iter().filter(|(s, _)| s.step == Step::Rollback).map(|(s, _)| s.agent.as_str()).collect();
    // a3's own health gate rolled it back, but its desired state still
    // named the new image: it goes back too, or it would retry it.
    assert_eq!(back, vec!["a0", "a1", "a2", "a3"]);
    assert!(sim.sent.iter().filter(|(s, _)| s.step == Step::Rollback).all(|(s, _)| s.image == OLD));
    let m = &sim.c.members;
    assert!(m[..4].iter().all(|m| m.rollback == Some(RollbackState::Done)));
    assert!(
        m[4..].iter().all(|m| m.sent_at.is_none() && m.rollback.is_none()),
        "never pinned, never sent back"
    );
}

#[test]
fn continue_ignores_failures() {
    let mut sim = Sim::new(campaign(4, spec(1, Batch::Count(1), 0.0, FailureAction::Continue)), &[0, 2]);
    sim.run(100);
    assert_eq!(sim.c.phase, Phase::Completed);
    assert_eq!(sim.sent.len(), 4);
}

#[test]
fn an_agent_that_never_answers_times_out() {
    let mut c = campaign(2, spec(1, Batch::Count(1), 0.5, FailureAction::Pause));
    let seen = HashMap::new();
    assert_eq!(step(&mut c, &seen, 0).len(), 1);
    assert!(step(&mut c, &seen, 60_000).is_empty());
    step(&mut c, &seen, 60_001);
    assert_eq!(c.members[0].state, AgentState::TimedOut);
    assert_eq!(c.phase, Phase::Paused);
}

#[test]
fn a_report_from_before_the_swap_does_not_fail_the_monitor() {
    let mut c = campaign(1, spec(1, Batch::Count(1), 0.0, FailureAction::Pause));
    let mut seen = HashMap::new();
    step(&mut c, &seen, 0);
    let o: &mut Observation = seen.entry("a0".to_string()).or_default();
    o.events.push(EventSeen {
        op_id: "op-1".into(),
        to: NEW.into(),
        outcome: Outcome::Committed,
        reason: None,
        at: 10,
    });
    // The swap's own pass reports the image it observed before swapping.
    o.running = Some(OLD.into());
    o.reported_at = Some(30);
    step(&mut c, &seen, 40);
    assert_eq!(c.members[0].state, AgentState::Upgrading);
    step(&mut c, &seen, 2010);
    assert_eq!(c.members[0].state, AgentState::Succeeded);
}

#[test]
fn only_a_later_committed_op_to_another_image_leaves_it() {
    let mut c = campaign(1, spec(1, Batch::Count(1), 0.0, FailureAction::Pause));
    c.spec.monitor_ms = 1000;
    let mut seen = HashMap::new();
    step(&mut c, &seen, 0);
    let ev = |op: &str, to: &str, outcome, at| EventSeen {
        op_id: op.into(),
        to: to.into(),
        outcome,
        reason: None,
        at,
    };
    let o: &mut Observation = seen.entry("a0".to_string()).or_default();
    o.events.push(ev("op-1", NEW, Outcome::Committed, 10));
    o.events.push(ev("op-2", "reg/app:3", Outcome::RolledBack, 20));
    step(&mut c, &seen, 30);
    assert_eq!(c.members[0].state, AgentState::Upgrading, "a rolled-back op kept the image");
    seen.get_mut("a0").expect("a0").events.push(ev("op-3", "reg/app:3", Outcome::Committed, 40));
    step(&mut c, &seen, 50);
    assert_eq!(c.members[0].state, AgentState::Failed);
    assert!(c.members[0].reason.as_deref().is_some_and(|r| r.contains("op-3")));
}

#[test]
fn commands_refuse_what_does_not_apply_and_say_why() {
    let mut c = campaign(2, spec(1, Batch::Count(1), 0.0, FailureAction::Pause));
    assert!(command(&mut c, Command::Resume).expect_err("not paused").contains("only a paused one"));
    command(&mut c, Command::Pause).expect("pause");
    assert!(step(&mut c, &HashMap::new(), 0).is_empty(), "paused: nothing sent");
    command(&mut c, Command::Abort).expect("abort");
    assert!(command(&mut c, Command::Pause).is_err());
    command(&mut c, Command::Rollback).expect("rollback from aborted");
    assert!(command(&mut c, Command::Rollback).expect_err("twice").contains("already"));
    step(&mut c, &HashMap::new(), 1);
    assert_eq!(c.phase, Phase::RolledBack, "nothing was upgraded");
}

#[test]
fn the_schedule_holds_waves_back() {
    let mut s = spec(1, Batch::Count(1), 0.0, FailureAction::Pause);
    s.start_at = Some(10_000);
    let mut c = campaign(1, s);
    assert!(step(&mut c, &HashMap::new(), 9_999).is_empty());
    assert_eq!(step(&mut c, &HashMap::new(), 10_000).len(), 1);
}

#[test]
fn batches_as_percentages_round_up() {
    assert_eq!(Batch::Percent(10.0).size(1000), 100);
    assert_eq!(Batch::Percent(10.0).size(5), 1);
    assert_eq!(Batch::Percent(34.0).size(6), 3);
    assert_eq!(Batch::parse("25%"), Ok(Batch::Percent(25.0)));
    assert!(Batch::parse("0").is_err() && Batch::parse("150%").is_err());
}

/// An admin's move between ticks, in the properties.
#[derive(Debug, Clone, Copy)]
enum Poke {
    Nothing,
    Do(Command),
}

fn poke() -> impl Strategy<Value = Poke> {
    prop_oneof![
        8 => Just(Poke::Nothing),
        1 => Just(Poke::Do(Command::Pause)),
        1 => Just(Poke::Do(Command::Resume)),
        1 => Just(Poke::Do(Command::Abort)),
        1 => Just(Poke::Do(Command::AbortAndRevert)),
        1 => Just(Poke::Do(Command::Rollback)),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn campaigns_keep_their_promises(
        n in 1usize..25,
        canary in 0u32..3,
        batch in 1u32..6,
        ratio in 0.0f64..0.6,
        action in prop_oneof![Just(FailureAction::Pause), Just(FailureAction::Rollback), Just(FailureAction::Continue)],
        bad in proptest::collection::hash_set(0usize..25, 0..10),
        pokes in proptest::collection::vec(poke(), 120),
    ) {
        let bad: Vec<usize> = bad.into_iter().collect();
        let mut sim = Sim::new(campaign(n, spec(canary, Batch::Count(batch), ratio, action)), &bad);
        let mut resumed = false;
        let max_wave = usize::try_from(batch.max(canary)).unwrap_or(usize::MAX);
        for p in pokes {
            if let Poke::Do(cmd) = p {
                resumed |= cmd == Command::Resume && command(&mut sim.c, cmd).is_ok();
                if cmd != Command::Resume {
                    let _ = command(&mut sim.c, cmd);
                }
            }
            let paused = sim.c.phase != Phase::Running;
            let out = sim.tick();
            // Pause honoured: a campaign that is not running sends nothing.
            if paused {
                prop_assert!(out.is_empty(), "sent while {:?}", sim.c.phase);
            }
            // A rollback only touches agents the campaign pinned.
            for s in out.iter().filter(|s| s.step == Step::Rollback) {
                let m = sim.c.members.iter().find(|m| m.agent == s.agent);
                let pinned = m.and_then(|m| m.sent_at).is_some_and(|at| at <= sim.now);
                prop_assert!(pinned, "rolled back {} that was never pinned", s.agent);
                prop_assert_eq!(&s.image, OLD);
            }
            // The ratio is never passed by more than one wave's worth.
            if action != FailureAction::Continue && !resumed {
                #[allow(clippy::cast_precision_loss)]
                let allowed = ratio * n as f64 + max_wave as f64;
                prop_assert!(f64::from(sim.c.failures()) <= allowed, "{} failures of {n}", sim.c.failures());
            }
        }
        // Rolled back: no agent the campaign pinned is left on its image.
        if sim.c.phase == Phase::RolledBack {
            for m in sim.c.members.iter().filter(|m| m.sent_at.is_some()) {
                let back = sim.sent.iter().any(|(s, _)| s.agent == m.agent && s.step == Step::Rollback);
                prop_assert!(back, "{} was pinned and never sent back", m.agent);
            }
        }
        // Never the same step twice to one agent.
        let mut steps = HashSet::new();
        for (s, _) in &sim.sent {
            prop_assert!(steps.insert((s.agent.clone(), s.step)), "{} sent {:?} twice", s.agent, s.step);
        }
        // No agent in two waves.
        let waves = sim.waves_sent();
        let mut agents = HashSet::new();
        for w in &waves {
            for a in w {
                prop_assert!(agents.insert(a.clone()), "{a} in two waves");
            }
        }
        prop_assert!(waves.iter().all(|w| w.len() <= max_wave));
    }
}

#[test]
fn a_digest_pin_is_met_by_the_same_repository_at_that_digest() {
    let d = "sha256:2f5e4c3b1a0d9e8f7a6b5c4d3e2f1a0b9c8d7e6f5a4b3c2d1e0f9a8b7c6d5e4f";
    let pinned = format!("registry.local:5000/app:1.1.0@{d}");
    assert!(runs(&pinned, None, &pinned), "the pinned reference itself");
    assert!(runs("registry.local:5000/app:1.1.0", Some(d), &pinned), "the tag at that digest");
    assert!(runs("registry.local:5000/app", Some(d), &pinned), "untagged at that digest");
    assert!(!runs("registry.local:5000/app:1.1.0", Some("sha256:00"), &pinned), "another digest");
    assert!(!runs("registry.local:5000/app:1.1.0", None, &pinned), "no digest known");
    assert!(!runs("registry.local:5000/other:1.1.0", Some(d), &pinned), "another repository");
    assert!(!runs("registry.local:5000/app:1.0.0", None, "registry.local:5000/app:1.1.0"));
    assert!(runs("registry.local:5000/app:1.1.0", None, "registry.local:5000/app:1.1.0"));
}

#[test]
fn a_rollback_to_a_pinned_previous_image_is_done_when_the_host_runs_that_digest() {
    let d = "sha256:1f5e4c3b1a0d9e8f7a6b5c4d3e2f1a0b9c8d7e6f5a4b3c2d1e0f9a8b7c6d5e4f";
    let pinned = format!("{OLD}@{d}");
    let members = vec![Member::new("a0", "app", "app", Some(pinned.clone()))];
    let mut sim = Sim::new(Campaign::new(spec(0, Batch::Count(1), 0.0, FailureAction::Pause), members), &[]);
    sim.run(200);
    assert_eq!(sim.c.phase, Phase::Completed, "{:?}", sim.c.reason);
    command(&mut sim.c, Command::Rollback).expect("rollback");
    sim.now += 500;
    let sends = step(&mut sim.c, &sim.seen, sim.now);
    assert_eq!(sends.len(), 1);
    assert_eq!(sends[0].image, pinned, "sent back to exactly the digest it ran");
    // No event yet; its report shows the tag it names, at that digest.
    let o = sim.seen.get_mut("a0").expect("seen");
    o.running = Some(OLD.into());
    o.running_digest = Some(d.into());
    o.reported_at = Some(sim.now + 100);
    sim.now += 500;
    step(&mut sim.c, &sim.seen, sim.now);
    assert_eq!(sim.c.members[0].rollback, Some(RollbackState::Done));
    sim.run(50);
    assert_eq!(sim.c.phase, Phase::RolledBack, "{:?}", sim.c.reason);
    assert_eq!(sim.sent.iter().filter(|(s, _)| s.step == Step::Rollback).count(), 0, "no second rollback");
}

/// An agent that never answers its pin: no event, no report.
fn silent(sim: &mut Sim, agent: &str) {
    sim.seen.remove(agent);
}

#[test]
fn a_rollback_returns_every_pinned_agent_whatever_became_of_its_upgrade() {
    // One wave of four: a0 commits, a1's gate rolls it back, a2 is offline
    // (no answer at all), a3 has not answered yet when the admin rolls back.
    let mut sim = Sim::new(campaign(5, spec(0, Batch::Count(4), 1.0, FailureAction::Continue)), &[1]);
    sim.tick();
    silent(&mut sim, "a2");
    silent(&mut sim, "a3");
    sim.c.spec.deadline_ms = 1_000;
    for _ in 0..4 {
        sim.tick();
        silent(&mut sim, "a2");
        silent(&mut sim, "a3");
    }
    let states: Vec<AgentState> = sim.c.members.iter().map(|m| m.state).collect();
    assert_eq!(&states[..3], &[AgentState::Upgrading, AgentState::RolledBack, AgentState::TimedOut]);
    sim.c.members[3].state = AgentState::Sent; // still in flight
    command(&mut sim.c, Command::Rollback).expect("rollback");
    let out = sim.tick();
    let back: Vec<&str> = out.iter().filter(|s| s.step == Step::Rollback).map(|s| s.agent.as_str()).collect();
    assert_eq!(back, vec!["a0", "a1", "a2", "a3"], "all at once: nobody waits for an upgrade in flight");
    assert!(out.iter().all(|s| s.image == OLD));
    assert!(sim.c.members[4].rollback.is_none(), "a4 was never pinned");
    sim.run(50);
    assert_eq!(sim.c.phase, Phase::RolledBack, "{:?}", sim.c.reason);
}

#[test]
fn abort_and_revert_stops_the_waves_and_sends_the_pinned_back() {
    let mut sim = Sim::new(campaign(6, spec(1, Batch::Count(2), 1.0, FailureAction::Pause)), &[]);
    while sim.c.members.iter().filter(|m| m.sent_at.is_some()).count() < 3 {
        sim.tick();
    }
    command(&mut sim.c, Command::AbortAndRevert).expect("abort and revert");
    sim.run(100);
    assert_eq!(sim.c.phase, Phase::RolledBack);
    assert_eq!(sim.c.reason.as_deref(), Some("aborted and reverted by the admin"));
    let pinned: Vec<&Member> = sim.c.members.iter().filter(|m| m.sent_at.is_some()).collect();
    assert_eq!(pinned.len(), 3, "no wave after the abort");
    assert!(pinned.iter().all(|m| m.rollback == Some(RollbackState::Done)));
    let err = command(&mut sim.c, Command::AbortAndRevert).expect_err("twice");
    assert!(err.contains("already rolling back") || err.contains("rolled_back"), "{err}");
}

#[test]
fn an_aborted_campaign_can_still_be_rolled_back_but_not_reverted() {
    let mut sim = Sim::new(campaign(3, spec(1, Batch::Count(1), 1.0, FailureAction::Pause)), &[]);
    sim.tick();
    command(&mut sim.c, Command::Abort).expect("abort");
    let err = command(&mut sim.c.clone(), Command::AbortAndRevert).expect_err("after abort");
    assert!(err.contains("rolled back"), "it says what to use instead: {err}");
    command(&mut sim.c, Command::Rollback).expect("rollback after abort");
    sim.run(50);
    assert_eq!(sim.c.phase, Phase::RolledBack);
}

#[test]
fn the_pause_reason_and_the_header_count_the_same_failures() {
    let mut sim = Sim::new(campaign(10, spec(0, Batch::Count(2), 0.1, FailureAction::Pause)), &[0, 1]);
    sim.run(50);
    assert_eq!(sim.c.phase, Phase::Paused);
    let header = sim.c.failures_text();
    assert_eq!(header, "2 of 10 agents failed (2 rolled back)");
    assert_eq!(sim.c.reason.as_deref(), Some(format!("{header}, above the max failure ratio 0.1").as_str()));
    command(&mut sim.c, Command::Resume).expect("resume");
    assert!(sim.c.failures_text().ends_with("; 2 accepted on resume, 0 counted against the ratio"));
}

#[test]
fn approve_after_canary_pauses_a_good_canary_until_resumed() {
    let mut s = spec(1, Batch::Count(2), 0.0, FailureAction::Pause);
    s.approve_after_canary = true;
    let mut sim = Sim::new(campaign(5, s), &[]);
    sim.run(30);
    assert_eq!(sim.c.phase, Phase::Paused);
    assert!(sim.c.reason.as_deref().is_some_and(|r| r.starts_with(super::engine::AWAITING_APPROVAL)));
    assert_eq!(sim.waves_sent().len(), 1, "only the canary went out");
    command(&mut sim.c, Command::Resume).expect("approve");
    assert!(sim.c.approved);
    sim.run(100);
    assert_eq!(sim.c.phase, Phase::Completed, "{:?}", sim.c.reason);
    assert_eq!(sim.waves_sent().len(), 3);
}

#[test]
fn a_resume_before_the_canary_is_done_is_no_approval() {
    let mut s = spec(1, Batch::Count(2), 0.0, FailureAction::Pause);
    s.approve_after_canary = true;
    let mut sim = Sim::new(campaign(3, s), &[]);
    silent(&mut sim, "a0");
    step(&mut sim.c, &HashMap::new(), 1);
    command(&mut sim.c, Command::Pause).expect("pause");
    command(&mut sim.c, Command::Resume).expect("resume");
    assert!(!sim.c.approved, "the canary had not finished");
}

#[test]
fn notifications_name_each_change_once_a_failure_as_failed() {
    use crate::notify::{campaign_kind, Kind};
    let kinds = |sim: &mut Sim, ticks: usize| -> Vec<Kind> {
        let mut out = Vec::new();
        for _ in 0..ticks {
            let before = sim.c.clone();
            sim.tick();
            out.extend(campaign_kind(Some(&before), &sim.c));
        }
        out
    };
    let c = campaign(6, spec(1, Batch::Count(2), 0.3, FailureAction::Pause));
    assert_eq!(campaign_kind(None, &c), Some(Kind::CampaignStarted));
    let mut sim = Sim::new(c, &[0]);
    assert_eq!(kinds(&mut sim, 100), [Kind::CampaignFailed], "the failed canary pauses: one event");
    let before = sim.c.clone();
    command(&mut sim.c, Command::Resume).expect("resume");
    assert_eq!(campaign_kind(Some(&before), &sim.c), Some(Kind::CampaignResumed));
    sim.bad.clear();
    let before = sim.c.clone();
    command(&mut sim.c, Command::Pause).expect("pause");
    assert_eq!(campaign_kind(Some(&before), &sim.c), Some(Kind::CampaignPaused), "an admin's pause");
    command(&mut sim.c, Command::Resume).expect("resume");
    assert_eq!(kinds(&mut sim, 100), [Kind::CampaignCompleted]);
    let before = sim.c.clone();
    command(&mut sim.c, Command::Rollback).expect("rollback");
    assert_eq!(campaign_kind(Some(&before), &sim.c), Some(Kind::CampaignRollingBack));
    assert_eq!(kinds(&mut sim, 100), [Kind::CampaignRolledBack]);

    let mut sim = Sim::new(campaign(6, spec(0, Batch::Count(2), 0.1, FailureAction::Rollback)), &[3]);
    assert_eq!(kinds(&mut sim, 200), [Kind::CampaignFailed, Kind::CampaignRolledBack]);
    let empty = Campaign::new(spec(0, Batch::Count(2), 0.1, FailureAction::Pause), Vec::new());
    assert_eq!(campaign_kind(None, &empty), Some(Kind::CampaignCompleted), "nobody matched");
}
