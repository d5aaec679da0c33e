//! `policy.verify` and a target's `verify`: which keys a digest must be
//! signed by before it is deployed (see [`crate::verify`]).
//!
//! It sits in `policy` because it is the same kind of rule as
//! `allowed_images` — what may run on this host, whoever writes the
//! targets — and a push that may change only images cannot change a
//! target's `verify` either. A target's `verify` overrides field by field:
//! its `keys` replace the policy's, its `require` the policy's `require`.

use std::io::Read;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use super::document::VerifyDoc;
use super::{Problem, Source};
use crate::verify::keys::MAX_PEM;
use crate::verify::{PublicKey, Verify};

/// The most keys one `verify` lists.
const MAX_KEYS: usize = 16;

static KEY_FILES_ELSEWHERE: AtomicBool = AtomicBool::new(false);

/// Declares that this process reads the manifests of other hosts (the
/// fleet server does): a key file path in them names a file on that host,
/// so it is never opened here — an agent could otherwise make the server
/// read, or probe for, files of the server's machine. Such entries are
/// left to the host to read; inline PEM keys are still checked. For the
/// life of the process.
pub fn key_files_are_elsewhere() {
    KEY_FILES_ELSEWHERE.store(true, Ordering::Relaxed);
}

/// The keys read from a list, and how many entries it had (a list whose
/// entries all failed was reported entry by entry, not as empty).
#[derive(Debug)]
struct Listed {
    keys: Vec<PublicKey>,
    entries: usize,
}

/// `policy.verify`, read: its keys (each problem reported at its entry).
#[derive(Debug, Default)]
pub(super) struct PolicyVerify {
    keys: Option<Listed>,
    require: Option<bool>,
    given: bool,
}

/// Reads `policy.verify`.
pub(super) fn policy(src: &Source, doc: Option<&VerifyDoc>, problems: &mut Vec<Problem>) -> PolicyVerify {
    let Some(doc) = doc else { return PolicyVerify::default() };
    PolicyVerify {
        keys: doc.keys.as_ref().map(|k| keys(src, "policy.verify.keys", k, problems)),
        require: doc.require,
        given: true,
    }
}

impl PolicyVerify {
    /// `policy.verify` as the [`super::Policy`] shows it.
    pub(super) fn as_read(&self) -> Option<Verify> {
        self.given.then(|| Verify {
            keys: self.keys.as_ref().map(|l| l.keys.clone()).unwrap_or_default(),
            require: self.require.unwrap_or(true),
        })
    }
}

/// The effective `verify` of the target at `path`: the policy's with the
/// target's fields over it; `None` when neither says anything.
pub(super) fn merge(
    src: &Source,
    path: &str,
    policy: &PolicyVerify,
    own: Option<&VerifyDoc>,
    problems: &mut Vec<Problem>,
) -> Option<Verify> {
    if own.is_none() && !policy.given {
        return None;
    }
    let own_keys =
        own.and_then(|o| o.keys.as_ref()).map(|k| keys(src, &format!("{path}.verify.keys"), k, problems));
    let (keys, entries) = match (&own_keys, &policy.keys) {
        (Some(l), _) | (None, Some(l)) => (l.keys.clone(), l.entries),
        (None, None) => (Vec::new(), 0),
    };
    let require = own.and_then(|o| o.require).or(policy.require).unwrap_or(true);
    if keys.is_empty() && entries > 0 {
        // Each entry's problem is reported (or, on a fleet server, the
        // files are the host's to read).
        return None;
    }
    if keys.is_empty() {
        let (at, whose) = if own.is_some() {
            (format!("{path}.verify"), "this target")
        } else {
            ("policy.verify".to_string(), "`policy.verify`")
        };
        problems.push(src.problem(
            &at,
            format!("{whose} checks signatures but lists no key; allowed: `keys:` with one or more public keys (a PEM file path relative to the manifest, or the PEM inline)"),
        ));
        return None;
    }
    Some(Verify { keys, require })
}

/// Reads each key of `list` (at `path[i]`), reporting the ones that fail.
fn keys(src: &Source, path: &str, list: &[String], problems: &mut Vec<Problem>) -> Listed {
    if list.len() > MAX_KEYS {
        problems.push(src.problem(path, format!("{} keys listed; allowed: at most {MAX_KEYS}", list.len())));
    }
    let base = Path::new(&src.origin).parent().unwrap_or(Path::new(""));
    let elsewhere = KEY_FILES_ELSEWHERE.load(Ordering::Relaxed);
    let keys = list
        .iter()
        .take(MAX_KEYS)
        .enumerate()
        .filter(|(_, entry)| !elsewhere || is_inline(entry))
        .filter_map(|(i, entry)| match key(base, entry) {
            Ok(k) => Some(k),
            Err(m) => {
                problems.push(src.problem(&format!("{path}[{i}]"), m));
                None
            }
        })
        .collect();
    Listed { keys, entries: list.len() }
}

fn is_inline(entry: &str) -> bool {
    entry.contains("-----BEGIN")
}

/// One entry: inline PEM, or a file path relative to `base`.
fn key(base: &Path, entry: &str) -> Result<PublicKey, String> {
    if is_inline(entry) {
        return PublicKey::from_pem(entry, "inline PEM");
    }
    let file = base.join(entry);
    let shown = file.display();
    let mut text = String::new();
    std::fs::File::open(&file)
        .and_then(|f| f.take(MAX_PEM as u64 + 1).read_to_string(&mut text))
        .map_err(|e| format!("cannot read the key file {shown}: {e}; allowed: a PEM file path (relative to the manifest) or the PEM inline"))?;
    PublicKey::from_pem(&text, &shown.to_string()).map_err(|m| format!("{shown}: {m}"))
}

/// The targets of `incoming` (a pushed or server-sent manifest) whose
/// effective `verify` differs from what the file (`local`) gives the same
/// target — or, for a target the file does not have, from `policy.verify`
/// — as (target index, why). Which signatures a digest needs is policy:
/// only the manifest file on this host may change it (a sender could
/// otherwise switch verification off before sending an unsigned image).
pub fn foreign_verify(local: &super::Manifest, incoming: &super::Manifest) -> Vec<(usize, String)> {
    incoming
        .targets
        .iter()
        .filter_map(|t| {
            let expected = match local.targets.iter().find(|l| l.select == t.select) {
                Some(l) => l.verify.as_ref(),
                None => local.policy.verify.as_ref(),
            };
            (t.verify.as_ref() != expected).then(|| {
                let why = format!(
                    "it changes which signatures `{}` needs (`verify`); only the manifest file on this host may",
                    t.select
                );
                (t.index, why)
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::super::Manifest;

    const KEY: &str = "-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEAGb9ECWmEzf6FQbrBZ9w7lshQhqowtrbLDFw4rXAxZuE=\n-----END PUBLIC KEY-----";

    fn parse(text: &str) -> Result<Manifest, String> {
        Manifest::parse("m.yaml", text).map_err(|e| e.to_string())
    }

    #[test]
    fn policy_keys_apply_to_every_target_and_a_target_may_override() {
        let dir = tempfile::tempdir().expect("dir");
        std::fs::write(dir.path().join("cosign.pub"), KEY).expect("write");
        let path = dir.path().join("m.yaml");
        let inline: String = KEY.lines().map(|l| format!("          {l}\n")).collect();
        let text = format!(
            "version: 1\npolicy:\n  verify:\n    keys: [cosign.pub]\ntargets:\n  - container: aa\n    image: app:1\n  - container: bb\n    image: app:1\n    verify:\n      require: false\n      keys:\n        - |\n{inline}"
        );
        std::fs::write(&path, text).expect("write");
        let m = Manifest::load(&path).map_err(|e| e.to_string()).expect("valid");
        let a = m.targets[0].verify.as_ref().expect("a verifies");
        assert!(a.require, "require defaults to true");
        assert!(a.keys[0].label.ends_with("cosign.pub"), "{:?}", a.keys);
        let b = m.targets[1].verify.as_ref().expect("b verifies");
        assert!(!b.require);
        assert_eq!(b.keys[0].label, "inline PEM");
        assert_eq!(a.keys[0].raw, b.keys[0].raw);
    }

    #[test]
    fn no_verify_means_no_check() {
        let m = parse("version: 1\ntargets:\n  - container: aa\n    image: app:1\n").expect("valid");
        assert!(m.targets[0].verify.is_none());
    }

    #[test]
    fn bad_keys_are_refused_at_their_line_and_column() {
        let e = parse("version: 1\npolicy:\n  verify:\n    keys:\n      - missing.pub\n      - \"-----BEGIN PUBLIC KEY-----\\nAAAA\\n-----END PUBLIC KEY-----\"\ntargets:\n  - container: aa\n    image: app:1\n")
            .expect_err("refused");
        assert!(e.contains("m.yaml:5:9") && e.contains("cannot read the key file"), "{e}");
        assert!(e.contains("m.yaml:6:9") && e.contains("allowed"), "{e}");
        assert!(!e.contains("lists no key"), "each entry said why; the list is not empty: {e}");
        let e = parse(
            "version: 1\npolicy:\n  verify: {require: true}\ntargets:\n  - container: aa\n    image: app:1\n",
        )
        .expect_err("no key");
        assert!(e.contains("lists no key"), "{e}");
        let e = parse("version: 1\npolicy:\n  verify: {keys: [], requires: true}\ntargets: []\n")
            .expect_err("unknown field");
        assert!(e.contains("requires"), "{e}");
    }
}
