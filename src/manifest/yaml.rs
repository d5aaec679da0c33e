//! The one walk over a manifest's YAML events, shared by every reader.
//!
//! yaml-rust2 gives events with marks; this module turns them into a small
//! tree where every node knows its path (`targets[2].image`), where it
//! starts, and how it was written (quoting, anchor). [`super::source`] reads
//! positions from it, [`super::de`] deserializes the typed document from it
//! (so serde errors can name the field and position), and [`super::edit`]
//! finds the exact bytes to splice. Aliases are not expanded here: an alias
//! is a node pointing at its anchor, so the walk is linear in the input. The
//! same walk refuses deep nesting, alias floods and extra documents.
//!
//! Syntax errors are reported in our own words at the parser's position,
//! with the path of the nearest enclosing mapping key: the library's text
//! is neither shown nor matched (it changes between versions and speaks of
//! tokens, not of the manifest).

use std::collections::HashMap;

use yaml_rust2::parser::{Event, Parser, Tag};
use yaml_rust2::scanner::{Marker, TScalarStyle};

use super::text::{Pos, MAX_ALIASES, MAX_DEPTH};

pub use super::text::DOCUMENT;

/// A place in the text: a character index (yaml-rust2 reads a `char`
/// iterator, so it counts characters, not bytes) and its line and column.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Mark {
    /// Characters from the start of the text.
    pub index: usize,
    /// 1-based line and column.
    pub pos: Pos,
}

impl From<Marker> for Mark {
    fn from(m: Marker) -> Self {
        Self { index: m.index(), pos: Pos { line: m.line(), column: m.col() + 1 } }
    }
}

/// What a node holds.
#[derive(Clone, Debug)]
pub(crate) enum Kind {
    /// A scalar as written, with its quoting and tag.
    Scalar { value: String, style: TScalarStyle, tag: Option<Tag> },
    /// A sequence: its items' node numbers.
    Seq(Vec<usize>),
    /// A mapping: (key, value) node numbers in file order.
    Map(Vec<(usize, usize)>),
    /// `*name`: the node number of the anchored node.
    Alias(usize),
}

/// One node of the document.
#[derive(Clone, Debug)]
pub(crate) struct Node {
    /// What it holds.
    pub kind: Kind,
    /// It carries an anchor (`&name`) that aliases may share.
    pub anchored: bool,
    /// Where its own token starts (a scalar: after any anchor or tag).
    pub start: Mark,
    /// Where a person looks for it: a mapping at its first key (yaml-rust2
    /// marks a block mapping at its first `:`, a flow one at `{`).
    pub first: Mark,
}

impl Node {
    /// True for a plain scalar YAML reads as null (`~`, `null`, nothing).
    pub fn is_null(&self) -> bool {
        matches!(&self.kind, Kind::Scalar { value, style: TScalarStyle::Plain, tag: None }
            if matches!(value.as_str(), "" | "~" | "null" | "Null" | "NULL"))
    }
}

/// The walked document.
#[derive(Clone, Debug, Default)]
pub(crate) struct Tree {
    /// Every node, in the order it starts.
    pub nodes: Vec<Node>,
    /// The root node, when the document has one.
    pub root: Option<usize>,
    /// The value node at each path (first occurrence of a repeated key).
    by_path: HashMap<String, usize>,
}

impl Tree {
    /// The node at `path` as written (aliases not followed).
    pub fn get(&self, path: &str) -> Option<&Node> {
        self.by_path.get(path).map(|&i| &self.nodes[i])
    }
}

/// A refusal found by the walk: where, in which field, and why.
#[derive(Debug)]
pub(crate) struct Refusal {
    /// Where.
    pub pos: Pos,
    /// The field path, or [`DOCUMENT`].
    pub path: String,
    /// What was found and what is allowed.
    pub message: String,
}

/// One open collection.
struct Frame {
    node: usize,
    path: String,
    /// Sequence: the next item's index. Unused for mappings.
    next: usize,
    /// Mapping: the key node and key text waiting for its value.
    key: Option<(usize, String)>,
    /// Mapping: the keys seen, and where, to refuse a repeated one.
    seen: HashMap<String, Pos>,
    is_map: bool,
    /// The anchor id to register when the collection closes (an alias
    /// inside its own anchor would otherwise be an endless loop).
    anchor: usize,
}

impl Frame {
    /// The path a syntax error inside this collection belongs to: the
    /// pending key's, else the collection's own (the nearest enclosing
    /// mapping key), else [`DOCUMENT`].
    fn error_path(&self) -> String {
        match (&self.key, self.is_map) {
            (Some((_, k)), _) => join(&self.path, k),
            (None, _) if self.path.is_empty() => DOCUMENT.to_string(),
            (None, _) => self.path.clone(),
        }
    }
}

/// `parent.key`, or `key` at the top; an empty key is shown as `""` so a
/// path is never empty.
pub(crate) fn join(parent: &str, key: &str) -> String {
    let key = if key.is_empty() { "\"\"" } else { key };
    if parent.is_empty() || parent == DOCUMENT {
        key.to_string()
    } else {
        format!("{parent}.{key}")
    }
}

/// Walks the events of `text` into a [`Tree`].
pub(crate) fn walk(text: &str) -> Result<Tree, Refusal> {
    let mut parser = Parser::new_from_str(text);
    let mut w = Walker::default();
    loop {
        let (event, marker) = parser.next_token().map_err(|e| {
            let at = Mark::from(*e.marker());
            let depth = w.stack.len().max(flow_depth(text, at.index));
            Refusal { pos: at.pos, path: w.here(), message: syntax_message(text, at.pos, depth) }
        })?;
        let mark = Mark::from(marker);
        if let Err(message) = w.event(event, mark) {
            return Err(Refusal { pos: mark.pos, path: w.here(), message });
        }
        if w.done {
            return Ok(w.tree);
        }
    }
}

/// The walk's state between events.
#[derive(Default)]
struct Walker {
    tree: Tree,
    stack: Vec<Frame>,
    /// yaml-rust2's anchor id → node number, for anchors already closed.
    anchors: HashMap<usize, usize>,
    aliases: usize,
    documents: usize,
    done: bool,
}

impl Walker {
    /// The path a refusal at this point belongs to.
    fn here(&self) -> String {
        self.stack.last().map_or_else(|| DOCUMENT.to_string(), Frame::error_path)
    }

    /// Takes one event; `Err` is the refusal's message (at the event).
    fn event(&mut self, event: Event, mark: Mark) -> Result<(), String> {
        if let Some(frame) = self.stack.last() {
            // The first event inside a mapping is its first key.
            let node = &mut self.tree.nodes[frame.node];
            let empty = matches!(&node.kind, Kind::Map(pairs) if pairs.is_empty());
            if frame.is_map && empty && frame.key.is_none() && !matches!(event, Event::MappingEnd) {
                node.first = mark;
            }
        }
        let (kind, anchor) = match event {
            Event::StreamEnd => {
                self.done = true;
                return Ok(());
            }
            Event::DocumentStart => {
                self.documents += 1;
                if self.documents > 1 {
                    return Err("more than one YAML document (`---`); allowed: a single document".into());
                }
                return Ok(());
            }
            Event::Nothing | Event::StreamStart | Event::DocumentEnd => return Ok(()),
            Event::SequenceEnd | Event::MappingEnd => {
                if let Some(frame) = self.stack.pop().filter(|f| f.anchor != 0) {
                    self.anchors.insert(frame.anchor, frame.node);
                }
                return Ok(());
            }
            Event::Scalar(value, style, anchor, tag) => (Kind::Scalar { value, style, tag }, anchor),
            Event::Alias(id) => (self.alias(id)?, 0),
            Event::SequenceStart(_, Some(tag)) | Event::MappingStart(_, Some(tag)) => {
                return Err(format!(
                    "found the tag `{}{}`; allowed: no tags in a manifest (a probe is written `{{http: {{port: 8080}}}}`)",
                    tag.handle, tag.suffix
                ));
            }
            Event::SequenceStart(anchor, None) | Event::MappingStart(anchor, None) => {
                if self.stack.len() >= MAX_DEPTH {
                    return Err(format!(
                        "nesting deeper than {MAX_DEPTH} levels; allowed: at most {MAX_DEPTH} (a manifest needs about 6)"
                    ));
                }
                let map = matches!(event, Event::MappingStart(..));
                (if map { Kind::Map(Vec::new()) } else { Kind::Seq(Vec::new()) }, anchor)
            }
        };
        self.node(kind, anchor, mark)
    }

    /// An alias, within the limit, to an anchor already closed.
    fn alias(&mut self, id: usize) -> Result<Kind, String> {
        self.aliases += 1;
        if self.aliases > MAX_ALIASES {
            return Err(format!(
                "more than {MAX_ALIASES} aliases (`*name`); refusing a possible alias bomb; allowed: at most {MAX_ALIASES}"
            ));
        }
        // An anchor still open is a collection that contains this alias.
        self.anchors.get(&id).map(|&target| Kind::Alias(target)).ok_or_else(|| {
            "this alias (`*name`) names a collection that contains it, which would never end; allowed: aliases to a node defined before and outside them".to_string()
        })
    }

    /// Adds a node, attaches it to its parent, and opens it if a collection.
    fn node(&mut self, kind: Kind, anchor: usize, mark: Mark) -> Result<(), String> {
        let index = self.tree.nodes.len();
        let key = match &kind {
            Kind::Scalar { value, .. } => Some(value.clone()),
            _ => None,
        };
        let opens = match &kind {
            Kind::Seq(_) => Some(false),
            Kind::Map(_) => Some(true),
            _ => None,
        };
        self.tree.nodes.push(Node { kind, anchored: anchor != 0, start: mark, first: mark });
        let path = self.attach(index, key, mark)?;
        if let Some(p) = &path {
            self.tree.by_path.entry(p.clone()).or_insert(index);
        }
        match opens {
            // A collection used as a key gets an unmatchable path; the
            // typed reading refuses such keys anyway.
            Some(is_map) => self.stack.push(Frame {
                node: index,
                path: path.unwrap_or_else(|| "?".to_string()),
                next: 0,
                key: None,
                seen: HashMap::new(),
                is_map,
                anchor,
            }),
            None if anchor != 0 => {
                self.anchors.insert(anchor, index);
            }
            None => {}
        }
        Ok(())
    }

    /// Links node `index` into its parent; returns its path, or `None`
    /// when it is a mapping key (`key`: its text, for a scalar).
    fn attach(&mut self, index: usize, key: Option<String>, mark: Mark) -> Result<Option<String>, String> {
        let Some(frame) = self.stack.last_mut() else {
            self.tree.root = Some(index);
            return Ok(Some(String::new()));
        };
        let parent = &mut self.tree.nodes[frame.node].kind;
        if !frame.is_map {
            let path = format!("{}[{}]", frame.path, frame.next);
            frame.next += 1;
            if let Kind::Seq(items) = parent {
                items.push(index);
            }
            return Ok(Some(path));
        }
        if let Some((key, text)) = frame.key.take() {
            if let Kind::Map(pairs) = parent {
                pairs.push((key, index));
            }
            return Ok(Some(join(&frame.path, &text)));
        }
        // YAML wants keys unique; a repeated one is a mistake whichever
        // value was meant.
        let scalar = key.is_some();
        let text = key.unwrap_or_else(|| "?".to_string());
        if let Some(first) = frame.seen.insert(text.clone(), mark.pos).filter(|_| scalar) {
            frame.key = Some((index, text.clone()));
            return Err(format!(
                "`{}` is given twice in this mapping (first on line {}); allowed: each key once",
                super::text::shown(&text),
                first.line
            ));
        }
        frame.key = Some((index, text));
        Ok(None)
    }
}

/// How many flow collections (`[`, `{`) are open before character `index`,
/// roughly (quotes are skipped): yaml-rust2 scans far ahead in flow
/// context and stops on its own nesting limit before our walk sees the
/// collections open.
fn flow_depth(text: &str, index: usize) -> usize {
    let (mut depth, mut max, mut quote) = (0usize, 0usize, None);
    for c in text.chars().take(index) {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '"' | '\'') => quote = Some(c),
            (None, '[' | '{') => depth += 1,
            (None, ']' | '}') => depth = depth.saturating_sub(1),
            _ => {}
        }
        max = max.max(depth);
    }
    max
}

/// What is wrong at a syntax error, in our words: the library's message
/// speaks of tokens and changes between versions.
fn syntax_message(text: &str, pos: Pos, depth: usize) -> String {
    const ALLOWED: &str = "allowed: `key: value` lines and `- item` lists indented with spaces, flow `[...]`/`{...}` and quotes closed";
    // The parser may stop at the end of the line before the tab's.
    let mut lines = text.lines().skip(pos.line.saturating_sub(1)).take(2);
    if lines.any(|l| l.chars().take_while(|c| c.is_whitespace()).any(|c| c == '\t')) {
        return format!(
            "a tab in the indentation cannot be read as YAML; {ALLOWED} (tabs are not indentation)"
        );
    }
    if depth + 1 >= MAX_DEPTH {
        return format!(
            "nesting deeper than {MAX_DEPTH} levels; allowed: at most {MAX_DEPTH} (a manifest needs about 6)"
        );
    }
    format!("this line cannot be read as YAML; {ALLOWED}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_positions_and_links() {
        let text = "a: &x [1, {b: c}]\nd:\n  - *x\n  - e: f\n";
        let tree = walk(text).expect("walks");
        assert_eq!(tree.get("a[1].b").map(|n| n.start.pos), Some(Pos { line: 1, column: 15 }));
        assert_eq!(tree.get("d[1]").map(|n| n.first.pos), Some(Pos { line: 4, column: 5 }));
        let Some(Node { kind: Kind::Alias(target), .. }) = tree.get("d[0]") else { panic!("alias") };
        assert!(tree.nodes[*target].anchored);
    }

    #[test]
    fn syntax_errors_name_the_enclosing_key_in_our_words() {
        let cases = [
            ("version: 1\ntargets: [\n", "targets", 3),
            ("a: 1\n b: 2\n", DOCUMENT, 2),
            ("x:\n  y: [1, 2\n  z: 3\n", "x.y", 3),
            ("a: 1\na: 2\n", "a", 2),
            ("x:\n  \"\": [\n", "x.\"\"", 3),
        ];
        for (text, path, line) in cases {
            let r = walk(text).expect_err(text);
            assert_eq!((r.path.as_str(), r.pos.line), (path, line), "{text:?}: {r:?}");
            assert!(r.message.contains("allowed:"), "{r:?}");
        }
    }

    #[test]
    fn an_alias_inside_its_own_anchor_is_refused() {
        let r = walk("a: &x [*x]\n").expect_err("loop");
        assert_eq!(r.path, "a");
        assert!(r.message.contains("never end"), "{r:?}");
    }
}
