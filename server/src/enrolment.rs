//! Enrolment tokens, enrolment, and the agent credential it hands out.
//!
//! An admin creates a token (expiry, number of uses, labels); an agent
//! trades it once for its own credential `AGENT_ID.SECRET`. Both are kept
//! only as hashes ([`super::secret`]). Every agent request is checked
//! against the database, so a revoke takes effect at the next request.

use std::collections::BTreeMap;

use serde::Serialize;
use tokio::sync::oneshot;

use super::enrol_queue::{Pending, Spent};
use super::error::db;
use super::protocol::{split_credential, EnrolRequest, EnrolResponse, DEFAULT_WAIT_SECS};
use super::store::{now_ms, rfc3339, Store};
use super::{secret, FleetError};
use crate::access::Audit;
use container_upgrader::manifest::Manifest;

/// Labels of an agent: `tier=edge`, `site=paris`.
pub type Labels = BTreeMap<String, String>;

/// The most uses one enrolment token may have.
pub const MAX_USES: i64 = 10_000;
/// Margin added to the offline threshold, for slow networks and clocks.
const OFFLINE_MARGIN_MS: i64 = 10_000;

/// How long an agent may go unheard before it is offline: `offline_after`
/// polls of [`DEFAULT_WAIT_SECS`], plus a margin.
pub fn offline_threshold_ms(offline_after: u32) -> i64 {
    i64::from(offline_after) * poll_ms() + OFFLINE_MARGIN_MS
}

fn poll_ms() -> i64 {
    i64::try_from(DEFAULT_WAIT_SECS).unwrap_or(30) * 1000
}

/// How stale `last_seen` may get before a request writes it again: as
/// long as it may be while an agent polling every [`DEFAULT_WAIT_SECS`]
/// still never looks offline (the write comes with the first request
/// after this, at most one poll later): two thirds of the threshold less
/// a poll, at least 5 s. At the default three polls, 46 s: an agent's
/// row is written about once a minute, not on every poll and report.
pub fn seen_granularity_ms(offline_after: u32) -> i64 {
    ((offline_threshold_ms(offline_after) - poll_ms()) * 2 / 3).max(5_000)
}

/// The most labels a token (and so an agent) may carry.
const MAX_LABELS: usize = 32;
/// The most enrolments written in one transaction (7 values each: well
/// within both databases' limits on bound values).
const MAX_GROUP: usize = 128;

/// A token's hash, labels, expiry, uses left and revocation time.
type TokenState = (String, String, i64, i64, Option<i64>);

/// Spends `uses` of token `id` if it has that many left, is active and is
/// the one `hash` names.
async fn spend(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    id: &str,
    hash: &str,
    uses: i64,
    now: i64,
) -> Result<bool, FleetError> {
    let spent = sqlx::query(
        "UPDATE enrolment_tokens SET uses_left = uses_left - $1 \
         WHERE id = $2 AND token_hash = $3 AND uses_left >= $1 AND revoked_at IS NULL AND expires_at > $4",
    )
    .bind(uses)
    .bind(id)
    .bind(hash)
    .bind(now)
    .execute(&mut **tx)
    .await
    .map_err(db("spending an enrolment token"))?;
    Ok(spent.rows_affected() == 1)
}

/// `($1, $2, …), (…)`: `rows` rows of `columns` placeholders.
fn placeholders(rows: usize, columns: usize) -> String {
    (0..rows)
        .map(|r| {
            let row: Vec<String> = (1..=columns).map(|c| format!("${}", r * columns + c)).collect();
            format!("({})", row.join(", "))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// A token as listed (never its secret).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct TokenInfo {
    /// Its id: the part before the dot.
    pub id: String,
    /// The labels enrolled agents get.
    pub labels: Labels,
    /// When it expires (RFC 3339).
    pub expires_at: String,
    /// Enrolments left.
    pub uses_left: i64,
    /// When it was made (RFC 3339).
    pub created_at: String,
    /// `active`, `expired`, `used` or `revoked`.
    pub status: &'static str,
}

/// A new token: the only time its secret is shown.
#[derive(Debug, Clone, Serialize)]
pub struct NewToken {
    /// What the agent is given: `ID.SECRET`.
    pub token: String,
    /// The token as listed.
    #[serde(flatten)]
    pub info: TokenInfo,
}

/// Checks labels: at most 32, keys 1-63 characters of `[A-Za-z0-9._/-]`,
/// values at most 255 characters without control characters.
pub fn check_labels(labels: &Labels) -> Result<(), FleetError> {
    if labels.len() > MAX_LABELS {
        return Err(FleetError::Invalid(format!(
            "{} labels; at most {MAX_LABELS} are allowed",
            labels.len()
        )));
    }
    for (k, v) in labels {
        let key_ok = !k.is_empty()
            && k.len() <= 63
            && k.bytes().all(|b| b.is_ascii_alphanumeric() || b"._/-".contains(&b));
        if !key_ok {
            return Err(FleetError::Invalid(format!(
                "label key `{k}`: use 1-63 characters of letters, digits, `.`, `_`, `/`, `-`"
            )));
        }
        if v.len() > 255 || v.chars().any(|c| c.is_control() || deceptive(c)) {
            return Err(FleetError::Invalid(format!(
                "label `{k}`: the value must be at most 255 characters without control, bidirectional or zero-width characters"
            )));
        }
    }
    Ok(())
}

/// Characters that make a name read other than it is: bidirectional
/// overrides and isolates (`host<U+202E>1-bew` shows as `host-web1`) and
/// zero-width ones (two names that look alike but differ).
pub fn deceptive(c: char) -> bool {
    matches!(
        c,
        '\u{061C}' | '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{2064}'
            | '\u{2066}'..='\u{2069}' | '\u{180E}' | '\u{FEFF}'
    )
}

fn status(expires_at: i64, uses_left: i64, revoked_at: Option<i64>, now: i64) -> &'static str {
    if revoked_at.is_some() {
        "revoked"
    } else if expires_at <= now {
        "expired"
    } else if uses_left <= 0 {
        "used"
    } else {
        "active"
    }
}

fn parse_labels(json: &str) -> Result<Labels, FleetError> {
    serde_json::from_str(json)
        .map_err(|e| FleetError::Corrupt(format!("stored labels are not a JSON object: {e}")))
}

fn labels_json(labels: &Labels) -> String {
    // A map of strings always serialises.
    serde_json::to_string(labels).unwrap_or_else(|_| "{}".into())
}

type TokenRow = (String, String, i64, i64, i64, Option<i64>);

fn token_info(row: TokenRow, now: i64) -> Result<TokenInfo, FleetError> {
    let (id, labels, expires_at, uses_left, created_at, revoked_at) = row;
    Ok(TokenInfo {
        id,
        labels: parse_labels(&labels)?,
        expires_at: rfc3339(expires_at),
        uses_left,
        created_at: rfc3339(created_at),
        status: status(expires_at, uses_left, revoked_at, now),
    })
}

impl Store {
    /// Makes an enrolment token valid for `valid_ms` and `uses` enrolments.
    pub async fn create_token(
        &self,
        valid_ms: i64,
        uses: i64,
        labels: Labels,
        audit: &Audit,
    ) -> Result<NewToken, FleetError> {
        if !(1..=MAX_USES).contains(&uses) {
            return Err(FleetError::Invalid(format!("uses: {uses}; allowed 1 to {MAX_USES}")));
        }
        if valid_ms <= 0 {
            return Err(FleetError::Invalid("expires_in: must be more than zero".into()));
        }
        check_labels(&labels)?;
        let (id, secret) = (secret::new_id()?, secret::new_secret()?);
        let now = now_ms();
        let _gate = self.write_gate().await;
        let mut tx = self.pool.begin().await.map_err(db("starting to create an enrolment token"))?;
        sqlx::query(
            "INSERT INTO enrolment_tokens (id, token_hash, labels, expires_at, uses_left, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&id)
        .bind(secret::hash(&secret))
        .bind(labels_json(&labels))
        .bind(now.saturating_add(valid_ms))
        .bind(uses)
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(db("creating an enrolment token"))?;
        let audit = Audit {
            object: format!("enrolment token {id}"),
            summary: format!("{}; {uses} uses, labels {}", audit.summary, labels_json(&labels)),
            ..audit.clone()
        };
        audit.record(&mut tx, crate::access::audit::OK).await?;
        tx.commit().await.map_err(db("creating an enrolment token"))?;
        let token = format!("{id}.{secret}");
        let info =
            token_info((id, labels_json(&labels), now.saturating_add(valid_ms), uses, now, None), now)?;
        Ok(NewToken { token, info })
    }

    /// Every enrolment token, newest first.
    pub async fn list_tokens(&self) -> Result<Vec<TokenInfo>, FleetError> {
        let rows: Vec<TokenRow> = sqlx::query_as(
            "SELECT id, labels, expires_at, uses_left, created_at, revoked_at FROM enrolment_tokens \
             ORDER BY created_at DESC, id",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(db("listing enrolment tokens"))?;
        let now = now_ms();
        rows.into_iter().map(|r| token_info(r, now)).collect()
    }

    /// Revokes a token (agents it enrolled keep their credentials).
    pub async fn revoke_token(&self, id: &str, audit: &Audit) -> Result<(), FleetError> {
        let gate = self.write_gate().await;
        let mut tx = self.pool.begin().await.map_err(db("starting to revoke an enrolment token"))?;
        let done =
            sqlx::query("UPDATE enrolment_tokens SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL")
                .bind(now_ms())
                .bind(id)
                .execute(&mut *tx)
                .await
                .map_err(db("revoking an enrolment token"))?;
        if done.rows_affected() == 1 {
            audit.record(&mut tx, crate::access::audit::OK).await?;
            tx.commit().await.map_err(db("revoking an enrolment token"))?;
        }
        drop(gate);
        if done.rows_affected() == 0 {
            let known: Option<(String,)> = sqlx::query_as("SELECT id FROM enrolment_tokens WHERE id = $1")
                .bind(id)
                .fetch_optional(&self.pool)
                .await
                .map_err(db("looking up an enrolment token"))?;
            if known.is_none() {
                return Err(FleetError::NotFound(format!(
                    "no enrolment token `{id}`; `fleet token list` shows them"
                )));
            }
        }
        Ok(())
    }

    /// Enrols an agent: checks the token, spends one use of it, and stores
    /// the agent with the token's labels and its manifest as revision 1,
    /// all in one transaction (shared with the enrolments that arrived at
    /// the same time).
    pub async fn enrol(&self, request: &EnrolRequest, source: &str) -> Result<EnrolResponse, FleetError> {
        let bad = || {
            FleetError::Unauthorized("the enrolment token is not valid; ask an admin for a new one".into())
        };
        let (token_id, token_secret) = split_credential(request.token.trim()).ok_or_else(bad)?;
        let name = request.name.trim();
        if name.is_empty() || name.len() > 253 || name.chars().any(|c| c.is_control() || deceptive(c)) {
            return Err(FleetError::Invalid(
                "name: 1-253 characters without control, bidirectional (U+202A-U+202E, U+2066-U+2069, …) or \
                 zero-width characters (the host name by default)"
                    .into(),
            ));
        }
        let origin = format!("agent {name}'s manifest");
        Manifest::parse(&origin, &request.manifest).map_err(|e| FleetError::Invalid(e.to_string()))?;
        let now = now_ms();
        let (hash, labels) = self.token_hash_and_labels(token_id, token_secret, now).await?;
        let (agent_id, agent_secret) = (secret::new_id()?, secret::new_secret()?);
        let (done, result) = oneshot::channel();
        let pending = Pending {
            token_id: token_id.to_string(),
            token_hash: hash,
            agent_id: agent_id.clone(),
            credential_hash: secret::hash(&agent_secret),
            name: name.to_string(),
            labels,
            manifest: request.manifest.clone(),
            now,
            source: source.to_string(),
            done,
        };
        match self.group_commit(pending, result).await? {
            Spent::Yes => {}
            Spent::NoUseLeft => {
                // Why: expired or revoked since, or used up (also by a race).
                let why = match self.token_row(token_id).await? {
                    Some((_, _, expires_at, uses_left, revoked_at)) => {
                        match status(expires_at, uses_left, revoked_at, now_ms()) {
                            "active" => "used",
                            why => why,
                        }
                    }
                    None => "used",
                };
                return Err(FleetError::Unauthorized(format!(
                    "the enrolment token is {why}; ask an admin for a new one"
                )));
            }
        }
        tracing::info!(agent = %agent_id, name, enrolment = token_id, "agent enrolled");
        Ok(EnrolResponse { credential: format!("{agent_id}.{agent_secret}"), agent_id })
    }

    /// Checks an enrolment token without spending it: what the enrolment
    /// route does with a token from the `Authorization` header before it
    /// reads a byte of the body, so a client without a valid token cannot
    /// hold a connection by sending its body slowly.
    pub async fn check_enrolment_token(&self, token: &str) -> Result<(), FleetError> {
        let bad = || {
            FleetError::Unauthorized("the enrolment token is not valid; ask an admin for a new one".into())
        };
        let (token_id, token_secret) = split_credential(token.trim()).ok_or_else(bad)?;
        self.token_hash_and_labels(token_id, token_secret, now_ms()).await.map(drop)
    }

    /// The hash and labels of the enrolment token `token_id` whose secret
    /// is `token_secret`, if it is valid.
    async fn token_hash_and_labels(
        &self,
        token_id: &str,
        token_secret: &str,
        now: i64,
    ) -> Result<(String, String), FleetError> {
        let bad = || {
            FleetError::Unauthorized("the enrolment token is not valid; ask an admin for a new one".into())
        };
        // Only the token's holder learns why it no longer works.
        let refused = |why: &str| {
            FleetError::Unauthorized(format!("the enrolment token is {why}; ask an admin for a new one"))
        };
        // A token's hash and labels never change: after its first use they
        // are known here, and whether it is still active is left to the
        // conditional spend (a burst of agents then costs no read each).
        if let Some((hash, labels)) = self.enrolments.known(token_id) {
            return if secret::verify(token_secret, &hash) { Ok((hash, labels)) } else { Err(bad()) };
        }
        let Some(row) = self.token_row(token_id).await? else { return Err(bad()) };
        let (hash, labels, expires_at, uses_left, revoked_at) = row;
        if !secret::verify(token_secret, &hash) {
            return Err(bad());
        }
        match status(expires_at, uses_left, revoked_at, now) {
            "active" => {}
            why => return Err(refused(why)),
        }
        self.enrolments.remember(token_id, &hash, &labels);
        Ok((hash, labels))
    }

    /// Token `id`'s hash, labels, expiry, uses left and revocation.
    async fn token_row(&self, id: &str) -> Result<Option<TokenState>, FleetError> {
        sqlx::query_as(
            "SELECT token_hash, labels, expires_at, uses_left, revoked_at FROM enrolment_tokens WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await
        .map_err(db("reading an enrolment token"))
    }

    /// Queues `pending` for the next group commit and waits for its
    /// outcome. Whoever finds the writer free writes every enrolment
    /// queued so far in one transaction (the others find theirs done when
    /// their turn comes): a burst of agents on one token costs a few
    /// commits instead of one each, and PostgreSQL locks the token's row
    /// once per group. The write runs in a task of its own, so an agent
    /// hanging up never cancels the others' enrolments.
    async fn group_commit(
        &self,
        pending: Pending,
        mut result: oneshot::Receiver<Result<Spent, FleetError>>,
    ) -> Result<Spent, FleetError> {
        let queue = self.enrolments.clone();
        queue.lock_queue().push(pending);
        loop {
            let writer = queue.writer.clone().lock_owned().await;
            match result.try_recv() {
                Ok(outcome) => return outcome,
                Err(oneshot::error::TryRecvError::Closed) => {
                    return Err(FleetError::Batch("an enrolment was interrupted; enrol again".into()))
                }
                Err(oneshot::error::TryRecvError::Empty) => {}
            }
            let batch: Vec<Pending> = {
                let mut q = queue.lock_queue();
                let n = q.len().min(MAX_GROUP);
                q.drain(..n).collect()
            };
            let store = self.clone();
            let task = tokio::spawn(async move {
                let _writer = writer;
                store.write_group(batch).await;
            });
            // Only a panic ends the task early; the senders it dropped
            // then answer `Closed` above.
            let _ = task.await;
        }
    }

    /// Writes a group of enrolments in one transaction and tells each its
    /// outcome: per token, the uses are spent in one conditional statement
    /// (one by one, first come first served, when fewer are left than
    /// asked), then every agent and manifest is inserted. A failed
    /// transaction spends nothing and fails every enrolment in it.
    async fn write_group(&self, batch: Vec<Pending>) {
        let _gate = self.write_gate().await;
        match self.try_write_group(&batch).await {
            Ok(outcomes) => {
                for (p, outcome) in batch.into_iter().zip(outcomes) {
                    let _ = p.done.send(Ok(outcome));
                }
            }
            Err(e) => {
                tracing::error!(error = %e, agents = batch.len(), "a group of enrolments failed");
                let why = e.to_string();
                for p in batch {
                    let _ = p.done.send(Err(FleetError::Batch(why.clone())));
                }
            }
        }
    }

    async fn try_write_group(&self, batch: &[Pending]) -> Result<Vec<Spent>, FleetError> {
        let mut outcomes = vec![Spent::Yes; batch.len()];
        let mut tokens: BTreeMap<(&str, &str), Vec<usize>> = BTreeMap::new();
        for (i, p) in batch.iter().enumerate() {
            tokens.entry((&p.token_id, &p.token_hash)).or_default().push(i);
        }
        let now = batch.iter().map(|p| p.now).max().unwrap_or_else(now_ms);
        let mut tx = self.pool.begin().await.map_err(db("starting an enrolment"))?;
        for ((id, hash), members) in &tokens {
            let all = i64::try_from(members.len()).unwrap_or(i64::MAX);
            if spend(&mut tx, id, hash, all, now).await? {
                continue;
            }
            // Fewer uses left than agents asking: the first ones get them.
            for &i in members {
                if !spend(&mut tx, id, hash, 1, now).await? {
                    outcomes[i] = Spent::NoUseLeft;
                }
            }
        }
        let enrolled: Vec<&Pending> =
            batch.iter().zip(&outcomes).filter(|(_, o)| **o == Spent::Yes).map(|(p, _)| p).collect();
        if !enrolled.is_empty() {
            let sql = format!(
                "INSERT INTO agents (id, name, labels, credential_hash, enrolment_id, enrolled_at, last_seen) VALUES {}",
                placeholders(enrolled.len(), 7)
            );
            let mut agents = sqlx::query(&sql);
            for p in &enrolled {
                agents = agents
                    .bind(&p.agent_id)
                    .bind(&p.name)
                    .bind(&p.labels)
                    .bind(&p.credential_hash)
                    .bind(&p.token_id)
                    .bind(p.now)
                    .bind(p.now);
            }
            agents.execute(&mut *tx).await.map_err(db("storing new agents"))?;
            let sql = format!(
                "INSERT INTO desired (agent_id, manifest, revision, updated_at) VALUES {}",
                placeholders(enrolled.len(), 4)
            );
            let mut desired = sqlx::query(&sql);
            for p in &enrolled {
                desired = desired.bind(&p.agent_id).bind(&p.manifest).bind(1_i64).bind(p.now);
            }
            desired.execute(&mut *tx).await.map_err(db("storing new agents' manifests"))?;
            let sql = format!(
                "INSERT INTO audit (id, at, actor, via, source, action, object, summary, outcome) VALUES {}",
                placeholders(enrolled.len(), 9)
            );
            let mut audit = sqlx::query(&sql);
            for p in &enrolled {
                audit = audit
                    .bind(secret::new_id()?)
                    .bind(p.now)
                    .bind(format!("enrolment token {}", p.token_id))
                    .bind("agent enrolment")
                    .bind(&p.source)
                    .bind("agent.enrol")
                    .bind(format!("agent {}", p.agent_id))
                    .bind(format!("agent {} enrolled with labels {}", p.name, p.labels))
                    .bind(crate::access::audit::OK);
            }
            audit.execute(&mut *tx).await.map_err(db("auditing new agents"))?;
        }
        tx.commit().await.map_err(db("committing enrolments"))?;
        Ok(outcomes)
    }

    /// The agent a bearer credential belongs to, if it is valid and not
    /// revoked; marks the agent seen.
    pub async fn authenticate(&self, credential: &str) -> Result<String, FleetError> {
        let bad = || FleetError::Unauthorized("the agent credential is not valid; enrol again".into());
        let (id, secret) = split_credential(credential.trim()).ok_or_else(bad)?;
        let row: Option<(String, Option<i64>, i64)> =
            sqlx::query_as("SELECT credential_hash, revoked_at, last_seen FROM agents WHERE id = $1")
                .bind(id)
                .fetch_optional(&self.pool)
                .await
                .map_err(db("checking an agent credential"))?;
        let Some((hash, revoked_at, last_seen)) = row else { return Err(bad()) };
        if !secret::verify(secret, &hash) {
            return Err(bad());
        }
        if revoked_at.is_some() {
            return Err(FleetError::Unauthorized(
                "this agent was revoked; an admin must give it a new enrolment token".into(),
            ));
        }
        // Liveness is judged in tens of seconds: a write per request would
        // only serialise the agents' requests on SQLite's one writer.
        if now_ms().saturating_sub(last_seen) >= seen_granularity_ms(self.offline_after) {
            self.seen(id).await?;
        }
        Ok(id.to_string())
    }

    /// Records that `agent` was heard from now (at most every
    /// [`seen_granularity_ms`]).
    async fn seen(&self, agent: &str) -> Result<(), FleetError> {
        let _gate = self.write_gate().await;
        sqlx::query("UPDATE agents SET last_seen = $1 WHERE id = $2")
            .bind(now_ms())
            .bind(agent)
            .execute(&self.pool)
            .await
            .map_err(db("recording when an agent was seen"))?;
        Ok(())
    }

    /// Revokes an agent: its credential stops working at its next request
    /// (and its long-poll ends with 401).
    pub async fn revoke_agent(&self, agent: &str, audit: &Audit) -> Result<(), FleetError> {
        let gate = self.write_gate().await;
        let mut tx = self.pool.begin().await.map_err(db("starting to revoke an agent"))?;
        let done = sqlx::query("UPDATE agents SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL")
            .bind(now_ms())
            .bind(agent)
            .execute(&mut *tx)
            .await
            .map_err(db("revoking an agent"))?;
        if done.rows_affected() == 1 {
            self.announce(&mut tx, agent, -1).await?;
            audit.record(&mut tx, crate::access::audit::OK).await?;
            tx.commit().await.map_err(db("revoking an agent"))?;
        }
        drop(gate);
        if done.rows_affected() == 0 {
            self.agent_exists(agent).await?;
        }
        self.wake(agent, -1);
        tracing::info!(agent, "agent revoked");
        Ok(())
    }

    /// `NotFound` unless `agent` is enrolled (revoked or not).
    pub(crate) async fn agent_exists(&self, agent: &str) -> Result<(), FleetError> {
        let row: Option<(String,)> = sqlx::query_as("SELECT id FROM agents WHERE id = $1")
            .bind(agent)
            .fetch_optional(&self.pool)
            .await
            .map_err(db("looking up an agent"))?;
        row.map(|_| ())
            .ok_or_else(|| FleetError::NotFound(format!("no agent `{agent}`; `fleet agents` lists them")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_seen_is_never_too_stale_for_the_offline_threshold() {
        for polls in [1, 2, 3, 10, 1000] {
            let threshold = offline_threshold_ms(polls);
            let granularity = seen_granularity_ms(polls);
            // The write waits for the first request after `granularity`,
            // at most one poll later.
            assert!(granularity + poll_ms() < threshold, "{polls}: {granularity} ms");
            assert!(granularity >= 5_000);
        }
        assert!(seen_granularity_ms(3) > poll_ms(), "the default skips every other poll's write");
    }

    #[test]
    fn a_token_is_active_only_while_unexpired_unused_and_unrevoked() {
        assert_eq!(status(100, 1, None, 50), "active");
        assert_eq!(status(100, 1, None, 100), "expired");
        assert_eq!(status(100, 0, None, 50), "used");
        assert_eq!(status(100, 1, Some(10), 50), "revoked");
    }

    #[test]
    fn group_placeholders_number_every_value_once() {
        assert_eq!(placeholders(1, 2), "($1, $2)");
        assert_eq!(placeholders(2, 3), "($1, $2, $3), ($4, $5, $6)");
    }

    #[test]
    fn labels_are_bounded() {
        let ok: Labels = [("tier".to_string(), "edge".to_string())].into();
        assert!(check_labels(&ok).is_ok());
        let bad_key: Labels = [("ti er".to_string(), "x".to_string())].into();
        assert!(check_labels(&bad_key).is_err());
        let bad_value: Labels = [("k".to_string(), "a\nb".to_string())].into();
        assert!(check_labels(&bad_value).is_err());
    }
}
