//! One look at the repository (blocking; run it on a blocking thread):
//! ask the remote where the ref points, and only when that moved since
//! the last look, fetch that one commit (shallow, depth 1, only the ref)
//! into a fresh bare repository and read the manifest at the path.
//!
//! A fresh repository per change keeps nothing between looks that could
//! go stale: a force-pushed ref, a deleted and re-created branch or a
//! rewritten history are all just "the ref points elsewhere now". The
//! manifest repository is small; a look that finds the ref where it was
//! transfers the ref advertisement and nothing else.

use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use gix::bstr::ByteSlice;
use gix::protocol::transport::client::blocking_io::http;
use gix::remote::Direction;

pub use super::wire::{Fetched, Head, Look, Request};

/// The longest one HTTP request to the Git server may take …
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// … and to connect.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// What to look at: the controller's request, with what the helper made
/// of it.
pub struct Source<'a> {
    /// The URL, ref, path, token and size limit asked for.
    pub request: &'a Request,
    /// Trust only the roots bundled in the binary (no system CA store).
    pub bundled_roots: bool,
    /// Apply only commits signed by one of these keys.
    pub signers: Option<super::signers::Signers>,
}

/// Looks at `source`, in the request's scratch directory (filled, then
/// emptied); the request's `last` is where the ref pointed at the last
/// look that read the file.
pub fn look(source: &Source) -> Result<Look, String> {
    let scratch = source.request.scratch.as_path();
    let _ = std::fs::remove_dir_all(scratch);
    std::fs::create_dir_all(scratch).map_err(|e| format!("{}: {e}", scratch.display()))?;
    let result = look_in(source, source.request.last.as_ref(), scratch);
    let _ = std::fs::remove_dir_all(scratch);
    result
}

fn look_in(source: &Source, last: Option<&Head>, scratch: &Path) -> Result<Look, String> {
    let repo =
        gix::init_bare(scratch.join("repo.git")).map_err(|e| format!("preparing a repository: {e}"))?;
    let specs = refspecs(source.request.reference.as_deref());
    let remote = repo
        .remote_at(source.request.url.as_str())
        .map_err(|e| format!("the URL: {e}"))?
        .with_refspecs(specs.iter().map(String::as_str), Direction::Fetch)
        .map_err(|e| format!("--git-ref: {e}"))?;
    // Asked for credentials: the server answered 401 to what was sent.
    let asked = std::cell::Cell::new(false);
    let connection = remote
        .connect(Direction::Fetch)
        .map_err(|e| format!("cannot reach the repository: {}", chain(&e)))?
        // No credential helper or prompt: the token file, or nothing.
        .with_credentials(|_| {
            asked.set(true);
            Ok(None)
        })
        .with_transport_options(Box::new(transport_options(source)));
    let interrupt = AtomicBool::new(false);
    let prepare = connection
        .prepare_fetch(gix::progress::Discard, gix::remote::ref_map::Options::default())
        .map_err(|e| match (asked.get(), &source.request.token) {
            (true, Some(_)) => {
                "the repository refused the token (HTTP 401): check --git-token-file (TOKEN, or USER:TOKEN)"
                    .to_string()
            }
            (true, None) => "the repository needs credentials (HTTP 401): give --git-token-file".to_string(),
            (false, _) => format!("cannot list the repository's refs: {}", chain(&e)),
        })?;
    let head = matched(prepare.ref_map(), source.request.reference.as_deref())?;
    if last == Some(&head) {
        return Ok(Look::Unchanged);
    }
    prepare
        .with_shallow(gix::remote::fetch::Shallow::DepthAtRemote(
            std::num::NonZeroU32::MIN, // depth 1
        ))
        .receive(gix::progress::Discard, &interrupt)
        .map_err(|e| format!("fetching {}: {}", head.name, chain(&e)))?;
    read(&repo, head, source).map(|f| Look::Changed(Box::new(f)))
}

/// The refspecs that fetch `reference`: the remote's HEAD, a full ref
/// name, or a short name as a branch or a tag.
fn refspecs(reference: Option<&str>) -> Vec<String> {
    match reference {
        None => vec!["+HEAD:refs/remotes/origin/HEAD".into()],
        Some(full) if full.starts_with("refs/") => vec![format!("+{full}:{full}")],
        Some(short) => {
            vec![
                format!("+refs/heads/{short}:refs/remotes/origin/{short}"),
                format!("+refs/tags/{short}:refs/tags/{short}"),
            ]
        }
    }
}

/// Where the remote says `reference` points; a branch wins over a tag of
/// the same name, as in `git fetch`.
fn matched(map: &gix::remote::fetch::RefMap, reference: Option<&str>) -> Result<Head, String> {
    let mut found: Vec<Head> = map
        .mappings
        .iter()
        .filter_map(|m| match &m.remote {
            gix::remote::fetch::refmap::Source::Ref(r) => {
                let (name, id, _) = r.unpack();
                Some(Head { name: name.to_str_lossy().into_owned(), id: id?.to_hex().to_string() })
            }
            gix::remote::fetch::refmap::Source::ObjectId(id) => {
                Some(Head { name: "HEAD".into(), id: id.to_hex().to_string() })
            }
        })
        .collect();
    found.sort_by_key(|h| !h.name.starts_with("refs/heads/"));
    found.into_iter().next().ok_or_else(|| match reference {
        None => "the repository has no HEAD (is it empty?)".to_string(),
        Some(r) => format!("the repository has no branch or tag `{r}` (deleted?)"),
    })
}

/// The file at the source's path in the commit `head` names, checked.
fn read(repo: &gix::Repository, head: Head, source: &Source) -> Result<Fetched, String> {
    let id = gix::ObjectId::from_hex(head.id.as_bytes()).map_err(|e| format!("{}: {e}", head.id))?;
    let commit = repo
        .find_object(id)
        .map_err(|e| format!("{}: {e}", head.id))?
        .peel_to_commit()
        .map_err(|e| format!("{} names no commit: {e}", head.name))?;
    let commit_id = commit.id.to_hex().to_string();
    let author = commit.author().map_err(|e| format!("commit {commit_id}: its author: {e}"))?;
    let authored_at = author
        .time()
        .ok()
        .and_then(|t| u64::try_from(t.seconds).ok())
        .map(|s| {
            humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + Duration::from_secs(s)).to_string()
        })
        .unwrap_or_default();
    let author = format!("{} <{}>", author.name.to_str_lossy(), author.email.to_str_lossy());
    let signed = match &source.signers {
        None => Ok(None),
        Some(signers) => signature(&commit, signers).map(Some),
    };
    let (signer, text) = match signed {
        Ok(signer) => (signer, file(repo, &commit, &source.request.path, source.request.max_bytes)),
        Err(why) => (None, Err(why)),
    };
    let text = text.map_err(|why| format!("commit {commit_id}: {why}"));
    Ok(Fetched { head, commit: commit_id, author, authored_at, signer, text })
}

/// Who signed `commit`, if one of `signers` did.
fn signature(commit: &gix::Commit<'_>, signers: &super::signers::Signers) -> Result<String, String> {
    let committed = commit
        .committer()
        .ok()
        .and_then(|c| c.time().ok())
        .and_then(|t| u64::try_from(t.seconds).ok())
        .unwrap_or(0);
    match commit.signature().map_err(|e| format!("its signature cannot be read: {e}"))? {
        None => {
            Err("it is not signed, and --git-verify-ssh-signers requires a signature by a listed key".into())
        }
        Some((armored, payload)) => signers.verify(armored.as_ref(), &payload.to_bstring(), committed),
    }
}

/// The text of the file at `path` in `commit`.
fn file(
    repo: &gix::Repository,
    commit: &gix::Commit<'_>,
    path: &str,
    max_bytes: u64,
) -> Result<String, String> {
    let tree = commit.tree().map_err(|e| format!("its tree: {e}"))?;
    let entry = tree
        .lookup_entry_by_path(path)
        .map_err(|e| format!("{path}: {e}"))?
        .ok_or_else(|| format!("it has no file {path}"))?;
    if !entry.mode().is_blob() {
        return Err(format!("{path} is not a file"));
    }
    let header = repo.find_header(entry.oid()).map_err(|e| format!("{path}: {e}"))?;
    if header.size() > max_bytes {
        return Err(format!("{path} is {} bytes; a manifest may have at most {max_bytes}", header.size()));
    }
    let blob = entry.object().map_err(|e| format!("{path}: {e}"))?;
    String::from_utf8(blob.data.clone()).map_err(|_| format!("{path} is not UTF-8"))
}

/// Timeouts, the roots to trust, and the token as HTTP Basic.
fn transport_options(source: &Source) -> http::Options {
    let bundled = source.bundled_roots;
    let authorization = source.request.token.as_ref().map(|token| {
        use base64::Engine;
        let pair = if token.contains(':') { token.clone() } else { format!("x-access-token:{token}") };
        format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(pair))
    });
    let backend = http::reqwest::Options {
        configure_client: Some(Box::new(move |builder: reqwest::blocking::ClientBuilder| {
            let builder = builder.timeout(REQUEST_TIMEOUT).connect_timeout(CONNECT_TIMEOUT);
            Ok(if bundled {
                builder.tls_certs_only(
                    crate::tls::bundled().filter_map(|der| reqwest::Certificate::from_der(der).ok()),
                )
            } else {
                builder
            })
        })),
        configure_request: authorization.map(|value| {
            Box::new(move |request: &mut reqwest::blocking::Request| {
                if let Ok(mut value) = reqwest::header::HeaderValue::from_str(&value) {
                    value.set_sensitive(true);
                    request.headers_mut().insert(reqwest::header::AUTHORIZATION, value);
                }
                Ok(())
            }) as Box<http::reqwest::ConfigureRequestFn>
        }),
    };
    http::Options { backend: Some(Arc::new(Mutex::new(backend))), ..http::Options::default() }
}

/// An error and its sources, joined: gix's outer messages alone often say
/// only which step failed.
fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_short_ref_is_fetched_as_a_branch_or_a_tag_and_a_full_one_as_itself() {
        assert_eq!(refspecs(None), ["+HEAD:refs/remotes/origin/HEAD"]);
        assert_eq!(refspecs(Some("refs/tags/v2")), ["+refs/tags/v2:refs/tags/v2"]);
        assert_eq!(
            refspecs(Some("prod")),
            ["+refs/heads/prod:refs/remotes/origin/prod", "+refs/tags/prod:refs/tags/prod"]
        );
    }
}
