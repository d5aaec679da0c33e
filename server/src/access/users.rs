//! Named users: a name, a role and an argon2 password. An admin adds a
//! user with a password (from a file, through the CLI) or without one:
//! then the user gets a one-time setup code, valid for
//! [`SETUP_TTL_MS`], with which they choose their password at their first
//! login on the page. Every change is audited in its own transaction, and
//! changing or removing a user ends their page sessions (their API tokens
//! follow their role at every request, or go with them).

use argon2::password_hash::{PasswordHasher, SaltString};
use serde::{Deserialize, Serialize};

use super::{Audit, Role};
use crate::error::db;
use crate::store::{now_ms, rfc3339, Store};
use crate::{secret, FleetError};

/// How long a setup code lets its user choose a password (72 hours).
pub const SETUP_TTL_MS: i64 = 72 * 60 * 60 * 1000;
/// The shortest password accepted.
pub const MIN_PASSWORD: usize = 12;
/// The longest password accepted.
pub const MAX_PASSWORD: usize = 1024;

/// A user as listed (no password, no code).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct UserInfo {
    /// The login name.
    pub name: String,
    /// Their role.
    pub role: Role,
    /// `active` (a password is set), `setup` (waiting for the first login
    /// with the setup code) or `setup expired`.
    pub status: String,
    /// When added (RFC 3339).
    pub created_at: String,
    /// Who added them.
    pub created_by: String,
    /// Their API tokens in force.
    pub tokens: i64,
}

/// A user just added or reset: the setup code is shown this once.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NewUser {
    /// The user.
    pub user: UserInfo,
    /// The one-time code for the first login (absent when a password was
    /// given).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub setup_code: Option<String>,
    /// Until when the code works.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub setup_expires_at: Option<String>,
}

/// Checks a user name: 1-64 of `a-z A-Z 0-9 . _ @ -`, starting with a
/// letter or digit.
pub fn check_name(name: &str) -> Result<(), FleetError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b".-_@".contains(&b))
        && name.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric());
    if ok {
        Ok(())
    } else {
        Err(FleetError::Invalid(format!(
            "user name `{}`: 1-64 characters of letters, digits, `.`, `_`, `@`, `-`, starting with a letter or digit",
            name.escape_debug()
        )))
    }
}

/// Checks a new password's length.
pub fn check_password(password: &str) -> Result<(), FleetError> {
    let n = password.chars().count();
    if (MIN_PASSWORD..=MAX_PASSWORD).contains(&n) {
        Ok(())
    } else {
        Err(FleetError::Invalid(format!(
            "password: {n} characters; allowed {MIN_PASSWORD} to {MAX_PASSWORD}"
        )))
    }
}

/// The argon2id PHC hash of `password` (default parameters, a fresh salt).
/// Slow on purpose: call it off the async workers.
pub fn hash_password(password: &str) -> Result<String, FleetError> {
    check_password(password)?;
    let salt = SaltString::encode_b64(&secret::salt()?)
        .map_err(|e| FleetError::Corrupt(format!("making a password salt: {e}")))?;
    argon2::Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| FleetError::Corrupt(format!("hashing a password: {e}")))
}

/// [`hash_password`] on a blocking thread.
pub async fn hash_password_blocking(password: String) -> Result<String, FleetError> {
    tokio::task::spawn_blocking(move || hash_password(&password))
        .await
        .map_err(|e| FleetError::Corrupt(format!("hashing a password: {e}")))?
}

type UserRow = (String, String, Option<String>, Option<String>, Option<i64>, i64, String, i64);

fn user_info(row: UserRow, now: i64) -> Result<UserInfo, FleetError> {
    let (name, role, password, setup, setup_expires, created_at, created_by, tokens) = row;
    let status = match (password, setup, setup_expires) {
        (Some(_), _, _) => "active",
        (None, Some(_), Some(at)) if at > now => "setup",
        _ => "setup expired",
    };
    Ok(UserInfo {
        role: stored_role(&role)?,
        name,
        status: status.into(),
        created_at: rfc3339(created_at),
        created_by,
        tokens,
    })
}

/// A role read from the database.
pub(crate) fn stored_role(word: &str) -> Result<Role, FleetError> {
    word.parse().map_err(|_| FleetError::Corrupt(format!("a stored role is `{word}`")))
}

const USER_COLUMNS: &str =
    "u.name, u.role, u.password_hash, u.setup_hash, u.setup_expires_at, u.created_at, \
     u.created_by, (SELECT COUNT(*) FROM api_tokens t WHERE t.user_name = u.name AND t.revoked_at IS NULL \
     AND t.expires_at > $1)";

impl Store {
    /// Adds user `name` with `role`, and `password_hash` (already argon2)
    /// or else a setup code (returned, shown once).
    pub async fn add_user(
        &self,
        name: &str,
        role: Role,
        password_hash: Option<String>,
        audit: &Audit,
    ) -> Result<NewUser, FleetError> {
        check_name(name)?;
        let now = now_ms();
        let code = if password_hash.is_none() { Some(secret::new_secret()?) } else { None };
        let _gate = self.write_gate().await;
        let mut tx = self.pool.begin().await.map_err(db("starting to add a user"))?;
        let exists: Option<(String,)> = sqlx::query_as("SELECT name FROM users WHERE name = $1")
            .bind(name)
            .fetch_optional(&mut *tx)
            .await
            .map_err(db("looking up a user"))?;
        if exists.is_some() {
            return Err(FleetError::Conflict(format!(
                "user `{name}` exists; `fleet user list` shows the users"
            )));
        }
        sqlx::query(
            "INSERT INTO users (name, role, password_hash, setup_hash, setup_expires_at, created_at, created_by) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(name)
        .bind(role.word())
        .bind(password_hash.as_deref())
        .bind(code.as_deref().map(secret::hash))
        .bind(code.as_ref().map(|_| now + SETUP_TTL_MS))
        .bind(now)
        .bind(&audit.actor)
        .execute(&mut *tx)
        .await
        .map_err(db("adding a user"))?;
        audit.record(&mut tx, super::audit::OK).await?;
        tx.commit().await.map_err(db("adding a user"))?;
        let user = self.user(name).await?;
        Ok(NewUser {
            user,
            setup_expires_at: code.as_ref().map(|_| rfc3339(now + SETUP_TTL_MS)),
            setup_code: code,
        })
    }

    /// Every user, by name.
    pub async fn users(&self) -> Result<Vec<UserInfo>, FleetError> {
        let now = now_ms();
        let rows: Vec<UserRow> =
            sqlx::query_as(&format!("SELECT {USER_COLUMNS} FROM users u ORDER BY u.name"))
                .bind(now)
                .fetch_all(&self.pool)
                .await
                .map_err(db("listing users"))?;
        rows.into_iter().map(|r| user_info(r, now)).collect()
    }

    /// One user; 404 when there is none.
    pub async fn user(&self, name: &str) -> Result<UserInfo, FleetError> {
        let now = now_ms();
        let row: Option<UserRow> =
            sqlx::query_as(&format!("SELECT {USER_COLUMNS} FROM users u WHERE u.name = $2"))
                .bind(now)
                .bind(name)
                .fetch_optional(&self.pool)
                .await
                .map_err(db("reading a user"))?;
        match row {
            Some(row) => user_info(row, now),
            None => Err(no_user(name)),
        }
    }

    /// Gives user `name` `role`; their sessions end (they log in again
    /// under the new role) and their tokens follow it at once.
    pub async fn set_role(&self, name: &str, role: Role, audit: &Audit) -> Result<UserInfo, FleetError> {
        let _gate = self.write_gate().await;
        let mut tx = self.pool.begin().await.map_err(db("starting to change a role"))?;
        let done = sqlx::query("UPDATE users SET role = $1 WHERE name = $2")
            .bind(role.word())
            .bind(name)
            .execute(&mut *tx)
            .await
            .map_err(db("changing a role"))?;
        if done.rows_affected() != 1 {
            return Err(no_user(name));
        }
        end_user_sessions(&mut tx, name).await?;
        audit.record(&mut tx, super::audit::OK).await?;
        tx.commit().await.map_err(db("changing a role"))?;
        drop(_gate);
        self.user(name).await
    }

    /// Removes user `name`, their API tokens and their sessions.
    pub async fn remove_user(&self, name: &str, audit: &Audit) -> Result<(), FleetError> {
        let _gate = self.write_gate().await;
        let mut tx = self.pool.begin().await.map_err(db("starting to remove a user"))?;
        end_user_sessions(&mut tx, name).await?;
        sqlx::query("DELETE FROM api_tokens WHERE user_name = $1")
            .bind(name)
            .execute(&mut *tx)
            .await
            .map_err(db("removing a user's tokens"))?;
        let done = sqlx::query("DELETE FROM users WHERE name = $1")
            .bind(name)
            .execute(&mut *tx)
            .await
            .map_err(db("removing a user"))?;
        if done.rows_affected() != 1 {
            return Err(no_user(name));
        }
        audit.record(&mut tx, super::audit::OK).await?;
        tx.commit().await.map_err(db("removing a user"))
    }

    /// Forgets user `name`'s password and gives them a new setup code
    /// (shown once); their sessions end.
    pub async fn reset_user(&self, name: &str, audit: &Audit) -> Result<NewUser, FleetError> {
        let code = secret::new_secret()?;
        let now = now_ms();
        let _gate = self.write_gate().await;
        let mut tx = self.pool.begin().await.map_err(db("starting to reset a user"))?;
        let done = sqlx::query(
            "UPDATE users SET password_hash = NULL, setup_hash = $1, setup_expires_at = $2 WHERE name = $3",
        )
        .bind(secret::hash(&code))
        .bind(now + SETUP_TTL_MS)
        .bind(name)
        .execute(&mut *tx)
        .await
        .map_err(db("resetting a user"))?;
        if done.rows_affected() != 1 {
            return Err(no_user(name));
        }
        end_user_sessions(&mut tx, name).await?;
        audit.record(&mut tx, super::audit::OK).await?;
        tx.commit().await.map_err(db("resetting a user"))?;
        drop(_gate);
        Ok(NewUser {
            user: self.user(name).await?,
            setup_code: Some(code),
            setup_expires_at: Some(rfc3339(now + SETUP_TTL_MS)),
        })
    }

    /// User `name`'s password hash and role, to check a login (`None`
    /// when there is no such user or no password yet).
    pub async fn login_of(&self, name: &str) -> Result<Option<(String, Role)>, FleetError> {
        let row: Option<(Option<String>, String)> =
            sqlx::query_as("SELECT password_hash, role FROM users WHERE name = $1")
                .bind(name)
                .fetch_optional(&self.pool)
                .await
                .map_err(db("reading a user"))?;
        match row {
            Some((Some(hash), role)) => Ok(Some((hash, stored_role(&role)?))),
            _ => Ok(None),
        }
    }

    /// Whether `code` is user `name`'s unexpired setup code.
    pub async fn setup_code_valid(&self, name: &str, code: &str) -> Result<bool, FleetError> {
        let row: Option<(Option<String>, Option<i64>)> = sqlx::query_as(
            "SELECT setup_hash, setup_expires_at FROM users WHERE name = $1 AND password_hash IS NULL",
        )
        .bind(name)
        .fetch_optional(&self.pool)
        .await
        .map_err(db("reading a user"))?;
        Ok(matches!(row, Some((Some(hash), Some(at))) if at > now_ms() && secret::verify(code, &hash)))
    }

    /// Sets user `name`'s password to `password_hash` if `code` is still
    /// their setup code (spent by it); false when it is not.
    pub async fn complete_setup(
        &self,
        name: &str,
        code: &str,
        password_hash: &str,
        audit: &Audit,
    ) -> Result<bool, FleetError> {
        let _gate = self.write_gate().await;
        let mut tx = self.pool.begin().await.map_err(db("starting to set a password"))?;
        let done = sqlx::query(
            "UPDATE users SET password_hash = $1, setup_hash = NULL, setup_expires_at = NULL \
             WHERE name = $2 AND password_hash IS NULL AND setup_hash = $3 AND setup_expires_at > $4",
        )
        .bind(password_hash)
        .bind(name)
        .bind(secret::hash(code))
        .bind(now_ms())
        .execute(&mut *tx)
        .await
        .map_err(db("setting a password"))?;
        if done.rows_affected() != 1 {
            return Ok(false);
        }
        audit.record(&mut tx, super::audit::OK).await?;
        tx.commit().await.map_err(db("setting a password"))?;
        Ok(true)
    }

    /// Sets user `name`'s password (they changed it themselves); their
    /// other sessions end.
    pub async fn change_password(
        &self,
        name: &str,
        password_hash: &str,
        audit: &Audit,
    ) -> Result<(), FleetError> {
        let _gate = self.write_gate().await;
        let mut tx = self.pool.begin().await.map_err(db("starting to change a password"))?;
        let done = sqlx::query("UPDATE users SET password_hash = $1 WHERE name = $2")
            .bind(password_hash)
            .bind(name)
            .execute(&mut *tx)
            .await
            .map_err(db("changing a password"))?;
        if done.rows_affected() != 1 {
            return Err(no_user(name));
        }
        end_user_sessions(&mut tx, name).await?;
        audit.record(&mut tx, super::audit::OK).await?;
        tx.commit().await.map_err(db("changing a password"))
    }
}

fn no_user(name: &str) -> FleetError {
    FleetError::NotFound(format!("no user `{name}`; `fleet user list` shows the users"))
}

async fn end_user_sessions(tx: &mut sqlx::Transaction<'_, sqlx::Any>, name: &str) -> Result<(), FleetError> {
    sqlx::query("DELETE FROM sessions WHERE user_name = $1")
        .bind(name)
        .execute(&mut **tx)
        .await
        .map_err(db("ending a user's sessions"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_passwords_are_checked_before_anything_is_stored() {
        for good in ["alice", "bob.smith", "ops@example.com", "a-1_b"] {
            assert!(check_name(good).is_ok(), "{good}");
        }
        for bad in ["", "-alice", "al ice", "al\u{202e}ice", &"x".repeat(65), "root;drop"] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
        assert!(check_password("short").expect_err("refused").to_string().contains("allowed 12 to 1024"));
        let phc = hash_password("correct horse battery").expect("hashes");
        assert!(phc.starts_with("$argon2id$"));
        assert!(crate::page::login::password_matches(&phc, "correct horse battery"));
        assert_ne!(phc, hash_password("correct horse battery").expect("hashes"), "a fresh salt each time");
    }
}
