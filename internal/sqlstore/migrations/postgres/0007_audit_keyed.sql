-- The keyed audit chain: each entry's event id (the same in the file),
-- the id of the file log it was written to, its chain format (0: legacy
-- unkeyed, 2: HMAC-SHA256) and the key that made its hash.
ALTER TABLE audit_log ADD COLUMN event_id TEXT    NOT NULL DEFAULT '';
ALTER TABLE audit_log ADD COLUMN log_id   TEXT    NOT NULL DEFAULT '';
ALTER TABLE audit_log ADD COLUMN chain    INTEGER NOT NULL DEFAULT 0;
ALTER TABLE audit_log ADD COLUMN key_id   TEXT    NOT NULL DEFAULT '';
CREATE INDEX audit_log_event ON audit_log (event_id);

-- Checkpoints of the audit logs, kept outside them: a log that ends
-- before its newest checkpoint lost its tail.
CREATE TABLE audit_checkpoints (
    log      TEXT        NOT NULL,
    seq      BIGINT      NOT NULL,
    path     TEXT        NOT NULL DEFAULT '',
    hash     TEXT        NOT NULL,
    taken_at TIMESTAMPTZ NOT NULL,
    key_id   TEXT        NOT NULL,
    mac      TEXT        NOT NULL,
    PRIMARY KEY (log, seq)
);
