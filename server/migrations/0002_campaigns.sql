-- Campaigns (src/fleet/campaign/): portable as 0001 - TEXT and BIGINT,
-- unix milliseconds, JSON as TEXT, ids made by the server.

CREATE TABLE campaigns (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    spec TEXT NOT NULL,
    phase TEXT NOT NULL,
    direction TEXT NOT NULL,
    reason TEXT,
    accepted_failures BIGINT NOT NULL,
    -- Bumped by every write: a runner or a command that read an older
    -- version writes nothing (two servers on one PostgreSQL, or the API
    -- and the runner at once).
    version BIGINT NOT NULL,
    -- 1 once nothing is left to do or to watch; the runner skips it.
    settled BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX campaigns_settled ON campaigns (settled);

CREATE TABLE campaign_waves (
    campaign_id TEXT NOT NULL REFERENCES campaigns (id),
    kind TEXT NOT NULL,
    wave BIGINT NOT NULL,
    started_at BIGINT,
    done_at BIGINT,
    PRIMARY KEY (campaign_id, kind, wave)
);

-- One row per agent; `body` is the engine's whole record of it (JSON).
CREATE TABLE campaign_agents (
    campaign_id TEXT NOT NULL REFERENCES campaigns (id),
    agent_id TEXT NOT NULL REFERENCES agents (id),
    position BIGINT NOT NULL,
    container TEXT NOT NULL,
    wave BIGINT NOT NULL,
    state TEXT NOT NULL,
    reason TEXT,
    body TEXT NOT NULL,
    PRIMARY KEY (campaign_id, agent_id)
);

-- Every pin a campaign wrote, at most one per agent and step: the row is
-- inserted in the transaction that marks the agent sent, before the pin,
-- so a restart never pins an agent twice.
CREATE TABLE campaign_sends (
    campaign_id TEXT NOT NULL REFERENCES campaigns (id),
    agent_id TEXT NOT NULL REFERENCES agents (id),
    step TEXT NOT NULL,
    image TEXT NOT NULL,
    sent_at BIGINT NOT NULL,
    revision BIGINT,
    error TEXT,
    PRIMARY KEY (campaign_id, agent_id, step)
);
