-- The page's admin sessions (src/fleet/page/session.rs). The cookie holds a
-- 256-bit random secret; only its SHA-256 is stored, so a copy of the
-- database does not log anyone in. In the database (not in memory) so a
-- server restart, or another replica on PostgreSQL, keeps them.
CREATE TABLE sessions (
    id_hash TEXT PRIMARY KEY,
    csrf TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX sessions_expires ON sessions (expires_at);
