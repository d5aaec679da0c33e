//! The Git helper's side (`container-upgrader-git`): one [`Request`] in,
//! one [`Response`] out. It runs the Git client in its own short-lived
//! process, so the controller, which runs on every host for weeks, neither
//! maps the client's code (its idle footprint stays as it was without Git)
//! nor is taken down by a fault in parsing what a Git server sent.

use super::fetch::{self, Source};
use super::signers::Signers;
use super::wire::{Request, Response};

/// Answers `request`.
pub fn serve(request: Request) -> Response {
    let signers = match &request.signers_file {
        Some(path) => match Signers::read(path) {
            Ok(s) => Some(s),
            Err(why) => return Response::Failed(format!("--git-verify-ssh-signers: {why}")),
        },
        None => None,
    };
    crate::tls::ensure_crypto_provider();
    if let Some(ssh) = &request.ssh {
        // Git's own variables, read by gix when it spawns `ssh`: this
        // process makes one look and exits, and no other thread runs yet.
        std::env::set_var("GIT_SSH_COMMAND", ssh.command());
        std::env::set_var("GIT_SSH_VARIANT", "ssh");
    }
    let source = Source { request: &request, bundled_roots: !crate::tls::system_roots_usable(), signers };
    match fetch::look(&source) {
        Ok(look) => Response::Ok(look),
        Err(why) => Response::Failed(why),
    }
}

/// Whether `path` is a usable `allowed_signers` file (`--check-signers`).
pub fn check_signers(path: &std::path::Path) -> Result<(), String> {
    Signers::read(path).map(|_| ())
}
