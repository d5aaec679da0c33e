-- Notifications (src/notify/): the sinks events go to, and a durable
-- outbox of one row per (sink, event), written in the same transaction as
-- the change it tells of and delivered per sink in `seq` order.
--
-- `secret` is the webhook's HMAC key or ntfy's bearer token: kept in
-- clear because signing needs it (the database file is 0600), never
-- shown back. `events` is a JSON array of event kinds; `[]` is all.
-- `source` is `file` (--notifications-file, synced at start, not
-- removable on the page) or `page` (added by an admin).
CREATE TABLE notify_sinks (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL,
    url TEXT NOT NULL,
    secret TEXT,
    events TEXT NOT NULL,
    source TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

-- The one event counter. Taking a number is an UPDATE of this row, which
-- holds its lock to the end of the transaction: numbers are handed out
-- in commit order, so the deliverer never sees event N+1 before event N
-- has committed (which a MAX(seq) + 1 or a clock could not promise).
CREATE TABLE notify_counter (
    id BIGINT PRIMARY KEY,
    value BIGINT NOT NULL
);
INSERT INTO notify_counter (id, value) VALUES (1, 0);

-- One row per (sink, event). `event_id` is the idempotency key, the same
-- on every retry. A row is pending while `delivered_at` and
-- `abandoned_at` are both NULL; `next_attempt_at` is when it may be tried
-- again (the backoff, kept across restarts).
CREATE TABLE notify_outbox (
    sink_id TEXT NOT NULL REFERENCES notify_sinks (id) ON DELETE CASCADE,
    seq BIGINT NOT NULL,
    event_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    payload TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    attempts BIGINT NOT NULL DEFAULT 0,
    next_attempt_at BIGINT NOT NULL,
    delivered_at BIGINT,
    abandoned_at BIGINT,
    last_error TEXT,
    last_attempt_at BIGINT,
    PRIMARY KEY (sink_id, seq)
);
CREATE INDEX notify_outbox_pending ON notify_outbox (sink_id, delivered_at, abandoned_at, seq);
CREATE INDEX notify_outbox_delivered ON notify_outbox (delivered_at);

-- When the offline notice of an agent's current offline episode went out
-- (NULL: online, or not told yet): a restart does not tell it again.
ALTER TABLE agents ADD COLUMN offline_notified_at BIGINT;
