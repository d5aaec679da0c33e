//! The names an op gives the containers it builds around the one it
//! upgrades — `NAME--cu-backup-SUFFIX`, `NAME--cu-new-SUFFIX`,
//! `NAME--cu-helper-SUFFIX` — and the helper label: written and read here,
//! below both the journal (which checks a record names only such
//! containers) and [`super::scaffold`] (which tells them from the
//! operator's own).

/// Label on a helper container: the name of the container it works on.
pub const HELPER_LABEL: &str = "container-upgrader.helper-for";

/// What separates a container's name from the part an op adds to it.
const MARK: &str = "--cu-";
/// The longest suffix [`OpId::suffix`](crate::types::OpId::suffix) makes.
const MAX_SUFFIX: usize = 12;

/// The part a container plays in an op, as its name says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    /// The old container, stopped and kept for a rollback.
    Backup,
    /// The new container before it takes the name over.
    New,
    /// The helper that swaps the controller's own container.
    Helper,
}

impl Part {
    fn word(self) -> &'static str {
        match self {
            Part::Backup => "backup",
            Part::New => "new",
            Part::Helper => "helper",
        }
    }

    /// The name of `container`'s container playing this part in the op
    /// whose suffix is `suffix`.
    pub fn name(self, container: &str, suffix: &str) -> String {
        format!("{container}{MARK}{}-{suffix}", self.word())
    }
}

/// The backup name of `container` during op `suffix`.
pub fn backup_name(container: &str, suffix: &str) -> String {
    Part::Backup.name(container, suffix)
}

/// The temporary name of the new container during op `suffix`.
pub fn temp_name(container: &str, suffix: &str) -> String {
    Part::New.name(container, suffix)
}

/// The name of the helper that swaps `container` in op `suffix`.
pub fn helper_name(container: &str, suffix: &str) -> String {
    Part::Helper.name(container, suffix)
}

/// Reads a name the way [`Part::name`] writes it: the container it stands
/// for and the part it plays; `None` for any other name.
pub fn parse_name(name: &str) -> Option<(&str, Part)> {
    // The last mark: a backup of a container whose own name has the mark
    // (a leftover of an earlier op) is still a backup.
    let (base, rest) = name.rsplit_once(MARK)?;
    let (word, suffix) = rest.split_once('-')?;
    let part = [Part::Backup, Part::New, Part::Helper].into_iter().find(|p| p.word() == word)?;
    let suffix_ok =
        suffix.len() <= MAX_SUFFIX && suffix.bytes().all(|b| b.is_ascii_digit() || b.is_ascii_lowercase());
    (!base.is_empty() && suffix_ok).then_some((base, part))
}

/// The name a swap's backup or temporary container stands for (`web` for
/// `web--cu-backup-…`); `None` for any other name, helpers' included.
pub fn swapped_name(name: &str) -> Option<&str> {
    parse_name(name).and_then(|(base, part)| (part != Part::Helper).then_some(base))
}

/// True when a container with `name` and `labels` is an op's backup,
/// temporary or helper by its name or labels alone (no journal needed).
pub fn marked<'a>(name: &str, mut labels: impl Iterator<Item = (&'a str, &'a str)>) -> bool {
    parse_name(name).is_some() || labels.any(|(k, _)| k == HELPER_LABEL)
}
