-- Users, registration invites and the "database" session backend.
-- Times are INTEGER unix microseconds (UTC); NULL is the zero time.
-- JSON columns hold JSON text.

CREATE TABLE users (
    id            TEXT    NOT NULL PRIMARY KEY,
    username      TEXT    NOT NULL UNIQUE,
    email         TEXT    NOT NULL UNIQUE,
    password_hash TEXT    NOT NULL DEFAULT '',
    roles         TEXT    NOT NULL DEFAULT '[]',
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL,
    last_login    INTEGER,
    active        INTEGER NOT NULL DEFAULT 1,
    metadata      TEXT    NOT NULL DEFAULT '{}',
    failed_logins INTEGER NOT NULL DEFAULT 0,
    locked_until  INTEGER,
    lock_count    INTEGER NOT NULL DEFAULT 0
);

CREATE TABLE invites (
    token_hash TEXT    NOT NULL PRIMARY KEY,
    email      TEXT    NOT NULL DEFAULT '',
    role       TEXT    NOT NULL,
    created_by TEXT    NOT NULL DEFAULT '',
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    used_at    INTEGER,
    used_by    TEXT    NOT NULL DEFAULT ''
);

-- user_id is not a foreign key: single-user mode and API clients keep
-- sessions for ids that are not rows of users.
CREATE TABLE sessions (
    id            TEXT    NOT NULL PRIMARY KEY,
    user_id       TEXT    NOT NULL,
    created_at    INTEGER NOT NULL,
    expires_at    INTEGER NOT NULL,
    last_activity INTEGER NOT NULL,
    ip_address    TEXT    NOT NULL DEFAULT '',
    user_agent    TEXT    NOT NULL DEFAULT '',
    workspace_id  TEXT    NOT NULL DEFAULT '',
    metadata      TEXT    NOT NULL DEFAULT '{}',
    refresh_gen   INTEGER NOT NULL DEFAULT 0,
    refresh_hash  TEXT    NOT NULL DEFAULT ''
);

CREATE INDEX sessions_user_id ON sessions (user_id);
CREATE INDEX sessions_expires_at ON sessions (expires_at);
