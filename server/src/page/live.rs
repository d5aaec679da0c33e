//! Live cells: a table cell the script refreshes in place. The server
//! renders each as `<td data-cell="ID" class="…">HTML</td>` in the page and
//! as `{"ID": {"html", "class"}}` under `?format=json`, from the same
//! values, so the page and its updates cannot disagree and the script
//! holds no rendering logic.

use serde::Serialize;

use super::html::escape;

/// One live cell: its id, its (already escaped) inner HTML and its class.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Cell {
    /// Unique on the page.
    #[serde(skip)]
    pub id: String,
    /// Inner HTML, built with [`escape`].
    pub html: String,
    /// CSS class.
    pub class: String,
}

impl Cell {
    /// A cell of plain text.
    pub fn text(id: String, text: &str, class: &str) -> Self {
        Self { id, html: escape(text), class: class.to_string() }
    }

    /// As a `<td>`.
    pub fn td(&self) -> String {
        self.element("td")
    }

    /// As a `<tag>` (`span`, `div`, …: the script finds any element by its
    /// `data-cell`).
    pub fn element(&self, tag: &str) -> String {
        format!(
            r#"<{tag} data-cell="{}" class="{}">{}</{tag}>"#,
            escape(&self.id),
            escape(&self.class),
            self.html
        )
    }
}

/// What `?format=json` answers: the rows' keys (so the script notices rows
/// that came or went) and every live cell by id.
#[derive(Debug, Serialize)]
pub struct Live {
    /// The keys of the rows (`data-row`) the page would show now.
    pub rows: Vec<String>,
    /// Every live cell.
    pub cells: serde_json::Map<String, serde_json::Value>,
}

impl Live {
    /// From the rows' keys and cells.
    pub fn new(rows: Vec<String>, cells: impl IntoIterator<Item = Cell>) -> Self {
        let cells = cells
            .into_iter()
            .map(|c| {
                let id = c.id.clone();
                (id, serde_json::to_value(c).unwrap_or(serde_json::Value::Null))
            })
            .collect();
        Self { rows, cells }
    }
}

/// `last_seen` (RFC 3339) as "12 s ago", "5 min ago", "3 h ago", "2 d ago".
pub fn ago(rfc3339: &str, now_ms: i64) -> String {
    let Ok(then) = humantime::parse_rfc3339_weak(rfc3339) else { return rfc3339.to_string() };
    let then_ms = then.duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis()).unwrap_or(0);
    let secs = (now_ms.max(0) as u128).saturating_sub(then_ms) / 1000;
    match secs {
        s if s < 120 => format!("{s} s ago"),
        s if s < 7200 => format!("{} min ago", s / 60),
        s if s < 172_800 => format!("{} h ago", s / 3600),
        s => format!("{} d ago", s / 86_400),
    }
}

/// The one way the pages write a time: absolute in UTC to the minute,
/// then how long ago, `2026-12-05 18:03 UTC (4 min ago)`. Anything that
/// is not RFC 3339 is shown as given.
pub fn when(rfc3339: &str, now_ms: i64) -> String {
    let Ok(then) = humantime::parse_rfc3339_weak(rfc3339) else { return rfc3339.to_string() };
    let text = humantime::format_rfc3339_seconds(then).to_string();
    // `2026-12-05T18:03:07Z`: the date, the hour and minute.
    match (text.get(..10), text.get(11..16)) {
        (Some(day), Some(minute)) => format!("{day} {minute} UTC ({})", ago(rfc3339, now_ms)),
        _ => rfc3339.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_escape_their_id_class_and_text() {
        let c = Cell::text("a/<t>:v".into(), "<b>1.0</b>", "x\"y");
        assert_eq!(c.td(), r#"<td data-cell="a/&lt;t&gt;:v" class="x&quot;y">&lt;b&gt;1.0&lt;/b&gt;</td>"#);
        let live = Live::new(vec!["a".into()], [c]);
        assert_eq!(live.cells["a/<t>:v"]["html"], "&lt;b&gt;1.0&lt;/b&gt;");
    }

    #[test]
    fn ago_reads_like_a_person_would_say_it() {
        let base = humantime::parse_rfc3339("2026-01-01T00:00:00Z").expect("a time");
        let ms = base.duration_since(std::time::UNIX_EPOCH).expect("after 1970").as_millis() as i64;
        assert_eq!(ago("2026-01-01T00:00:00Z", ms + 5_000), "5 s ago");
        assert_eq!(ago("2026-01-01T00:00:00Z", ms + 600_000), "10 min ago");
        assert_eq!(ago("2026-01-01T00:00:00Z", ms + 3 * 3_600_000), "3 h ago");
        assert_eq!(ago("2026-01-01T00:00:00Z", ms + 3 * 86_400_000), "3 d ago");
        assert_eq!(ago("garbage", ms), "garbage");
    }

    #[test]
    fn when_is_utc_to_the_minute_with_how_long_ago() {
        let base = humantime::parse_rfc3339("2026-12-05T18:03:00Z").expect("a time");
        let ms = base.duration_since(std::time::UNIX_EPOCH).expect("after 1970").as_millis() as i64;
        assert_eq!(when("2026-12-05T18:03:41Z", ms + 240_000), "2026-12-05 18:03 UTC (3 min ago)");
        assert_eq!(when("2026-12-05T18:03:00.123Z", ms + 5_000), "2026-12-05 18:03 UTC (4 s ago)");
        assert_eq!(when("", ms), "");
        assert_eq!(when("yesterday", ms), "yesterday");
    }
}
