-- Revocation events, polled by gateways that use the database bus (the
-- LISTEN/NOTIFY bus needs no table; this one also reaches the CLI).
CREATE TABLE revocations (
    id         BIGSERIAL   PRIMARY KEY,
    payload    TEXT        NOT NULL,
    created_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX revocations_created_at ON revocations (created_at);
