//! The one place campaigns act: every tick (and on every report) it loads
//! the campaigns with something to do, feeds the engine what their agents
//! reported, saves the new state and the sends it decided, and only then
//! writes the pins. Admin commands and creation go through here too.

use std::time::Duration;

use super::engine::{self, Campaign, Command, Member};
use super::spec::{below, FleetFilter, Order, Request, Selection, Spec};
use super::store::By;
use crate::access::Principal;
use crate::agents::{AgentSummary, Filter, RowFilter, Status, TargetView, UpdateKind};
use crate::store::{now_ms, Store};
use crate::versions::CheckerConfig;
use crate::FleetError;
use container_upgrader::manifest::policy::glob_match;
use container_upgrader::reference::ImageRef;
use container_upgrader::registry::{self, Registry};

/// How often campaigns are advanced without a report to prompt it.
pub const TICK: Duration = Duration::from_secs(1);
/// Tries of a command against concurrent writes of the same campaign.
const COMMAND_TRIES: usize = 5;
/// Tries of a pin against concurrent edits of the same manifest.
const PIN_TRIES: usize = 3;

/// Advances every campaign forever (until the task is aborted).
pub async fn run(store: Store) {
    loop {
        if let Err(e) = tick(&store).await {
            tracing::warn!(error = %e, "advancing campaigns failed; trying again");
        }
        tokio::select! {
            () = tokio::time::sleep(TICK) => {}
            () = store.reported.notified() => {}
        }
    }
}

/// Advances every campaign with something left to do or to watch once.
pub async fn tick(store: &Store) -> Result<(), FleetError> {
    for id in store.unsettled_campaigns().await? {
        advance(store, &id).await?;
    }
    Ok(())
}

/// One engine step for campaign `id`, saved, then acted on.
pub async fn advance(store: &Store, id: &str) -> Result<(), FleetError> {
    let stored = store.campaign(id).await?;
    let seen = store.observations(id, stored.created_at).await?;
    let mut after = stored.campaign.clone();
    let sends = engine::step(&mut after, &seen, now_ms());
    if after == stored.campaign && sends.is_empty() {
        return Ok(());
    }
    let Some(fresh) = store
        .save_campaign(
            id,
            stored.version,
            &stored.campaign,
            &after,
            &sends,
            By { actor: SERVER, audit: None },
        )
        .await?
    else {
        // Written meanwhile (a command, another server): next tick.
        return Ok(());
    };
    if after.phase != stored.campaign.phase {
        tracing::info!(campaign = id, phase = engine::name(after.phase), reason = ?after.reason, "campaign phase");
    }
    for send in fresh {
        let result = pin(store, &send).await;
        match &result {
            Ok(revision) => {
                tracing::info!(campaign = id, agent = %send.agent, image = %send.image, step = send.step.as_str(), revision, "campaign pin")
            }
            Err(e) => {
                tracing::warn!(campaign = id, agent = %send.agent, image = %send.image, error = %e, "campaign pin refused")
            }
        }
        store.record_pin(id, &send, result).await?;
    }
    Ok(())
}

async fn pin(store: &Store, send: &engine::Send) -> Result<i64, String> {
    let mut last = String::new();
    for _ in 0..PIN_TRIES {
        match store.pin(&send.agent, &send.target, &send.image, None).await {
            Ok(revision) => return Ok(revision),
            // Someone edited the manifest at the same moment: read it again.
            Err(FleetError::Conflict(e)) if e.contains("changed while") => last = e,
            Err(e) => return Err(e.to_string()),
        }
    }
    Err(last)
}

/// Who the campaign's own decisions are by, in its timeline.
pub const SERVER: &str = "server";

/// Applies `cmd` by `by` (who, for the timeline and the audit log, both
/// written with the change) to campaign `id` and acts on it at once.
pub async fn apply(store: &Store, id: &str, cmd: Command, by: &Principal) -> Result<(), FleetError> {
    let actor = by.by();
    for _ in 0..COMMAND_TRIES {
        let stored = store.campaign(id).await?;
        let mut after = stored.campaign.clone();
        engine::command(&mut after, cmd).map_err(FleetError::Conflict)?;
        let audit = by.audit(
            &format!("campaign.{}", command_word(cmd)),
            format!("campaign {id}"),
            format!("{} {}", command_word(cmd), stored.campaign.spec.name),
        );
        let saved = store
            .save_campaign(
                id,
                stored.version,
                &stored.campaign,
                &after,
                &[],
                By { actor: &actor, audit: Some(&audit) },
            )
            .await?;
        if saved.is_some() {
            tracing::info!(campaign = id, command = ?cmd, actor, "campaign command");
            return advance(store, id).await;
        }
    }
    Err(FleetError::Conflict(format!("campaign `{id}` kept changing; try again")))
}

/// The route word of `cmd` (`pause`, `abort-and-revert`, …).
pub fn command_word(cmd: Command) -> &'static str {
    match cmd {
        Command::Pause => "pause",
        Command::Resume => "resume",
        Command::Abort => "abort",
        Command::AbortAndRevert => "abort-and-revert",
        Command::Rollback => "rollback",
    }
}

/// Validates `request` against the fleet as it is and plans its waves
/// (nothing is stored: this is also the preview).
pub async fn plan(store: &Store, request: &Request) -> Result<Campaign, FleetError> {
    let agents = store.agents(&Filter::default(), store.offline_after).await?;
    let probe = Spec::from_request(request, request.image.clone().unwrap_or_default())
        .map_err(FleetError::Invalid)?;
    let mut members = select(&agents, &probe)?;
    if request.exclude_offline.unwrap_or(false) {
        let offline: std::collections::HashSet<&str> =
            agents.iter().filter(|a| a.status == Status::Offline).map(|a| a.id.as_str()).collect();
        members.retain(|m| !offline.contains(m.agent.as_str()));
    }
    if members.is_empty() {
        return Err(FleetError::Invalid(format!(
            "no agent matches the selection with a target `{}`; `fleet agents` lists them",
            probe.target
        )));
    }
    let held = store.holders(&members).await?;
    if !held.is_empty() {
        return Err(FleetError::Conflict(super::store::held_text(&held, held.len())));
    }
    let image = match (&request.image, &request.version) {
        (Some(i), None) => {
            container_upgrader::reference::ImageRef::parse(i)
                .map_err(|e| FleetError::Invalid(format!("image `{i}`: {e}")))?;
            i.clone()
        }
        (None, Some(v)) => image_for_version(&members, v)?,
        _ => {
            return Err(FleetError::Invalid("give exactly one of image (repo:tag) or version (a tag)".into()))
        }
    };
    let spec = Spec::from_request(request, image).map_err(FleetError::Invalid)?;
    let members = ordered(members, &agents, &spec.order)?;
    check_pins(store, &members, &spec.image).await?;
    Ok(Campaign::new(spec, members))
}

/// Refuses at once a campaign some agent's manifest would refuse (its
/// policy's `allowed_images`, a target it tracks by range), naming each.
async fn check_pins(store: &Store, members: &[Member], image: &str) -> Result<(), FleetError> {
    let mut refused = Vec::new();
    for m in members {
        if let Some(git) = store.git_of(&m.agent).await? {
            refused.push(crate::desired::git_refusal(&m.agent, &git));
            continue;
        }
        let desired = store.desired(&m.agent).await?;
        let origin = format!("agent {}'s manifest", m.agent);
        if let Err(e) =
            container_upgrader::manifest::edit::set_image(&desired.manifest, &origin, &m.target, image)
        {
            refused.push(e.to_string());
        }
    }
    match refused.len() {
        0 => Ok(()),
        n => Err(FleetError::Invalid(format!(
            "{n} agent(s) would refuse {image}: {}",
            refused.iter().take(5).cloned().collect::<Vec<_>>().join("; ")
        ))),
    }
}

/// Creates campaign `request` and takes its first step; its id. Unless
/// the request says `pin_digest: false`, the image is pinned by the digest
/// its registry gives now (through `registry`): one lookup for the whole
/// fleet, and every agent runs exactly the same bits whatever the tag does
/// meanwhile.
pub async fn create(
    store: &Store,
    request: &Request,
    registry: Option<&CheckerConfig>,
    by: &Principal,
) -> Result<String, FleetError> {
    let mut campaign = plan(store, request).await?;
    campaign.spec.image = pinned_image(&campaign, request, registry).await?;
    let id = store.create_campaign(&campaign, by).await?;
    tracing::info!(campaign = %id, agents = campaign.members.len(), image = %campaign.spec.image, "campaign created");
    advance(store, &id).await?;
    Ok(id)
}

/// `image` as `repo:tag@sha256:…`, its digest read from its registry;
/// with `--verify-key`, only a digest signed by one of the keys.
async fn pin_digest(image: &str, access: &CheckerConfig) -> Result<String, FleetError> {
    let reference =
        ImageRef::parse(image).map_err(|e| FleetError::Invalid(format!("image `{image}`: {e}")))?;
    let verifying = !access.verify_keys.is_empty();
    if reference.digest().is_some() && !verifying {
        return Ok(reference.familiar());
    }
    if let Some(why) = crate::versions::refused(reference.registry(), &access.allow) {
        if verifying {
            return Err(FleetError::Upstream(format!(
                "image `{image}`: its signature cannot be checked: {why}; this server runs only signed images \
                 (--verify-key)"
            )));
        }
        return Err(FleetError::Upstream(format!(
            "image `{image}`: its digest cannot be read: {why}; give the image as repo:tag@sha256:…, or set \
             pin_digest to false to hand agents the tag"
        )));
    }
    let client =
        Registry::with_plain_http(registry::plain_http(&access.insecure, [&reference]), access.timeout);
    let digest = match reference.digest() {
        Some(d) => d.clone(),
        None => client.digest(&reference).await.map_err(|e| {
            FleetError::Upstream(format!(
                "image `{image}`: its digest could not be read from its registry ({e}). A campaign pins every \
                 agent to one digest so that all run the same bits; make the registry reachable from the server \
                 (`server --insecure-registry` for plain HTTP), give the image as repo:tag@sha256:…, or set \
                 pin_digest to false to hand agents the tag"
            ))
        })?,
    };
    if verifying {
        match client.cosign_verdict(&reference, &digest, &access.verify_keys).await {
            Ok(()) => {}
            Err(e @ container_upgrader::verify::Refusal::Registry(_)) => {
                return Err(FleetError::Upstream(format!(
                    "image `{image}`: {e}; this server runs only signed images (--verify-key), so no campaign \
                     starts until its registry answers"
                )))
            }
            Err(refusal) => {
                return Err(FleetError::Invalid(format!(
                    "image `{image}` ({digest}) is not signed by a key of --verify-key: {refusal}. This server \
                     runs only signed images: sign the digest (cosign sign --key …) or pick a signed version"
                )))
            }
        }
    }
    let name = reference.familiar();
    let name = name.split('@').next().unwrap_or(&name).to_string();
    Ok(format!("{name}@{digest}"))
}

/// The selected agents with the target, in name order.
fn select(agents: &[AgentSummary], spec: &Spec) -> Result<Vec<Member>, FleetError> {
    // A `*` matches any run of characters: hosts that name the container
    // `web-<host>` are one campaign with `web-*`.
    let target = |a: &AgentSummary| chosen(a, &spec.target);
    let mut out = Vec::new();
    match &spec.selection {
        Selection::Agents(ids) => {
            for id in ids {
                let Some(a) = agents.iter().find(|a| &a.id == id) else {
                    return Err(FleetError::Invalid(format!(
                        "agents: no agent `{id}`; `fleet agents` lists them"
                    )));
                };
                if a.status == Status::Revoked {
                    return Err(FleetError::Invalid(format!("agents: `{id}` ({}) is revoked", a.name)));
                }
                let Some(t) = target(a)? else {
                    return Err(FleetError::Invalid(format!(
                        "agents: `{id}` ({}) reports no target or container `{}`",
                        a.name, spec.target
                    )));
                };
                if out.iter().any(|m: &Member| &m.agent == id) {
                    return Err(FleetError::Invalid(format!("agents: `{id}` is listed twice")));
                }
                out.push(Member::new(id, &t.target, &t.container, previous_of(&t)));
            }
        }
        Selection::Label(label) => {
            let (k, v) = label.split_once('=').unwrap_or((label, ""));
            for a in agents
                .iter()
                .filter(|a| a.status != Status::Revoked && a.labels.get(k).is_some_and(|x| x == v))
            {
                if let Some(t) = target(a)? {
                    out.push(Member::new(&a.id, &t.target, &t.container, previous_of(&t)));
                }
            }
        }
        Selection::Filter(filter) => {
            let rows = row_filter(filter);
            for a in agents.iter().filter(|a| a.status != Status::Revoked && rows.agent_passes(a)) {
                let Some(t) = target(a)? else { continue };
                if rows.passes(a, Some(&t)) {
                    out.push(Member::new(&a.id, &t.target, &t.container, previous_of(&t)));
                }
            }
        }
        Selection::Below(version) => {
            for a in agents.iter().filter(|a| a.status != Status::Revoked) {
                let Some(t) = target(a)? else { continue };
                if t.version.as_deref().and_then(|have| below(have, version)) == Some(true) {
                    out.push(Member::new(&a.id, &t.target, &t.container, previous_of(&t)));
                }
            }
        }
    }
    Ok(out)
}

/// `members` (in name order) in the order waves take them: as they are,
/// shuffled (a draw made once, here), or round-robin across the values of
/// a label so that each wave holds every region in turn (agents without
/// the label come last, as a group of their own).
fn ordered(
    mut members: Vec<Member>,
    agents: &[AgentSummary],
    order: &Order,
) -> Result<Vec<Member>, FleetError> {
    match order {
        Order::Name => Ok(members),
        Order::Shuffle => {
            let seed = crate::secret::new_id()?;
            members.sort_by_cached_key(|m| crate::secret::hash(&format!("{seed}/{}", m.agent)));
            Ok(members)
        }
        Order::SpreadBy(key) => {
            let value =
                |m: &Member| agents.iter().find(|a| a.id == m.agent).and_then(|a| a.labels.get(key).cloned());
            let mut groups: std::collections::BTreeMap<(bool, String), std::collections::VecDeque<Member>> =
                std::collections::BTreeMap::new();
            for m in members {
                let v = value(&m);
                groups.entry((v.is_none(), v.unwrap_or_default())).or_default().push_back(m);
            }
            let mut out = Vec::new();
            while !groups.is_empty() {
                groups.retain(|_, g| match g.pop_front() {
                    Some(m) => {
                        out.push(m);
                        !g.is_empty()
                    }
                    None => false,
                });
            }
            Ok(out)
        }
    }
}

/// The target of agent `a` that campaign target `wanted` names: the one
/// whose manifest target or container is exactly `wanted`, else the only
/// one a `*` pattern matches. A pattern matching several on one agent is
/// refused with the candidates named: picking one would pin a container
/// the operator did not mean (a `db` to the web image).
fn chosen(a: &AgentSummary, wanted: &str) -> Result<Option<TargetView>, FleetError> {
    let exact = |t: &&TargetView| t.target == wanted || t.container == wanted;
    if let Some(t) = a.targets.iter().find(exact) {
        return Ok(Some(t.clone()));
    }
    if !wanted.contains('*') {
        return Ok(None);
    }
    let matching: Vec<&TargetView> = a
        .targets
        .iter()
        .filter(|t| {
            glob_match(wanted, &t.target) || (!t.container.is_empty() && glob_match(wanted, &t.container))
        })
        .collect();
    match matching.as_slice() {
        [] => Ok(None),
        [one] => Ok(Some((*one).clone())),
        many => {
            let names: Vec<String> = many
                .iter()
                .map(|t| {
                    if t.container.is_empty() || t.container == t.target {
                        format!("`{}`", t.target)
                    } else {
                        format!("`{}` (container `{}`)", t.target, t.container)
                    }
                })
                .collect();
            Err(FleetError::Invalid(format!(
                "target `{wanted}` matches {} targets of agent {} (`{}`): {}; name one of them exactly, \
                 or narrow the pattern",
                many.len(),
                a.name,
                a.id,
                names.join(", ")
            )))
        }
    }
}

/// The rows a campaign's filter keeps, as the fleet page keeps them. Call
/// after [`FleetFilter::validate`]: a status or update kind it does not
/// know is no condition.
pub fn row_filter(f: &FleetFilter) -> RowFilter {
    let some = |v: &Option<String>| v.clone().filter(|v| !v.is_empty());
    RowFilter {
        labels: f
            .labels
            .iter()
            .map(|l| l.split_once('=').unwrap_or((l, "")))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        target: None,
        repo: some(&f.repo),
        version: some(&f.version),
        status: match f.status.as_deref() {
            Some("online") => Some(Status::Online),
            Some("offline") => Some(Status::Offline),
            _ => None,
        },
        has_update: match f.has_update.as_deref() {
            Some("any") => Some(UpdateKind::Any),
            Some("patch") => Some(UpdateKind::Patch),
            Some("minor") => Some(UpdateKind::Minor),
            Some("major") => Some(UpdateKind::Major),
            _ => None,
        },
        failing: f.failing,
        search: some(&f.q).map(|q| q.to_lowercase()),
    }
}

/// What a rollback brings `t` back to: the image it runs, pinned by the
/// digest it reported (`repo:tag@sha256:…`), so that a tag moved since
/// cannot give it other bits than it ran; the reference alone when no
/// digest is known.
fn previous_of(t: &TargetView) -> Option<String> {
    let image = t.image.clone()?;
    match &t.digest {
        Some(d) if !image.contains('@') && d.starts_with("sha256:") => Some(format!("{image}@{d}")),
        _ => Some(image),
    }
}

/// The image Start pins for `campaign`: its image at the digest the
/// registry gives now (`repo:tag@sha256:…`), unless the request says
/// `pin_digest: false` or the server has no registry access configured.
pub async fn pinned_image(
    campaign: &Campaign,
    request: &Request,
    registry: Option<&CheckerConfig>,
) -> Result<String, FleetError> {
    match (registry, request.pin_digest.unwrap_or(true)) {
        (Some(access), true) => pin_digest(&campaign.spec.image, access).await,
        (Some(access), false) if !access.verify_keys.is_empty() => Err(FleetError::Invalid(
            "pin_digest: false is not allowed on a server that runs only signed images (--verify-key): a \
             campaign pins the digest whose signature it checked, so a tag moved later cannot bring unsigned bits"
                .into(),
        )),
        _ => Ok(campaign.spec.image.clone()),
    }
}

/// `repository:version`, the repository being the one every selected
/// agent's target runs.
fn image_for_version(members: &[Member], version: &str) -> Result<String, FleetError> {
    if !version.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b)) || version.is_empty() {
        return Err(FleetError::Invalid(format!(
            "version `{version}`: expected a tag (letters, digits, `.`, `_`, `-`)"
        )));
    }
    let mut repos: Vec<String> =
        members.iter().filter_map(|m| m.previous.as_deref().map(repository)).collect();
    repos.sort();
    repos.dedup();
    match repos.as_slice() {
        [one] => Ok(format!("{one}:{version}")),
        [] => Err(FleetError::Invalid(format!(
            "version `{version}`: the selected agents report no image to take the repository from; give image"
        ))),
        many => Err(FleetError::Invalid(format!(
            "version `{version}`: the selected agents run different repositories ({}); give image",
            many.join(", ")
        ))),
    }
}

/// `image` without its tag or digest.
pub fn repository(image: &str) -> String {
    let image = image.split('@').next().unwrap_or(image);
    match image.rfind(':') {
        Some(colon) if colon > image.rfind('/').unwrap_or(0) => image[..colon].to_string(),
        _ => image.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::repository;

    #[test]
    fn the_repository_drops_the_tag_but_not_a_port() {
        assert_eq!(repository("127.0.0.1:5000/app:1.0.0"), "127.0.0.1:5000/app");
        assert_eq!(repository("127.0.0.1:5000/app"), "127.0.0.1:5000/app");
        assert_eq!(repository("nginx:1.25@sha256:abc"), "nginx");
    }
}
