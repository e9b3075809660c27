-- Failed sign-ins, per sign-in name and client (internal/lockout).
-- name_key is a keyed hash of the normalized name, kept whether or not an
-- account has that name; client is an address (IPv6 by /64), "device:<id>"
-- for a browser trusted by a device cookie, or '*' for the lock of the
-- name for every client.
CREATE TABLE login_failures (
    name_key     text        NOT NULL,
    client       text        NOT NULL,
    failures     integer     NOT NULL DEFAULT 0,
    locked_until timestamptz,
    lock_count   integer     NOT NULL DEFAULT 0,
    last_failure timestamptz,
    PRIMARY KEY (name_key, client)
);
CREATE INDEX login_failures_last_failure ON login_failures (last_failure);

-- The key of those hashes and of device cookies: made once, at random, by
-- the first gateway, and shared by all.
CREATE TABLE lockout_keys (
    name   text NOT NULL PRIMARY KEY,
    secret text NOT NULL
);
