//! Enrolment tokens, enrolment, and the agent credential it hands out.
//!
//! An admin creates a token (expiry, number of uses, labels); an agent
//! trades it once for its own credential `AGENT_ID.SECRET`. Both are kept
//! only as hashes ([`super::secret`]). Every agent request is checked
//! against the database, so a revoke takes effect at the next request.

use std::collections::BTreeMap;

use serde::Serialize;

use super::error::db;
use super::protocol::{split_credential, EnrolRequest, EnrolResponse};
use super::store::{now_ms, rfc3339, Store};
use super::{secret, FleetError};
use crate::manifest::Manifest;

/// Labels of an agent: `tier=edge`, `site=paris`.
pub type Labels = BTreeMap<String, String>;

/// The most uses one enrolment token may have.
pub const MAX_USES: i64 = 10_000;
/// `last_seen` is written at most this often per agent (the offline
/// threshold is a few poll timeouts, tens of seconds).
pub const SEEN_GRANULARITY_MS: i64 = 5_000;
/// The most labels a token (and so an agent) may carry.
const MAX_LABELS: usize = 32;

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
        if v.len() > 255 || v.chars().any(char::is_control) {
            return Err(FleetError::Invalid(format!(
                "label `{k}`: the value must be at most 255 characters without control characters"
            )));
        }
    }
    Ok(())
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
        .execute(&self.pool)
        .await
        .map_err(db("creating an enrolment token"))?;
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
    pub async fn revoke_token(&self, id: &str) -> Result<(), FleetError> {
        let done =
            sqlx::query("UPDATE enrolment_tokens SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL")
                .bind(now_ms())
                .bind(id)
                .execute(&self.pool)
                .await
                .map_err(db("revoking an enrolment token"))?;
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
    /// all in one transaction.
    pub async fn enrol(&self, request: &EnrolRequest) -> Result<EnrolResponse, FleetError> {
        let bad = || {
            FleetError::Unauthorized("the enrolment token is not valid; ask an admin for a new one".into())
        };
        let (token_id, token_secret) = split_credential(request.token.trim()).ok_or_else(bad)?;
        let name = request.name.trim();
        if name.is_empty() || name.len() > 253 || name.chars().any(char::is_control) {
            return Err(FleetError::Invalid(
                "name: 1-253 characters without control characters (the host name by default)".into(),
            ));
        }
        let origin = format!("agent {name}'s manifest");
        Manifest::parse(&origin, &request.manifest).map_err(|e| FleetError::Invalid(e.to_string()))?;
        let now = now_ms();
        let row: Option<(String, String, i64, i64, Option<i64>)> = sqlx::query_as(
            "SELECT token_hash, labels, expires_at, uses_left, revoked_at FROM enrolment_tokens WHERE id = $1",
        )
        .bind(token_id)
        .fetch_optional(&self.pool)
        .await
        .map_err(db("reading an enrolment token"))?;
        let Some((hash, labels, expires_at, uses_left, revoked_at)) = row else { return Err(bad()) };
        if !secret::verify(token_secret, &hash) {
            return Err(bad());
        }
        // Only the token's holder learns why it no longer works.
        let refused = |why: &str| {
            FleetError::Unauthorized(format!("the enrolment token is {why}; ask an admin for a new one"))
        };
        match status(expires_at, uses_left, revoked_at, now) {
            "active" => {}
            why => return Err(refused(why)),
        }
        // The transaction starts by writing: SQLite cannot upgrade a read
        // transaction whose snapshot another writer has moved past. The
        // spend is conditional on the use still being there, so two agents
        // racing for the last use cannot both win.
        let mut tx = self.pool.begin().await.map_err(db("starting an enrolment"))?;
        let spent = sqlx::query(
            "UPDATE enrolment_tokens SET uses_left = uses_left - 1 \
             WHERE id = $1 AND token_hash = $2 AND uses_left > 0 AND revoked_at IS NULL AND expires_at > $3",
        )
        .bind(token_id)
        .bind(&hash)
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(db("spending an enrolment token"))?;
        if spent.rows_affected() != 1 {
            return Err(refused("used"));
        }
        let (agent_id, agent_secret) = (secret::new_id()?, secret::new_secret()?);
        sqlx::query(
            "INSERT INTO agents (id, name, labels, credential_hash, enrolment_id, enrolled_at, last_seen) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&agent_id)
        .bind(name)
        .bind(&labels)
        .bind(secret::hash(&agent_secret))
        .bind(token_id)
        .bind(now)
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(db("storing a new agent"))?;
        sqlx::query("INSERT INTO desired (agent_id, manifest, revision, updated_at) VALUES ($1, $2, 1, $3)")
            .bind(&agent_id)
            .bind(&request.manifest)
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(db("storing a new agent's manifest"))?;
        tx.commit().await.map_err(db("committing an enrolment"))?;
        tracing::info!(agent = %agent_id, name, enrolment = token_id, "agent enrolled");
        Ok(EnrolResponse { credential: format!("{agent_id}.{agent_secret}"), agent_id })
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
        if now_ms().saturating_sub(last_seen) >= SEEN_GRANULARITY_MS {
            self.seen(id).await?;
        }
        Ok(id.to_string())
    }

    /// Records that `agent` was heard from now (at most every
    /// [`SEEN_GRANULARITY_MS`]).
    async fn seen(&self, agent: &str) -> Result<(), FleetError> {
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
    pub async fn revoke_agent(&self, agent: &str) -> Result<(), FleetError> {
        let done = sqlx::query("UPDATE agents SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL")
            .bind(now_ms())
            .bind(agent)
            .execute(&self.pool)
            .await
            .map_err(db("revoking an agent"))?;
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
    fn a_token_is_active_only_while_unexpired_unused_and_unrevoked() {
        assert_eq!(status(100, 1, None, 50), "active");
        assert_eq!(status(100, 1, None, 100), "expired");
        assert_eq!(status(100, 0, None, 50), "used");
        assert_eq!(status(100, 1, Some(10), 50), "revoked");
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
