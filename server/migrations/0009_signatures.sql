-- With `serve --verify-key`: whether each image digest the fleet runs or
-- is offered carries a cosign signature by one of the keys (`refusal`
-- NULL: it does; else why not), judged with the key set `keys` (a
-- fingerprint: other keys, other verdicts), and which digest each checked
-- tag pointed at (server/src/signatures.rs).
CREATE TABLE signatures (
    repository TEXT NOT NULL,
    digest TEXT NOT NULL,
    refusal TEXT,
    keys TEXT NOT NULL,
    checked_at BIGINT NOT NULL,
    PRIMARY KEY (repository, digest)
);

CREATE TABLE tag_digests (
    repository TEXT NOT NULL,
    tag TEXT NOT NULL,
    digest TEXT NOT NULL,
    checked_at BIGINT NOT NULL,
    PRIMARY KEY (repository, tag)
);
