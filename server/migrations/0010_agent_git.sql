-- With `run --git --server`: where the agent's manifest comes from (its
-- report's `git`, JSON): the commit shown on the page, and why the server
-- refuses to pin such an agent (server/src/desired.rs).
ALTER TABLE agents ADD COLUMN git TEXT;
