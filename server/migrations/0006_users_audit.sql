-- Named users, their API tokens and the audit log (server/src/access).
--
-- Passwords are argon2 PHC strings; a user added without one gets a
-- one-time setup code (only its SHA-256 is kept) to choose it at the first
-- login. API tokens are `cut.ID.SECRET`: only the secret's SHA-256 is
-- kept. A token's role is at most its user's; the lower of the two counts
-- at every request, so lowering a user lowers their tokens at once.
CREATE TABLE users (
    name TEXT PRIMARY KEY,
    role TEXT NOT NULL,
    password_hash TEXT,
    setup_hash TEXT,
    setup_expires_at BIGINT,
    created_at BIGINT NOT NULL,
    created_by TEXT NOT NULL
);

CREATE TABLE api_tokens (
    id TEXT PRIMARY KEY,
    user_name TEXT NOT NULL REFERENCES users (name) ON DELETE CASCADE,
    name TEXT NOT NULL,
    role TEXT NOT NULL,
    token_hash TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    last_used_at BIGINT,
    revoked_at BIGINT
);
CREATE UNIQUE INDEX api_tokens_user_name ON api_tokens (user_name, name);

-- Page sessions of a named user carry its name (NULL: the break-glass
-- admin token or --admin-password-file).
ALTER TABLE sessions ADD COLUMN user_name TEXT;

-- Every state-changing request, written in the transaction of the change
-- (or, for a failed login, on its own). `at` then `id` orders it.
CREATE TABLE audit (
    id TEXT PRIMARY KEY,
    at BIGINT NOT NULL,
    actor TEXT NOT NULL,
    via TEXT NOT NULL,
    source TEXT NOT NULL,
    action TEXT NOT NULL,
    object TEXT NOT NULL,
    summary TEXT NOT NULL,
    outcome TEXT NOT NULL
);
CREATE INDEX audit_at ON audit (at, id);
CREATE INDEX audit_actor ON audit (actor, at);
