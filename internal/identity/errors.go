package identity

import (
	"errors"
	"time"
)

// Codes of the errors the service returns; the API sends them as the stable
// "code" of its JSON errors, and maps each to one HTTP status.
const (
	CodeInvalidInput       = "invalid_input"
	CodeInvalidCredentials = "invalid_credentials"
	CodeAccountLocked      = "account_locked"
	CodeAccountDisabled    = "account_disabled"
	CodeTooManySessions    = "too_many_sessions"
	CodeWeakPassword       = "weak_password"
	CodeConflict           = "conflict"
	CodeNotFound           = "not_found"
	CodeRegistrationClosed = "registration_closed"
	CodeInvalidInvite      = "invalid_invite"
	CodeInvalidToken       = "invalid_token"
	CodeTokenReused        = "refresh_token_reused"
	CodeForbidden          = "forbidden"
	CodeUnavailable        = "unavailable"
)

// Error is a failure the caller can act on. Message is safe to show to the
// person; Err, if any, is the cause, for logs only.
type Error struct {
	Code    string
	Message string
	// RetryAfter, when set, says when trying again may succeed.
	RetryAfter time.Duration
	Err        error
}

func (e *Error) Error() string {
	if e.Err != nil {
		return e.Code + ": " + e.Message + ": " + e.Err.Error()
	}
	return e.Code + ": " + e.Message
}

func (e *Error) Unwrap() error { return e.Err }

func errorf(code, msg string, cause error) *Error {
	return &Error{Code: code, Message: msg, Err: cause}
}

// CodeOf returns the code of err, or CodeUnavailable for a technical
// failure.
func CodeOf(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return CodeUnavailable
}
