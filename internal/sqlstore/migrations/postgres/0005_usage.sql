-- Usage samples: what each user (user_id) and the whole installation
-- (user_id '') used, once per sampling interval; taken_at is the start of
-- the interval, so that gateways sharing the database write one sample per
-- user and interval (the first wins).
CREATE TABLE usage_samples (
    user_id            TEXT             NOT NULL,
    taken_at           TIMESTAMPTZ      NOT NULL,
    sessions           INTEGER          NOT NULL DEFAULT 0,
    connections        INTEGER          NOT NULL DEFAULT 0,
    storage_bytes      BIGINT           NOT NULL DEFAULT 0,
    memory_bytes       BIGINT           NOT NULL DEFAULT 0,
    cpu_percent        DOUBLE PRECISION NOT NULL DEFAULT 0,
    active_users       INTEGER          NOT NULL DEFAULT 0,
    running_workspaces INTEGER          NOT NULL DEFAULT 0,
    workspace_starts   INTEGER          NOT NULL DEFAULT 0,
    PRIMARY KEY (user_id, taken_at)
);
CREATE INDEX usage_samples_taken_at ON usage_samples (taken_at);
