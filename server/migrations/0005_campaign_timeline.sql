-- A campaign's timeline (src/campaign/store.rs): every change of phase or
-- direction - created, paused by the failure ratio with its reason,
-- paused, resumed, approved, aborted, rolled back - with who did it
-- (`server` for the campaign's own decisions) and when. Waves' starts and
-- ends come from campaign_waves. `approved` is 1 once an admin approved
-- the waves after the canary (approve_after_canary).
CREATE TABLE campaign_events (
    campaign_id TEXT NOT NULL REFERENCES campaigns (id),
    seq BIGINT NOT NULL,
    at BIGINT NOT NULL,
    kind TEXT NOT NULL,
    detail TEXT,
    actor TEXT NOT NULL,
    PRIMARY KEY (campaign_id, seq)
);
ALTER TABLE campaigns ADD COLUMN approved BIGINT NOT NULL DEFAULT 0;
