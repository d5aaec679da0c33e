//! API tokens: a named user's credential for the API and the `fleet` CLI,
//! `cut.ID.SECRET` (256 random bits; only the SHA-256 of the secret is
//! kept), with its own role (no higher than its user's), an expiry and a
//! revocation. At every request the role in force is the lower of the
//! token's and its user's current one, so lowering or removing a user
//! takes their tokens with them at once.

use serde::{Deserialize, Serialize};

use super::users::stored_role;
use super::{Audit, Principal, Role, Via};
use crate::error::db;
use crate::store::{now_ms, rfc3339, Store};
use crate::{secret, FleetError};

/// What every API token starts with (so the server tells one from the
/// break-glass admin token without a lookup).
pub const PREFIX: &str = "cut.";
/// The longest a token may be valid (one year).
pub const MAX_VALID_MS: i64 = 366 * 24 * 60 * 60 * 1000;
/// Its default validity (30 days).
pub const DEFAULT_VALID: &str = "30d";
/// How often a token's "last used" is written at most.
const LAST_USED_EVERY_MS: i64 = 60_000;

/// Whether `bearer` has the shape of an API token.
pub fn is_api_token(bearer: &str) -> bool {
    bearer.starts_with(PREFIX)
}

/// An API token as listed (no secret).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ApiTokenInfo {
    /// Its id (the middle of the token).
    pub id: String,
    /// Whose.
    pub user: String,
    /// Its name, unique per user.
    pub name: String,
    /// Its role.
    pub role: Role,
    /// `active`, `expired` or `revoked`.
    pub status: String,
    /// When made (RFC 3339).
    pub created_at: String,
    /// When it stops working.
    pub expires_at: String,
    /// When last used, to the minute.
    pub last_used_at: Option<String>,
}

/// A token just made: the token itself is shown this once.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NewApiToken {
    /// `cut.ID.SECRET`, for `Authorization: Bearer` or `fleet --token-file`.
    pub token: String,
    /// The token.
    pub info: ApiTokenInfo,
}

type TokenRow = (String, String, String, String, i64, i64, Option<i64>, Option<i64>);

/// A token's hash, user, name, role, expiry, revocation, last use, and
/// its user's role.
type PrincipalRow = (String, String, String, String, i64, Option<i64>, Option<i64>, Option<String>);

const TOKEN_COLUMNS: &str = "id, user_name, name, role, created_at, expires_at, last_used_at, revoked_at";

fn token_info(row: TokenRow, now: i64) -> Result<ApiTokenInfo, FleetError> {
    let (id, user, name, role, created_at, expires_at, last_used_at, revoked_at) = row;
    let status = if revoked_at.is_some() {
        "revoked"
    } else if expires_at <= now {
        "expired"
    } else {
        "active"
    };
    Ok(ApiTokenInfo {
        id,
        user,
        name,
        role: stored_role(&role)?,
        status: status.into(),
        created_at: rfc3339(created_at),
        expires_at: rfc3339(expires_at),
        last_used_at: last_used_at.map(rfc3339),
    })
}

/// Checks a token's name: 1-64 printable characters, no control or
/// bidirectional ones.
fn check_token_name(name: &str) -> Result<(), FleetError> {
    let ok = !name.trim().is_empty()
        && name.chars().count() <= 64
        && name.chars().all(|c| !c.is_control() && !('\u{200b}'..='\u{206f}').contains(&c));
    if ok {
        Ok(())
    } else {
        Err(FleetError::Invalid(
            "name: 1-64 characters without control, zero-width or bidirectional characters".into(),
        ))
    }
}

impl Store {
    /// Makes API token `name` for `user` with `role` (at most the user's),
    /// valid for `valid_ms`.
    pub async fn create_api_token(
        &self,
        user: &str,
        name: &str,
        role: Role,
        valid_ms: i64,
        audit: &Audit,
    ) -> Result<NewApiToken, FleetError> {
        check_token_name(name)?;
        if !(1..=MAX_VALID_MS).contains(&valid_ms) {
            return Err(FleetError::Invalid(
                "expires_in: more than zero and at most 366 days; a token must expire".into(),
            ));
        }
        let (id, secret) = (secret::new_id()?, secret::new_secret()?);
        let now = now_ms();
        let _gate = self.write_gate().await;
        let mut tx = self.pool.begin().await.map_err(db("starting to make an API token"))?;
        let owner: Option<(String,)> = sqlx::query_as("SELECT role FROM users WHERE name = $1")
            .bind(user)
            .fetch_optional(&mut *tx)
            .await
            .map_err(db("reading a user"))?;
        let Some((owner_role,)) = owner else {
            return Err(FleetError::NotFound(format!("no user `{user}`; `fleet user list` shows the users")));
        };
        let owner_role = stored_role(&owner_role)?;
        if role > owner_role {
            return Err(FleetError::Invalid(format!(
                "role: {role} is above user `{user}`'s role ({owner_role}); a token's role is at most its user's"
            )));
        }
        let taken: Option<(String,)> =
            sqlx::query_as("SELECT id FROM api_tokens WHERE user_name = $1 AND name = $2")
                .bind(user)
                .bind(name)
                .fetch_optional(&mut *tx)
                .await
                .map_err(db("reading API tokens"))?;
        if taken.is_some() {
            return Err(FleetError::Conflict(format!(
                "user `{user}` already has a token named `{name}` (revoked tokens keep their names); choose another"
            )));
        }
        sqlx::query(
            "INSERT INTO api_tokens (id, user_name, name, role, token_hash, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&id)
        .bind(user)
        .bind(name)
        .bind(role.word())
        .bind(secret::hash(&secret))
        .bind(now)
        .bind(now.saturating_add(valid_ms))
        .execute(&mut *tx)
        .await
        .map_err(db("making an API token"))?;
        audit.record(&mut tx, super::audit::OK).await?;
        tx.commit().await.map_err(db("making an API token"))?;
        let info = token_info(
            (
                id.clone(),
                user.into(),
                name.into(),
                role.word().into(),
                now,
                now.saturating_add(valid_ms),
                None,
                None,
            ),
            now,
        )?;
        Ok(NewApiToken { token: format!("{PREFIX}{id}.{secret}"), info })
    }

    /// API tokens, newest first: `user`'s, or everyone's.
    pub async fn api_tokens(&self, user: Option<&str>) -> Result<Vec<ApiTokenInfo>, FleetError> {
        let rows: Vec<TokenRow> = sqlx::query_as(&format!(
            "SELECT {TOKEN_COLUMNS} FROM api_tokens WHERE ($1 IS NULL OR user_name = $1) \
             ORDER BY created_at DESC, id"
        ))
        .bind(user)
        .fetch_all(&self.pool)
        .await
        .map_err(db("listing API tokens"))?;
        let now = now_ms();
        rows.into_iter().map(|r| token_info(r, now)).collect()
    }

    /// One API token (no secret); 404 when there is none.
    pub async fn api_token(&self, id: &str) -> Result<ApiTokenInfo, FleetError> {
        let row: Option<TokenRow> =
            sqlx::query_as(&format!("SELECT {TOKEN_COLUMNS} FROM api_tokens WHERE id = $1"))
                .bind(id)
                .fetch_optional(&self.pool)
                .await
                .map_err(db("reading an API token"))?;
        match row {
            Some(row) => token_info(row, now_ms()),
            None => {
                Err(FleetError::NotFound(format!("no API token `{id}`; `fleet api-token list` shows them")))
            }
        }
    }

    /// Revokes API token `id`: it stops working at its next request.
    pub async fn revoke_api_token(&self, id: &str, audit: &Audit) -> Result<(), FleetError> {
        let _gate = self.write_gate().await;
        let mut tx = self.pool.begin().await.map_err(db("starting to revoke an API token"))?;
        let done = sqlx::query("UPDATE api_tokens SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL")
            .bind(now_ms())
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(db("revoking an API token"))?;
        if done.rows_affected() != 1 {
            drop(tx);
            drop(_gate);
            let token = self.api_token(id).await?;
            return Err(FleetError::Conflict(format!(
                "API token `{}` is already {}",
                token.name, token.status
            )));
        }
        audit.record(&mut tx, super::audit::OK).await?;
        tx.commit().await.map_err(db("revoking an API token"))
    }

    /// Who `token` (`cut.ID.SECRET`) is: its user, with the lower of the
    /// token's and the user's role. 401 for an unknown, wrong, revoked or
    /// expired token, saying which.
    pub async fn token_principal(&self, token: &str) -> Result<Principal, FleetError> {
        let bad = || FleetError::Unauthorized("that API token is not valid".into());
        let rest = token.strip_prefix(PREFIX).ok_or_else(bad)?;
        let (id, given) = rest.split_once('.').ok_or_else(bad)?;
        if id.is_empty() || id.len() > 64 || given.len() > 128 {
            return Err(bad());
        }
        let row: Option<PrincipalRow> = sqlx::query_as(
            "SELECT t.token_hash, t.user_name, t.name, t.role, t.expires_at, t.revoked_at, t.last_used_at, \
                 u.role FROM api_tokens t LEFT JOIN users u ON u.name = t.user_name WHERE t.id = $1",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await
        .map_err(db("reading an API token"))?;
        let Some((hash, user, name, role, expires_at, revoked_at, last_used, user_role)) = row else {
            return Err(bad());
        };
        if !secret::verify(given, &hash) {
            return Err(bad());
        }
        let now = now_ms();
        if revoked_at.is_some() {
            return Err(FleetError::Unauthorized(format!(
                "API token `{name}` of user `{user}` was revoked; make a new one (`fleet api-token create`)"
            )));
        }
        if expires_at <= now {
            return Err(FleetError::Unauthorized(format!(
                "API token `{name}` of user `{user}` expired at {}; make a new one (`fleet api-token create`)",
                rfc3339(expires_at)
            )));
        }
        let Some(user_role) = user_role else {
            return Err(FleetError::Unauthorized(format!("the user of API token `{name}` no longer exists")));
        };
        let role = stored_role(&role)?.min(stored_role(&user_role)?);
        if last_used.is_none_or(|at| now - at >= LAST_USED_EVERY_MS) {
            // Best effort: when the token was last used is a hint, not a
            // reason to fail the request.
            let _gate = self.write_gate().await;
            if let Err(e) = sqlx::query("UPDATE api_tokens SET last_used_at = $1 WHERE id = $2")
                .bind(now)
                .bind(id)
                .execute(&self.pool)
                .await
            {
                tracing::debug!(error = %e, "recording when an API token was used failed");
            }
        }
        Ok(Principal { user: Some(user), via: Via::Token(name), role, source: String::new() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_tokens_are_told_from_the_admin_token_by_their_prefix() {
        assert!(is_api_token("cut.0123.abcd"));
        assert!(!is_api_token("0123456789abcdef"));
        assert!(check_token_name("ci deploy").is_ok());
        assert!(check_token_name("").is_err());
        assert!(check_token_name("a\u{202e}b").is_err());
        assert!(check_token_name(&"x".repeat(65)).is_err());
    }
}
