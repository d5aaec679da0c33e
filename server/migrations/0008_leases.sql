-- Work only one server may do at a time (the campaign runner, the version
-- checker), when several share one PostgreSQL: the holder renews its row
-- every few seconds; another server takes a row whose time has passed
-- (server/src/replicas.rs).
CREATE TABLE leases (
    name TEXT PRIMARY KEY,
    holder TEXT NOT NULL,
    expires_at BIGINT NOT NULL
);
