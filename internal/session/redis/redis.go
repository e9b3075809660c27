// Package redis is a session.Store in Redis, shared by every gateway that
// points at the same server (or Sentinel group, or Cluster) and Prefix.
//
// Layout, for Prefix "codehub:":
//
//	codehub:{sessions}:session:<id>  the session as JSON; PXAT its expiry
//	codehub:{sessions}:user:<uid>    sorted set of the user's session ids,
//	                                 scored by creation time (µs)
//	codehub:{sessions}:all           sorted set of every session id, scored
//	                                 by expiry (µs)
//
// Every key carries the hash tag {sessions}, so on Redis Cluster all of them
// live in one hash slot and the multi-key transactions and scripts below are
// allowed; the price is that one deployment's sessions are not spread over
// the cluster's nodes. (A Prefix that itself contains a hash tag, such as
// "{tenant-a}:", picks the slot instead; it must not contain "{}".) Keys
// begin with Prefix, so a Redis ACL such as ~codehub:* can confine the
// gateway to them.
//
// Expiry is decided with Config.Now, so the gateway's clock rules; Redis's
// own expirations (the session key at the session's expiry, each index at
// the latest expiry it holds) only clean up. Index entries whose session key
// Redis dropped are pruned lazily by reads and by DeleteExpired.
//
// Needs Redis 6.2 or later (SET ... PXAT).
package redis

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"sort"
	"strconv"
	"time"

	"github.com/hashicorp/go-hclog"
	goredis "github.com/redis/go-redis/v9"

	"github.com/codehub-dev/codehub/internal/session"
)

var _ session.Store = (*Store)(nil)

// DefaultPrefix starts every key when Config.Prefix is empty.
const DefaultPrefix = "codehub:"

// hashTag follows the prefix in every key; see the package documentation.
const hashTag = "{sessions}:"

// batch bounds the keys of one MGET or one transaction.
const batch = 500

// Config configures a Store.
type Config struct {
	// Client is the connection to Redis: a *redis.Client, a failover
	// (Sentinel) client or a *redis.ClusterClient. Required. The Store does
	// not close it.
	Client goredis.UniversalClient
	// Prefix starts every key; DefaultPrefix when empty. Gateways that
	// share sessions use the same Prefix.
	Prefix string
	// Now is the clock for every expiry decision; time.Now when nil.
	Now func() time.Time
	// MaxAttempts bounds how often a write whose WATCHed key changed under
	// it is retried before it fails; 100 when zero.
	MaxAttempts int
}

// Store is a session.Store in Redis. It is safe for concurrent use, also
// by several gateways at once.
type Store struct {
	rdb         goredis.UniversalClient
	prefix      string
	now         func() time.Time
	maxAttempts int
	log         hclog.Logger
}

// New returns a Store using cfg.Client. It panics if cfg.Client is nil.
func New(cfg Config, log hclog.Logger) *Store {
	if cfg.Client == nil {
		panic("session/redis: Config.Client is nil")
	}
	if cfg.Prefix == "" {
		cfg.Prefix = DefaultPrefix
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.MaxAttempts <= 0 {
		cfg.MaxAttempts = 100
	}
	if log == nil {
		log = hclog.NewNullLogger()
	}
	return &Store{rdb: cfg.Client, prefix: cfg.Prefix, now: cfg.Now, maxAttempts: cfg.MaxAttempts, log: log}
}

func (s *Store) sessionKey(id string) string { return s.prefix + hashTag + "session:" + id }
func (s *Store) userKey(uid string) string   { return s.prefix + hashTag + "user:" + uid }
func (s *Store) allKey() string              { return s.prefix + hashTag + "all" }

// putScript writes a session and its two index entries, and makes sure each
// index outlives its latest session (so Redis removes an index only once it
// holds nothing live). Run inside MULTI, after a WATCH of the session key.
var putScript = goredis.NewScript(`
-- KEYS: session, user index, expiry index
-- ARGV: id, JSON, expiry (unix ms), created (unix µs), expiry (unix µs)
redis.call('SET', KEYS[1], ARGV[2], 'PXAT', ARGV[3])
redis.call('ZADD', KEYS[2], ARGV[4], ARGV[1])
redis.call('ZADD', KEYS[3], ARGV[5], ARGV[1])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local at = tonumber(ARGV[3])
if at > now then
  for i = 2, 3 do
    local ttl = redis.call('PTTL', KEYS[i])
    if ttl < 0 or now + ttl < at then
      redis.call('PEXPIREAT', KEYS[i], ARGV[3])
    end
  end
end
return 1
`)

// pruneScript removes index entries whose session key no longer exists.
// Checking and removing in one script keeps a concurrent Set of the same id
// from losing its entry.
var pruneScript = goredis.NewScript(`
-- KEYS: index, then one session key per ARGV id
local n = 0
for i = 2, #KEYS do
  if redis.call('EXISTS', KEYS[i]) == 0 then
    n = n + redis.call('ZREM', KEYS[1], ARGV[i - 1])
  end
end
return n
`)

// put queues the writes of sess on pipe.
func (s *Store) put(ctx context.Context, pipe goredis.Pipeliner, sess *session.Session) error {
	data, err := json.Marshal(sess)
	if err != nil {
		return fmt.Errorf("encode session: %w", err)
	}
	putScript.Eval(ctx, pipe,
		[]string{s.sessionKey(sess.ID), s.userKey(sess.UserID), s.allKey()},
		sess.ID, data, expiryMillis(sess.ExpiresAt),
		strconv.FormatInt(sess.CreatedAt.UnixMicro(), 10), strconv.FormatInt(sess.ExpiresAt.UnixMicro(), 10))
	return nil
}

// expiryMillis is t in unix milliseconds, rounded up, so that Redis never
// drops a key before the session expires.
func expiryMillis(t time.Time) string {
	ms := t.UnixMilli()
	if t.After(time.UnixMilli(ms)) {
		ms++
	}
	return strconv.FormatInt(ms, 10)
}

func decode(data string) (*session.Session, error) {
	var sess session.Session
	if err := json.Unmarshal([]byte(data), &sess); err != nil {
		return nil, fmt.Errorf("decode session: %w", err)
	}
	return &sess, nil
}

// watch runs fn as an optimistic transaction on keys, retrying with a short
// randomised backoff while another client changes a watched key between
// WATCH and EXEC. fn may therefore run several times.
func (s *Store) watch(ctx context.Context, op string, fn func(*goredis.Tx) error, keys ...string) error {
	backoff := time.Millisecond
	for attempt := 1; ; attempt++ {
		err := s.rdb.Watch(ctx, fn, keys...)
		if !errors.Is(err, goredis.TxFailedErr) {
			return err
		}
		if attempt >= s.maxAttempts {
			return fmt.Errorf("%d attempts, each lost to a concurrent write: %w", attempt, goredis.TxFailedErr)
		}
		s.log.Trace("transaction conflict, retrying", "op", op, "attempt", attempt)
		t := time.NewTimer(backoff/2 + rand.N(backoff))
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
		backoff = min(backoff*2, 50*time.Millisecond)
	}
}

// Set implements session.Store.
func (s *Store) Set(ctx context.Context, sess *session.Session) error {
	if sess.ExpiresAt.UnixMilli() <= 0 {
		return errors.New("set session: no expiry")
	}
	key := s.sessionKey(sess.ID)
	err := s.watch(ctx, "set session", func(tx *goredis.Tx) error {
		oldUser := ""
		old, err := tx.Get(ctx, key).Result()
		switch {
		case errors.Is(err, goredis.Nil):
		case err != nil:
			return err
		default:
			if o, err := decode(old); err == nil {
				oldUser = o.UserID
			}
		}
		_, err = tx.TxPipelined(ctx, func(pipe goredis.Pipeliner) error {
			if oldUser != "" && oldUser != sess.UserID {
				pipe.ZRem(ctx, s.userKey(oldUser), sess.ID)
			}
			return s.put(ctx, pipe, sess)
		})
		return err
	}, key)
	if err != nil {
		return fmt.Errorf("set session: %w", err)
	}
	return nil
}

// Get implements session.Store.
func (s *Store) Get(ctx context.Context, id string) (*session.Session, error) {
	data, err := s.rdb.Get(ctx, s.sessionKey(id)).Result()
	if errors.Is(err, goredis.Nil) {
		return nil, session.ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("get session: %w", err)
	}
	sess, err := decode(data)
	if err != nil {
		return nil, fmt.Errorf("get session: %w", err)
	}
	if sess.Expired(s.now()) {
		return nil, session.ErrNotFound
	}
	return sess, nil
}

// Update implements session.Store. It is an optimistic transaction (WATCH,
// then MULTI/EXEC): when another client changes the session in between,
// fn runs again on the new value, so fn must have no effect beyond its
// argument.
func (s *Store) Update(ctx context.Context, id string, fn func(*session.Session) error) (*session.Session, error) {
	key := s.sessionKey(id)
	var (
		next  *session.Session
		fnErr error
	)
	err := s.watch(ctx, "update session", func(tx *goredis.Tx) error {
		data, err := tx.Get(ctx, key).Result()
		if errors.Is(err, goredis.Nil) {
			return session.ErrNotFound
		}
		if err != nil {
			return err
		}
		cur, err := decode(data)
		if err != nil {
			return err
		}
		if cur.Expired(s.now()) {
			return session.ErrNotFound
		}
		next = cur.Clone()
		if fnErr = fn(next); fnErr != nil {
			return fnErr
		}
		next.ID, next.UserID = cur.ID, cur.UserID // identity is not fn's to change
		_, err = tx.TxPipelined(ctx, func(pipe goredis.Pipeliner) error {
			return s.put(ctx, pipe, next)
		})
		return err
	}, key)
	switch {
	case fnErr != nil:
		return nil, fnErr
	case errors.Is(err, session.ErrNotFound):
		return nil, session.ErrNotFound
	case err != nil:
		return nil, fmt.Errorf("update session: %w", err)
	}
	return next.Clone(), nil
}

// Delete implements session.Store.
func (s *Store) Delete(ctx context.Context, id string) error {
	key := s.sessionKey(id)
	err := s.watch(ctx, "delete session", func(tx *goredis.Tx) error {
		user := ""
		data, err := tx.Get(ctx, key).Result()
		switch {
		case errors.Is(err, goredis.Nil):
		case err != nil:
			return err
		default:
			if sess, err := decode(data); err == nil {
				user = sess.UserID
			}
		}
		_, err = tx.TxPipelined(ctx, func(pipe goredis.Pipeliner) error {
			pipe.Del(ctx, key)
			pipe.ZRem(ctx, s.allKey(), id)
			if user != "" {
				pipe.ZRem(ctx, s.userKey(user), id)
			}
			return nil
		})
		return err
	}, key)
	if err != nil {
		return fmt.Errorf("delete session: %w", err)
	}
	return nil
}

// load returns the sessions stored under ids, in the order of ids (nil
// where the key is gone), and removes the entries of missing keys from the
// index.
func (s *Store) load(ctx context.Context, index string, ids []string) ([]*session.Session, error) {
	out := make([]*session.Session, 0, len(ids))
	var missing []string
	for start := 0; start < len(ids); start += batch {
		chunk := ids[start:min(start+batch, len(ids))]
		keys := make([]string, len(chunk))
		for i, id := range chunk {
			keys[i] = s.sessionKey(id)
		}
		vals, err := s.rdb.MGet(ctx, keys...).Result()
		if err != nil {
			return nil, err
		}
		for i, v := range vals {
			data, ok := v.(string)
			if !ok {
				missing = append(missing, chunk[i])
				out = append(out, nil)
				continue
			}
			sess, err := decode(data)
			if err != nil {
				// One damaged value must not hide every other session.
				s.log.Warn("skipping undecodable session", "key", keys[i], "error", err)
				out = append(out, nil)
				continue
			}
			out = append(out, sess)
		}
	}
	if len(missing) > 0 {
		n, err := s.prune(ctx, index, missing)
		if err != nil {
			return nil, err
		}
		if n > 0 {
			s.log.Debug("pruned index entries of sessions Redis expired", "index", index, "count", n)
		}
	}
	return out, nil
}

func (s *Store) prune(ctx context.Context, index string, ids []string) (int, error) {
	total := 0
	for start := 0; start < len(ids); start += batch {
		chunk := ids[start:min(start+batch, len(ids))]
		keys := make([]string, 0, 1+len(chunk))
		keys = append(keys, index)
		args := make([]any, len(chunk))
		for i, id := range chunk {
			keys = append(keys, s.sessionKey(id))
			args[i] = id
		}
		n, err := pruneScript.Run(ctx, s.rdb, keys, args...).Int()
		if err != nil {
			return total, fmt.Errorf("prune index: %w", err)
		}
		total += n
	}
	return total, nil
}

func sortOldestFirst(ss []*session.Session) {
	sort.Slice(ss, func(i, j int) bool {
		if ss[i].CreatedAt.Equal(ss[j].CreatedAt) {
			return ss[i].ID < ss[j].ID
		}
		return ss[i].CreatedAt.Before(ss[j].CreatedAt)
	})
}

// live keeps the sessions that exist, are not expired at now and, when
// userID is not empty, belong to userID; oldest first.
func live(ss []*session.Session, now time.Time, userID string) []*session.Session {
	out := make([]*session.Session, 0, len(ss))
	for _, sess := range ss {
		if sess != nil && !sess.Expired(now) && (userID == "" || sess.UserID == userID) {
			out = append(out, sess)
		}
	}
	sortOldestFirst(out)
	return out
}

// UserSessions implements session.Store.
func (s *Store) UserSessions(ctx context.Context, userID string) ([]*session.Session, error) {
	index := s.userKey(userID)
	ids, err := s.rdb.ZRange(ctx, index, 0, -1).Result()
	if err != nil {
		return nil, fmt.Errorf("user sessions: %w", err)
	}
	ss, err := s.load(ctx, index, ids)
	if err != nil {
		return nil, fmt.Errorf("user sessions: %w", err)
	}
	return live(ss, s.now(), userID), nil
}

// AllActive implements session.Store.
func (s *Store) AllActive(ctx context.Context) ([]*session.Session, error) {
	now := s.now()
	ids, err := s.rdb.ZRangeByScore(ctx, s.allKey(), &goredis.ZRangeBy{
		Min: strconv.FormatInt(now.UnixMicro(), 10), Max: "+inf",
	}).Result()
	if err != nil {
		return nil, fmt.Errorf("all sessions: %w", err)
	}
	ss, err := s.load(ctx, s.allKey(), ids)
	if err != nil {
		return nil, fmt.Errorf("all sessions: %w", err)
	}
	return live(ss, now, ""), nil
}

// DeleteUserSessions implements session.Store.
func (s *Store) DeleteUserSessions(ctx context.Context, userID string) ([]*session.Session, error) {
	index := s.userKey(userID)
	var gone []*session.Session
	err := s.watch(ctx, "delete user sessions", func(tx *goredis.Tx) error {
		gone = nil
		ids, err := tx.ZRange(ctx, index, 0, -1).Result()
		if err != nil || len(ids) == 0 {
			return err
		}
		keys := make([]string, len(ids))
		for i, id := range ids {
			keys[i] = s.sessionKey(id)
		}
		if err := tx.Watch(ctx, keys...).Err(); err != nil {
			return err
		}
		vals, err := tx.MGet(ctx, keys...).Result()
		if err != nil {
			return err
		}
		var owned []*session.Session
		for _, v := range vals {
			if data, ok := v.(string); ok {
				if sess, err := decode(data); err == nil && sess.UserID == userID {
					owned = append(owned, sess)
				}
			}
		}
		_, err = tx.TxPipelined(ctx, func(pipe goredis.Pipeliner) error {
			for _, sess := range owned {
				pipe.Del(ctx, s.sessionKey(sess.ID))
			}
			// Entries of missing keys go too: those sessions have ended.
			args := make([]any, len(ids))
			for i, id := range ids {
				args[i] = id
			}
			pipe.ZRem(ctx, s.allKey(), args...)
			pipe.Del(ctx, index)
			return nil
		})
		gone = owned
		return err
	}, index)
	if err != nil {
		return nil, fmt.Errorf("delete user sessions: %w", err)
	}
	return live(gone, s.now(), userID), nil
}

// DeleteExpired implements session.Store. It also counts index entries of
// expired sessions whose key Redis had already dropped.
func (s *Store) DeleteExpired(ctx context.Context) (int, error) {
	now := s.now()
	ids, err := s.rdb.ZRangeByScore(ctx, s.allKey(), &goredis.ZRangeBy{
		Min: "-inf", Max: strconv.FormatInt(now.UnixMicro(), 10),
	}).Result()
	if err != nil {
		return 0, fmt.Errorf("delete expired: %w", err)
	}
	total := 0
	for start := 0; start < len(ids); start += batch {
		chunk := ids[start:min(start+batch, len(ids))]
		n, err := s.deleteExpired(ctx, now, chunk)
		if err != nil {
			return total, fmt.Errorf("delete expired: %w", err)
		}
		total += n
	}
	return total, nil
}

func (s *Store) deleteExpired(ctx context.Context, now time.Time, ids []string) (int, error) {
	keys := make([]string, len(ids))
	for i, id := range ids {
		keys[i] = s.sessionKey(id)
	}
	var removed []*goredis.IntCmd
	err := s.watch(ctx, "delete expired", func(tx *goredis.Tx) error {
		vals, err := tx.MGet(ctx, keys...).Result()
		if err != nil {
			return err
		}
		removed = removed[:0]
		_, err = tx.TxPipelined(ctx, func(pipe goredis.Pipeliner) error {
			for i, v := range vals {
				id := ids[i]
				data, ok := v.(string)
				if !ok { // Redis dropped it already: only the entry is left
					removed = append(removed, pipe.ZRem(ctx, s.allKey(), id))
					continue
				}
				sess, err := decode(data)
				if err == nil && !sess.Expired(now) {
					continue // renewed since the index was read
				}
				pipe.Del(ctx, keys[i])
				removed = append(removed, pipe.ZRem(ctx, s.allKey(), id))
				if err == nil {
					pipe.ZRem(ctx, s.userKey(sess.UserID), id)
				}
			}
			return nil
		})
		return err
	}, keys...)
	if err != nil {
		return 0, err
	}
	// Count what this call removed, not what another gateway's concurrent
	// DeleteExpired or Delete already had.
	n := 0
	for _, cmd := range removed {
		n += int(cmd.Val())
	}
	return n, nil
}

// Count implements session.Store. It counts entries of the expiry index
// only: a session whose key Redis evicted under memory pressure (rather
// than expired) is counted until AllActive or DeleteExpired prunes it, so
// run Redis with a noeviction or volatile-* policy.
func (s *Store) Count(ctx context.Context) (int, error) {
	n, err := s.rdb.ZCount(ctx, s.allKey(), "("+strconv.FormatInt(s.now().UnixMicro(), 10), "+inf").Result()
	if err != nil {
		return 0, fmt.Errorf("count sessions: %w", err)
	}
	return int(n), nil
}

// UserCount implements session.Store.
func (s *Store) UserCount(ctx context.Context, userID string) (int, error) {
	ss, err := s.UserSessions(ctx, userID)
	return len(ss), err
}
