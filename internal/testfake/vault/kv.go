package vault

import (
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/vault/api"
)

// kvMount is a KV version 2 mount: its secrets by path.
type kvMount map[string]*kvSecret

// kvSecret is one secret of a KV version 2 mount: its versions, from 1.
type kvSecret struct {
	versions []kvVersion
}

type kvVersion struct {
	data    map[string]any
	created time.Time
}

func (v kvVersion) metadata(n int) map[string]any {
	return map[string]any{
		"created_time": v.created.Format(time.RFC3339Nano), "custom_metadata": nil,
		"deletion_time": "", "destroyed": false, "version": n,
	}
}

// routeKV serves a KV version 2 mount: <mount>/data/<path> (read, write
// with check-and-set) and <mount>/metadata/<path> (delete every version),
// the paths vault/api's KVv2 helper uses.
func (s *Server) routeKV(r *request, mount, rest string) (result, error) {
	kind, path, ok := strings.Cut(rest, "/")
	if !ok || path == "" {
		return nil, errNoRoute(r.path)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	secrets := s.kvs[mount]
	sec := secrets[path]
	switch {
	case kind == "data" && r.method == http.MethodGet:
		if sec == nil {
			return nil, &apiError{status: http.StatusNotFound}
		}
		n := len(sec.versions)
		v := sec.versions[n-1]
		return &api.Secret{Data: map[string]any{"data": v.data, "metadata": v.metadata(n)}}, nil
	case kind == "data" && r.write():
		data, ok := r.body["data"].(map[string]any)
		if !ok {
			return nil, errorf(http.StatusBadRequest, "no data provided")
		}
		current := 0
		if sec != nil {
			current = len(sec.versions)
		}
		if opts, ok := r.body["options"].(map[string]any); ok && opts["cas"] != nil {
			cas, err := strconv.Atoi(str(opts["cas"]))
			if err != nil || cas != current {
				return nil, errorf(http.StatusBadRequest, "check-and-set parameter did not match the current version")
			}
		}
		if sec == nil {
			sec = &kvSecret{}
			secrets[path] = sec
		}
		v := kvVersion{data: data, created: time.Now().UTC()}
		sec.versions = append(sec.versions, v)
		return &api.Secret{Data: v.metadata(len(sec.versions))}, nil
	case kind == "metadata" && r.method == http.MethodDelete:
		delete(secrets, path)
		return nil, nil
	}
	return nil, errUnsupported
}
