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

-- PostgreSQL only uses these: each agent's write budget (thousandths of a
-- write, and when it was last counted), shared by every replica so an
-- agent's reports spread over them meet one rate (server/src/reports.rs).
ALTER TABLE agents ADD COLUMN write_budget BIGINT;
ALTER TABLE agents ADD COLUMN write_budget_at BIGINT;
