//! `PUT /v1/desired`: replace the whole manifest, or one target's image.
//!
//! Every check runs before the write, against the text the write replaces
//! (read under the store's lock), so a refusal leaves the file untouched
//! and two concurrent pushes cannot interleave.

use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{FromRequest, Request, State};
use axum::http::header::CONTENT_TYPE;
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc::error::TrySendError;

use super::auth::Authorized;
use super::error::{ApiError, BODY_ORIGIN};
use super::{AppState, MAX_BODY};
use crate::manifest::{edit, Manifest, Pos, Problem, Source, Want};
use crate::trigger::Trigger;

/// How long a client may take to send its body.
const BODY_TIMEOUT: Duration = Duration::from_secs(30);

/// What a PUT asks for.
#[derive(Debug)]
pub(super) enum Desired {
    /// Replace the file with this manifest.
    Manifest(String),
    /// Set one target's image.
    Target(SetImage),
}

/// `{"target": "web", "image": "registry/app:2"}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SetImage {
    /// The target, as `set TARGET IMAGE` names it.
    target: String,
    /// The new image reference.
    image: String,
}

/// The success body.
#[derive(Debug, Serialize)]
pub(super) struct Written {
    /// The manifest file written.
    written: String,
    /// How many targets it now has.
    targets: usize,
}

/// What the `Content-Type` says the body is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Yaml,
    Json,
}

/// The media type without parameters, lower-cased: `Application/YAML;
/// charset=utf-8` → `application/yaml`.
fn kind(content_type: Option<&str>) -> Result<Kind, ApiError> {
    let unsupported = |found: &str| ApiError::UnsupportedMediaType { found: found.to_string() };
    let raw = content_type.ok_or_else(|| unsupported("none"))?;
    let essence = raw.split(';').next().unwrap_or(raw).trim().to_ascii_lowercase();
    match essence.as_str() {
        // `application/x-yaml` is the pre-RFC 9512 name many clients still send.
        "application/yaml" | "application/x-yaml" | "text/yaml" | "text/plain" => Ok(Kind::Yaml),
        "application/json" => Ok(Kind::Json),
        _ => Err(unsupported(raw)),
    }
}

impl FromRequest<AppState> for Desired {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, ApiError> {
        let content_type = req.headers().get(CONTENT_TYPE).map(|v| v.to_str().unwrap_or("<not text>"));
        let kind = kind(content_type)?;
        // A declared length over the limit is refused before any of the
        // body is waited for (else a client could hold the connection for
        // the whole body timeout and get a 408 instead).
        let declared = req.headers().get(axum::http::header::CONTENT_LENGTH);
        if declared
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .is_some_and(|n| n > MAX_BODY as u64)
        {
            return Err(ApiError::TooLarge { limit: MAX_BODY });
        }
        // The router's `DefaultBodyLimit` caps what `Bytes` will buffer.
        let body = tokio::time::timeout(BODY_TIMEOUT, Bytes::from_request(req, state))
            .await
            .map_err(|_| ApiError::BodyTimeout { secs: BODY_TIMEOUT.as_secs() })?
            .map_err(|rejection| match rejection.status() {
                StatusCode::PAYLOAD_TOO_LARGE => ApiError::TooLarge { limit: MAX_BODY },
                _ => ApiError::BadBody { message: rejection.body_text(), problems: Vec::new() },
            })?;
        match kind {
            Kind::Yaml => String::from_utf8(body.to_vec()).map(Desired::Manifest).map_err(|e| {
                ApiError::BadBody { message: format!("the manifest is not UTF-8: {e}"), problems: Vec::new() }
            }),
            Kind::Json => serde_json::from_slice(&body).map(Desired::Target).map_err(|e| {
                let message =
                    format!("invalid JSON body: {e}; expected {{\"target\": \"...\", \"image\": \"...\"}}");
                let pos = Pos { line: e.line(), column: e.column() };
                // The problem carries the position itself; drop serde_json's copy.
                let mut what = e.to_string();
                if let Some(i) = what.rfind(" at line ") {
                    what.truncate(i);
                }
                ApiError::BadBody {
                    problems: vec![Problem { pos, path: String::new(), message: what }],
                    message,
                }
            }),
        }
    }
}

/// The handler. The token is checked first (before the body is read).
pub(super) async fn put(
    State(state): State<AppState>,
    _auth: Authorized,
    desired: Desired,
) -> Result<Json<Written>, ApiError> {
    let origin = state.store.path().display().to_string();
    let (targets, what) = match desired {
        Desired::Manifest(text) => {
            // Validate the push before taking the lock; only the policy
            // checks need the current file.
            let source = Source::from_text(BODY_ORIGIN, text).map_err(ApiError::InvalidManifest)?;
            let pushed = Manifest::from_source(&source).map_err(ApiError::InvalidManifest)?;
            let path = state.store.path().to_path_buf();
            let allow_any = state.allow_any_image;
            let update = move |current: &str| {
                let current = Manifest::parse(&origin, current).map_err(ApiError::CurrentInvalid)?;
                require_policy(&path, &current, allow_any)?;
                check_policy(&path, &current, &pushed, &source)?;
                check_scope(&path, &current, &pushed, &source)?;
                Ok((source.text, pushed.targets.len()))
            };
            (state.store.update(update).await?, "manifest")
        }
        Desired::Target(set) => {
            let path = state.store.path().to_path_buf();
            let allow_any = state.allow_any_image;
            let update = move |current: &str| {
                let parsed = Manifest::parse(&origin, current).map_err(ApiError::CurrentInvalid)?;
                require_policy(&path, &parsed, allow_any)?;
                let text = edit::set_image(current, &origin, &set.target, &set.image)
                    .map_err(|e| ApiError::Edit(Box::new(e)))?;
                let n = Manifest::parse(&origin, &text).map_err(ApiError::InvalidManifest)?.targets.len();
                Ok((text, n))
            };
            (state.store.update(update).await?, "target")
        }
    };
    tracing::info!(path = %state.store.path().display(), targets, what, "desired state written via the API");
    match state.triggers.try_send(Trigger::Api) {
        // Full: a pass is already queued and will read the new file.
        Ok(()) | Err(TrySendError::Full(_)) => {}
        Err(TrySendError::Closed(_)) => {
            tracing::warn!("the controller is not taking triggers; the file watcher must pick up the change")
        }
    }
    Ok(Json(Written { written: state.store.path().display().to_string(), targets }))
}

/// With no `policy.allowed_images` in the file a push could run any image
/// in a managed container — with its mounts and capabilities, which may be
/// the Docker socket itself — so the API writes nothing unless the operator
/// said, with `run --allow-any-image`, that this is intended.
fn require_policy(path: &std::path::Path, current: &Manifest, allow_any_image: bool) -> Result<(), ApiError> {
    if current.policy.allowed_images.is_none() && !allow_any_image {
        return Err(ApiError::NoPolicy { path: path.to_path_buf() });
    }
    Ok(())
}

/// Unless the file's `policy.push_may_change_targets` is true, a push may
/// change only the `image` or `track` of the targets the file already has:
/// the same containers and selectors, the same kind of want, the same
/// settings and drift interval. Otherwise a token holder could point a
/// target at any container (one that mounts the Docker socket, say) or
/// switch off its rollback.
fn check_scope(
    path: &std::path::Path,
    current: &Manifest,
    pushed: &Manifest,
    source: &Source,
) -> Result<(), ApiError> {
    if current.policy.push_may_change_targets {
        return Ok(());
    }
    let mut problems = Vec::new();
    if current.drift_interval != pushed.drift_interval {
        problems.push(source.problem(
            "defaults.drift_interval",
            format!(
                "a push may not change the drift interval (the file has {}, the push has {})",
                current.drift_interval, pushed.drift_interval
            ),
        ));
    }
    for t in &pushed.targets {
        let at = format!("targets[{}]", t.index);
        match current.targets.iter().find(|c| c.select == t.select) {
            None => problems.push(source.problem(
                &at,
                format!("a push may not add a target: `{}` is not a target in the file", t.select),
            )),
            Some(c) if std::mem::discriminant(&c.want) != std::mem::discriminant(&t.want) => {
                problems.push(source.problem(
                    &at,
                    format!("a push may not switch `{}` between `image` and `track`", t.select),
                ))
            }
            Some(c) if c.settings != t.settings => problems.push(source.problem(
                &at,
                format!(
                    "a push may not change the settings of `{}` (pull, order, rollback, cleanup, health), \
                     only its image",
                    t.select
                ),
            )),
            Some(_) => {}
        }
    }
    for c in &current.targets {
        if !pushed.targets.iter().any(|t| t.select == c.select) {
            problems.push(source.problem(
                "targets",
                format!("a push may not remove a target: `{}` is a target in the file", c.select),
            ));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        problems.sort_by_key(|p| (p.pos.line, p.pos.column));
        Err(ApiError::OutOfScope { path: path.to_path_buf(), problems })
    }
}

/// Signature checks are policy: a push may not change a target's
/// `verify`, nor give a target it adds one other than `policy.verify`'s,
/// whatever `push_may_change_targets` says (a token holder could
/// otherwise switch verification off before pushing an unsigned image).
fn verify_unchanged(
    path: &std::path::Path,
    current: &Manifest,
    pushed: &Manifest,
    source: &Source,
) -> Result<(), ApiError> {
    let mut problems = Vec::new();
    if current.policy.verify != pushed.policy.verify {
        problems.push(source.problem(
            "policy.verify",
            "a push may not change `policy.verify` (which signatures a digest needs); only the file may",
        ));
    }
    for (index, why) in crate::manifest::verify::foreign_verify(current, pushed) {
        problems.push(source.problem(&format!("targets[{index}]"), format!("a push may not: {why}")));
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(ApiError::OutOfScope { path: path.to_path_buf(), problems })
    }
}

/// A push may not widen (or otherwise change) the policy that limits it,
/// and every image it names must be allowed by the file's policy and its
/// own — the same list, checked twice in case the comparison ever loosens.
fn check_policy(
    path: &std::path::Path,
    current: &Manifest,
    pushed: &Manifest,
    source: &Source,
) -> Result<(), ApiError> {
    verify_unchanged(path, current, pushed, source)?;
    if current.policy != pushed.policy {
        let show = |m: &Manifest| match &m.policy.allowed_images {
            None => "no list (any image)".to_string(),
            Some(list) => {
                format!("[{}]", list.iter().map(ToString::to_string).collect::<Vec<_>>().join(", "))
            }
        };
        return Err(ApiError::PolicyChanged {
            path: path.to_path_buf(),
            current: show(current),
            pushed: show(pushed),
        });
    }
    if current.webhook != pushed.webhook {
        // Only scheme, host and path: the file's URL may carry credentials.
        let show = |w: &Option<String>| w.as_deref().map_or_else(|| "none".to_string(), crate::redact::url);
        return Err(ApiError::WebhookChanged {
            path: path.to_path_buf(),
            current: show(&current.webhook),
            pushed: show(&pushed.webhook),
        });
    }
    // Even where a push may change targets: a hook is a command to run.
    let hooks = crate::manifest::hooks::foreign_hooks(current, pushed).into_iter().map(|(index, why)| {
        source.problem(&format!("targets[{index}].hooks"), format!("a push may not set hooks: {why}"))
    });
    let problems: Vec<Problem> = pushed
        .targets
        .iter()
        .filter(|t| !(current.policy.allows(t.want.image()) && pushed.policy.allows(t.want.image())))
        .map(|t| {
            let field = match t.want {
                Want::Image(_) => "image",
                Want::Track { .. } => "track.image",
            };
            source.problem(
                &format!("targets[{}].{field}", t.index),
                format!(
                    "image `{}` is not allowed by policy.allowed_images of {}",
                    t.want.image().familiar(),
                    path.display()
                ),
            )
        })
        .chain(hooks)
        .collect();
    if problems.is_empty() {
        Ok(())
    } else {
        Err(ApiError::NotAllowed(problems))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_types_map_to_body_kinds() {
        let cases = [
            (Some("application/yaml"), Some(Kind::Yaml)),
            (Some("text/yaml; charset=utf-8"), Some(Kind::Yaml)),
            (Some("Text/Plain"), Some(Kind::Yaml)),
            (Some("application/x-yaml"), Some(Kind::Yaml)),
            (Some("application/json"), Some(Kind::Json)),
            (Some("application/json;charset=UTF-8"), Some(Kind::Json)),
            (Some("application/x-www-form-urlencoded"), None),
            (Some("application/octet-stream"), None),
            (Some("application/yaml+json"), None),
            (None, None),
        ];
        for (header, want) in cases {
            assert_eq!(kind(header).ok(), want, "{header:?}");
        }
    }

    #[test]
    fn a_push_may_not_change_which_signatures_are_needed() {
        const KEY: &str = "\"-----BEGIN PUBLIC KEY-----\\nMCowBQYDK2VwAyEAGb9ECWmEzf6FQbrBZ9w7lshQhqowtrbLDFw4rXAxZuE=\\n-----END PUBLIC KEY-----\"";
        let file = format!(
            "version: 1\npolicy:\n  allowed_images: [app]\n  push_may_change_targets: true\n  verify: {{keys: [{KEY}]}}\ntargets:\n  - container: web\n    image: app:1\n"
        );
        let current = Manifest::parse("m.yaml", &file).expect("file");
        let path = std::path::Path::new("m.yaml");
        let push = |text: &str| {
            let source = Source::from_text(BODY_ORIGIN, text).expect("source");
            let pushed = Manifest::from_source(&source).expect("valid push");
            verify_unchanged(path, &current, &pushed, &source).map_err(|e| e.to_string())
        };
        assert!(push(&file.replace("app:1", "app:2")).is_ok(), "an image change keeps verify");
        let added = file.clone() + "  - container: db\n    image: app:1\n";
        assert!(push(&added).is_ok(), "a new target inherits policy.verify");
        let dropped = file.replace(&format!("  verify: {{keys: [{KEY}]}}\n"), "");
        let e = push(&dropped).expect_err("verify dropped");
        assert!(e.contains("policy.verify") && e.contains("`web`"), "{e}");
        let weakened = file.replace("image: app:1\n", "image: app:2\n    verify: {require: false}\n");
        let e = push(&weakened).expect_err("verify weakened");
        assert!(e.contains("a push may not: it changes which signatures `web` needs"), "{e}");
    }
}
