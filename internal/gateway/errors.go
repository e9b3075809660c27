package gateway

import (
	"errors"
	"net/http"

	"github.com/codehub-dev/codehub/internal/identity"
)

// codeThrottled is the code of a sign-in refused by the address throttle.
const codeThrottled = "too_many_attempts"

// codeRateLimited is the code of an API request refused by the rate limit.
const codeRateLimited = "rate_limited"

// codeRequestTimeout is the code of a request whose body arrived too
// slowly (request-body.idle-timeout, min-rate).
const codeRequestTimeout = "request_timeout"

// statuses maps every error code to its HTTP status, in one place.
var statuses = map[string]int{
	identity.CodeInvalidInput:       http.StatusBadRequest,
	identity.CodeWeakPassword:       http.StatusBadRequest,
	identity.CodeInvalidInvite:      http.StatusBadRequest,
	identity.CodeInvalidCredentials: http.StatusUnauthorized,
	identity.CodeInvalidToken:       http.StatusUnauthorized,
	identity.CodeTokenReused:        http.StatusUnauthorized,
	identity.CodeAccountDisabled:    http.StatusForbidden,
	identity.CodeRegistrationClosed: http.StatusForbidden,
	identity.CodeForbidden:          http.StatusForbidden,
	identity.CodeNotFound:           http.StatusNotFound,
	identity.CodeConflict:           http.StatusConflict,
	identity.CodeTooManySessions:    http.StatusConflict,
	identity.CodeAccountLocked:      http.StatusLocked,
	codeThrottled:                   http.StatusTooManyRequests,
	codeRateLimited:                 http.StatusTooManyRequests,
	codeRequestTimeout:              http.StatusRequestTimeout,
	identity.CodeUnavailable:        http.StatusServiceUnavailable,
}

// statusOf is the HTTP status of an error from the identity service.
func statusOf(err error) int {
	if st, ok := statuses[identity.CodeOf(err)]; ok {
		return st
	}
	return http.StatusServiceUnavailable
}

// writeError answers an API request with err as JSON; technical failures
// are logged and reported without detail.
func (s *Server) writeError(w http.ResponseWriter, r *http.Request, err error) {
	var ie *identity.Error
	if !errors.As(err, &ie) {
		ie = &identity.Error{Code: identity.CodeUnavailable, Message: "the service is unavailable right now", Err: err}
	}
	if ie.Code == identity.CodeUnavailable {
		s.log.Error("request failed", "path", r.URL.Path, "error", err)
	}
	if ie.RetryAfter > 0 {
		retryAfter(w, ie.RetryAfter)
	}
	writeJSONError(w, statusOf(ie), ie.Code, ie.Message)
}
