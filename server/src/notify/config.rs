//! `--notifications-file PATH`: sinks declared in YAML, synced into the
//! database at every start ([`crate::Store::sync_file_sinks`]). A file
//! that does not parse or validate stops the server with `PATH:LINE:COLUMN`
//! and what is allowed - a typo must not silently drop the alerts.
//!
//! ```yaml
//! sinks:
//!   - name: ops-webhook
//!     kind: webhook                  # webhook | slack | ntfy
//!     url: https://hooks.example.com/fleet
//!     secret_file: /run/secrets/fleet-hook   # or secret: "…" (HMAC key)
//!     events: [campaign.failed, agent.offline]   # default: all
//!   - name: team-chat
//!     kind: slack
//!     url: https://hooks.slack.com/services/T000/B000/XXXX
//!   - name: phone
//!     kind: ntfy
//!     url: https://ntfy.sh/my-fleet
//!     secret_file: ntfy.token        # optional bearer token; relative to this file
//! ```

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::catalog::NewSink;
use super::sinks::SinkKind;

/// The largest file read.
const MAX_FILE_BYTES: u64 = 1 << 20;
/// The largest secret file read.
const MAX_SECRET_BYTES: u64 = 64 * 1024;
/// What a file may hold, for error messages.
const ALLOWED: &str = "the file holds `sinks:`, a list of {name, kind: webhook|slack|ntfy, url: http(s)://…, \
                       secret or secret_file (a webhook's HMAC key, required; ntfy's bearer token, optional), \
                       events: [kinds] (default all)}";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    sinks: Vec<FileSink>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileSink {
    name: String,
    kind: SinkKind,
    url: String,
    #[serde(default)]
    secret: Option<String>,
    #[serde(default)]
    secret_file: Option<PathBuf>,
    #[serde(default)]
    events: Vec<String>,
}

/// Reads and checks the file at `path`: its sinks, secrets read.
pub fn load(path: &Path) -> Result<Vec<NewSink>, String> {
    let bytes = container_upgrader::private_fs::read_bounded(path, MAX_FILE_BYTES).map_err(|e| {
        format!(
            "--notifications-file {}: {e}; expected a YAML file of at most {MAX_FILE_BYTES} bytes",
            path.display()
        )
    })?;
    let text = String::from_utf8(bytes)
        .map_err(|_| format!("--notifications-file {}: not UTF-8 text", path.display()))?;
    let base = path.parent().unwrap_or(Path::new("."));
    parse(&path.display().to_string(), &text, base)
}

/// Parses `text` (from `origin`, for messages); `secret_file`s are read
/// relative to `base`.
pub fn parse(origin: &str, text: &str, base: &Path) -> Result<Vec<NewSink>, String> {
    let file: File = if text.trim().is_empty() {
        File { sinks: Vec::new() }
    } else {
        serde_yaml::from_str(text).map_err(|e| {
            let message = e.to_string();
            let message = message.split(" at line ").next().unwrap_or(&message).to_string();
            match e.location() {
                Some(l) => format!("{origin}:{}:{}: {message}; {ALLOWED}", l.line(), l.column()),
                None => format!("{origin}: {message}; {ALLOWED}"),
            }
        })?
    };
    let mut out: Vec<NewSink> = Vec::with_capacity(file.sinks.len());
    for sink in file.sinks {
        let at =
            locate(text, &sink.name).map(|(l, c)| format!("{origin}:{l}:{c}")).unwrap_or(origin.to_string());
        let fail = |m: String| format!("{at}: sink `{}`: {m}", sink.name);
        if out.iter().any(|s| s.name == sink.name) {
            return Err(fail("the name is declared twice".into()));
        }
        let secret = match (&sink.secret, &sink.secret_file) {
            (Some(_), Some(_)) => return Err(fail("give secret or secret_file, not both".into())),
            (Some(s), None) => Some(s.clone()),
            (None, Some(file)) => Some(read_secret(&base.join(file)).map_err(fail)?),
            (None, None) => None,
        };
        let new =
            NewSink { name: sink.name.clone(), kind: sink.kind, url: sink.url, secret, events: sink.events };
        new.check().map_err(|m| format!("{at}: {m}"))?;
        out.push(new);
    }
    Ok(out)
}

/// The first line of a secret file.
fn read_secret(path: &Path) -> Result<String, String> {
    let bytes = container_upgrader::private_fs::read_bounded(path, MAX_SECRET_BYTES)
        .map_err(|e| format!("secret_file {}: {e}", path.display()))?;
    let text =
        String::from_utf8(bytes).map_err(|_| format!("secret_file {}: not UTF-8 text", path.display()))?;
    let line = text.lines().next().unwrap_or_default().trim();
    if line.is_empty() {
        return Err(format!("secret_file {}: empty; expected the secret on its first line", path.display()));
    }
    Ok(line.to_string())
}

/// Where `name: NAME` is written (1-based line and column of the value),
/// to point a semantic error at its sink.
fn locate(text: &str, name: &str) -> Option<(usize, usize)> {
    text.lines().enumerate().find_map(|(i, line)| {
        let at = line.find("name:")?;
        let rest = &line[at + "name:".len()..];
        let value = rest.trim_start();
        let bare = value.trim_matches(|c| c == '"' || c == '\'').trim_end();
        let bare = bare.split(" #").next().unwrap_or(bare).trim_end_matches(['"', '\'']);
        (bare == name).then(|| (i + 1, at + "name:".len() + (rest.len() - value.len()) + 1))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_str(text: &str) -> Result<Vec<NewSink>, String> {
        parse("n.yaml", text, Path::new("/nonexistent"))
    }

    #[test]
    fn a_file_declares_sinks_of_every_kind_with_their_events() {
        let sinks = parse_str(
            "sinks:\n  - name: hook\n    kind: webhook\n    url: https://h.example/x\n    secret: 0123456789abcdef\n    events: [campaign.failed]\n  - name: chat\n    kind: slack\n    url: https://hooks.slack.com/services/a\n  - name: phone\n    kind: ntfy\n    url: http://127.0.0.1:9/t\n",
        )
        .expect("parses");
        assert_eq!(sinks.len(), 3);
        assert_eq!(sinks[0].kind, SinkKind::Webhook);
        assert_eq!(sinks[0].events, ["campaign.failed"]);
        assert!(sinks[1].events.is_empty(), "all events by default");
        assert!(parse_str("").expect("empty is no sinks").is_empty());
    }

    #[test]
    fn syntax_and_unknown_fields_are_refused_with_line_column_and_what_is_allowed() {
        let e = parse_str("sinks:\n  - name: hook\n    kind: webhook\n    urll: https://h/x\n")
            .expect_err("typo");
        assert!(e.starts_with("n.yaml:4:5: "), "{e}");
        assert!(e.contains("unknown field `urll`") && e.contains("the file holds `sinks:`"), "{e}");
        let e =
            parse_str("sinks:\n  - name: hook\n    kind: email\n    url: https://h/x\n").expect_err("kind");
        assert!(e.starts_with("n.yaml:3:11: ") && e.contains("unknown variant `email`"), "{e}");
        let e = parse_str("sinks: [\n").expect_err("syntax");
        assert!(e.starts_with("n.yaml:2:"), "{e}");
    }

    #[test]
    fn a_bad_sink_is_named_at_its_line() {
        let text = "sinks:\n  - name: ok\n    kind: ntfy\n    url: https://h/x\n  - name: bad\n    kind: ntfy\n    url: ftp://h/x\n";
        let e = parse_str(text).expect_err("ftp");
        assert!(e.starts_with("n.yaml:5:11: ") && e.contains("only http:// and https://"), "{e}");
        let e =
            parse_str("sinks:\n  - name: w\n    kind: webhook\n    url: https://h/x\n").expect_err("secret");
        assert!(e.contains("n.yaml:2:11") && e.contains("needs a secret"), "{e}");
        let e = parse_str(
            "sinks:\n  - name: w\n    kind: ntfy\n    url: https://h/x\n    events: [campaign.exploded]\n",
        )
        .expect_err("kind");
        assert!(e.contains("unknown event kind `campaign.exploded`") && e.contains("agent.offline"), "{e}");
        let twice = "sinks:\n  - {name: a, kind: ntfy, url: 'https://h/x'}\n  - {name: a, kind: ntfy, url: 'https://h/y'}\n";
        assert!(parse_str(twice).expect_err("twice").contains("declared twice"));
    }

    #[test]
    fn a_secret_file_is_read_relative_to_the_file_and_must_not_be_empty() {
        let dir = tempfile::tempdir().expect("tmp");
        std::fs::write(dir.path().join("hook.secret"), "0123456789abcdef0123\n").expect("write");
        std::fs::write(dir.path().join("empty"), "\n").expect("write");
        let ok =
            "sinks:\n  - name: w\n    kind: webhook\n    url: https://h/x\n    secret_file: hook.secret\n";
        let sinks = parse("n.yaml", ok, dir.path()).expect("parses");
        assert_eq!(sinks[0].secret.as_deref(), Some("0123456789abcdef0123"));
        let empty = ok.replace("hook.secret", "empty");
        assert!(parse("n.yaml", &empty, dir.path()).expect_err("empty").contains("empty"));
        let missing = ok.replace("hook.secret", "missing");
        assert!(parse("n.yaml", &missing, dir.path()).expect_err("missing").contains("secret_file"));
    }
}
