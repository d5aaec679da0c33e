//! What the controller and its Git helper (`container-upgrader-git`, the
//! process that runs the Git client) say to each other, as JSON: the
//! controller writes one [`Request`] to the helper's stdin — the token too,
//! so no secret is on a command line or in the environment — and reads one
//! [`Response`] from its stdout.

use serde::{Deserialize, Serialize};

/// The name of the helper binary, looked for next to the controller's.
pub const HELPER: &str = "container-upgrader-git";

/// One look.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Request {
    /// The repository's URL.
    pub url: String,
    /// A branch, a tag or a full ref name; `None`: the remote's HEAD.
    pub reference: Option<String>,
    /// The manifest's path in the repository.
    pub path: String,
    /// `user:token` or a token, sent as HTTP Basic.
    pub token: Option<String>,
    /// The largest manifest read.
    pub max_bytes: u64,
    /// An `allowed_signers` file: only commits signed by its keys apply.
    pub signers_file: Option<std::path::PathBuf>,
    /// Where the ref pointed at the last look that read the file.
    pub last: Option<Head>,
    /// A directory the helper may fill and empty.
    pub scratch: std::path::PathBuf,
}

/// What the look found, or why it failed.
#[derive(Debug, Serialize, Deserialize)]
pub enum Response {
    /// The look's result.
    Ok(Look),
    /// Why the repository could not be looked at.
    Failed(String),
}

/// Where the ref points, as the remote advertised it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Head {
    /// The full ref name that matched (`refs/heads/main`, `refs/tags/v2`).
    pub name: String,
    /// The object it names (a commit, or an annotated tag's object).
    pub id: String,
}

/// The manifest as one commit holds it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Fetched {
    /// Where the ref pointed.
    pub head: Head,
    /// The commit (the tag peeled).
    pub commit: String,
    /// `Name <email>` of the commit's author.
    pub author: String,
    /// The commit's author time, RFC 3339.
    pub authored_at: String,
    /// Who signed it (the signers file's principals), when signers are
    /// required.
    pub signer: Option<String>,
    /// The file's text, or why this commit's file cannot be applied (no
    /// such file, too large, not UTF-8, not signed by a listed key).
    pub text: Result<String, String>,
}

/// A look's result.
#[derive(Debug, Serialize, Deserialize)]
pub enum Look {
    /// The ref points where it pointed last time: nothing fetched.
    Unchanged,
    /// The ref moved; here is the file at its commit.
    Changed(Box<Fetched>),
}
