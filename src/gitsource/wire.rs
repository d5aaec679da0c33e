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
    /// For an SSH URL: the key and the known hosts `ssh` is run with.
    #[serde(default)]
    pub ssh: Option<Ssh>,
}

/// How the helper runs `ssh` for an SSH URL.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Ssh {
    /// The private key (`ssh -i`).
    pub key: std::path::PathBuf,
    /// The only known_hosts file consulted, strictly.
    pub known_hosts: std::path::PathBuf,
}

impl Ssh {
    /// The command line Git runs for SSH (`GIT_SSH_COMMAND`): no prompt,
    /// no other key or known_hosts file, a bounded connect.
    pub fn command(&self) -> String {
        format!(
            "ssh -i {} -o IdentitiesOnly=yes -o IdentityAgent=none -o BatchMode=yes -o StrictHostKeyChecking=yes \
             -o UserKnownHostsFile={} -o GlobalKnownHostsFile=/dev/null -o ConnectTimeout=10",
            quote(&self.key.to_string_lossy()),
            quote(&self.known_hosts.to_string_lossy()),
        )
    }
}

/// `text` as one POSIX shell word.
fn quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ssh_command_quotes_paths_as_single_shell_words() {
        let ssh = Ssh { key: "/keys/it's here".into(), known_hosts: "/etc/kh".into() };
        let cmd = ssh.command();
        assert!(cmd.starts_with(r"ssh -i '/keys/it'\''s here' "), "{cmd}");
        assert!(cmd.contains("-o UserKnownHostsFile='/etc/kh'"), "{cmd}");
        assert!(cmd.contains("StrictHostKeyChecking=yes") && cmd.contains("BatchMode=yes"), "{cmd}");
    }
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
