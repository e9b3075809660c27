-- The workspace registry: who runs what where. user_id is NULL for a warm
-- workspace nobody has claimed yet.
CREATE TABLE workspaces (
    id            TEXT        NOT NULL PRIMARY KEY,
    user_id       TEXT        UNIQUE,
    state         TEXT        NOT NULL,
    orchestrator  TEXT        NOT NULL,
    node          TEXT        NOT NULL DEFAULT '',
    address       TEXT        NOT NULL DEFAULT '',
    secret        TEXT        NOT NULL DEFAULT '',
    pid           INTEGER     NOT NULL DEFAULT 0,
    external_id   TEXT        NOT NULL DEFAULT '',
    home          TEXT        NOT NULL DEFAULT '',
    created_at    TIMESTAMPTZ NOT NULL,
    started_at    TIMESTAMPTZ,
    stopped_at    TIMESTAMPTZ,
    last_activity TIMESTAMPTZ,
    restarts      INTEGER     NOT NULL DEFAULT 0,
    last_error    TEXT        NOT NULL DEFAULT '',
    meta          JSONB       NOT NULL DEFAULT '{}'
);
CREATE INDEX workspaces_pool ON workspaces (orchestrator, state) WHERE user_id IS NULL;
