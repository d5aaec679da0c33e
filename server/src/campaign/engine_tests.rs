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
    assert_eq!(back, vec!["a0", "a1", "a2"]);
    assert!(sim.sent.iter().filter(|(s, _)| s.step == Step::Rollback).all(|(s, _)| s.image == OLD));
    let m = &sim.c.members;
    assert_eq!(m[3].rollback, None, "its own health gate already rolled it back");
    assert!(m[..3].iter().all(|m| m.rollback == Some(RollbackState::Done)));
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
            // A rollback only touches agents the campaign upgraded.
            for s in out.iter().filter(|s| s.step == Step::Rollback) {
                let m = sim.c.members.iter().find(|m| m.agent == s.agent);
                let upgraded = m.and_then(|m| m.committed_at).is_some_and(|at| at <= sim.now);
                prop_assert!(upgraded, "rolled back {} that was never upgraded", s.agent);
                prop_assert_eq!(&s.image, OLD);
            }
            // The ratio is never passed by more than one wave's worth.
            if action != FailureAction::Continue && !resumed {
                #[allow(clippy::cast_precision_loss)]
                let allowed = ratio * n as f64 + max_wave as f64;
                prop_assert!(f64::from(sim.c.failures()) <= allowed, "{} failures of {n}", sim.c.failures());
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
