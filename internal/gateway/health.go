package gateway

import "net/http"

// healthBody is the JSON of /healthz.
type healthBody struct {
	Status    string `json:"status"` // ok or unavailable
	Version   string `json:"version"`
	Mode      string `json:"mode"`
	Workspace any    `json:"workspace,omitempty"`
}

// handleHealth answers 200 when the gateway can serve IDEs and 503 when it
// cannot (yet), so that a load balancer routes only to ready gateways.
func (s *Server) handleHealth() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := s.opts.Health()
		body := healthBody{Status: "ok", Version: s.opts.Version, Mode: s.cfg.DeploymentMode, Workspace: h.Workspace}
		status := http.StatusOK
		if !h.Ready {
			body.Status, status = "unavailable", http.StatusServiceUnavailable
		}
		writeJSON(w, status, body)
	})
}
