-- Work only one server may do at a time (the campaign runner, the version
-- checker), when several share one PostgreSQL: the holder renews its row
-- every few seconds; another server takes a row whose time has passed
-- (server/src/replicas.rs).
CREATE TABLE leases (
    name TEXT PRIMARY KEY,
    holder TEXT NOT NULL,
    expires_at BIGINT NOT NULL
);

-- Failed page logins per client address (an IPv6 /64), shared by every
-- replica so an attacker spreading guesses over them meets the same
-- backoff (server/src/page/login_limit.rs).
CREATE TABLE login_failures (
    address TEXT PRIMARY KEY,
    failures BIGINT NOT NULL,
    last_at BIGINT NOT NULL
);
