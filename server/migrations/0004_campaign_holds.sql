-- Which campaign holds an agent's target (src/campaign/store.rs): one
-- running or paused campaign per agent and target, so two campaigns never
-- pin one target in turn. Inserted with the campaign (the primary key
-- refuses a second holder even when two servers create at once) and
-- deleted when it ends; a rollback of an ended campaign takes its holds
-- back, or is refused while another campaign holds one of them. The
-- server fills it for campaigns already running when it first starts.
CREATE TABLE campaign_holds (
    agent_id TEXT NOT NULL REFERENCES agents (id),
    target TEXT NOT NULL,
    campaign_id TEXT NOT NULL REFERENCES campaigns (id),
    PRIMARY KEY (agent_id, target)
);
CREATE INDEX campaign_holds_campaign ON campaign_holds (campaign_id);
