//! `container-upgrader-git`: the controller's Git helper (`run --git`).
//! The controller starts it for each look at the repository and talks JSON
//! over its stdin and stdout (see `container_upgrader::gitsource::wire`);
//! it is not meant to be run by hand. `--check-signers FILE` checks an
//! `allowed_signers` file (exit 0, or 2 with the problem on stderr).

use std::io::{Read, Write};
use std::process::ExitCode;

use container_upgrader::gitsource::{helper, wire};

/// The largest request read (a request is a few hundred bytes).
const MAX_REQUEST: u64 = 64 * 1024;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.as_slice() {
        [flag, path] if flag == "--check-signers" => match helper::check_signers(path.as_ref()) {
            Ok(()) => ExitCode::SUCCESS,
            Err(why) => {
                eprintln!("{why}");
                ExitCode::from(2)
            }
        },
        [] => {
            let mut input = Vec::new();
            if let Err(e) = std::io::stdin().take(MAX_REQUEST).read_to_end(&mut input) {
                eprintln!("reading the request: {e}");
                return ExitCode::from(2);
            }
            let response = match serde_json::from_slice::<wire::Request>(&input) {
                Ok(request) => helper::serve(request),
                Err(e) => wire::Response::Failed(format!("the helper got an unreadable request: {e}")),
            };
            let Ok(text) = serde_json::to_string(&response) else { return ExitCode::from(1) };
            let mut out = std::io::stdout();
            if out.write_all(text.as_bytes()).and_then(|()| out.flush()).is_err() {
                return ExitCode::from(1);
            }
            ExitCode::SUCCESS
        }
        _ => {
            eprintln!("container-upgrader-git is the controller's Git helper (run --git); it takes a request on stdin");
            ExitCode::from(2)
        }
    }
}
