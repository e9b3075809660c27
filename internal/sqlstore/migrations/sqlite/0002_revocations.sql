-- Revocation events, for gateways (and the CLI) sharing one SQLite file:
-- each gateway polls for rows newer than the last it saw.
CREATE TABLE revocations (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    payload    TEXT    NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE INDEX revocations_created_at ON revocations (created_at);
