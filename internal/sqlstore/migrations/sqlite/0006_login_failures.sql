-- Failed sign-ins, per sign-in name and client (internal/lockout).
-- name_key is a keyed hash of the normalized name, kept whether or not an
-- account has that name; client is an address (IPv6 by /64), "device:<id>"
-- for a browser trusted by a device cookie, or '*' for the lock of the
-- name for every client. Times are INTEGER unix microseconds (UTC).
CREATE TABLE login_failures (
    name_key     TEXT    NOT NULL,
    client       TEXT    NOT NULL,
    failures     INTEGER NOT NULL DEFAULT 0,
    locked_until INTEGER,
    lock_count   INTEGER NOT NULL DEFAULT 0,
    last_failure INTEGER,
    PRIMARY KEY (name_key, client)
);
CREATE INDEX login_failures_last_failure ON login_failures (last_failure);

-- The key of those hashes and of device cookies: made once, at random, by
-- the first gateway, and shared by all.
CREATE TABLE lockout_keys (
    name   TEXT NOT NULL PRIMARY KEY,
    secret TEXT NOT NULL
);
