//! The words every stage of reading a manifest shares: a position in the
//! text, the limits the walk enforces, the path of the document as a
//! whole, and how a value is quoted in a message. Below the walker
//! ([`super::yaml`]), the reader ([`super::source`]), the typed reading
//! ([`super::de`]) and validation, so none of them imports another back.

/// The deepest nesting accepted (a manifest needs about 6 levels).
pub const MAX_DEPTH: usize = 32;
/// The most aliases (`*name`) accepted in one manifest.
pub const MAX_ALIASES: usize = 100;

/// A line and column, both 1-based.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, serde::Serialize)]
pub struct Pos {
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub column: usize,
}

/// The path of a problem that sits in no field: the document as a whole.
pub const DOCUMENT: &str = "(document)";

/// `s` for a message: at most 64 characters of it, and its length when cut.
pub(crate) fn shown(s: &str) -> String {
    let n = s.chars().count();
    if n <= 64 {
        s.to_string()
    } else {
        format!("{}… ({n} characters)", s.chars().take(64).collect::<String>())
    }
}
