//! Editing one target of a manifest in place: `set` pins a target to an
//! image, `unset` removes a target.
//!
//! The manifest is a file people write and comment, so an edit must not
//! reformat it: re-serialising through serde would drop every comment and
//! reorder keys. Instead the edit finds the exact bytes of one scalar (or
//! the lines of one entry) in the shared event walk ([`super::yaml`], the
//! same one that positions validation messages) and splices text
//! there, leaving every other byte alone. Each edit is then proven: the
//! result is validated again and must equal the old manifest with exactly
//! that one change, or nothing is returned.
//!
//! Both functions are pure (text in, text out); [`super::write::update`]
//! reads, locks and writes the file around them.

use yaml_rust2::scanner::TScalarStyle;
use yaml_rust2::Yaml;

use super::yaml::Kind;
use super::{Manifest, ManifestError, Pos, Source, Target, Want};
use crate::reference::{ImageRef, RefError};

/// Why a manifest edit was refused. Nothing is written when one occurs.
#[derive(Debug, thiserror::Error)]
pub enum EditError {
    /// The image given is not a valid reference.
    #[error("cannot set `{target}` to `{image}`: {source}")]
    InvalidImage {
        /// The target as given.
        target: String,
        /// The image as given.
        image: String,
        /// What is wrong with it (boxed: the error stays small).
        #[source]
        source: Box<RefError>,
    },
    /// The manifest is invalid before the edit.
    #[error("{source}\nerror: the manifest is invalid as it stands; fix it before editing it")]
    Invalid {
        /// Every problem, with positions.
        #[source]
        source: ManifestError,
    },
    /// No target is named like that.
    #[error(
        "{origin}: no target `{target}`; name a target as `plan` shows it (a container name, or `label KEY=VALUE`); the targets are: {known}"
    )]
    UnknownTarget {
        /// The manifest.
        origin: String,
        /// The target as given.
        target: String,
        /// The targets the manifest has, comma-separated.
        known: String,
    },
    /// The target follows a semver range; it has no fixed image to replace.
    #[error(
        "{origin}:{}:{}: `{target}` follows a semver range (`track:`); `set` pins a fixed image and does not replace `track:`; change it to `image: REF` by hand",
        pos.line, pos.column
    )]
    Tracked {
        /// The manifest.
        origin: String,
        /// The target as given.
        target: String,
        /// Where its `track` is.
        pos: Pos,
    },
    /// The image is outside `policy.allowed_images`.
    #[error(
        "{origin}:{}:{}: `{image}` is outside policy.allowed_images [{patterns}]: no pattern matches its repository {repository}",
        pos.line, pos.column
    )]
    Refused {
        /// The manifest.
        origin: String,
        /// The image as given.
        image: String,
        /// The normalised repository the patterns were matched against.
        repository: String,
        /// The patterns of `policy.allowed_images`, comma-separated.
        patterns: String,
        /// Where `policy.allowed_images` is.
        pos: Pos,
    },
    /// The value is written in a way this edit does not rewrite safely.
    #[error("{origin}:{}:{}: {path}: cannot edit in place: {reason}; edit the file by hand", pos.line, pos.column)]
    NotInPlace {
        /// The manifest.
        origin: String,
        /// The node, such as `targets[1].image`.
        path: String,
        /// Where it is.
        pos: Pos,
        /// What is in the way.
        reason: String,
    },
    /// The edited text did not validate to the expected manifest (a bug).
    #[error("{origin}: the edited manifest did not check out ({reason}); nothing was written")]
    Unverified {
        /// The manifest.
        origin: String,
        /// What differed.
        reason: String,
    },
}

/// Pins the target named `target` (`web`, or `label tier=edge`, as `plan`
/// shows it) to `image`, changing only the bytes of its `image:` value.
///
/// Quoting is kept (`'…'` stays single-quoted, `"…"` double-quoted); a plain
/// value stays plain unless the new one would read as something other than
/// a string. A comment after the value keeps its column when there is room.
/// Refuses an invalid image, an unknown target, a `track:` target, an image
/// outside `policy.allowed_images`, and a manifest that is already invalid.
pub fn set_image(text: &str, origin: &str, target: &str, image: &str) -> Result<String, EditError> {
    keeping_bom(text, |body| set_image_in(body, origin, target, image))
}

fn set_image_in(text: &str, origin: &str, target: &str, image: &str) -> Result<String, EditError> {
    let new = ImageRef::parse(image).map_err(|source| EditError::InvalidImage {
        target: target.to_string(),
        image: image.to_string(),
        source: Box::new(source),
    })?;
    let (src, before) = load(origin, text)?;
    let found = find(&before, target)?;
    let path = format!("targets[{}]", found.index);
    if let Want::Track { .. } = found.want {
        let pos = src.pos(&format!("{path}.track"));
        return Err(EditError::Tracked { origin: origin.to_string(), target: target.to_string(), pos });
    }
    if !before.policy.allows(&new) {
        let patterns = before.policy.allowed_images.iter().flatten().map(ToString::to_string);
        return Err(EditError::Refused {
            origin: origin.to_string(),
            image: image.to_string(),
            repository: new.name(),
            patterns: patterns.collect::<Vec<_>>().join(", "),
            pos: src.pos("policy.allowed_images"),
        });
    }
    let path = format!("{path}.image");
    let not_in_place = not_in_place(origin, &src, &path);
    let Some(node) = src.tree().get(&path) else { return Err(not_in_place("no such node")) };
    let Kind::Scalar { value, style, tag: None } = &node.kind else {
        return Err(not_in_place(
            "the value is an alias (`*name`), a collection or tagged (`!tag`), not a plain value",
        ));
    };
    if node.anchored {
        return Err(not_in_place("the value carries an anchor (`&name`) that other nodes may share"));
    }
    let start = byte_offset(text, node.start.index);
    let end = start + raw_len(&text[start..], value, *style).map_err(|e| not_in_place(&e))?;
    let out = splice_keeping_comment(text, start, end, &render(image, *style));
    let mut expected = before.clone();
    expected.targets[found.index].want = Want::Image(new);
    check(origin, &out, &expected)?;
    Ok(out)
}

/// The refusal for an edit that cannot be made in place at `path`.
fn not_in_place<'a>(origin: &'a str, src: &'a Source, path: &'a str) -> impl Fn(&str) -> EditError + 'a {
    move |reason| EditError::NotInPlace {
        origin: origin.to_string(),
        path: path.to_string(),
        pos: src.pos(path),
        reason: reason.to_string(),
    }
}

/// The image the target named `target` is pinned to; `None` for a target
/// that tracks a range (`track:`). The fleet server uses it to tell which
/// agents a campaign left pinned to its image.
pub fn pinned(text: &str, origin: &str, target: &str) -> Result<Option<String>, EditError> {
    let body = text.strip_prefix(super::source::BOM).unwrap_or(text);
    let (_, manifest) = load(origin, body)?;
    Ok(match &find(&manifest, target)?.want {
        Want::Image(r) => Some(r.familiar()),
        Want::Track { .. } => None,
    })
}

/// Removes the target named `target` from the manifest: the lines of its
/// entry, the comment lines directly above it at the dash's indentation
/// (they describe it), and a blank line left doubled. Refuses a `targets`
/// list written as a flow sequence (`targets: [...]`), which has no lines of
/// its own to remove.
pub fn unset(text: &str, origin: &str, target: &str) -> Result<String, EditError> {
    keeping_bom(text, |body| unset_in(body, origin, target))
}

/// Edits the text after a leading byte-order mark (positions are counted
/// without it, as the scanner does) and puts the mark back.
fn keeping_bom(
    text: &str,
    edit: impl FnOnce(&str) -> Result<String, EditError>,
) -> Result<String, EditError> {
    match text.strip_prefix(super::source::BOM) {
        Some(body) => edit(body).map(|out| format!("{}{out}", super::source::BOM)),
        None => edit(text),
    }
}

fn unset_in(text: &str, origin: &str, target: &str) -> Result<String, EditError> {
    let (src, before) = load(origin, text)?;
    let index = find(&before, target)?.index;
    let path = format!("targets[{index}]");
    let not_in_place = not_in_place(origin, &src, &path);
    let nodes = src.tree();
    let seq = nodes.get("targets").ok_or_else(|| not_in_place("`targets` not found"))?;
    if text[byte_offset(text, seq.start.index)..].starts_with('[') {
        return Err(not_in_place("`targets` is a flow sequence `[...]`, whose entries share lines"));
    }
    if text.replace("\r\n", "\n").contains('\r') {
        return Err(not_in_place("the file uses bare carriage returns as line breaks"));
    }
    let item = nodes.get(&path).ok_or_else(|| not_in_place("no such node"))?;
    // A block entry starts at its first key, a flow one (`- {…}`) at `{`.
    let start = byte_offset(text, item.first.index.min(item.start.index));
    let lines = Lines::new(text);
    let (from, to) = entry_lines(&lines, text, start).map_err(|e| not_in_place(&e))?;
    let out = format!("{}{}", &text[..lines.start(from)], &text[lines.start(to)..]);
    let mut expected = before;
    expected.targets.remove(index);
    for (i, t) in expected.targets.iter_mut().enumerate() {
        t.index = i;
    }
    check(origin, &out, &expected)?;
    Ok(out)
}

/// Scans and validates `text`, keeping the source for positions.
fn load(origin: &str, text: &str) -> Result<(Source, Manifest), EditError> {
    let src = Source::from_text(origin, text).map_err(|source| EditError::Invalid { source })?;
    let manifest = Manifest::from_source(&src).map_err(|source| EditError::Invalid { source })?;
    Ok((src, manifest))
}

/// The target `plan` would show as `name`.
fn find<'m>(manifest: &'m Manifest, name: &str) -> Result<&'m Target, EditError> {
    let wanted = name.trim();
    manifest.targets.iter().find(|t| t.select.to_string() == wanted).ok_or_else(|| {
        let known: Vec<String> = manifest.targets.iter().map(|t| format!("`{}`", t.select)).collect();
        EditError::UnknownTarget {
            origin: manifest.origin.clone(),
            target: name.to_string(),
            known: if known.is_empty() { "none".to_string() } else { known.join(", ") },
        }
    })
}

/// Validates the edited text and requires it to be exactly `expected`.
fn check(origin: &str, out: &str, expected: &Manifest) -> Result<(), EditError> {
    let unverified = |reason: String| EditError::Unverified { origin: origin.to_string(), reason };
    let after = Manifest::parse(origin, out).map_err(|e| unverified(format!("it is invalid: {e}")))?;
    if &after != expected {
        return Err(unverified("it differs from the intended change in more than the edited target".into()));
    }
    Ok(())
}

/// The byte offset of the `chars`-th character.
fn byte_offset(text: &str, chars: usize) -> usize {
    text.char_indices().nth(chars).map_or(text.len(), |(i, _)| i)
}

/// The length in bytes of the scalar token at the start of `rest` whose
/// value is `value`, for the single-line forms this edit rewrites. The
/// token must read exactly as `value` would be written, so a multi-line,
/// escaped or block scalar is refused rather than guessed at.
fn raw_len(rest: &str, value: &str, style: TScalarStyle) -> Result<usize, String> {
    let raw = match style {
        TScalarStyle::Plain => value.to_string(),
        TScalarStyle::SingleQuoted => format!("'{}'", value.replace('\'', "''")),
        TScalarStyle::DoubleQuoted => format!("\"{value}\""),
        TScalarStyle::Literal | TScalarStyle::Folded => {
            return Err("the value is a block scalar (`|` or `>`)".into());
        }
    };
    if raw.contains('\n') || !rest.starts_with(&raw) {
        return Err("the value spans lines or uses escapes".into());
    }
    Ok(raw.len())
}

/// The new value in the old one's quoting; plain only when YAML reads it
/// back as this very string.
fn render(image: &str, style: TScalarStyle) -> String {
    match style {
        TScalarStyle::SingleQuoted => format!("'{}'", image.replace('\'', "''")),
        TScalarStyle::Plain if plain_is_safe(image) => image.to_string(),
        _ => format!("\"{}\"", image.replace('\\', "\\\\").replace('"', "\\\"")),
    }
}

/// True when `s` written plain is read back as the string `s` in block and
/// flow context alike, by YAML 1.2 (serde_yaml, yaml-rust2) and by YAML 1.1
/// readers (`1:30` is a number there, `on` a boolean).
fn plain_is_safe(s: &str) -> bool {
    const YAML11_WORDS: [&str; 11] = ["y", "n", "yes", "no", "on", "off", "true", "false", "null", "~", ""];
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && s.chars().all(|c| c.is_ascii_alphanumeric() || "._-/:@+".contains(c))
        && !s.ends_with(':')
        && !s.chars().all(|c| c.is_ascii_digit() || "._:+-eE".contains(c))
        && !YAML11_WORDS.contains(&s.to_ascii_lowercase().as_str())
        && matches!(Yaml::from_str(s), Yaml::String(_))
}

/// Replaces `text[start..end]` with `new`. When only blanks and a comment
/// follow on the line, the comment keeps its column if there is room.
fn splice_keeping_comment(text: &str, start: usize, end: usize, new: &str) -> String {
    let rest = &text[end..];
    let blanks = rest.len() - rest.trim_start_matches(' ').len();
    let old_width = text[start..end].chars().count();
    let new_width = new.chars().count();
    let gap = if blanks > 0 && rest[blanks..].starts_with('#') {
        (blanks + old_width).saturating_sub(new_width).max(1)
    } else {
        blanks
    };
    format!("{}{new}{}{}", &text[..start], " ".repeat(gap), &rest[blanks..])
}

/// Line starts of a text, for line-wise removal.
struct Lines {
    starts: Vec<usize>,
    len: usize,
}

impl Lines {
    fn new(text: &str) -> Self {
        let starts = std::iter::once(0).chain(text.match_indices('\n').map(|(i, _)| i + 1));
        let mut starts: Vec<usize> = starts.collect();
        if starts.last() == Some(&text.len()) && !text.is_empty() {
            starts.pop();
        }
        Self { starts, len: text.len() }
    }

    /// Number of lines.
    fn count(&self) -> usize {
        self.starts.len()
    }

    /// Byte offset where line `n` (0-based) starts; the text's end past the last line.
    fn start(&self, n: usize) -> usize {
        self.starts.get(n).copied().unwrap_or(self.len)
    }

    /// The line holding byte `at`.
    fn of(&self, at: usize) -> usize {
        self.starts.partition_point(|&s| s <= at).saturating_sub(1)
    }

    /// Line `n` without its line break.
    fn text<'t>(&self, text: &'t str, n: usize) -> &'t str {
        text[self.start(n)..self.start(n + 1)].trim_end_matches(['\n', '\r'])
    }
}

/// What a line holds, for deciding where an entry ends.
#[derive(PartialEq, Eq)]
enum LineKind {
    Blank,
    /// A comment-only line at this indentation.
    Comment(usize),
    /// YAML content at this indentation.
    Content(usize),
}

fn line_kind(line: &str) -> LineKind {
    let body = line.trim_start_matches(' ');
    let indent = line.len() - body.len();
    match body.trim_end() {
        "" => LineKind::Blank,
        b if b.starts_with('#') => LineKind::Comment(indent),
        _ => LineKind::Content(indent),
    }
}

/// The lines `[from, to)` of the block sequence entry whose node starts at
/// byte `start`: its dash line, the lines indented under it (comments
/// included, up to its last line of content), the comment lines directly
/// above it at the dash's indentation, and one blank line if removing the
/// entry would leave two in a row.
fn entry_lines(lines: &Lines, text: &str, start: usize) -> Result<(usize, usize), String> {
    let dash = lines.of(start);
    let prefix = &text[lines.start(dash)..start];
    let column = prefix.len() - prefix.trim_start_matches(' ').len();
    if prefix
        .trim_start_matches(' ')
        .strip_prefix('-')
        .is_none_or(|after| !after.trim_matches(' ').is_empty())
    {
        return Err("the entry does not start on its own `- ` line".into());
    }
    let mut to = dash + 1;
    let mut last = dash;
    while to < lines.count() {
        match line_kind(lines.text(text, to)) {
            LineKind::Content(indent) if indent <= column => break,
            LineKind::Content(_) => last = to,
            LineKind::Comment(indent) if indent > column => last = to,
            LineKind::Comment(_) | LineKind::Blank => {}
        }
        to += 1;
    }
    let mut from = dash;
    while from > 0 && line_kind(lines.text(text, from - 1)) == LineKind::Comment(column) {
        from -= 1;
    }
    let mut to = last + 1;
    let blank = |n: usize| n < lines.count() && line_kind(lines.text(text, n)) == LineKind::Blank;
    let first_in_list = from > 0
        && !lines.text(text, from - 1).trim_start().starts_with('-')
        && matches!(line_kind(lines.text(text, from - 1)), LineKind::Content(i) if i <= column);
    if blank(to) && (from == 0 || blank(from - 1) || first_in_list) {
        to += 1;
    } else if to >= lines.count() && from > 0 && blank(from - 1) {
        // The last entry of the file: do not leave a blank line at its end.
        from -= 1;
    }
    Ok((from, to))
}

#[cfg(test)]
mod tests;
