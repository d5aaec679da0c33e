//! The fleet view's query string (`GET /?…`), parsed by hand from its
//! `key=value` pairs: `label` repeats (every label must match), which
//! serde's form deserializer cannot put in a `Vec`, and a refusal must say
//! which parameter was wrong, what was given and what is allowed — not a
//! deserializer's message.
//!
//! | parameter | values | default |
//! |---|---|---|
//! | `label` (repeatable) | `KEY=VALUE`; all must match | none |
//! | `target` | a target's name | any |
//! | `repo` | the repository the target's image is from | any |
//! | `version` | the version that target runs | any |
//! | `status` | `online`, `offline`, `revoked` | any |
//! | `has_update` | `any`, `patch`, `minor`, `major` | any or none |
//! | `failing` | `1`: the last op failed or rolled back | any |
//! | `q` | a substring of the agent's name or the image | none |
//! | `sort`, `dir` | a column of [`SORTS`]; `asc` or `desc` | `name`, `asc` |
//! | `page` | 1, 2, … (past the last page shows the last) | 1 |
//! | `size` | one of [`SIZES`] | [`DEFAULT_SIZE`] |
//! | `format` | `html`, `json` (the rows on the page as live cells) | `html` |

use std::fmt;

use crate::agents::{RowFilter, Status, UpdateKind};

/// The page sizes offered.
pub const SIZES: [usize; 4] = [50, 100, 250, 500];
/// The page size without `size`.
pub const DEFAULT_SIZE: usize = 100;
/// The longest value any parameter may have (a name, a label, an image).
const MAX_VALUE: usize = 512;
/// The most `label` parameters one query may carry.
const MAX_LABELS: usize = 16;

/// The sortable columns: (key, heading).
pub const SORTS: [(&str, &str); 8] = [
    ("name", "Agent"),
    ("status", "Status"),
    ("controller", "Controller"),
    ("target", "Target"),
    ("image", "Image"),
    ("version", "Version"),
    ("outcome", "Last op"),
    ("seen", "Last seen"),
];

/// Why a query was refused: the parameter, what was given, what is allowed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueryError {
    /// The parameter's name.
    pub parameter: String,
    /// Its value as given (cut to [`MAX_VALUE`] characters).
    pub given: String,
    /// What it may be.
    pub allowed: String,
}

impl QueryError {
    fn new(parameter: &str, given: &str, allowed: impl Into<String>) -> Self {
        Self {
            parameter: parameter.to_string(),
            given: given.chars().take(MAX_VALUE).collect(),
            allowed: allowed.into(),
        }
    }
}

impl fmt::Display for QueryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "parameter `{}`: `{}` is not allowed; {}", self.parameter, self.given, self.allowed)
    }
}

impl std::error::Error for QueryError {}

/// What the fleet view shows: filters, sort and page, every one checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FleetQuery {
    /// `(key, value)`: the agent has every one of these labels.
    pub labels: Vec<(String, String)>,
    /// The target's name (empty: any).
    pub target: String,
    /// The repository of the target's image (empty: any).
    pub repo: String,
    /// The version the target runs (empty: any).
    pub version: String,
    /// The agent's status.
    pub status: Option<Status>,
    /// The target has an update of this kind.
    pub has_update: Option<UpdateKind>,
    /// The target's last op failed or rolled back.
    pub failing: bool,
    /// A substring of the agent's name or the target's image.
    pub q: String,
    /// A key of [`SORTS`].
    pub sort: &'static str,
    /// Descending.
    pub desc: bool,
    /// The page asked for, from 1.
    pub page: usize,
    /// Rows per page, one of [`SIZES`].
    pub size: usize,
    /// The live cells as JSON instead of the page.
    pub json: bool,
}

impl FleetQuery {
    /// The rows its filters keep.
    pub fn row_filter(&self) -> RowFilter {
        let some = |v: &str| Some(v.to_string()).filter(|v| !v.is_empty());
        RowFilter {
            labels: self.labels.clone(),
            target: some(&self.target),
            repo: some(&self.repo),
            version: some(&self.version),
            status: self.status,
            has_update: self.has_update,
            failing: self.failing,
            search: some(&self.q.to_lowercase()),
        }
    }
}

impl Default for FleetQuery {
    fn default() -> Self {
        Self {
            labels: Vec::new(),
            target: String::new(),
            repo: String::new(),
            version: String::new(),
            status: None,
            has_update: None,
            failing: false,
            q: String::new(),
            sort: "name",
            desc: false,
            page: 1,
            size: DEFAULT_SIZE,
            json: false,
        }
    }
}

/// `status`'s text.
pub fn status_text(s: Status) -> &'static str {
    match s {
        Status::Online => "online",
        Status::Offline => "offline",
        Status::Revoked => "revoked",
    }
}

/// `has_update`'s text.
pub fn update_text(k: UpdateKind) -> &'static str {
    match k {
        UpdateKind::Any => "any",
        UpdateKind::Patch => "patch",
        UpdateKind::Minor => "minor",
        UpdateKind::Major => "major",
    }
}

impl FleetQuery {
    /// Parses the query's pairs (as `Query<Vec<(String, String)>>` gives
    /// them, in order). Empty values mean "not given", as a form sends an
    /// untouched field.
    pub fn parse(pairs: &[(String, String)]) -> Result<Self, QueryError> {
        let mut q = Self::default();
        for (key, value) in pairs {
            if value.chars().count() > MAX_VALUE {
                return Err(QueryError::new(key, value, format!("at most {MAX_VALUE} characters")));
            }
            let value = value.as_str();
            match key.as_str() {
                "label" if value.is_empty() => {}
                "label" => {
                    let Some((k, v)) = value.split_once('=').filter(|(k, _)| !k.is_empty()) else {
                        return Err(QueryError::new(
                            "label",
                            value,
                            "expected KEY=VALUE, for example env=prod (repeat `label` to require several)",
                        ));
                    };
                    if q.labels.len() == MAX_LABELS {
                        return Err(QueryError::new("label", value, format!("at most {MAX_LABELS} labels")));
                    }
                    let pair = (k.to_string(), v.to_string());
                    if !q.labels.contains(&pair) {
                        q.labels.push(pair);
                    }
                }
                "target" => q.target = value.to_string(),
                "repo" => q.repo = value.to_string(),
                "version" => q.version = value.to_string(),
                "q" => q.q = value.trim().to_string(),
                "status" => {
                    q.status = match value {
                        "" => None,
                        "online" => Some(Status::Online),
                        "offline" => Some(Status::Offline),
                        "revoked" => Some(Status::Revoked),
                        _ => {
                            return Err(QueryError::new(
                                "status",
                                value,
                                "expected online, offline or revoked",
                            ))
                        }
                    }
                }
                "has_update" => {
                    q.has_update = match value {
                        "" => None,
                        "any" => Some(UpdateKind::Any),
                        "patch" => Some(UpdateKind::Patch),
                        "minor" => Some(UpdateKind::Minor),
                        "major" => Some(UpdateKind::Major),
                        _ => {
                            return Err(QueryError::new(
                                "has_update",
                                value,
                                "expected any, patch, minor or major",
                            ))
                        }
                    }
                }
                "failing" => {
                    q.failing = match value {
                        "" | "0" => false,
                        "1" => true,
                        _ => return Err(QueryError::new("failing", value, "expected 1 (or nothing)")),
                    }
                }
                "sort" if value.is_empty() => q.sort = "name",
                "sort" => {
                    q.sort = SORTS.iter().map(|(k, _)| *k).find(|k| *k == value).ok_or_else(|| {
                        let keys: Vec<&str> = SORTS.iter().map(|(k, _)| *k).collect();
                        QueryError::new("sort", value, format!("expected one of {}", keys.join(", ")))
                    })?;
                }
                "dir" => {
                    q.desc = match value {
                        "" | "asc" => false,
                        "desc" => true,
                        _ => return Err(QueryError::new("dir", value, "expected asc or desc")),
                    }
                }
                "page" if value.is_empty() => q.page = 1,
                "page" => {
                    q.page = value.parse::<usize>().ok().filter(|p| *p >= 1).ok_or_else(|| {
                        QueryError::new("page", value, "expected a page number: 1, 2, 3, …")
                    })?;
                }
                "size" if value.is_empty() => q.size = DEFAULT_SIZE,
                "size" => {
                    q.size = value.parse::<usize>().ok().filter(|s| SIZES.contains(s)).ok_or_else(|| {
                        let sizes: Vec<String> = SIZES.iter().map(usize::to_string).collect();
                        QueryError::new(
                            "size",
                            value,
                            format!("expected one of {} rows per page", sizes.join(", ")),
                        )
                    })?;
                }
                "format" => {
                    q.json = match value {
                        "" | "html" => false,
                        "json" => true,
                        _ => return Err(QueryError::new("format", value, "expected html or json")),
                    }
                }
                // What a page after a pin carries; nothing to filter.
                "pinned" => {}
                other => return Err(QueryError::new(
                    other,
                    value,
                    "this parameter is unknown; the fleet view takes label, target, repo, version, status, \
                         has_update, failing, q, sort, dir, page, size and format",
                )),
            }
        }
        Ok(q)
    }

    /// This query's filters, sort and size as `(key, value)` pairs, in a
    /// fixed order, leaving out defaults (page and format are not kept:
    /// links set the page they lead to).
    pub fn pairs(&self) -> Vec<(&'static str, String)> {
        let mut out: Vec<(&'static str, String)> =
            self.labels.iter().map(|(k, v)| ("label", format!("{k}={v}"))).collect();
        let mut push = |key: &'static str, value: String| {
            if !value.is_empty() {
                out.push((key, value));
            }
        };
        push("target", self.target.clone());
        push("repo", self.repo.clone());
        push("version", self.version.clone());
        push("status", self.status.map(status_text).unwrap_or_default().to_string());
        push("has_update", self.has_update.map(update_text).unwrap_or_default().to_string());
        push("failing", if self.failing { "1".into() } else { String::new() });
        push("q", self.q.clone());
        push("sort", if self.sort == "name" { String::new() } else { self.sort.to_string() });
        push("dir", if self.desc { "desc".into() } else { String::new() });
        push("size", if self.size == DEFAULT_SIZE { String::new() } else { self.size.to_string() });
        out
    }

    /// `/?…` for this query at `page` (1 is left out).
    pub fn link(&self, page: usize) -> String {
        self.link_with(page, false)
    }

    /// [`Self::link`], with `sort` spelled out also for the default column
    /// when `sort_named` (a column heading's link says what it sorts by).
    fn link_with(&self, page: usize, sort_named: bool) -> String {
        let mut pairs = self.pairs();
        if sort_named && self.sort == "name" {
            let at = pairs.iter().position(|(k, _)| matches!(*k, "dir" | "size")).unwrap_or(pairs.len());
            pairs.insert(at, ("sort", "name".to_string()));
        }
        if page > 1 {
            pairs.push(("page", page.to_string()));
        }
        let refs: Vec<(&str, &str)> = pairs.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let q = super::html::query(&refs);
        if q.is_empty() {
            "/".to_string()
        } else {
            format!("/?{q}")
        }
    }

    /// This query sorted by `key`: a second click on the current column
    /// reverses it; back to the first page.
    pub fn sort_link(&self, key: &'static str) -> String {
        let desc = self.sort == key && !self.desc;
        Self { sort: key, desc, ..self.clone() }.link_with(1, true)
    }

    /// This query without label `i` (the "×" of a label chip).
    pub fn without_label(&self, i: usize) -> String {
        let mut q = self.clone();
        if i < q.labels.len() {
            q.labels.remove(i);
        }
        q.link(1)
    }

    /// Whether any filter is given (search included).
    pub fn filtered(&self) -> bool {
        !self.labels.is_empty()
            || !self.target.is_empty()
            || !self.repo.is_empty()
            || !self.version.is_empty()
            || self.status.is_some()
            || self.has_update.is_some()
            || self.failing
            || !self.q.is_empty()
    }
}

/// A page of `total` rows: which rows, and where the links go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pages {
    /// The page shown, from 1 (the asked one, or the last when it asked
    /// for more than there are).
    pub page: usize,
    /// How many pages (at least 1, also for no rows).
    pub count: usize,
    /// The first row's index.
    pub start: usize,
    /// One past the last row's index.
    pub end: usize,
    /// Every row.
    pub total: usize,
}

impl Pages {
    /// Page `page` of `size` rows over `total`.
    pub fn new(total: usize, page: usize, size: usize) -> Self {
        let size = size.max(1);
        let count = total.div_ceil(size).max(1);
        let page = page.clamp(1, count);
        let start = (page - 1) * size;
        Self { page, count, start: start.min(total), end: (start + size).min(total), total }
    }

    /// "showing 101–200 of 3,000".
    pub fn showing(&self) -> String {
        if self.total == 0 {
            return "no rows".to_string();
        }
        format!("showing {}–{} of {}", thousands(self.start + 1), thousands(self.end), thousands(self.total))
    }
}

/// `3000` as `3,000`.
pub fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(query: &str) -> Result<FleetQuery, QueryError> {
        // What axum's `Query<Vec<(String, String)>>` hands the handler.
        let uri: axum::http::Uri = format!("/?{query}").parse().expect("a URI");
        let axum::extract::Query(pairs) =
            axum::extract::Query::<Vec<(String, String)>>::try_from_uri(&uri).expect("pairs");
        FleetQuery::parse(&pairs)
    }

    #[test]
    fn several_labels_are_kept_in_order_without_duplicates() {
        let q = parse("label=env%3Dprod&label=region=eu-west&label=env=prod&label=").expect("valid");
        assert_eq!(q.labels, [("env".to_string(), "prod".to_string()), ("region".into(), "eu-west".into())]);
        assert_eq!(q.link(1), "/?label=env%3Dprod&label=region%3Deu-west");
        let q = parse("label=note%3Da%3Db").expect("a value may hold =");
        assert_eq!(q.labels, [("note".to_string(), "a=b".to_string())]);
    }

    #[test]
    fn target_version_and_the_rest_round_trip_through_links() {
        let q = parse("target=web&version=1.2.0&status=offline&has_update=minor&failing=1&q=edge&sort=version&dir=desc&size=250&page=3")
            .expect("valid");
        assert_eq!((q.target.as_str(), q.version.as_str()), ("web", "1.2.0"));
        assert_eq!(
            (q.status, q.has_update, q.failing),
            (Some(Status::Offline), Some(UpdateKind::Minor), true)
        );
        assert_eq!((q.sort, q.desc, q.page, q.size, q.json), ("version", true, 3, 250, false));
        let back = q.link(4);
        assert_eq!(
            back,
            "/?target=web&version=1.2.0&status=offline&has_update=minor&failing=1&q=edge&sort=version&dir=desc&size=250&page=4"
        );
        assert_eq!(parse(back.trim_start_matches("/?")).map(|p| p.page), Ok(4));
        assert_eq!(FleetQuery::default().link(1), "/");
        assert!(parse("format=json").expect("valid").json);
    }

    #[test]
    fn sort_links_keep_the_filters_toggle_the_direction_and_go_to_the_first_page() {
        let q = parse("label=env=prod&page=7").expect("valid");
        assert_eq!(q.sort_link("name"), "/?label=env%3Dprod&sort=name&dir=desc");
        assert_eq!(q.sort_link("version"), "/?label=env%3Dprod&sort=version");
        let desc = parse("sort=version&dir=desc").expect("valid");
        assert_eq!(desc.sort_link("version"), "/?sort=version");
        assert_eq!(FleetQuery::default().sort_link("name"), "/?sort=name&dir=desc", "name is the default");
        let two = parse("label=a=1&label=b=2").expect("valid");
        assert_eq!(two.without_label(0), "/?label=b%3D2");
    }

    #[test]
    fn malformed_parameters_say_which_what_was_given_and_what_is_allowed() {
        let cases = [
            ("status=asleep", "status", "asleep", "online, offline or revoked"),
            ("page=abc", "page", "abc", "a page number"),
            ("page=0", "page", "0", "a page number"),
            ("page=-1", "page", "-1", "a page number"),
            ("size=0", "size", "0", "50, 100, 250, 500"),
            ("size=37", "size", "37", "50, 100, 250, 500"),
            ("label=env", "label", "env", "KEY=VALUE"),
            ("label==prod", "label", "=prod", "KEY=VALUE"),
            ("has_update=newest", "has_update", "newest", "any, patch, minor or major"),
            ("sort=colour", "sort", "colour", "name, status"),
            ("dir=up", "dir", "up", "asc or desc"),
            ("failing=yes", "failing", "yes", "1"),
            ("format=xml", "format", "xml", "html or json"),
            ("colour=red", "colour", "red", "unknown"),
        ];
        for (query, parameter, given, allowed) in cases {
            let e = parse(query).expect_err(query);
            assert_eq!((e.parameter.as_str(), e.given.as_str()), (parameter, given), "{query}");
            assert!(e.allowed.contains(allowed), "{query}: {e}");
            let text = e.to_string();
            assert!(text.starts_with(&format!("parameter `{parameter}`: `{given}`")), "{text}");
        }
        let long = format!("q={}", "x".repeat(MAX_VALUE + 1));
        assert_eq!(parse(&long).map_err(|e| e.parameter), Err("q".to_string()));
    }

    #[test]
    fn empty_values_are_defaults_as_an_untouched_form_sends_them() {
        let q =
            parse("q=&label=&status=&has_update=&sort=&dir=&page=&size=&target=&version=").expect("valid");
        assert_eq!(q, FleetQuery::default());
        assert!(!q.filtered());
    }

    #[test]
    fn pages_are_bounded_and_say_what_they_show() {
        let p = Pages::new(3000, 2, 100);
        assert_eq!((p.start, p.end, p.count), (100, 200, 30));
        assert_eq!(p.showing(), "showing 101–200 of 3,000");
        let past = Pages::new(250, 9, 100);
        assert_eq!((past.page, past.start, past.end), (3, 200, 250), "past the end shows the last page");
        let none = Pages::new(0, 4, 50);
        assert_eq!((none.page, none.count, none.start, none.end), (1, 1, 0, 0));
        assert_eq!(none.showing(), "no rows");
        assert_eq!(Pages::new(100, 1, 100).count, 1);
        assert_eq!(Pages::new(101, 2, 100).showing(), "showing 101–101 of 101");
        assert_eq!(thousands(1_234_567), "1,234,567");
        assert_eq!(thousands(999), "999");
    }
}
