//! HTML by plain string building: every value that did not come from this
//! file goes through [`escape`] (text and attribute values alike), and
//! every URL parameter through [`urlencode`]. No template crate: the page
//! is a handful of tables and forms, and one escaping function is easier
//! to audit than a template language's rules.

use super::session::Session;
use crate::access::Role;

/// `s` safe inside HTML text and inside a double- or single-quoted
/// attribute value.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// `s` as a URL query component (RFC 3986 unreserved kept, the rest
/// percent-encoded as UTF-8).
pub fn urlencode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `key=value&…`, each side encoded; empty values left out.
pub fn query(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| format!("{}={}", urlencode(k), urlencode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// How many hex characters of a digest the pages show.
pub const DIGEST_SHOWN: usize = 12;

/// An image reference or a digest as HTML: every `sha256:` digest in it
/// cut to [`DIGEST_SHOWN`] hex characters and an ellipsis, the whole value
/// in `title` (hover, copy) when it was cut. Escaped.
pub fn image(s: &str) -> String {
    let Some(at) = s.find("sha256:") else { return escape(s) };
    let hex_start = at + "sha256:".len();
    let hex_len = s[hex_start..].bytes().take_while(u8::is_ascii_hexdigit).count();
    if hex_len <= DIGEST_SHOWN {
        return escape(s);
    }
    let short = format!(
        "{}{}…{}",
        &s[..hex_start],
        &s[hex_start..hex_start + DIGEST_SHOWN],
        &s[hex_start + hex_len..]
    );
    format!(r#"<span title="{}">{}</span>"#, escape(s), escape(&short))
}

/// A hidden form field carrying the session's CSRF token.
pub fn csrf_field(csrf: &str) -> String {
    format!(r#"<input type="hidden" name="csrf" value="{}">"#, escape(csrf))
}

/// The header's navigation for `session`: the pages, each shown only to
/// a role that can use it, who is logged in with their role, and the
/// logout button (CSRF).
fn nav(session: &Session) -> String {
    let p = &session.principal;
    let admin = session.may(Role::Admin);
    let users = if admin {
        r#" <a href="/users" id="nav-users">Users</a> <a href="/notifications" id="nav-notifications">Notifications</a>"#
    } else {
        ""
    };
    let everywhere = if admin {
        r#" <a href="/logout-everywhere" id="logout-everywhere">Log out everywhere</a>"#
    } else {
        ""
    };
    // A named user's name leads to their account (password change); the
    // break-glass admin has no account here.
    let who = format!("{} · {}", escape(&p.actor()), p.role);
    let who = match p.user {
        Some(_) => format!(r#"<a href="/account" id="whoami" title="your account">{who}</a>"#),
        None => format!(r#"<span id="whoami">{who}</span>"#),
    };
    format!(
        r#"<nav><a href="/">Fleet</a> <a href="/campaigns">Campaigns</a> <a href="/repositories">Repositories</a> <a href="/audit" id="nav-audit">Audit</a> <a href="/tokens" id="nav-tokens">API tokens</a>{users}{everywhere}
<span class="whoami">{who}</span><form method="post" action="/logout" class="logout">{}<button type="submit" id="logout">Log out</button></form></nav>"#,
        csrf_field(&session.csrf)
    )
}

/// A whole page: head with our stylesheet and script (no inline code, the
/// CSP forbids it), a header with the navigation, who is logged in and the
/// logout button when there is a `session`, and `body`.
pub fn layout(title: &str, session: Option<&Session>, body: &str) -> String {
    let nav = session.map(nav).unwrap_or_default();
    format!(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title} · container-upgrader</title>
<link rel="stylesheet" href="/static/fleet.css"><script src="/static/fleet.js" defer></script></head>
<body><header><h1>container-upgrader · {title}</h1>{nav}</header>
<main>{body}</main></body></html>
"#,
        title = escape(title),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_neutralises_every_markup_character() {
        let cases = [
            ("plain", "plain"),
            ("<script>alert(1)</script>", "&lt;script&gt;alert(1)&lt;/script&gt;"),
            (r#"" onmouseover="x"#, "&quot; onmouseover=&quot;x"),
            ("it's", "it&#39;s"),
            ("a & b", "a &amp; b"),
            ("&amp;", "&amp;amp;"),
            ("ünïcödé", "ünïcödé"),
            ("", ""),
        ];
        for (input, want) in cases {
            assert_eq!(escape(input), want, "{input}");
        }
    }

    #[test]
    fn urlencode_keeps_unreserved_and_encodes_the_rest() {
        assert_eq!(urlencode("env=prod"), "env%3Dprod");
        assert_eq!(urlencode("a b&c/ü"), "a%20b%26c%2F%C3%BC");
        assert_eq!(urlencode("A-z_0.9~"), "A-z_0.9~");
        assert_eq!(
            query(&[("label", "env=prod"), ("q", ""), ("sort", "name")]),
            "label=env%3Dprod&sort=name"
        );
    }

    #[test]
    fn digests_are_cut_to_twelve_hex_characters_with_the_whole_value_in_the_title() {
        let digest = format!("sha256:{}", "ab12".repeat(16));
        let image_ref = format!("r.io/app:1.0.0@{digest}");
        assert_eq!(
            image(&image_ref),
            format!(r#"<span title="{image_ref}">r.io/app:1.0.0@sha256:ab12ab12ab12…</span>"#)
        );
        assert_eq!(image(&digest), format!(r#"<span title="{digest}">sha256:ab12ab12ab12…</span>"#));
        assert_eq!(image("r.io/<app>:1.0.0"), "r.io/&lt;app&gt;:1.0.0");
        assert_eq!(image("sha256:abc"), "sha256:abc");
        assert_eq!(image(""), "");
    }

    #[test]
    fn layout_escapes_the_title_and_shows_logout_only_with_a_session() {
        let page = layout("<x>", None, "");
        assert!(page.contains("&lt;x&gt;") && !page.contains("<x>"));
        assert!(!page.contains("/logout"));
        let mut session = Session::for_test(Role::Operator);
        session.csrf = "tok\"en".into();
        let page = layout("Fleet", Some(&session), "");
        assert!(page.contains(r#"value="tok&quot;en""#));
        assert!(page.contains("tester · operator"), "{page}");
    }

    #[test]
    fn the_nav_shows_each_role_only_the_pages_it_can_use() {
        let nav_of = |role| layout("x", Some(&Session::for_test(role)), "");
        for role in [Role::Viewer, Role::Operator, Role::Admin] {
            let page = nav_of(role);
            assert!(page.contains(r#"href="/audit""#) && page.contains(r#"href="/tokens""#), "{role}");
            assert_eq!(page.contains(r#"href="/users""#), role == Role::Admin, "{role}");
            assert_eq!(page.contains(r#"href="/logout-everywhere""#), role == Role::Admin, "{role}");
            assert!(page.contains(&format!("tester · {role}")) && page.contains(r#"href="/account""#));
        }
        let mut glass = Session::for_test(Role::Admin);
        glass.principal = crate::access::Principal {
            user: None,
            via: crate::access::Via::BreakGlassPage,
            role: Role::Admin,
            source: "-".into(),
        };
        let page = layout("x", Some(&glass), "");
        assert!(
            page.contains("admin password (break-glass) · admin") && !page.contains(r#"href="/account""#)
        );
    }
}
