//! `hooks`: commands run around a swap — a database dump before an
//! upgrade, a migration or smoke check after it, a notice before a
//! rollback.
//!
//! Each hook is one command, run either inside a container (`exec`, through
//! the engine) or on the controller (`run`, a child process), with a
//! timeout. What a failing hook means depends on its phase ([`Phase`]); the
//! swap engine runs them (`swap::hooks`).

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::duration::Dur;
use super::{Problem, Source};

/// How long a hook may run when its `timeout` is not given.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// The hooks of one target, effective (defaults merged per phase).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Hooks {
    /// Before anything is touched, in the old (running) container.
    pub pre_upgrade: Option<Hook>,
    /// After the new container passed its gate, before the commit.
    pub post_upgrade: Option<Hook>,
    /// Before a failed new container is rolled back.
    pub pre_rollback: Option<Hook>,
}

impl Hooks {
    /// The hook of `phase`, if any.
    pub fn get(&self, phase: Phase) -> Option<&Hook> {
        match phase {
            Phase::PreUpgrade => self.pre_upgrade.as_ref(),
            Phase::PostUpgrade => self.post_upgrade.as_ref(),
            Phase::PreRollback => self.pre_rollback.as_ref(),
        }
    }

    /// True when no phase has a hook.
    pub fn is_empty(&self) -> bool {
        self.pre_upgrade.is_none() && self.post_upgrade.is_none() && self.pre_rollback.is_none()
    }
}

/// One hook: a command, where it runs, and how long it may take.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hook {
    /// Inside the container, or on the controller.
    pub place: Place,
    /// The program and its arguments (no shell unless the command names one).
    pub command: Vec<String>,
    /// Past this the hook has failed.
    pub timeout: Duration,
}

/// Where a hook's command runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Place {
    /// `exec`: inside the container, like `docker exec`.
    Exec,
    /// `run`: a child process of the controller, in its environment.
    Run,
}

impl Place {
    /// The manifest's word for it.
    pub fn name(self) -> &'static str {
        match self {
            Place::Exec => "exec",
            Place::Run => "run",
        }
    }
}

/// When a hook runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Before the swap; failing skips it (nothing changes).
    PreUpgrade,
    /// After the gate, before the commit; failing counts as a failed gate.
    PostUpgrade,
    /// Before a rollback; failing is reported, the rollback goes on.
    PreRollback,
}

impl Phase {
    /// The manifest's (and the journal's) word for it.
    pub fn name(self) -> &'static str {
        match self {
            Phase::PreUpgrade => "pre_upgrade",
            Phase::PostUpgrade => "post_upgrade",
            Phase::PreRollback => "pre_rollback",
        }
    }
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// `hooks` as written.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct HooksDoc {
    /// Before the swap, in the old container (or on the controller).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pre_upgrade: Option<HookDoc>,
    /// After the gate, in the new container (or on the controller).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub post_upgrade: Option<HookDoc>,
    /// Before a rollback, in the new container (or on the controller).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pre_rollback: Option<HookDoc>,
}

/// One hook as written: exactly one of `exec` and `run`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct HookDoc {
    /// A command run inside the container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exec: Option<Vec<String>>,
    /// A command run on the controller.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run: Option<Vec<String>>,
    /// How long it may run (default 1m).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Dur>,
}

/// Merges `doc` over `base`, phase by phase: a target's `pre_upgrade`
/// replaces the default one whole, the other phases stay inherited.
pub(super) fn merge(
    src: &Source,
    path: &str,
    base: &Hooks,
    doc: &HooksDoc,
    problems: &mut Vec<Problem>,
) -> Hooks {
    let mut one = |phase: Phase, written: &Option<HookDoc>| match written {
        None => base.get(phase).cloned(),
        Some(h) => match hook(h) {
            Ok(hook) => Some(hook),
            Err((field, message)) => {
                let at = match field {
                    Some(field) => format!("{path}.{phase}.{field}"),
                    None => format!("{path}.{phase}"),
                };
                problems.push(src.problem(&at, message));
                None
            }
        },
    };
    Hooks {
        pre_upgrade: one(Phase::PreUpgrade, &doc.pre_upgrade),
        post_upgrade: one(Phase::PostUpgrade, &doc.post_upgrade),
        pre_rollback: one(Phase::PreRollback, &doc.pre_rollback),
    }
}

/// One hook checked; the error names the field at fault (`None`: the hook
/// itself) and what is allowed.
fn hook(h: &HookDoc) -> Result<Hook, (Option<&'static str>, String)> {
    let (place, command, field) = match (&h.exec, &h.run) {
        (Some(c), None) => (Place::Exec, c, "exec"),
        (None, Some(c)) => (Place::Run, c, "run"),
        (Some(_), Some(_)) => {
            return Err((None, "a hook has both `exec` and `run`; allowed: one of them — `exec` runs the command inside the container, `run` on the controller".into()))
        }
        (None, None) => {
            return Err((None, "a hook needs a command; allowed: `exec: [program, args…]` (inside the container) or `run: [program, args…]` (on the controller)".into()))
        }
    };
    match command.first() {
        None => {
            return Err((
                Some(field),
                format!("`{field}` is an empty list; allowed: a list naming the program first, such as [\"sh\", \"-c\", \"pg_dump app > /backup/app.sql\"]"),
            ))
        }
        Some(program) if program.trim().is_empty() => {
            return Err((
                Some(field),
                format!("`{field}` names an empty program; allowed: a list naming the program first, such as [\"/usr/local/bin/backup\"]"),
            ))
        }
        Some(_) => {}
    }
    if let Some(arg) = command.iter().find(|a| a.contains('\0')) {
        return Err((
            Some(field),
            format!(
                "`{field}` has an argument with a NUL byte ({} bytes); allowed: text without NUL",
                arg.len()
            ),
        ));
    }
    let timeout = h.timeout.map_or(DEFAULT_TIMEOUT, |d| d.0);
    if timeout.is_zero() {
        return Err((
            Some("timeout"),
            "a hook's timeout is 0; allowed: a duration longer than 0, such as 30s or 5m (default 1m)".into(),
        ));
    }
    Ok(Hook { place, command: command.clone(), timeout })
}

/// The targets of `incoming` (a pushed or server-sent manifest) whose
/// hooks differ from those of the same target in `local` (the file), as
/// (target index, why). Hooks run commands on the host and inside
/// containers, so only the manifest file on the host may set them: a
/// target the file does not have may have none.
pub fn foreign_hooks(local: &super::Manifest, incoming: &super::Manifest) -> Vec<(usize, String)> {
    incoming
        .targets
        .iter()
        .filter_map(|t| {
            let kept = local.targets.iter().find(|l| l.select == t.select).map(|l| &l.settings.hooks);
            match kept {
                Some(h) if *h == t.settings.hooks => None,
                None if t.settings.hooks.is_empty() => None,
                _ => Some((
                    t.index,
                    format!(
                        "it changes the hooks of `{}`; hooks run commands on this host and in its containers, so only the manifest file on this host may set them",
                        t.select
                    ),
                )),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::Manifest;

    fn parse(text: &str) -> Result<Manifest, crate::manifest::ManifestError> {
        Manifest::parse("m.yaml", text)
    }

    #[test]
    fn defaults_hooks_are_inherited_and_a_target_replaces_them_phase_by_phase() {
        let m = parse(
            "version: 1
defaults:
  hooks:
    pre_upgrade: {exec: [sh, -c, dump], timeout: 5m}
    pre_rollback: {run: [/usr/local/bin/notify, rollback]}
targets:
  - container: db
    image: postgres:16
    hooks:
      pre_upgrade: {run: [backup, db]}
      post_upgrade: {exec: [migrate], timeout: 30s}
  - container: web
    image: nginx:1
",
        )
        .expect("valid");
        let db = &m.targets[0].settings.hooks;
        assert_eq!(
            db.pre_upgrade,
            Some(Hook {
                place: Place::Run,
                command: vec!["backup".into(), "db".into()],
                timeout: DEFAULT_TIMEOUT
            })
        );
        assert_eq!(
            db.post_upgrade,
            Some(Hook {
                place: Place::Exec,
                command: vec!["migrate".into()],
                timeout: Duration::from_secs(30)
            })
        );
        let notify = Some(Hook {
            place: Place::Run,
            command: vec!["/usr/local/bin/notify".into(), "rollback".into()],
            timeout: DEFAULT_TIMEOUT,
        });
        assert_eq!(db.pre_rollback, notify, "inherited from defaults");
        let web = &m.targets[1].settings.hooks;
        assert_eq!(
            web.pre_upgrade,
            Some(Hook {
                place: Place::Exec,
                command: vec!["sh".into(), "-c".into(), "dump".into()],
                timeout: Duration::from_secs(300)
            })
        );
        assert_eq!(web.post_upgrade, None);
        assert_eq!(web.pre_rollback, notify);
    }

    #[test]
    fn bad_hooks_are_refused_at_their_position_with_what_is_allowed() {
        let t = |hooks: &str| {
            format!("version: 1\ntargets:\n  - container: db\n    image: a:1\n    hooks:\n{hooks}")
        };
        let cases = [
            (t("      pre_upgrade: {exec: []}\n"), "targets[0].hooks.pre_upgrade.exec", "6:27", "`exec` is an empty list; allowed: a list naming the program first"),
            (t("      pre_upgrade: {run: [\"\"]}\n"), "targets[0].hooks.pre_upgrade.run", "6:26", "names an empty program"),
            (t("      post_upgrade: {exec: [a], run: [b]}\n"), "targets[0].hooks.post_upgrade", "6:22", "both `exec` and `run`; allowed: one of them"),
            (t("      pre_rollback: {timeout: 5s}\n"), "targets[0].hooks.pre_rollback", "6:22", "a hook needs a command; allowed: `exec: [program, args…]`"),
            (t("      pre_upgrade: {exec: [a], timeout: 0}\n"), "targets[0].hooks.pre_upgrade.timeout", "6:41", "timeout is 0; allowed: a duration longer than 0"),
            (t("      pre_upgrade: {exec: [a], timeout: 5}\n"), "targets[0].hooks.pre_upgrade.timeout", "6:41", "has no unit"),
            (t("      pre_upgrade: {exec: [a], timout: 5s}\n"), "targets[0].hooks.pre_upgrade.timout", "6:32", "unknown field `timout`; allowed: `exec`, `run`, `timeout`"),
            (t("      pre_update: {exec: [a]}\n"), "targets[0].hooks.pre_update", "6:7", "unknown field `pre_update`; allowed: `pre_upgrade`, `post_upgrade`, `pre_rollback`"),
            (t("      pre_upgrade: {exec: sh}\n"), "targets[0].hooks.pre_upgrade.exec", "6:27", "allowed: a list"),
            (
                "version: 1\ntargets:\n  - service: web\n    image: a:1\n    hooks: {pre_upgrade: {exec: [a]}}\n".into(),
                "targets[0].hooks",
                "5:13",
                "`hooks` apply to container targets only",
            ),
        ];
        let mut wrong = Vec::new();
        for (text, path, at, phrase) in &cases {
            let e = match parse(text) {
                Ok(_) => {
                    wrong.push(format!("{text:?}: accepted"));
                    continue;
                }
                Err(e) => e,
            };
            let p = &e.problems[0];
            let got_at = format!("{}:{}", p.pos.line, p.pos.column);
            if p.path != *path || got_at != *at || !p.message.contains(phrase) {
                wrong.push(format!(
                    "{text:?}\n  wanted {path} at {at} with {phrase:?}\n  got    {} at {got_at}: {}",
                    p.path, p.message
                ));
            }
        }
        assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    }

    #[test]
    fn only_the_file_may_set_hooks() {
        let file = parse("version: 1\ntargets:\n  - container: db\n    image: a:1\n    hooks: {pre_upgrade: {exec: [dump]}}\n")
            .expect("valid");
        let same = parse("version: 1\ntargets:\n  - container: db\n    image: a:2\n    hooks: {pre_upgrade: {exec: [dump]}}\n")
            .expect("valid");
        assert!(foreign_hooks(&file, &same).is_empty());
        let changed = parse("version: 1\ntargets:\n  - container: db\n    image: a:2\n    hooks: {pre_upgrade: {run: [sh, -c, evil]}}\n")
            .expect("valid");
        assert_eq!(foreign_hooks(&file, &changed).len(), 1);
        let dropped = parse("version: 1\ntargets:\n  - container: db\n    image: a:2\n").expect("valid");
        assert_eq!(foreign_hooks(&file, &dropped).len(), 1, "dropping a backup hook is a change too");
        let added = parse("version: 1\ntargets:\n  - container: db\n    image: a:2\n    hooks: {pre_upgrade: {exec: [dump]}}\n  - container: other\n    image: a:1\n    hooks: {post_upgrade: {run: [x]}}\n")
            .expect("valid");
        let refused = foreign_hooks(&file, &added);
        assert_eq!(refused.len(), 1);
        assert_eq!(refused[0].0, 1);
        assert!(refused[0].1.contains("only the manifest file on this host"), "{}", refused[0].1);
    }
}
