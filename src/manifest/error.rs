//! What is wrong with a manifest, and where.

use std::fmt;

use super::text::{Pos, DOCUMENT};

/// One thing wrong with a manifest.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Problem {
    /// Where it is (line 0 when the problem is with the file as a whole).
    pub pos: Pos,
    /// The field path, such as `targets[1].image`; for a problem in no
    /// field, the nearest enclosing mapping key's, or `(document)`.
    pub path: String,
    /// What was found and what is allowed.
    pub message: String,
}

/// A manifest that cannot be used: every problem found, with positions.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ManifestError {
    /// The file (or other origin) the manifest came from.
    pub origin: String,
    /// At least one problem.
    pub problems: Vec<Problem>,
}

impl ManifestError {
    /// An error with a single problem with the document as a whole
    /// (path `(document)`).
    pub fn single(origin: &str, pos: Pos, message: impl Into<String>) -> Self {
        Self {
            origin: origin.to_string(),
            problems: vec![Problem { pos, path: DOCUMENT.to_string(), message: message.into() }],
        }
    }
}

impl fmt::Display for ManifestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.problems.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            if p.pos.line == 0 {
                write!(f, "{}: ", self.origin)?;
            } else {
                write!(f, "{}:{}:{}: ", self.origin, p.pos.line, p.pos.column)?;
            }
            if !p.path.is_empty() && !p.message.starts_with(&p.path) {
                write!(f, "{}: ", p.path)?;
            }
            f.write_str(&p.message)?;
        }
        Ok(())
    }
}

impl std::error::Error for ManifestError {}
