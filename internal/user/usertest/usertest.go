// Package usertest is the contract every user.Store must meet. Each
// backend's tests call Run with a constructor; the suite is the only
// definition of correct behaviour, so backends cannot drift apart.
//
// Times are fixed, UTC and whole microseconds (the precision of the SQL
// backends); the store's methods take "now" as an argument, so no clock
// is needed.
package usertest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/codehub-dev/codehub/internal/user"
	"github.com/google/uuid"
)

// t0 is when the suite's users are created: fixed, UTC, whole microseconds.
var t0 = time.Date(2030, time.March, 14, 15, 9, 26, 535897000, time.UTC)

// NewUser returns a valid user with a fresh ID, created at t0.
func NewUser(username string) *user.User {
	return &user.User{
		ID:           uuid.NewString(),
		Username:     username,
		Email:        username + "@example.com",
		PasswordHash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNo",
		Roles:        []string{user.RoleUser},
		CreatedAt:    t0,
		UpdatedAt:    t0,
		Active:       true,
	}
}

// MustCreate stores u or fails t.
func MustCreate(t testing.TB, st user.Store, u *user.User) *user.User {
	t.Helper()
	if err := st.Create(context.Background(), u); err != nil {
		t.Fatalf("Create(%s): %v", u.Username, err)
	}
	return u
}

// MustGet returns the stored user with id or fails t.
func MustGet(t testing.TB, st user.Store, id string) *user.User {
	t.Helper()
	u, err := st.Get(context.Background(), id)
	if err != nil {
		t.Fatalf("Get(%s): %v", id, err)
	}
	return u
}

// Equal explains how got differs from want, or returns nil. Times compare
// as instants; nil and empty roles or metadata are the same; metadata
// compares as JSON, as a store that serializes it gives it back.
func Equal(got, want *user.User) error {
	switch {
	case got.ID != want.ID, got.Username != want.Username, got.Email != want.Email,
		got.PasswordHash != want.PasswordHash, got.Active != want.Active:
		return fmt.Errorf("got %+v, want %+v", got, want)
	case !slices.Equal(got.Roles, want.Roles):
		return fmt.Errorf("roles: got %q, want %q", got.Roles, want.Roles)
	case !got.CreatedAt.Equal(want.CreatedAt), !got.UpdatedAt.Equal(want.UpdatedAt),
		!got.LastLogin.Equal(want.LastLogin), !got.LockedUntil.Equal(want.LockedUntil):
		return fmt.Errorf("times: got created %v updated %v last login %v locked until %v, want %v %v %v %v",
			got.CreatedAt, got.UpdatedAt, got.LastLogin, got.LockedUntil,
			want.CreatedAt, want.UpdatedAt, want.LastLogin, want.LockedUntil)
	case got.LastLogin.IsZero() != want.LastLogin.IsZero(), got.LockedUntil.IsZero() != want.LockedUntil.IsZero():
		return fmt.Errorf("zero times: got last login %v locked until %v, want %v %v",
			got.LastLogin, got.LockedUntil, want.LastLogin, want.LockedUntil)
	case got.FailedLogins != want.FailedLogins, got.LockCount != want.LockCount:
		return fmt.Errorf("lockout: got %d failures %d locks, want %d %d",
			got.FailedLogins, got.LockCount, want.FailedLogins, want.LockCount)
	}
	if g, w := metadataJSON(got.Metadata), metadataJSON(want.Metadata); g != w {
		return fmt.Errorf("metadata: got %s, want %s", g, w)
	}
	return nil
}

func metadataJSON(m map[string]any) string {
	if len(m) == 0 {
		return "{}"
	}
	b, err := json.Marshal(m) // sorts keys
	if err != nil {
		return fmt.Sprintf("unencodable %v: %v", m, err)
	}
	return string(b)
}

func usernames(us []*user.User) []string {
	out := make([]string, len(us))
	for i, u := range us {
		out[i] = u.Username
	}
	return out
}

// Run runs the contract against stores made by newStore, which returns a
// new, empty store for each subtest.
func Run(t *testing.T, newStore func(t *testing.T) user.Store) {
	ctx := context.Background()

	t.Run("CreateGetRoundTrip", func(t *testing.T) {
		st := newStore(t)
		u := NewUser("alice")
		u.Roles = []string{user.RoleUser, user.RoleAdmin}
		u.UpdatedAt = t0.Add(time.Second)
		u.Metadata = map[string]any{"displayName": "Alice Liddell", "team": "infra", "level": 3.0,
			"tags": []any{"a", "b"}, "oncall": true}
		u.FailedLogins, u.LockCount, u.LockedUntil = 2, 1, t0.Add(5*time.Minute)
		want := u.Clone()
		MustCreate(t, st, u)
		// The store keeps its own copy.
		u.Roles[0], u.Metadata["team"] = "changed", "changed"

		for _, tc := range []struct {
			name string
			get  func() (*user.User, error)
		}{
			{"Get", func() (*user.User, error) { return st.Get(ctx, want.ID) }},
			{"GetByUsername", func() (*user.User, error) { return st.GetByUsername(ctx, "alice") }},
			{"GetByEmail", func() (*user.User, error) { return st.GetByEmail(ctx, "alice@example.com") }},
		} {
			got, err := tc.get()
			if err != nil {
				t.Fatalf("%s: %v", tc.name, err)
			}
			if err := Equal(got, want); err != nil {
				t.Fatalf("%s: %v", tc.name, err)
			}
			if !got.LastLogin.IsZero() {
				t.Fatalf("%s: zero LastLogin came back as %v", tc.name, got.LastLogin)
			}
		}

		// A result shares nothing with the store.
		got := MustGet(t, st, want.ID)
		got.Roles[0], got.Metadata["team"] = "changed", "changed"
		if err := Equal(MustGet(t, st, want.ID), want); err != nil {
			t.Fatalf("store shares state with a result: %v", err)
		}

		// A user with no roles, metadata or lockout state.
		bare := NewUser("bob")
		bare.Roles, bare.Metadata, bare.Active = nil, nil, false
		MustCreate(t, st, bare)
		if err := Equal(MustGet(t, st, bare.ID), bare); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("GetMissing", func(t *testing.T) {
		st := newStore(t)
		MustCreate(t, st, NewUser("alice"))
		for name, get := range map[string]func() (*user.User, error){
			"Get":             func() (*user.User, error) { return st.Get(ctx, uuid.NewString()) },
			"Get(not a uuid)": func() (*user.User, error) { return st.Get(ctx, "alice") },
			"GetByUsername":   func() (*user.User, error) { return st.GetByUsername(ctx, "nobody") },
			"GetByEmail":      func() (*user.User, error) { return st.GetByEmail(ctx, "nobody@example.com") },
			// Exact comparison: callers normalize.
			"GetByUsername(case)": func() (*user.User, error) { return st.GetByUsername(ctx, "Alice") },
		} {
			if _, err := get(); !errors.Is(err, user.ErrNotFound) {
				t.Errorf("%s: err = %v, want ErrNotFound", name, err)
			}
		}
	})

	t.Run("CreateConflict", func(t *testing.T) {
		for _, tc := range []struct {
			name            string
			username, email string
		}{
			{"username", "alice", "other@example.com"},
			{"email", "other", "alice@example.com"},
			{"both", "alice", "alice@example.com"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				st := newStore(t)
				MustCreate(t, st, NewUser("alice"))
				dup := NewUser(tc.username)
				dup.Email = tc.email
				if err := st.Create(ctx, dup); !errors.Is(err, user.ErrConflict) {
					t.Fatalf("Create duplicate %s: err = %v, want ErrConflict", tc.name, err)
				}
				if n, err := st.Count(ctx); err != nil || n != 1 {
					t.Fatalf("Count after a conflict = %d, %v; want 1", n, err)
				}
				if _, err := st.Get(ctx, dup.ID); !errors.Is(err, user.ErrNotFound) {
					t.Fatalf("the conflicting user was stored: %v", err)
				}
			})
		}
	})

	t.Run("Update", func(t *testing.T) {
		st := newStore(t)
		alice := MustCreate(t, st, NewUser("alice"))
		bob := MustCreate(t, st, NewUser("bob"))

		u := MustGet(t, st, alice.ID)
		u.Username, u.Email = "alicia", "alicia@example.org"
		u.PasswordHash = "$argon2id$new"
		u.Roles = []string{user.RoleAuditor}
		u.Metadata = map[string]any{"team": "security"}
		u.Active = false
		u.UpdatedAt = t0.Add(time.Hour)
		want := u.Clone()
		// The sign-in state and CreatedAt are not an edit's to change.
		u.LastLogin = t0.Add(30 * time.Minute)
		u.FailedLogins, u.LockCount, u.LockedUntil = 7, 3, t0.Add(99*time.Hour)
		u.CreatedAt = t0.Add(-99 * time.Hour)
		if err := st.Update(ctx, u); err != nil {
			t.Fatal(err)
		}
		if err := Equal(MustGet(t, st, alice.ID), want); err != nil {
			t.Fatal(err)
		}
		if got, err := st.GetByUsername(ctx, "alicia"); err != nil || got.ID != alice.ID {
			t.Fatalf("GetByUsername(new name) = %v, %v", got, err)
		}
		if _, err := st.GetByUsername(ctx, "alice"); !errors.Is(err, user.ErrNotFound) {
			t.Fatalf("old username still found: %v", err)
		}
		if got, err := st.GetByEmail(ctx, "alicia@example.org"); err != nil || got.ID != alice.ID {
			t.Fatalf("GetByEmail(new email) = %v, %v", got, err)
		}

		// Saving a user unchanged is no conflict with itself.
		if err := st.Update(ctx, MustGet(t, st, bob.ID)); err != nil {
			t.Fatalf("Update unchanged: %v", err)
		}

		for _, tc := range []struct {
			name   string
			change func(*user.User)
		}{
			{"username", func(u *user.User) { u.Username = "bob" }},
			{"email", func(u *user.User) { u.Email = "bob@example.com" }},
		} {
			u := MustGet(t, st, alice.ID)
			before := u.Clone()
			tc.change(u)
			if err := st.Update(ctx, u); !errors.Is(err, user.ErrConflict) {
				t.Fatalf("Update to a taken %s: err = %v, want ErrConflict", tc.name, err)
			}
			if err := Equal(MustGet(t, st, alice.ID), before); err != nil {
				t.Fatalf("failed Update changed the user: %v", err)
			}
		}

		missing := NewUser("carol")
		if err := st.Update(ctx, missing); !errors.Is(err, user.ErrNotFound) {
			t.Fatalf("Update missing: err = %v, want ErrNotFound", err)
		}
		if _, err := st.GetByUsername(ctx, "carol"); !errors.Is(err, user.ErrNotFound) {
			t.Fatalf("Update of a missing user created it: %v", err)
		}
	})

	t.Run("Delete", func(t *testing.T) {
		st := newStore(t)
		alice := MustCreate(t, st, NewUser("alice"))
		bob := MustCreate(t, st, NewUser("bob"))
		if err := st.Delete(ctx, alice.ID); err != nil {
			t.Fatal(err)
		}
		if _, err := st.Get(ctx, alice.ID); !errors.Is(err, user.ErrNotFound) {
			t.Fatalf("Get after Delete: err = %v", err)
		}
		if err := st.Delete(ctx, alice.ID); !errors.Is(err, user.ErrNotFound) {
			t.Fatalf("second Delete: err = %v, want ErrNotFound", err)
		}
		if err := st.Delete(ctx, "not-a-uuid"); !errors.Is(err, user.ErrNotFound) {
			t.Fatalf("Delete(not a uuid): err = %v, want ErrNotFound", err)
		}
		MustGet(t, st, bob.ID)
		// The name and address are free again.
		MustCreate(t, st, NewUser("alice"))
	})

	t.Run("Count", func(t *testing.T) {
		st := newStore(t)
		count := func(want int) {
			t.Helper()
			if n, err := st.Count(ctx); err != nil || n != want {
				t.Fatalf("Count = %d, %v; want %d", n, err, want)
			}
		}
		count(0)
		var ids []string
		for _, name := range []string{"alice", "bob", "carol"} {
			ids = append(ids, MustCreate(t, st, NewUser(name)).ID)
		}
		count(3)
		if err := st.Delete(ctx, ids[1]); err != nil {
			t.Fatal(err)
		}
		count(2)
	})

	t.Run("List", func(t *testing.T) {
		st := newStore(t)
		for _, u := range []struct{ name, email string }{
			{"erin", "erin@corp.example"},
			{"carol", "carol@example.com"},
			{"alice", "alice@example.com"},
			{"dave_x", "dave@example.org"},
			{"bob", "bob@corp.example"},
			{"daveyx", "davey@example.org"},
			{"100%pure", "pure@example.net"},
			{`back\slash`, "bs@example.net"},
			{"frank", "frank.smith@example.net"},
		} {
			nu := NewUser(u.name)
			nu.Email = u.email
			MustCreate(t, st, nu)
		}
		all := []string{"100%pure", "alice", `back\slash`, "bob", "carol", "dave_x", "daveyx", "erin", "frank"}
		for _, tc := range []struct {
			name          string
			opts          user.ListOptions
			want          []string
			total         int
			ignoreMissing bool
		}{
			{"all", user.ListOptions{}, all, 9, false},
			{"username, case-insensitive", user.ListOptions{Search: "ALIce"}, []string{"alice"}, 1, false},
			{"email", user.ListOptions{Search: "corp.EXAMPLE"}, []string{"bob", "erin"}, 2, false},
			{"username or email", user.ListOptions{Search: "smith"}, []string{"frank"}, 1, false},
			{"substring", user.ListOptions{Search: "ar"}, []string{"carol"}, 1, false},
			{"underscore is literal", user.ListOptions{Search: "_"}, []string{"dave_x"}, 1, false},
			{"underscore in a word", user.ListOptions{Search: "dave_"}, []string{"dave_x"}, 1, false},
			{"percent is literal", user.ListOptions{Search: "%"}, []string{"100%pure"}, 1, false},
			{"percent in a word", user.ListOptions{Search: "0%p"}, []string{"100%pure"}, 1, false},
			{"backslash is literal", user.ListOptions{Search: `\`}, []string{`back\slash`}, 1, false},
			{"quote", user.ListOptions{Search: "'"}, nil, 0, false},
			{"no match", user.ListOptions{Search: "zzz"}, nil, 0, false},
			{"first page", user.ListOptions{Limit: 4}, all[:4], 9, false},
			{"second page", user.ListOptions{Offset: 4, Limit: 4}, all[4:8], 9, false},
			{"last page", user.ListOptions{Offset: 8, Limit: 4}, all[8:], 9, false},
			{"past the end", user.ListOptions{Offset: 20, Limit: 4}, nil, 9, false},
			{"offset, no limit", user.ListOptions{Offset: 7}, all[7:], 9, false},
			{"search and page", user.ListOptions{Search: "example.org", Offset: 1, Limit: 1}, []string{"daveyx"}, 2, false},
		} {
			t.Run(tc.name, func(t *testing.T) {
				got, total, err := st.List(ctx, tc.opts)
				if err != nil {
					t.Fatal(err)
				}
				if !slices.Equal(usernames(got), tc.want) || total != tc.total {
					t.Fatalf("List(%+v) = %q, total %d; want %q, total %d",
						tc.opts, usernames(got), total, tc.want, tc.total)
				}
			})
		}
		// Results are whole users.
		got, _, err := st.List(ctx, user.ListOptions{Search: "alice"})
		if err != nil || len(got) != 1 {
			t.Fatalf("List(alice) = %v, %v", got, err)
		}
		if err := Equal(got[0], MustGet(t, st, got[0].ID)); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("RecordSuccess", func(t *testing.T) {
		st := newStore(t)
		u := MustCreate(t, st, NewUser("alice"))
		until := t0.Add(2 * time.Hour)
		if err := st.Lock(ctx, u.ID, until); err != nil {
			t.Fatal(err)
		}
		login := t0.Add(time.Hour)
		if err := st.RecordSuccess(ctx, u.ID, login); err != nil {
			t.Fatal(err)
		}
		got := MustGet(t, st, u.ID)
		if !got.LastLogin.Equal(login) || !got.LockedUntil.Equal(until) {
			t.Fatalf("after RecordSuccess: last login %v, locked until %v; want %v and the lock kept", got.LastLogin, got.LockedUntil, login)
		}
		if err := st.RecordSuccess(ctx, uuid.NewString(), login); !errors.Is(err, user.ErrNotFound) {
			t.Fatalf("RecordSuccess of a missing user: err = %v, want ErrNotFound", err)
		}
	})

	t.Run("UpdateKeepsConcurrentLock", func(t *testing.T) {
		// An admin edit (Get, change, Update) racing with a lock must not
		// undo the lock.
		st := newStore(t)
		u := MustCreate(t, st, NewUser("carol"))
		edit := MustGet(t, st, u.ID)
		until := t0.Add(time.Hour)
		if err := st.Lock(ctx, u.ID, until); err != nil {
			t.Fatal(err)
		}
		edit.Metadata = map[string]any{"edited": true}
		if err := st.Update(ctx, edit); err != nil {
			t.Fatal(err)
		}
		if got := MustGet(t, st, u.ID); !got.LockedUntil.Equal(until) {
			t.Fatalf("LockedUntil = %v after an edit, want the concurrent lock kept", got.LockedUntil)
		}
	})

	t.Run("Lock", func(t *testing.T) {
		st := newStore(t)
		u := MustCreate(t, st, NewUser("dave"))
		until := t0.Add(48 * time.Hour)
		if err := st.Lock(ctx, u.ID, until); err != nil {
			t.Fatal(err)
		}
		got := MustGet(t, st, u.ID)
		if !got.LockedUntil.Equal(until) || !got.Locked(t0) {
			t.Fatalf("LockedUntil = %v, want %v", got.LockedUntil, until)
		}
		if err := st.Unlock(ctx, u.ID); err != nil {
			t.Fatal(err)
		}
		if MustGet(t, st, u.ID).Locked(t0) {
			t.Fatal("still locked after Unlock")
		}
		if err := st.Lock(ctx, "00000000-0000-4000-8000-000000000000", until); !errors.Is(err, user.ErrNotFound) {
			t.Fatalf("Lock of a missing user: %v", err)
		}
		if err := st.Unlock(ctx, uuid.NewString()); !errors.Is(err, user.ErrNotFound) {
			t.Fatalf("Unlock of a missing user: err = %v, want ErrNotFound", err)
		}
	})

	t.Run("Invites", func(t *testing.T) {
		st := newStore(t)
		inv := &user.Invite{
			TokenHash: "hash-1", Email: "new@example.com", Role: user.RoleAdmin, CreatedBy: uuid.NewString(),
			CreatedAt: t0, ExpiresAt: t0.Add(24 * time.Hour),
		}
		if err := st.CreateInvite(ctx, inv); err != nil {
			t.Fatal(err)
		}
		now := t0.Add(time.Hour)
		uid := uuid.NewString()
		got, err := st.UseInvite(ctx, "hash-1", uid, now)
		if err != nil {
			t.Fatal(err)
		}
		if got.TokenHash != inv.TokenHash || got.Email != inv.Email || got.Role != inv.Role ||
			got.CreatedBy != inv.CreatedBy || !got.CreatedAt.Equal(inv.CreatedAt) || !got.ExpiresAt.Equal(inv.ExpiresAt) {
			t.Fatalf("UseInvite = %+v, want %+v", got, inv)
		}
		if !got.UsedAt.Equal(now) || got.UsedBy != uid {
			t.Fatalf("UseInvite: used at %v by %q, want %v by %q", got.UsedAt, got.UsedBy, now, uid)
		}
		if _, err := st.UseInvite(ctx, "hash-1", uuid.NewString(), now); !errors.Is(err, user.ErrNotFound) {
			t.Fatalf("second UseInvite: err = %v, want ErrNotFound", err)
		}
		if _, err := st.UseInvite(ctx, "no-such-hash", uid, now); !errors.Is(err, user.ErrNotFound) {
			t.Fatalf("UseInvite of a missing invite: err = %v, want ErrNotFound", err)
		}

		// Released, it can be used again, by someone else.
		if err := st.ReleaseInvite(ctx, "hash-1"); err != nil {
			t.Fatal(err)
		}
		other := uuid.NewString()
		got, err = st.UseInvite(ctx, "hash-1", other, now.Add(time.Minute))
		if err != nil {
			t.Fatalf("UseInvite after ReleaseInvite: %v", err)
		}
		if got.UsedBy != other || !got.UsedAt.Equal(now.Add(time.Minute)) {
			t.Fatalf("UseInvite after ReleaseInvite = %+v", got)
		}
	})

	t.Run("InviteExpiry", func(t *testing.T) {
		st := newStore(t)
		expires := t0.Add(time.Hour)
		for _, h := range []string{"a", "b"} {
			if err := st.CreateInvite(ctx, &user.Invite{TokenHash: h, Role: user.RoleUser, CreatedAt: t0, ExpiresAt: expires}); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := st.UseInvite(ctx, "a", uuid.NewString(), expires); !errors.Is(err, user.ErrNotFound) {
			t.Fatalf("UseInvite at expiry: err = %v, want ErrNotFound", err)
		}
		if _, err := st.UseInvite(ctx, "a", uuid.NewString(), expires.Add(time.Hour)); !errors.Is(err, user.ErrNotFound) {
			t.Fatalf("UseInvite after expiry: err = %v, want ErrNotFound", err)
		}
		if _, err := st.UseInvite(ctx, "b", uuid.NewString(), expires.Add(-time.Microsecond)); err != nil {
			t.Fatalf("UseInvite just before expiry: %v", err)
		}
	})

	t.Run("InviteConcurrentUse", func(t *testing.T) {
		st := newStore(t)
		if err := st.CreateInvite(ctx, &user.Invite{TokenHash: "race", Role: user.RoleUser, CreatedAt: t0, ExpiresAt: t0.Add(time.Hour)}); err != nil {
			t.Fatal(err)
		}
		const n = 20
		var (
			wg      sync.WaitGroup
			mu      sync.Mutex
			winners []string
			errs    []error
		)
		for i := range n {
			wg.Go(func() {
				uid := fmt.Sprintf("user-%d", i)
				inv, err := st.UseInvite(ctx, "race", uid, t0.Add(time.Minute))
				mu.Lock()
				defer mu.Unlock()
				switch {
				case err == nil:
					if inv.UsedBy != uid {
						errs = append(errs, fmt.Errorf("%s won, but the invite says used by %q", uid, inv.UsedBy))
					}
					winners = append(winners, uid)
				case !errors.Is(err, user.ErrNotFound):
					errs = append(errs, err)
				}
			})
		}
		wg.Wait()
		for _, err := range errs {
			t.Error(err)
		}
		if len(winners) != 1 {
			t.Fatalf("%d of %d concurrent UseInvite calls won (%v), want exactly 1", len(winners), n, winners)
		}
	})
}
