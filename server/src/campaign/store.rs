//! Campaigns in the database: the campaign row, one row per wave and per
//! agent, and one per pin sent. [`Store::save_campaign`] writes the
//! engine's new state and the sends it decided in one transaction, guarded
//! by the campaign's version, *before* any pin is written.

use crate::access::{Audit, Principal};
use std::collections::HashMap;

use super::engine::{
    self, Campaign, Direction, EventSeen, Member, Observation, Outcome, Phase, Send, Step, WaveTimes,
};
use super::spec::Spec;
use crate::error::db;
use crate::store::{now_ms, Store};
use crate::FleetError;

/// A campaign as stored, with what the engine does not keep.
#[derive(Debug, Clone)]
pub struct Stored {
    /// Its id.
    pub id: String,
    /// The engine's state.
    pub campaign: Campaign,
    /// Its write version.
    pub version: i64,
    /// Created (unix ms).
    pub created_at: i64,
    /// Last written (unix ms).
    pub updated_at: i64,
}

fn text<T: serde::Serialize>(value: &T) -> Result<String, FleetError> {
    serde_json::to_string(value)
        .map_err(|e| FleetError::Corrupt(format!("a campaign cannot be encoded: {e}")))
}

fn word<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_value(value).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default()
}

fn parse<T: serde::de::DeserializeOwned>(what: &str, id: &str, s: &str) -> Result<T, FleetError> {
    let quoted;
    let s = if s.starts_with('{') || s.starts_with('[') || s.starts_with('"') {
        s
    } else {
        quoted = format!("\"{s}\"");
        &quoted
    };
    serde_json::from_str(s)
        .map_err(|e| FleetError::Corrupt(format!("campaign `{id}`'s {what} does not read back: {e}")))
}

/// Whether the campaign has ended (it holds no target then).
fn ended(c: &Campaign) -> bool {
    matches!(c.phase, Phase::Completed | Phase::Aborted | Phase::RolledBack)
}

/// Whether nothing is left to do or to watch.
fn settled(c: &Campaign) -> bool {
    let done = matches!(c.phase, Phase::Completed | Phase::Aborted | Phase::RolledBack);
    let watching = c.members.iter().any(|m| match m.rollback {
        None => matches!(m.state, engine::AgentState::Sent | engine::AgentState::Upgrading),
        Some(r) => r == engine::RollbackState::Sent,
    });
    done && !watching
}

/// agent, image, digest, reported at.
type ReportRow = (String, Option<String>, Option<String>, Option<i64>);
/// agent, op, to, outcome, reason, received at.
type EventRow = (String, String, String, String, Option<String>, i64);
type CampaignRow = (String, String, String, String, Option<String>, i64, i64, i64, i64, i64);

/// Who saves a campaign: the timeline's "by", and the audit row of the
/// request that did (none for the server's own steps).
#[derive(Debug, Clone, Copy)]
pub struct By<'a> {
    /// The timeline's "by".
    pub actor: &'a str,
    /// The request's audit row.
    pub audit: Option<&'a Audit>,
}

impl Store {
    /// Stores a new campaign made by `by` (its timeline's first line and
    /// the audit log's row, in the same transaction); its id.
    pub async fn create_campaign(&self, c: &Campaign, by: &Principal) -> Result<String, FleetError> {
        let id = crate::secret::new_id()?;
        let now = now_ms();
        let actor = by.by();
        let actor = actor.as_str();
        let mut tx = self.pool.begin().await.map_err(db("starting to store a campaign"))?;
        sqlx::query(
            "INSERT INTO campaigns (id, name, spec, phase, direction, reason, accepted_failures, version, settled, \
             created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, 1, $8, $9, $9)",
        )
        .bind(&id)
        .bind(&c.spec.name)
        .bind(text(&c.spec)?)
        .bind(word(&c.phase))
        .bind(word(&c.direction))
        .bind(&c.reason)
        .bind(i64::from(c.accepted_failures))
        .bind(i64::from(settled(c)))
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(db("storing a campaign"))?;
        if !ended(c) {
            take_holds(&mut tx, &id, &c.members).await?;
        }
        for (i, m) in c.members.iter().enumerate() {
            sqlx::query(
                "INSERT INTO campaign_agents (campaign_id, agent_id, position, container, wave, state, reason, body) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            )
            .bind(&id)
            .bind(&m.agent)
            .bind(i64::try_from(i).unwrap_or(i64::MAX))
            .bind(&m.container)
            .bind(i64::from(m.wave))
            .bind(word(&m.state))
            .bind(&m.reason)
            .bind(text(m)?)
            .execute(&mut *tx)
            .await
            .map_err(db("storing a campaign's agent"))?;
        }
        write_waves(&mut tx, &id, c).await?;
        let detail = format!("{} agent(s), {}", c.members.len(), c.spec.image);
        record_event(&mut tx, &id, now, "created", Some(&detail), actor).await?;
        by.audit(
            "campaign.create",
            format!("campaign {id}"),
            format!("{}: {} of {} agent(s) to {}", c.spec.name, c.spec.target, c.members.len(), c.spec.image),
        )
        .record(&mut tx, crate::access::audit::OK)
        .await?;
        let notified = notify_change(&mut tx, &id, None, c, now).await?;
        tx.commit().await.map_err(db("committing a new campaign"))?;
        if notified {
            self.wake_notifications();
        }
        Ok(id)
    }

    /// The campaign `id`.
    pub async fn campaign(&self, id: &str) -> Result<Stored, FleetError> {
        let row: Option<CampaignRow> = sqlx::query_as(
            "SELECT spec, phase, direction, name, reason, accepted_failures, version, created_at, updated_at, approved \
             FROM campaigns WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await
        .map_err(db("reading a campaign"))?;
        let Some((
            spec,
            phase,
            direction,
            _name,
            reason,
            accepted,
            version,
            created_at,
            updated_at,
            approved,
        )) = row
        else {
            return Err(FleetError::NotFound(format!(
                "no campaign `{id}`; `fleet campaign list` lists them"
            )));
        };
        let spec: Spec = parse("spec", id, &spec)?;
        let bodies: Vec<(String,)> =
            sqlx::query_as("SELECT body FROM campaign_agents WHERE campaign_id = $1 ORDER BY position")
                .bind(id)
                .fetch_all(&self.pool)
                .await
                .map_err(db("reading a campaign's agents"))?;
        let members =
            bodies.iter().map(|(b,)| parse::<Member>("agent", id, b)).collect::<Result<Vec<_>, _>>()?;
        let waves: Vec<(String, i64, Option<i64>, Option<i64>)> = sqlx::query_as(
            "SELECT kind, wave, started_at, done_at FROM campaign_waves WHERE campaign_id = $1 ORDER BY kind, wave",
        )
        .bind(id)
        .fetch_all(&self.pool)
        .await
        .map_err(db("reading a campaign's waves"))?;
        let times = |kind: &str| -> Vec<WaveTimes> {
            waves
                .iter()
                .filter(|w| w.0 == kind)
                .map(|w| WaveTimes { started_at: w.2, done_at: w.3 })
                .collect()
        };
        let campaign = Campaign {
            spec,
            phase: parse("phase", id, &phase)?,
            direction: parse::<Direction>("direction", id, &direction)?,
            reason,
            waves: times("upgrade"),
            rollback_waves: times("rollback"),
            members,
            accepted_failures: u32::try_from(accepted).unwrap_or(0),
            approved: approved != 0,
        };
        Ok(Stored { id: id.to_string(), campaign, version, created_at, updated_at })
    }

    /// Every campaign, newest first.
    pub async fn campaigns(&self) -> Result<Vec<Stored>, FleetError> {
        let ids: Vec<(String,)> = sqlx::query_as("SELECT id FROM campaigns ORDER BY created_at DESC, id")
            .fetch_all(&self.pool)
            .await
            .map_err(db("listing campaigns"))?;
        let mut out = Vec::with_capacity(ids.len());
        for (id,) in ids {
            out.push(self.campaign(&id).await?);
        }
        Ok(out)
    }

    /// Campaigns with something left to do or to watch.
    pub async fn unsettled_campaigns(&self) -> Result<Vec<String>, FleetError> {
        let ids: Vec<(String,)> =
            sqlx::query_as("SELECT id FROM campaigns WHERE settled = 0 ORDER BY created_at")
                .fetch_all(&self.pool)
                .await
                .map_err(db("listing running campaigns"))?;
        Ok(ids.into_iter().map(|(id,)| id).collect())
    }

    /// Writes `after` over `before` (read at `version`) and records
    /// `sends`, in one transaction. `None` when someone wrote the campaign
    /// since (nothing is written then); else the sends to pin now - a step
    /// already recorded as sent is dropped, never pinned again.
    pub async fn save_campaign(
        &self,
        id: &str,
        version: i64,
        before: &Campaign,
        after: &Campaign,
        sends: &[Send],
        by: By<'_>,
    ) -> Result<Option<Vec<Send>>, FleetError> {
        let By { actor, audit } = by;
        let now = now_ms();
        let mut tx = self.pool.begin().await.map_err(db("starting to save a campaign"))?;
        let done = sqlx::query(
            "UPDATE campaigns SET phase = $1, direction = $2, reason = $3, accepted_failures = $4, settled = $5, \
             version = version + 1, updated_at = $6, approved = $9 WHERE id = $7 AND version = $8",
        )
        .bind(word(&after.phase))
        .bind(word(&after.direction))
        .bind(&after.reason)
        .bind(i64::from(after.accepted_failures))
        .bind(i64::from(settled(after)))
        .bind(now)
        .bind(id)
        .bind(version)
        .bind(i64::from(after.approved))
        .execute(&mut *tx)
        .await
        .map_err(db("saving a campaign"))?;
        if done.rows_affected() != 1 {
            return Ok(None);
        }
        if let Some(kind) = event_kind(before, after) {
            record_event(&mut tx, id, now, kind, after.reason.as_deref(), actor).await?;
        }
        if let Some(audit) = audit {
            audit.record(&mut tx, crate::access::audit::OK).await?;
        }
        match (ended(before), ended(after)) {
            (false, true) => {
                sqlx::query("DELETE FROM campaign_holds WHERE campaign_id = $1")
                    .bind(id)
                    .execute(&mut *tx)
                    .await
                    .map_err(db("releasing a campaign's targets"))?;
            }
            // Rolled back after it ended: it pins its agents again.
            (true, false) => {
                let pinned: Vec<Member> = after.members.iter().filter(|m| m.pinned()).cloned().collect();
                take_holds(&mut tx, id, &pinned).await?;
            }
            _ => {}
        }
        for (m, old) in after.members.iter().zip(&before.members) {
            if m == old {
                continue;
            }
            sqlx::query(
                "UPDATE campaign_agents SET state = $1, reason = $2, body = $3 WHERE campaign_id = $4 AND agent_id = $5",
            )
            .bind(word(&m.state))
            .bind(m.reason.as_ref().or(m.rollback_reason.as_ref()))
            .bind(text(m)?)
            .bind(id)
            .bind(&m.agent)
            .execute(&mut *tx)
            .await
            .map_err(db("saving a campaign's agent"))?;
        }
        if after.waves != before.waves || after.rollback_waves != before.rollback_waves {
            sqlx::query("DELETE FROM campaign_waves WHERE campaign_id = $1")
                .bind(id)
                .execute(&mut *tx)
                .await
                .map_err(db("saving a campaign's waves"))?;
            write_waves(&mut tx, id, after).await?;
        }
        let mut fresh = Vec::new();
        for s in sends {
            let inserted = sqlx::query(
                "INSERT INTO campaign_sends (campaign_id, agent_id, step, image, sent_at) VALUES ($1, $2, $3, $4, $5) \
                 ON CONFLICT (campaign_id, agent_id, step) DO NOTHING",
            )
            .bind(id)
            .bind(&s.agent)
            .bind(s.step.as_str())
            .bind(&s.image)
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(db("recording a campaign's pin"))?;
            if inserted.rows_affected() == 1 {
                fresh.push(s.clone());
            } else {
                tracing::error!(campaign = id, agent = %s.agent, step = s.step.as_str(), "a step already sent was decided again; not sent");
            }
        }
        // Last: the notification takes the event counter's lock, held to
        // the commit.
        let notified = notify_change(&mut tx, id, Some(before), after, now).await?;
        tx.commit().await.map_err(db("committing a campaign"))?;
        if notified {
            self.wake_notifications();
        }
        Ok(Some(fresh))
    }

    /// Records how a campaign's pin went: the revision written, or why not.
    pub async fn record_pin(
        &self,
        id: &str,
        send: &Send,
        result: Result<i64, String>,
    ) -> Result<(), FleetError> {
        let (revision, error) = match result {
            Ok(r) => (Some(r), None),
            Err(e) => (None, Some(e)),
        };
        sqlx::query("UPDATE campaign_sends SET revision = $1, error = $2 WHERE campaign_id = $3 AND agent_id = $4 AND step = $5")
            .bind(revision)
            .bind(error)
            .bind(id)
            .bind(&send.agent)
            .bind(send.step.as_str())
            .execute(&self.pool)
            .await
            .map_err(db("recording a campaign's pin"))?;
        Ok(())
    }

    /// Pins sent per agent of campaign `id` (the number of steps).
    pub async fn campaign_sends(&self, id: &str) -> Result<HashMap<String, i64>, FleetError> {
        let rows: Vec<(String, i64)> = sqlx::query_as(
            "SELECT agent_id, COUNT(*) FROM campaign_sends WHERE campaign_id = $1 GROUP BY agent_id",
        )
        .bind(id)
        .fetch_all(&self.pool)
        .await
        .map_err(db("counting a campaign's pins"))?;
        Ok(rows.into_iter().collect())
    }

    /// What campaign `id`'s agents reported since it began: their target's
    /// running image, their op events for its container, refused pins.
    pub async fn observations(
        &self,
        id: &str,
        since: i64,
    ) -> Result<HashMap<String, Observation>, FleetError> {
        let mut seen: HashMap<String, Observation> = HashMap::new();
        let reports: Vec<ReportRow> = sqlx::query_as(
            "SELECT ca.agent_id, t.image, t.digest, a.reported_at FROM campaign_agents ca JOIN agents a ON a.id = ca.agent_id \
             LEFT JOIN targets t ON t.agent_id = ca.agent_id AND t.container = ca.container WHERE ca.campaign_id = $1",
        )
        .bind(id)
        .fetch_all(&self.pool)
        .await
        .map_err(db("reading a campaign's reports"))?;
        for (agent, image, digest, at) in reports {
            let o = seen.entry(agent).or_default();
            o.running = image;
            o.running_digest = digest;
            o.reported_at = at;
        }
        let events: Vec<EventRow> = sqlx::query_as(
            "SELECT e.agent_id, e.op_id, e.to_image, e.outcome, e.reason, e.received_at FROM events e \
             JOIN campaign_agents ca ON ca.agent_id = e.agent_id AND ca.container = e.container \
             WHERE ca.campaign_id = $1 AND e.received_at >= $2",
        )
        .bind(id)
        .bind(since)
        .fetch_all(&self.pool)
        .await
        .map_err(db("reading a campaign's events"))?;
        for (agent, op_id, to, outcome, reason, at) in events {
            let outcome = match outcome.as_str() {
                "committed" => Outcome::Committed,
                "rolled_back" => Outcome::RolledBack,
                "aborted" => Outcome::Aborted,
                _ => Outcome::Failed,
            };
            seen.entry(agent).or_default().events.push(EventSeen { op_id, to, outcome, reason, at });
        }
        let refused: Vec<(String, String, String)> = sqlx::query_as(
            "SELECT agent_id, step, error FROM campaign_sends WHERE campaign_id = $1 AND error IS NOT NULL",
        )
        .bind(id)
        .fetch_all(&self.pool)
        .await
        .map_err(db("reading a campaign's refused pins"))?;
        for (agent, step, error) in refused {
            let o = seen.entry(agent).or_default();
            if step == Step::Rollback.as_str() {
                o.rollback_refused = Some(error);
            } else {
                o.refused = Some(error);
            }
        }
        Ok(seen)
    }
}

/// What a change from `before` to `after` is called in the timeline, if
/// it is one (a phase, a direction, an approval).
fn event_kind(before: &Campaign, after: &Campaign) -> Option<&'static str> {
    if after.direction == Direction::Rollback && before.direction != Direction::Rollback {
        return Some(if before.phase == Phase::Running || before.phase == Phase::Paused {
            if after.reason.as_deref().is_some_and(|r| r.starts_with("aborted")) {
                "aborted and reverting"
            } else {
                "rolling back"
            }
        } else {
            "rolling back"
        });
    }
    if after.approved && !before.approved {
        return Some("approved");
    }
    if after.phase == before.phase {
        return None;
    }
    Some(match (before.phase, after.phase) {
        (Phase::Paused, Phase::Running) => "resumed",
        (_, Phase::Paused) => "paused",
        (_, Phase::Running) => "running",
        (_, Phase::Completed) => "completed",
        (_, Phase::Aborted) => "aborted",
        (_, Phase::RolledBack) => "rolled back",
    })
}

/// Writes the notification a change from `before` (`None`: created) to
/// `after` makes, if any, in the change's transaction; true when a sink
/// is to be told.
async fn notify_change(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    id: &str,
    before: Option<&Campaign>,
    after: &Campaign,
    now: i64,
) -> Result<bool, FleetError> {
    let Some(kind) = crate::notify::campaign_kind(before, after) else { return Ok(false) };
    let event = crate::notify::campaign_event(kind, id, after, now)?;
    Ok(crate::notify::outbox::enqueue(tx, &event, None).await? > 0)
}

/// Appends one line to campaign `id`'s timeline.
async fn record_event(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    id: &str,
    at: i64,
    kind: &str,
    detail: Option<&str>,
    actor: &str,
) -> Result<(), FleetError> {
    let (last,): (Option<i64>,) =
        sqlx::query_as("SELECT MAX(seq) FROM campaign_events WHERE campaign_id = $1")
            .bind(id)
            .fetch_one(&mut **tx)
            .await
            .map_err(db("reading a campaign's timeline"))?;
    sqlx::query(
        "INSERT INTO campaign_events (campaign_id, seq, at, kind, detail, actor) VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(id)
    .bind(last.unwrap_or(0) + 1)
    .bind(at)
    .bind(kind)
    .bind(detail)
    .bind(actor)
    .execute(&mut **tx)
    .await
    .map_err(db("writing a campaign's timeline"))?;
    Ok(())
}

/// One line of a campaign's timeline.
#[derive(Debug, Clone, serde::Serialize)]
pub struct TimelineEntry {
    /// When (unix ms).
    #[serde(skip)]
    pub at_ms: i64,
    /// When (RFC 3339).
    pub at: String,
    /// `created`, `wave 0 started`, `paused`, `resumed`, …
    pub what: String,
    /// The reason or detail, if any.
    pub detail: Option<String>,
    /// Who: `server` for the campaign's own decisions.
    pub by: String,
}

impl Store {
    /// Campaign `id`'s timeline, oldest first: its recorded events and
    /// its waves' starts and ends.
    pub async fn timeline(&self, id: &str, c: &Campaign) -> Result<Vec<TimelineEntry>, FleetError> {
        let rows: Vec<(i64, String, Option<String>, String)> = sqlx::query_as(
            "SELECT at, kind, detail, actor FROM campaign_events WHERE campaign_id = $1 ORDER BY seq",
        )
        .bind(id)
        .fetch_all(&self.pool)
        .await
        .map_err(db("reading a campaign's timeline"))?;
        let mut out: Vec<TimelineEntry> = rows
            .into_iter()
            .map(|(at, what, detail, by)| TimelineEntry {
                at_ms: at,
                at: crate::store::rfc3339(at),
                what,
                detail,
                by,
            })
            .collect();
        let canary = c.spec.canary > 0;
        let waves = c.waves.iter().enumerate().map(|(i, w)| ("", i, w));
        let back = c.rollback_waves.iter().enumerate().map(|(i, w)| ("rollback ", i, w));
        for (kind, i, w) in waves.chain(back) {
            let n = u32::try_from(i).unwrap_or(u32::MAX);
            let agents = c
                .members
                .iter()
                .filter(|m| if kind.is_empty() { m.wave == n } else { m.rollback_wave == Some(n) })
                .count();
            let name = if kind.is_empty() && i == 0 && canary {
                "canary".to_string()
            } else {
                format!("{kind}wave {i}")
            };
            for (at, verb) in [(w.started_at, "started"), (w.done_at, "done")] {
                if let Some(at) = at {
                    out.push(TimelineEntry {
                        at_ms: at,
                        at: crate::store::rfc3339(at),
                        what: format!("{name} {verb}"),
                        detail: (verb == "started").then(|| format!("{agents} agent(s)")),
                        by: "server".into(),
                    });
                }
            }
        }
        out.sort_by_key(|e| e.at_ms);
        Ok(out)
    }
}

/// Holds each member's target for campaign `id`, or refuses (409) naming
/// the campaign that holds one already; the caller's transaction then
/// writes nothing.
async fn take_holds(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    id: &str,
    members: &[Member],
) -> Result<(), FleetError> {
    let mut taken = Vec::new();
    for m in members {
        let inserted = sqlx::query(
            "INSERT INTO campaign_holds (agent_id, target, campaign_id) VALUES ($1, $2, $3) \
             ON CONFLICT (agent_id, target) DO NOTHING",
        )
        .bind(&m.agent)
        .bind(&m.target)
        .bind(id)
        .execute(&mut **tx)
        .await
        .map_err(db("holding a campaign's targets"))?;
        if inserted.rows_affected() == 0 {
            taken.push(m);
        }
    }
    if taken.is_empty() {
        return Ok(());
    }
    let mut holders = Vec::new();
    for m in &taken {
        let row: Option<(String, String, String)> = sqlx::query_as(
            "SELECT h.campaign_id, c.name, a.name FROM campaign_holds h JOIN campaigns c ON c.id = h.campaign_id \
             JOIN agents a ON a.id = h.agent_id WHERE h.agent_id = $1 AND h.target = $2",
        )
        .bind(&m.agent)
        .bind(&m.target)
        .fetch_optional(&mut **tx)
        .await
        .map_err(db("reading who holds a target"))?;
        if let Some(h) = row {
            holders.push(Holder {
                agent: m.agent.clone(),
                agent_name: h.2,
                target: m.target.clone(),
                campaign: h.0,
                name: h.1,
            });
        }
    }
    Err(FleetError::Conflict(held_text(&holders, taken.len())))
}

/// A target another campaign holds.
#[derive(Debug, Clone)]
pub struct Holder {
    /// The agent's id.
    pub agent: String,
    /// Its name.
    pub agent_name: String,
    /// The target.
    pub target: String,
    /// The campaign holding it.
    pub campaign: String,
    /// That campaign's name.
    pub name: String,
}

/// "campaign `id` (name) holds target `web` of agent host-1 (…) and 11
/// more; …": what a refused campaign or rollback says.
pub fn held_text(holders: &[Holder], count: usize) -> String {
    const SHOWN: usize = 5;
    let shown: Vec<String> = holders
        .iter()
        .take(SHOWN)
        .map(|h| {
            format!(
                "campaign `{}` ({}) holds target `{}` of agent {} (`{}`)",
                h.campaign, h.name, h.target, h.agent_name, h.agent
            )
        })
        .collect();
    let more = match count.saturating_sub(shown.len()) {
        0 => String::new(),
        n => format!(" and {n} more"),
    };
    format!(
        "{}{more}; one campaign at a time pins a target: wait for that campaign to end, or abort it",
        shown.join("; ")
    )
}

impl Store {
    /// The targets among `members` a running or paused campaign holds.
    pub async fn holders(&self, members: &[Member]) -> Result<Vec<Holder>, FleetError> {
        let rows: Vec<(String, String, String, String, String)> = sqlx::query_as(
            "SELECT h.agent_id, a.name, h.target, h.campaign_id, c.name FROM campaign_holds h \
             JOIN campaigns c ON c.id = h.campaign_id JOIN agents a ON a.id = h.agent_id",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(db("reading which targets campaigns hold"))?;
        let wanted: std::collections::HashSet<(&str, &str)> =
            members.iter().map(|m| (m.agent.as_str(), m.target.as_str())).collect();
        Ok(rows
            .into_iter()
            .filter(|r| wanted.contains(&(r.0.as_str(), r.2.as_str())))
            .map(|(agent, agent_name, target, campaign, name)| Holder {
                agent,
                agent_name,
                target,
                campaign,
                name,
            })
            .collect())
    }

    /// Holds the targets of every campaign running or paused (those
    /// created before holds were kept); idempotent, run at start.
    pub async fn restore_holds(&self) -> Result<(), FleetError> {
        let ids: Vec<(String,)> = sqlx::query_as(
            "SELECT id FROM campaigns WHERE phase IN ('running', 'paused') ORDER BY created_at",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(db("listing running campaigns"))?;
        for (id,) in ids {
            let c = self.campaign(&id).await?.campaign;
            let mut tx = self.pool.begin().await.map_err(db("starting to restore holds"))?;
            for m in &c.members {
                sqlx::query(
                    "INSERT INTO campaign_holds (agent_id, target, campaign_id) VALUES ($1, $2, $3) \
                     ON CONFLICT (agent_id, target) DO NOTHING",
                )
                .bind(&m.agent)
                .bind(&m.target)
                .bind(&id)
                .execute(&mut *tx)
                .await
                .map_err(db("restoring a campaign's holds"))?;
            }
            tx.commit().await.map_err(db("committing restored holds"))?;
        }
        Ok(())
    }
}

async fn write_waves(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    id: &str,
    c: &Campaign,
) -> Result<(), FleetError> {
    let all = c
        .waves
        .iter()
        .map(|w| ("upgrade", w))
        .enumerate()
        .chain(c.rollback_waves.iter().map(|w| ("rollback", w)).enumerate());
    for (i, (kind, w)) in all {
        sqlx::query(
            "INSERT INTO campaign_waves (campaign_id, kind, wave, started_at, done_at) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(id)
        .bind(kind)
        .bind(i64::try_from(i).unwrap_or(i64::MAX))
        .bind(w.started_at)
        .bind(w.done_at)
        .execute(&mut **tx)
        .await
        .map_err(db("storing a campaign's waves"))?;
    }
    Ok(())
}
