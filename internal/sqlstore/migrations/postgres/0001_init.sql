-- Users, registration invites and the "database" session backend.
-- NULL is the zero time.

CREATE TABLE users (
    id            uuid        NOT NULL PRIMARY KEY,
    username      text        NOT NULL UNIQUE,
    email         text        NOT NULL UNIQUE,
    password_hash text        NOT NULL DEFAULT '',
    roles         jsonb       NOT NULL DEFAULT '[]',
    created_at    timestamptz NOT NULL,
    updated_at    timestamptz NOT NULL,
    last_login    timestamptz,
    active        boolean     NOT NULL DEFAULT true,
    metadata      jsonb       NOT NULL DEFAULT '{}',
    failed_logins integer     NOT NULL DEFAULT 0,
    locked_until  timestamptz,
    lock_count    integer     NOT NULL DEFAULT 0
);

CREATE TABLE invites (
    token_hash text        NOT NULL PRIMARY KEY,
    email      text        NOT NULL DEFAULT '',
    role       text        NOT NULL,
    created_by text        NOT NULL DEFAULT '',
    created_at timestamptz NOT NULL,
    expires_at timestamptz NOT NULL,
    used_at    timestamptz,
    used_by    text        NOT NULL DEFAULT ''
);

-- user_id is not a foreign key: single-user mode and API clients keep
-- sessions for ids that are not rows of users.
CREATE TABLE sessions (
    id            text        NOT NULL PRIMARY KEY,
    user_id       text        NOT NULL,
    created_at    timestamptz NOT NULL,
    expires_at    timestamptz NOT NULL,
    last_activity timestamptz NOT NULL,
    ip_address    text        NOT NULL DEFAULT '',
    user_agent    text        NOT NULL DEFAULT '',
    workspace_id  text        NOT NULL DEFAULT '',
    metadata      jsonb       NOT NULL DEFAULT '{}',
    refresh_gen   integer     NOT NULL DEFAULT 0,
    refresh_hash  text        NOT NULL DEFAULT ''
);

CREATE INDEX sessions_user_id ON sessions (user_id);
CREATE INDEX sessions_expires_at ON sessions (expires_at);
