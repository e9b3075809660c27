-- The audit log, hash-chained in seq order.
CREATE TABLE audit_log (
    seq        BIGINT      NOT NULL PRIMARY KEY,
    timestamp  TIMESTAMPTZ NOT NULL,
    event_type TEXT        NOT NULL,
    user_id    TEXT        NOT NULL DEFAULT '',
    username   TEXT        NOT NULL DEFAULT '',
    ip_address TEXT        NOT NULL DEFAULT '',
    user_agent TEXT        NOT NULL DEFAULT '',
    status     TEXT        NOT NULL,
    metadata   TEXT        NOT NULL DEFAULT '{}',
    prev_hash  TEXT        NOT NULL,
    hash       TEXT        NOT NULL
);
CREATE INDEX audit_log_user ON audit_log (user_id, seq);
CREATE INDEX audit_log_type ON audit_log (event_type, seq);
CREATE INDEX audit_log_time ON audit_log (timestamp);
