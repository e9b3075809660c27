// Package memory is a session store held in the gateway's memory: nothing
// survives a restart and it cannot be shared between gateways. It is the
// single-user default and an explicit choice (store "memory") otherwise.
package memory

import (
	"context"
	"sort"
	"sync"
	"time"

	"github.com/codehub-dev/codehub/internal/session"
)

var _ session.Store = (*Store)(nil)

// Store is an in-memory session.Store.
type Store struct {
	now func() time.Time

	mu     sync.RWMutex
	byID   map[string]*session.Session
	byUser map[string]map[string]struct{}
}

// New returns an empty store; now is the clock (time.Now when nil).
func New(now func() time.Time) *Store {
	if now == nil {
		now = time.Now
	}
	return &Store{now: now, byID: map[string]*session.Session{}, byUser: map[string]map[string]struct{}{}}
}

// Set implements session.Store.
func (s *Store) Set(_ context.Context, sess *session.Session) error {
	c := sess.Clone()
	s.mu.Lock()
	defer s.mu.Unlock()
	if old, ok := s.byID[c.ID]; ok && old.UserID != c.UserID {
		s.unlinkLocked(old)
	}
	s.byID[c.ID] = c
	ids := s.byUser[c.UserID]
	if ids == nil {
		ids = map[string]struct{}{}
		s.byUser[c.UserID] = ids
	}
	ids[c.ID] = struct{}{}
	return nil
}

func (s *Store) unlinkLocked(sess *session.Session) {
	delete(s.byID, sess.ID)
	if ids := s.byUser[sess.UserID]; ids != nil {
		delete(ids, sess.ID)
		if len(ids) == 0 {
			delete(s.byUser, sess.UserID)
		}
	}
}

// Get implements session.Store.
func (s *Store) Get(_ context.Context, id string) (*session.Session, error) {
	s.mu.RLock()
	sess, ok := s.byID[id]
	s.mu.RUnlock()
	if !ok || sess.Expired(s.now()) {
		return nil, session.ErrNotFound
	}
	return sess.Clone(), nil
}

// Update implements session.Store.
func (s *Store) Update(_ context.Context, id string, fn func(*session.Session) error) (*session.Session, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	cur, ok := s.byID[id]
	if !ok || cur.Expired(s.now()) {
		return nil, session.ErrNotFound
	}
	next := cur.Clone()
	if err := fn(next); err != nil {
		return nil, err
	}
	next.ID, next.UserID = cur.ID, cur.UserID // identity is not fn's to change
	s.byID[id] = next
	return next.Clone(), nil
}

// Delete implements session.Store.
func (s *Store) Delete(_ context.Context, id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if sess, ok := s.byID[id]; ok {
		s.unlinkLocked(sess)
	}
	return nil
}

func (s *Store) liveLocked(ids map[string]struct{}) []*session.Session {
	now := s.now()
	out := make([]*session.Session, 0, len(ids))
	for id := range ids {
		if sess := s.byID[id]; !sess.Expired(now) {
			out = append(out, sess.Clone())
		}
	}
	sortOldestFirst(out)
	return out
}

func sortOldestFirst(ss []*session.Session) {
	sort.Slice(ss, func(i, j int) bool {
		if ss[i].CreatedAt.Equal(ss[j].CreatedAt) {
			return ss[i].ID < ss[j].ID
		}
		return ss[i].CreatedAt.Before(ss[j].CreatedAt)
	})
}

// UserSessions implements session.Store.
func (s *Store) UserSessions(_ context.Context, userID string) ([]*session.Session, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.liveLocked(s.byUser[userID]), nil
}

// AllActive implements session.Store.
func (s *Store) AllActive(_ context.Context) ([]*session.Session, error) {
	now := s.now()
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]*session.Session, 0, len(s.byID))
	for _, sess := range s.byID {
		if !sess.Expired(now) {
			out = append(out, sess.Clone())
		}
	}
	sortOldestFirst(out)
	return out, nil
}

// DeleteUserSessions implements session.Store.
func (s *Store) DeleteUserSessions(_ context.Context, userID string) ([]*session.Session, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := s.liveLocked(s.byUser[userID])
	for id := range s.byUser[userID] {
		delete(s.byID, id)
	}
	delete(s.byUser, userID)
	return out, nil
}

// DeleteExpired implements session.Store.
func (s *Store) DeleteExpired(_ context.Context) (int, error) {
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, sess := range s.byID {
		if sess.Expired(now) {
			s.unlinkLocked(sess)
			n++
		}
	}
	return n, nil
}

// Count implements session.Store.
func (s *Store) Count(ctx context.Context) (int, error) {
	all, err := s.AllActive(ctx)
	return len(all), err
}

// UserCount implements session.Store.
func (s *Store) UserCount(ctx context.Context, userID string) (int, error) {
	ss, err := s.UserSessions(ctx, userID)
	return len(ss), err
}
