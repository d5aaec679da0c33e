//! Keeping secrets out of what leaves the host (DESIGN.md §12): the status
//! API, webhook events, the journal that `status` shows, log lines.
//!
//! Two sources of secrets reach our messages: URLs (a webhook with a token
//! in its userinfo or query) and a failed container's last log lines,
//! which an application may fill with its own configuration
//! (`DB_PASSWORD=…`). Both are masked where they are captured, so every
//! later reader gets the masked text.

/// What a masked value is replaced with.
pub const MASK: &str = "***";

/// Environment values shorter than this are not masked on their own: `1`,
/// `on` or `prod` would blank out half of every line, and are not secrets.
/// They are still masked where they appear as `KEY=value`.
pub const MIN_SECRET_LEN: usize = 4;

/// Key names whose value is masked after `:` too (`password: hunter2`);
/// after `=` every key's value is masked.
const SENSITIVE: &[&str] = &["pass", "secret", "token", "key", "auth", "credential", "cookie", "session"];

/// `url` without userinfo, query or fragment, for messages. Text that is
/// not a URL is not echoed at all: it may be a secret pasted in the wrong
/// place.
pub fn url(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(mut u) => {
            u.set_query(None);
            u.set_fragment(None);
            let _ = u.set_password(None);
            let _ = u.set_username("");
            u.to_string()
        }
        Err(_) => "<invalid URL>".into(),
    }
}

/// The values of a container's environment (`KEY=VALUE` entries) worth
/// masking in its output: those at least [`MIN_SECRET_LEN`] long, longest
/// first so a value that contains another is masked whole.
pub fn env_values<'a>(env: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    let mut values: Vec<String> = env
        .into_iter()
        .filter_map(|entry| entry.split_once('=').map(|(_, v)| v))
        .filter(|v| v.chars().count() >= MIN_SECRET_LEN)
        .map(str::to_string)
        .collect();
    values.sort_by_key(|v| std::cmp::Reverse(v.len()));
    values.dedup();
    values
}

/// `text` (a container's output, a health check's message) with every
/// occurrence of one of `secrets` masked, and the value of anything shaped
/// like `KEY=value` (or `password: value`) masked too.
pub fn text(text: &str, secrets: &[String]) -> String {
    let mut out = text.to_string();
    for secret in secrets.iter().filter(|s| !s.is_empty()) {
        out = if secret.chars().count() >= ANYWHERE_LEN {
            out.replace(secret.as_str(), MASK)
        } else {
            whole_tokens(&out, secret)
        };
    }
    assignments(&out)
}

/// Environment values at least this long are masked wherever they appear;
/// shorter ones only as whole tokens ([`whole_tokens`]).
pub const ANYWHERE_LEN: usize = 8;

/// `text` with each occurrence of `secret` that stands as a token of its
/// own masked. A short value such as `fail` must not blank out `failed` in
/// "health check failed"; where the value itself begins or ends with a
/// non-word character, that side needs no boundary.
fn whole_tokens(text: &str, secret: &str) -> String {
    let word = |c: Option<char>| c.is_some_and(|c| c.is_alphanumeric() || c == '_');
    let (first, last) = (secret.chars().next(), secret.chars().next_back());
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find(secret) {
        let before = rest[..at].chars().next_back().or_else(|| out.chars().next_back());
        let after = rest[at + secret.len()..].chars().next();
        out.push_str(&rest[..at]);
        if (word(first) && word(before)) || (word(last) && word(after)) {
            out.push_str(secret);
        } else {
            out.push_str(MASK);
        }
        rest = &rest[at + secret.len()..];
    }
    out.push_str(rest);
    out
}

/// Masks the value after `KEY=` (any key: a line that prints an assignment
/// is printing configuration) and after `KEY:` for sensitive key names.
fn assignments(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    let mut copied = 0;
    while i < bytes.len() {
        let key_start = i;
        while i < bytes.len() && is_key_byte(bytes[i]) {
            i += 1;
        }
        let key = &text[key_start..i];
        let starts_word = key_start == 0 || !is_key_byte(bytes[key_start - 1]);
        let keyish = starts_word && !key.is_empty() && !key.as_bytes()[0].is_ascii_digit();
        if keyish && i < bytes.len() && (bytes[i] == b'=' || (bytes[i] == b':' && sensitive(key))) {
            let mut value = i + 1;
            if bytes[i] == b':' {
                while value < bytes.len() && bytes[value] == b' ' {
                    value += 1;
                }
            }
            let end = value_end(bytes, value);
            if end > value && &text[value..end] != MASK {
                out.push_str(&text[copied..value]);
                out.push_str(MASK);
                copied = end;
            }
            i = end.max(i + 1);
        } else if i == key_start {
            // Not a key byte: step over one whole character.
            i += text[i..].chars().next().map_or(1, char::len_utf8);
        }
    }
    out.push_str(&text[copied..]);
    out
}

fn is_key_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.'
}

fn sensitive(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    SENSITIVE.iter().any(|s| key.contains(s))
}

/// A value runs to the next whitespace, `|` (our line separator), `,`, `;`
/// or `&`; a quoted value to its closing quote.
fn value_end(bytes: &[u8], start: usize) -> usize {
    if let Some(&q) = bytes.get(start).filter(|b| **b == b'"' || **b == b'\'') {
        return bytes[start + 1..].iter().position(|b| *b == q).map_or(bytes.len(), |p| start + p + 2);
    }
    bytes[start..]
        .iter()
        .position(|b| b.is_ascii_whitespace() || matches!(b, b'|' | b',' | b';' | b'&'))
        .map_or(bytes.len(), |p| start + p)
}

#[cfg(test)]
mod tests {
    #[test]
    fn an_environment_value_is_masked_only_as_a_whole_token() {
        let secrets = env_values(["TESTBOX_HEALTH=fail", "DB_PASSWORD=hunter22"]);
        let masked = text("health check failed: health: failing on purpose; fail; pw hunter22.", &secrets);
        assert_eq!(masked, "health check failed: health: failing on purpose; ***; pw ***.");
    }

    use super::*;
    use proptest::prelude::*;

    #[test]
    fn urls_lose_userinfo_query_and_fragment() {
        let cases = [
            ("https://user:pa55@hooks.example/x?token=abc#frag", "https://hooks.example/x"),
            ("http://127.0.0.1:9000/events", "http://127.0.0.1:9000/events"),
            ("http://tok@h/p", "http://h/p"),
            ("not a url s3cret", "<invalid URL>"),
        ];
        for (input, want) in cases {
            assert_eq!(url(input), want, "{input}");
        }
    }

    #[test]
    fn log_lines_mask_env_values_and_assignments() {
        let secrets = env_values(["DB_PASSWORD=hunter2-xyz", "DEBUG=1", "PATH=/bin"]);
        let cases = [
            ("connecting with hunter2-xyz failed", "connecting with *** failed"),
            ("DB_PASSWORD=hunter2-xyz", "DB_PASSWORD=***"),
            ("config: API_KEY=abc123 MODE=prod | next", "config: API_KEY=*** MODE=*** | next"),
            ("password: letmein now", "password: *** now"),
            ("url=\"https://u:p@h\" ok", "url=*** ok"),
            ("exited after 1 retry; DEBUG", "exited after 1 retry; DEBUG"),
            ("time: 12:00 level: info", "time: 12:00 level: info"),
            ("a == b", "a == b"),
            ("ünïcode KEY=välue", "ünïcode KEY=***"),
        ];
        for (input, want) in cases {
            assert_eq!(text(input, &secrets), want, "{input}");
        }
    }

    proptest! {
        #[test]
        fn a_secret_env_value_never_survives(
            secret in "[A-Za-z0-9!@#%^*()_+-]{4,24}",
            before in "[ -~]{0,30}",
            after in "[ -~]{0,30}",
        ) {
            // A long value never survives; a short one never as a token.
            let secrets = env_values([format!("S={secret}").as_str()]);
            let (before, after) = if secret.chars().count() >= ANYWHERE_LEN {
                (before, after)
            } else {
                (format!("{before} "), format!(" {after}"))
            };
            let masked = text(&format!("{before}{secret}{after}"), &secrets);
            prop_assert!(!masked.contains(&secret) || before.contains(&secret) || after.contains(&secret), "{masked}");
        }

        #[test]
        fn masking_never_panics(input in "\\PC{0,200}") {
            let _ = text(&input, &["abcd".to_string()]);
        }
    }
}
