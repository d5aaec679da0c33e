//! Who is asking, and what they may do: named users with a role
//! ([`users`]), their API tokens ([`tokens`]), the break-glass admin token
//! (`--admin-token-file`) and the audit log every change writes
//! ([`audit`]).
//!
//! Roles are ordered: a viewer reads everything; an operator also pins,
//! writes manifests and runs campaigns; an admin also manages users,
//! tokens, enrolment and revocation. A route names the least role it
//! needs through its extractor ([`Viewer`], [`Operator`], [`Admin`]); a
//! caller below it gets 403 naming who they are, their role and the role
//! needed, and nothing is written (no audit row either: nothing happened).

pub mod api;
#[cfg(test)]
mod api_tests;
pub mod audit;
pub mod tokens;
pub mod users;

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use serde::{Deserialize, Serialize};

pub use audit::Audit;

use crate::state::{bearer, FleetState};
use crate::{secret, FleetError};

/// What a user or token may do; each includes the ones before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Reads everything.
    Viewer,
    /// Also pins, writes manifests, creates and commands campaigns.
    Operator,
    /// Also manages users, API tokens, enrolment and revocation.
    Admin,
}

impl Role {
    /// The word stored and shown.
    pub fn word(self) -> &'static str {
        match self {
            Self::Viewer => "viewer",
            Self::Operator => "operator",
            Self::Admin => "admin",
        }
    }

    /// What the role adds, for messages.
    fn may(self) -> &'static str {
        match self {
            Self::Viewer => "read",
            Self::Operator => "pin, write manifests and run campaigns",
            Self::Admin => "manage users, tokens, enrolment and revocation",
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.word())
    }
}

impl std::str::FromStr for Role {
    type Err = FleetError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "viewer" => Ok(Self::Viewer),
            "operator" => Ok(Self::Operator),
            "admin" => Ok(Self::Admin),
            other => Err(FleetError::Invalid(format!("role `{other}`; allowed: viewer, operator, admin"))),
        }
    }
}

/// How a caller proved who they are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Via {
    /// The shared `--admin-token-file` token (break-glass).
    BreakGlass,
    /// The page, logged in with `--admin-password-file`'s password.
    BreakGlassPage,
    /// The page, a named user's session.
    Page,
    /// An API token of a named user, by the token's name.
    Token(String),
    /// The server itself (its campaign runner, its start).
    Server,
}

/// Who is asking: a named user (or the break-glass admin), the role in
/// force for this request and where the request came from.
#[derive(Debug, Clone)]
pub struct Principal {
    /// The user's name; `None` for the break-glass admin.
    pub user: Option<String>,
    /// How they proved it.
    pub via: Via,
    /// The role in force (a token's: the lower of its own and its user's).
    pub role: Role,
    /// The source address of the request.
    pub source: String,
}

impl Principal {
    /// Who, for the audit log and the campaign timeline: the user's name,
    /// or what the break-glass admin used.
    pub fn actor(&self) -> String {
        match (&self.user, &self.via) {
            (Some(name), _) => name.clone(),
            (None, Via::BreakGlassPage) => "admin password (break-glass)".into(),
            (None, Via::Server) => "server".into(),
            (None, _) => "admin token (break-glass)".into(),
        }
    }

    /// Through what, for the audit log.
    pub fn via(&self) -> String {
        match &self.via {
            Via::BreakGlass => "API, break-glass admin token".into(),
            Via::BreakGlassPage => "page, break-glass admin password".into(),
            Via::Page => "page".into(),
            Via::Token(name) => format!("API token `{name}`"),
            Via::Server => "server".into(),
        }
    }

    /// Who and through what in one phrase (the campaign timeline's "by").
    pub fn by(&self) -> String {
        match (&self.user, &self.via) {
            (Some(name), Via::Page) => format!("{name} (page)"),
            (Some(name), Via::Token(token)) => format!("{name} (token {token})"),
            (Some(name), _) => name.clone(),
            (None, Via::BreakGlassPage) => "break-glass admin password (page)".into(),
            (None, Via::Server) => "server".into(),
            (None, _) => "break-glass admin token (API)".into(),
        }
    }

    /// The audit record of `action` on `object` by this caller.
    pub fn audit(&self, action: &str, object: impl Into<String>, summary: impl Into<String>) -> Audit {
        Audit {
            actor: self.actor(),
            via: self.via(),
            source: self.source.clone(),
            action: action.to_string(),
            object: object.into(),
            summary: summary.into(),
        }
    }

    /// 403 unless this caller holds `needed`, saying who they are, what
    /// they hold and what it takes.
    pub fn require(&self, needed: Role) -> Result<(), FleetError> {
        if self.role >= needed {
            return Ok(());
        }
        let who = match (&self.user, &self.via) {
            (Some(name), Via::Token(token)) => {
                format!("API token `{token}` of user `{name}` has the {} role", self.role)
            }
            (Some(name), _) => format!("user `{name}` has the {} role", self.role),
            (None, _) => format!("this caller has the {} role", self.role),
        };
        Err(FleetError::Forbidden(format!(
            "{who}; this needs the {needed} role (to {}); an admin can change roles",
            needed.may()
        )))
    }

    /// A named user on the page (for tests of who did what).
    #[cfg(test)]
    pub fn page_user(name: &str) -> Self {
        Self { user: Some(name.into()), via: Via::Page, role: Role::Admin, source: "127.0.0.1".into() }
    }

    /// The server acting on its own (the campaign runner).
    pub fn server() -> Self {
        Self { user: None, via: Via::Server, role: Role::Admin, source: "-".into() }
    }
}

/// The source address of a request (the connection's peer).
pub fn source(parts: &Parts) -> String {
    source_of(&parts.extensions)
}

/// The source address in a request's extensions.
pub fn source_of(extensions: &axum::http::Extensions) -> String {
    extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map_or_else(|| "-".into(), |ConnectInfo(a)| a.ip().to_string())
}

/// The caller of an API request, from its bearer token: the break-glass
/// admin token or a user's API token. 401 without a valid one.
pub async fn api_principal(parts: &Parts, state: &FleetState) -> Result<Principal, FleetError> {
    let source = source(parts);
    let Some(token) = bearer(parts) else {
        return Err(FleetError::Unauthorized(
            "send an API token (`fleet api-token create`) or the admin token as `Authorization: Bearer TOKEN`"
                .into(),
        ));
    };
    if tokens::is_api_token(token) {
        let found = state.store.token_principal(token).await?;
        return Ok(Principal { source, ..found });
    }
    if secret::equal(token, &state.admin_token) {
        return Ok(Principal { user: None, via: Via::BreakGlass, role: Role::Admin, source });
    }
    Err(FleetError::Unauthorized(
        "that bearer token is neither an API token nor the admin token (--admin-token-file)".into(),
    ))
}

macro_rules! role_extractor {
    ($(#[$doc:meta])* $name:ident, $role:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone)]
        pub struct $name(pub Principal);

        impl FromRequestParts<FleetState> for $name {
            type Rejection = FleetError;

            async fn from_request_parts(parts: &mut Parts, state: &FleetState) -> Result<Self, Self::Rejection> {
                let principal = api_principal(parts, state).await?;
                principal.require($role)?;
                Ok($name(principal))
            }
        }
    };
}

role_extractor!(
    /// An API caller with at least the viewer role.
    Viewer,
    Role::Viewer
);
role_extractor!(
    /// An API caller with at least the operator role.
    Operator,
    Role::Operator
);
role_extractor!(
    /// An API caller with the admin role.
    Admin,
    Role::Admin
);

#[cfg(test)]
mod tests {
    use super::*;

    fn user(role: Role, via: Via) -> Principal {
        Principal { user: Some("alice".into()), via, role, source: "10.0.0.1".into() }
    }

    #[test]
    fn roles_are_ordered_and_each_refusal_names_who_and_what_it_takes() {
        assert!(Role::Viewer < Role::Operator && Role::Operator < Role::Admin);
        for role in [Role::Viewer, Role::Operator, Role::Admin] {
            assert_eq!(role.word().parse::<Role>().expect("parses"), role);
        }
        assert!("root".parse::<Role>().expect_err("refused").to_string().contains("viewer, operator, admin"));
        let viewer = user(Role::Viewer, Via::Page);
        assert!(viewer.require(Role::Viewer).is_ok());
        let refused = viewer.require(Role::Operator).expect_err("refused");
        assert!(matches!(refused, FleetError::Forbidden(_)));
        let text = refused.to_string();
        assert!(
            text.contains("user `alice` has the viewer role") && text.contains("needs the operator role")
        );
        let token = user(Role::Operator, Via::Token("ci".into()));
        let text = token.require(Role::Admin).expect_err("refused").to_string();
        assert!(text.contains("API token `ci` of user `alice`") && text.contains("admin role"), "{text}");
    }

    #[test]
    fn the_audit_says_who_through_what_and_from_where() {
        let a = user(Role::Operator, Via::Token("deploy".into())).audit("pin", "agent x", "web → 1.2");
        assert_eq!(
            (a.actor.as_str(), a.via.as_str(), a.source.as_str()),
            ("alice", "API token `deploy`", "10.0.0.1")
        );
        let glass = Principal { user: None, via: Via::BreakGlass, role: Role::Admin, source: "-".into() };
        assert_eq!(glass.actor(), "admin token (break-glass)");
        assert_eq!(glass.by(), "break-glass admin token (API)");
        assert_eq!(user(Role::Admin, Via::Page).by(), "alice (page)");
    }
}
