-- Queries for SQLite, by name. Each block starts with a "-- name: X"
-- line; Go code refers to X (a field of the queries struct), and Open fails
-- if a name is missing here or unknown to the code.
-- Times are INTEGER unix microseconds (UTC); NULL is the zero time.
-- Write transactions BEGIN IMMEDIATE (_txlock=immediate): they take the
-- database's write lock first, so a read-modify-write transaction never
-- has to upgrade a read lock (and never deadlocks with another).

-- ---------------------------------------------------------------------
-- Migrations

-- name: LockMigrations
-- Nothing to do: BEGIN IMMEDIATE already holds the write lock, which
-- serializes gateways migrating one database file at once.
SELECT 1;

-- name: CreateMigrationsTable
CREATE TABLE IF NOT EXISTS schema_migrations (
    version    INTEGER NOT NULL PRIMARY KEY,
    name       TEXT    NOT NULL,
    applied_at INTEGER NOT NULL
);

-- name: AppliedMigrations
SELECT version FROM schema_migrations ORDER BY version;

-- name: RecordMigration
INSERT INTO schema_migrations (version, name, applied_at) VALUES (?1, ?2, ?3);

-- ---------------------------------------------------------------------
-- Users

-- name: CreateUser
INSERT INTO users (id, username, email, password_hash, roles, created_at, updated_at,
                   last_login, active, metadata, failed_logins, locked_until, lock_count)
VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13);

-- name: GetUserByID
SELECT id, username, email, password_hash, roles, created_at, updated_at,
       last_login, active, metadata, failed_logins, locked_until, lock_count
FROM users WHERE id = ?1;

-- name: GetUserByUsername
SELECT id, username, email, password_hash, roles, created_at, updated_at,
       last_login, active, metadata, failed_logins, locked_until, lock_count
FROM users WHERE username = ?1;

-- name: GetUserByEmail
SELECT id, username, email, password_hash, roles, created_at, updated_at,
       last_login, active, metadata, failed_logins, locked_until, lock_count
FROM users WHERE email = ?1;

-- name: ListUsers
-- ?1 is a LIKE pattern, lower-case, with \ escaping % and _; a ?2 of 0
-- means no limit.
SELECT id, username, email, password_hash, roles, created_at, updated_at,
       last_login, active, metadata, failed_logins, locked_until, lock_count
FROM users
WHERE lower(username) LIKE ?1 ESCAPE '\' OR lower(email) LIKE ?1 ESCAPE '\'
ORDER BY username
LIMIT CASE WHEN ?2 > 0 THEN ?2 ELSE -1 END OFFSET ?3;

-- name: CountUsersMatching
SELECT count(*) FROM users
WHERE lower(username) LIKE ?1 ESCAPE '\' OR lower(email) LIKE ?1 ESCAPE '\';

-- name: UpdateUser
-- The sign-in state (failed_logins, locked_until, lock_count, last_login)
-- and created_at are not an edit's to change.
UPDATE users SET username = ?2, email = ?3, password_hash = ?4, roles = ?5,
       updated_at = ?6, active = ?7, metadata = ?8
WHERE id = ?1;

-- name: DeleteUser
DELETE FROM users WHERE id = ?1;

-- name: CountUsers
SELECT count(*) FROM users;

-- name: RecordUserSuccess
UPDATE users SET failed_logins = 0, lock_count = 0, last_login = ?2 WHERE id = ?1;

-- name: LockUser
UPDATE users SET locked_until = ?2 WHERE id = ?1;

-- name: UnlockUser
UPDATE users SET failed_logins = 0, locked_until = NULL WHERE id = ?1;

-- ---------------------------------------------------------------------
-- Invites

-- name: CreateInvite
INSERT INTO invites (token_hash, email, role, created_by, created_at, expires_at, used_at, used_by)
VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8);

-- name: UseInvite
-- One statement under the write lock, so one winner among concurrent callers.
UPDATE invites SET used_at = ?3, used_by = ?2
WHERE token_hash = ?1 AND used_at IS NULL AND expires_at > ?3
RETURNING token_hash, email, role, created_by, created_at, expires_at, used_at, used_by;

-- name: ReleaseInvite
UPDATE invites SET used_at = NULL, used_by = '' WHERE token_hash = ?1;

-- ---------------------------------------------------------------------
-- Sessions ("now" is always a parameter: the store's clock decides expiry)

-- name: SetSession
INSERT INTO sessions (id, user_id, created_at, expires_at, last_activity, ip_address,
                      user_agent, workspace_id, metadata, refresh_gen, refresh_hash)
VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)
ON CONFLICT (id) DO UPDATE SET
    user_id = excluded.user_id, created_at = excluded.created_at,
    expires_at = excluded.expires_at, last_activity = excluded.last_activity,
    ip_address = excluded.ip_address, user_agent = excluded.user_agent,
    workspace_id = excluded.workspace_id, metadata = excluded.metadata,
    refresh_gen = excluded.refresh_gen, refresh_hash = excluded.refresh_hash;

-- name: GetSession
SELECT id, user_id, created_at, expires_at, last_activity, ip_address, user_agent,
       workspace_id, metadata, refresh_gen, refresh_hash
FROM sessions WHERE id = ?1 AND expires_at > ?2;

-- name: GetSessionForUpdate
-- Run inside an immediate transaction, which already excludes other writers.
SELECT id, user_id, created_at, expires_at, last_activity, ip_address, user_agent,
       workspace_id, metadata, refresh_gen, refresh_hash
FROM sessions WHERE id = ?1 AND expires_at > ?2;

-- name: UpdateSession
-- The id and user_id are the session's identity: never changed.
UPDATE sessions SET created_at = ?2, expires_at = ?3, last_activity = ?4, ip_address = ?5,
       user_agent = ?6, workspace_id = ?7, metadata = ?8, refresh_gen = ?9,
       refresh_hash = ?10
WHERE id = ?1;

-- name: DeleteSession
DELETE FROM sessions WHERE id = ?1;

-- name: ListUserSessions
SELECT id, user_id, created_at, expires_at, last_activity, ip_address, user_agent,
       workspace_id, metadata, refresh_gen, refresh_hash
FROM sessions WHERE user_id = ?1 AND expires_at > ?2
ORDER BY created_at, id;

-- name: ListActiveSessions
SELECT id, user_id, created_at, expires_at, last_activity, ip_address, user_agent,
       workspace_id, metadata, refresh_gen, refresh_hash
FROM sessions WHERE expires_at > ?1
ORDER BY created_at, id;

-- name: DeleteUserSessions
DELETE FROM sessions WHERE user_id = ?1
RETURNING id, user_id, created_at, expires_at, last_activity, ip_address, user_agent,
          workspace_id, metadata, refresh_gen, refresh_hash;

-- name: DeleteExpiredSessions
DELETE FROM sessions WHERE expires_at <= ?1;

-- name: CountSessions
SELECT count(*) FROM sessions WHERE expires_at > ?1;

-- name: CountUserSessions
SELECT count(*) FROM sessions WHERE user_id = ?1 AND expires_at > ?2;

-- ---------------------------------------------------------------------
-- Revocation events

-- name: PublishRevocation
INSERT INTO revocations (payload, created_at) VALUES (?1, ?2);

-- name: LastRevocation
SELECT COALESCE(MAX(id), 0) FROM revocations;

-- name: RevocationsAfter
SELECT id, payload FROM revocations WHERE id > ?1 ORDER BY id LIMIT 1000;

-- name: PruneRevocations
DELETE FROM revocations WHERE created_at < ?1;

-- ---------------------------------------------------------------------
-- Workspaces

-- name: CreateWorkspace
INSERT INTO workspaces (id, user_id, state, orchestrator, node, address, secret, pid, external_id, home,
       created_at, started_at, stopped_at, last_activity, restarts, last_error, meta)
VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17);

-- name: GetWorkspace
SELECT id, user_id, state, orchestrator, node, address, secret, pid, external_id, home,
       created_at, started_at, stopped_at, last_activity, restarts, last_error, meta
FROM workspaces WHERE id = ?1;

-- name: GetWorkspaceForUpdate
SELECT id, user_id, state, orchestrator, node, address, secret, pid, external_id, home,
       created_at, started_at, stopped_at, last_activity, restarts, last_error, meta
FROM workspaces WHERE id = ?1;

-- name: GetUserWorkspace
SELECT id, user_id, state, orchestrator, node, address, secret, pid, external_id, home,
       created_at, started_at, stopped_at, last_activity, restarts, last_error, meta
FROM workspaces WHERE user_id = ?1;

-- name: ListWorkspaces
SELECT id, user_id, state, orchestrator, node, address, secret, pid, external_id, home,
       created_at, started_at, stopped_at, last_activity, restarts, last_error, meta
FROM workspaces ORDER BY created_at, id;

-- name: UpdateWorkspace
-- The id is the workspace's identity: never changed.
UPDATE workspaces SET user_id = ?2, state = ?3, orchestrator = ?4, node = ?5, address = ?6,
       secret = ?7, pid = ?8, external_id = ?9, home = ?10, created_at = ?11, started_at = ?12,
       stopped_at = ?13, last_activity = ?14, restarts = ?15, last_error = ?16, meta = ?17
WHERE id = ?1;

-- name: DeleteWorkspace
DELETE FROM workspaces WHERE id = ?1;

-- name: FindPoolWorkspace
SELECT id FROM workspaces
WHERE user_id IS NULL AND orchestrator = ?1 AND state = 'running'
ORDER BY created_at, id LIMIT 1;

-- name: ClaimWorkspace
UPDATE workspaces SET user_id = ?2 WHERE id = ?1 AND user_id IS NULL;

-- name: LockRevocations
-- Writes are serialized already: events commit in id order.
SELECT 1;

-- ---------------------------------------------------------------------
-- Audit log

-- name: LockAudit
-- Writes are serialized already (immediate transactions).
SELECT 1;

-- name: LastAudit
SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1;

-- name: InsertAudit
INSERT INTO audit_log (seq, timestamp, event_type, user_id, username, ip_address, user_agent, status, metadata, prev_hash, hash,
                       event_id, log_id, chain, key_id)
VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15);

-- name: QueryAudit
-- Empty filters match everything; ?5 and ?6 page newest first.
SELECT seq, timestamp, event_type, user_id, username, ip_address, user_agent, status, metadata, prev_hash, hash,
       event_id, log_id, chain, key_id
FROM audit_log
WHERE (?1 = '' OR user_id = ?1) AND (?2 = '' OR event_type = ?2)
  AND (?3 IS NULL OR timestamp >= ?3) AND (?4 IS NULL OR timestamp < ?4)
ORDER BY seq DESC LIMIT ?5 OFFSET ?6;

-- name: CountAudit
SELECT count(*) FROM audit_log
WHERE (?1 = '' OR user_id = ?1) AND (?2 = '' OR event_type = ?2)
  AND (?3 IS NULL OR timestamp >= ?3) AND (?4 IS NULL OR timestamp < ?4);

-- name: AuditAfter
SELECT seq, timestamp, event_type, user_id, username, ip_address, user_agent, status, metadata, prev_hash, hash,
       event_id, log_id, chain, key_id
FROM audit_log WHERE seq > ?1 ORDER BY seq LIMIT ?2;

-- ---------------------------------------------------------------------
-- Usage samples

-- name: InsertUsageSample
-- Another gateway's sample of the same user and interval wins.
INSERT INTO usage_samples (user_id, taken_at, sessions, connections, storage_bytes, memory_bytes,
       cpu_percent, active_users, running_workspaces, workspace_starts)
VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)
ON CONFLICT (user_id, taken_at) DO NOTHING;

-- name: UsageSamples
SELECT user_id, taken_at, sessions, connections, storage_bytes, memory_bytes,
       cpu_percent, active_users, running_workspaces, workspace_starts
FROM usage_samples WHERE user_id = ?1 AND taken_at >= ?2 AND taken_at < ?3
ORDER BY taken_at;

-- name: LatestStorageSamples
-- Each user's most recent sample that measured their storage.
SELECT user_id, taken_at, sessions, connections, storage_bytes, memory_bytes,
       cpu_percent, active_users, running_workspaces, workspace_starts
FROM usage_samples s
WHERE user_id <> '' AND taken_at = (
    SELECT max(taken_at) FROM usage_samples l WHERE l.user_id = s.user_id AND l.storage_bytes > 0)
ORDER BY user_id;

-- name: PruneUsageSamples
DELETE FROM usage_samples WHERE taken_at < ?1;

-- name: DeleteUserUsageSamples
DELETE FROM usage_samples WHERE user_id = ?1;

-- ---------------------------------------------------------------------
-- Audit failures (the admin overview)

-- name: RecentAuditFailures
SELECT seq, timestamp, event_type, user_id, username, ip_address, user_agent, status, metadata, prev_hash, hash,
       event_id, log_id, chain, key_id
FROM audit_log WHERE status = 'failure' AND timestamp >= ?1
ORDER BY seq DESC LIMIT ?2;

-- name: CountAuditFailures
SELECT count(*) FROM audit_log WHERE status = 'failure' AND timestamp >= ?1;

-- ---------------------------------------------------------------------
-- Audit checkpoints: how far each audit log (a gateway's file, or this
-- database's own chain, log 'database') had reached, kept outside it.

-- name: InsertAuditCheckpoint
-- A checkpoint saved twice is kept once.
INSERT INTO audit_checkpoints (log, seq, path, hash, taken_at, key_id, mac)
VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
ON CONFLICT (log, seq) DO NOTHING;

-- name: AuditCheckpoints
SELECT log, seq, path, hash, taken_at, key_id, mac FROM audit_checkpoints WHERE log = ?1 ORDER BY seq;

-- Sign-in lockout (internal/lockout)

-- name: InsertLockoutKey
INSERT INTO lockout_keys (name, secret) VALUES ('v1', ?1) ON CONFLICT (name) DO NOTHING;

-- name: GetLockoutKey
SELECT secret FROM lockout_keys WHERE name = 'v1';

-- name: GetLoginFailures
-- The client's entry and the name's ('*'), when they exist.
SELECT name_key, client, failures, locked_until, lock_count, last_failure
FROM login_failures WHERE name_key = ?1 AND client IN (?2, '*');

-- name: EnsureLoginFailure
INSERT INTO login_failures (name_key, client) VALUES (?1, ?2) ON CONFLICT (name_key, client) DO NOTHING;

-- name: GetLoginFailureForUpdate
-- Run inside an immediate transaction, which already excludes other writers.
SELECT name_key, client, failures, locked_until, lock_count, last_failure
FROM login_failures WHERE name_key = ?1 AND client = ?2;

-- name: SetLoginFailure
UPDATE login_failures SET failures = ?3, locked_until = ?4, lock_count = ?5, last_failure = ?6
WHERE name_key = ?1 AND client = ?2;

-- name: CountFailingClients
-- Distinct addresses that failed since ?2; trusted browsers do not count.
SELECT count(*) FROM login_failures
WHERE name_key = ?1 AND client <> '*' AND client NOT LIKE 'device:%' AND last_failure >= ?2;

-- name: DeleteLoginFailure
DELETE FROM login_failures WHERE name_key = ?1 AND client = ?2;

-- name: ListLoginFailures
SELECT name_key, client, failures, locked_until, lock_count, last_failure
FROM login_failures WHERE name_key = ?1
ORDER BY client = '*' DESC, client;

-- name: ClearLoginFailures
-- ?2 '' clears every client of the name.
DELETE FROM login_failures WHERE name_key = ?1 AND (?2 = '' OR client = ?2);

-- name: PruneLoginFailures
DELETE FROM login_failures
WHERE (locked_until IS NULL OR locked_until <= ?1) AND (last_failure IS NULL OR last_failure < ?2);
