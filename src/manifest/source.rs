//! Reading a manifest file safely and knowing where each value sits in it.
//!
//! Every refusal names a field and a position, and the checks that span
//! several fields (a target with both `image` and `track`, a duplicate
//! container) need the position of a path such as `targets[2].image`. This
//! module reads the text within its limits and walks it once with the
//! shared walker ([`super::yaml`]), which records every node by path and
//! refuses deep nesting, alias floods and syntax errors; the typed document
//! is then read from that same tree.

use std::fs::File;
use std::io::Read;
use std::path::Path;

use super::error::{ManifestError, Problem};
use super::yaml::{self, Tree};

/// The largest manifest accepted. Real ones are a few KiB.
pub const MAX_BYTES: u64 = 1024 * 1024;
pub use super::text::{Pos, MAX_ALIASES, MAX_DEPTH};

/// The text of a manifest and the position of every node in it.
#[derive(Debug, Clone)]
pub struct Source {
    /// Where the text came from (a path, or a label such as `<request body>`).
    pub origin: String,
    /// The text itself.
    pub text: String,
    tree: Tree,
}

/// The UTF-8 byte-order mark a manifest may start with.
pub(crate) const BOM: char = '\u{feff}';

impl Source {
    /// Reads `path`, refusing files over [`MAX_BYTES`] without reading them whole.
    pub fn read(path: &Path) -> Result<Self, ManifestError> {
        let origin = path.display().to_string();
        let fail = |message: String| ManifestError::single(&origin, Pos::default(), message);
        let file = File::open(path).map_err(|e| fail(format!("cannot open the manifest: {e}")))?;
        let mut bytes = Vec::new();
        file.take(MAX_BYTES + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| fail(format!("cannot read the manifest: {e}")))?;
        if bytes.len() as u64 > MAX_BYTES {
            return Err(fail(format!(
                "the manifest is larger than the limit of {} KiB; a manifest is a short list of targets",
                MAX_BYTES / 1024
            )));
        }
        let text = String::from_utf8(bytes).map_err(|e| {
            fail(format!(
                "the manifest is not UTF-8 text (invalid byte at offset {})",
                e.utf8_error().valid_up_to()
            ))
        })?;
        Self::scan(origin, text)
    }

    /// Takes text that did not come from a file (an API body, a test).
    pub fn from_text(origin: impl Into<String>, text: impl Into<String>) -> Result<Self, ManifestError> {
        let (origin, text) = (origin.into(), text.into());
        if text.len() as u64 > MAX_BYTES {
            return Err(ManifestError::single(
                &origin,
                Pos::default(),
                format!("the manifest is larger than the limit of {} KiB", MAX_BYTES / 1024),
            ));
        }
        Self::scan(origin, text)
    }

    /// The position of the node at `path` (`targets[1].image`), or of its
    /// nearest recorded ancestor, or the top of the file.
    pub fn pos(&self, path: &str) -> Pos {
        let mut p = path;
        loop {
            if let Some(node) = self.tree.get(p) {
                return node.first.pos;
            }
            match p.rfind(['.', '[']) {
                Some(i) => p = &p[..i],
                None => return Pos { line: 1, column: 1 },
            }
        }
    }

    /// True when the document holds no value at all (empty, or only comments).
    pub fn is_empty_document(&self) -> bool {
        self.tree.root.is_none()
    }

    /// The walked document, for readers that need more than positions.
    pub(crate) fn tree(&self) -> &Tree {
        &self.tree
    }

    fn scan(origin: String, text: String) -> Result<Self, ManifestError> {
        // Editors on Windows start UTF-8 files with a byte-order mark; YAML
        // allows one, and it is not a column.
        let text = match text.strip_prefix(BOM) {
            Some(body) => body.to_string(),
            None => text,
        };
        let tree = yaml::walk(&text).map_err(|r| ManifestError {
            origin: origin.clone(),
            problems: vec![Problem { pos: r.pos, path: r.path, message: r.message }],
        })?;
        Ok(Self { origin, text, tree })
    }

    /// A problem at `path`.
    pub fn problem(&self, path: &str, message: impl Into<String>) -> Problem {
        Problem { pos: self.pos(path), path: path.to_string(), message: message.into() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_positions_of_nested_paths() {
        let text =
            "version: 1\ntargets:\n  - container: web\n    image: nginx:1\n  - selector: {label: \"a=b\"}\n";
        let src = Source::from_text("t.yaml", text).expect("valid");
        assert_eq!(src.pos("version"), Pos { line: 1, column: 10 });
        assert_eq!(src.pos("targets[0].image"), Pos { line: 4, column: 12 });
        assert_eq!(src.pos("targets[1].selector.label"), Pos { line: 5, column: 23 });
        // Unknown paths fall back to the nearest ancestor.
        assert_eq!(src.pos("targets[1].image"), Pos { line: 5, column: 5 });
    }

    #[test]
    fn refuses_deep_nesting_quickly() {
        let text = format!("a: {}{}", "[".repeat(10_000), "]".repeat(10_000));
        let err = Source::from_text("deep.yaml", text).expect_err("too deep").to_string();
        assert!(err.contains("deeper than 32 levels"), "{err}");
        assert!(err.starts_with("deep.yaml:1:"), "{err}");
    }

    #[test]
    fn refuses_alias_floods() {
        let mut text = String::from("a: &a [x]\nb: [");
        text.push_str(&vec!["*a"; 200].join(", "));
        text.push_str("]\n");
        let err = Source::from_text("bomb.yaml", text).expect_err("bomb").to_string();
        assert!(err.contains("more than 100 aliases"), "{err}");
        assert!(err.starts_with("bomb.yaml:2:"), "{err}");
    }

    #[test]
    fn refuses_oversized_input_naming_the_limit() {
        let text = format!("# {}\n", "x".repeat(MAX_BYTES as usize));
        let err = Source::from_text("big.yaml", text).expect_err("too big").to_string();
        assert!(err.contains("limit of 1024 KiB"), "{err}");
    }

    #[test]
    fn an_only_comments_file_is_an_empty_document() {
        let src = Source::from_text("e.yaml", "# nothing here\n\n").expect("scans");
        assert!(src.is_empty_document());
    }
}
