package nomad

import (
	"context"
	"crypto/sha1"
	"encoding/hex"
	"errors"
	"fmt"
	"os/exec"
	"strconv"
	"time"

	consulapi "github.com/hashicorp/consul/api"
	"github.com/hashicorp/nomad/api"
)

// registration is a service the node registered in Consul, and the script
// checks it runs for it.
type registration struct {
	id     string
	cancel context.CancelFunc
	done   chan struct{}
}

// registerServices registers a started task's Consul services as Nomad's
// client does: ID _nomad-task-<alloc>-<task>-<service>-<port>, name, tags
// and meta interpolated, the node's address and the port's value, HTTP,
// TCP and gRPC checks for Consul to run, and script checks that the node
// runs itself and reports as TTL checks. The group's services are
// registered with its first task.
func (s *Server) registerServices(ar *allocRun, tg *api.TaskGroup, t *api.Task, vars map[string]string, dir string, env []string) []*registration {
	if s.consul == nil {
		return nil
	}
	type svc struct {
		s     *api.Service
		group bool
	}
	var all []svc
	for _, x := range t.Services {
		all = append(all, svc{x, false})
	}
	if len(tg.Tasks) > 0 && tg.Tasks[0].Name == t.Name {
		for _, x := range tg.Services {
			all = append(all, svc{x, true})
		}
	}
	s.mu.Lock()
	ports := map[string]int{}
	for _, p := range ar.alloc.AllocatedResources.Shared.Ports {
		ports[p.Label] = p.Value
	}
	allocID := ar.alloc.ID
	s.mu.Unlock()

	var regs []*registration
	for _, x := range all {
		sv := x.s
		if sv.Provider != "" && sv.Provider != api.ServiceProviderConsul {
			continue
		}
		name := interpolate(sv.Name, vars)
		id := fmt.Sprintf("_nomad-task-%s-%s-%s-%s", allocID, t.Name, name, sv.PortLabel)
		if x.group {
			id = fmt.Sprintf("_nomad-task-%s-group-%s-%s-%s", allocID, *tg.Name, name, sv.PortLabel)
		}
		reg := &consulapi.AgentServiceRegistration{
			ID: id, Name: name, Port: ports[sv.PortLabel], Address: s.opts.IP,
			Meta: map[string]string{"external-source": "nomad"},
		}
		for _, tag := range sv.Tags {
			reg.Tags = append(reg.Tags, interpolate(tag, vars))
		}
		for k, v := range sv.Meta {
			reg.Meta[k] = interpolate(v, vars)
		}
		var scripts []api.ServiceCheck
		var scriptIDs []string
		for i, c := range sv.Checks {
			port := ports[sv.PortLabel]
			if c.PortLabel != "" {
				port = ports[c.PortLabel]
			}
			addr := fmt.Sprintf("%s:%d", s.opts.IP, port)
			sum := sha1.Sum([]byte(id + "/" + c.Name + "/" + strconv.Itoa(i)))
			ch := &consulapi.AgentServiceCheck{
				CheckID: "_nomad-check-" + hex.EncodeToString(sum[:]),
				Name:    c.Name,
				Timeout: c.Timeout.String(),
			}
			if ch.Name == "" {
				ch.Name = fmt.Sprintf("service: %q check", name)
			}
			switch c.Type {
			case "http":
				proto := c.Protocol
				if proto == "" {
					proto = "http"
				}
				ch.HTTP = fmt.Sprintf("%s://%s%s", proto, addr, interpolate(c.Path, vars))
				ch.Method, ch.Interval = c.Method, c.Interval.String()
				if len(c.Header) > 0 {
					ch.Header = map[string][]string{}
					for k, vs := range c.Header {
						for _, v := range vs {
							ch.Header[k] = append(ch.Header[k], interpolate(v, vars))
						}
					}
				}
			case "tcp":
				ch.TCP, ch.Interval = addr, c.Interval.String()
			case "grpc":
				ch.GRPC, ch.Interval = addr, c.Interval.String()
			case "script":
				ch.TTL = (c.Interval + c.Timeout).String()
				ch.Timeout = ""
				scripts = append(scripts, c)
				scriptIDs = append(scriptIDs, ch.CheckID)
			default:
				continue
			}
			reg.Checks = append(reg.Checks, ch)
		}
		if err := s.consul.Agent().ServiceRegister(reg); err != nil {
			s.log.Warn("register service in Consul", "service", id, "error", err)
			continue
		}
		ctx, cancel := context.WithCancel(context.Background())
		r := &registration{id: id, cancel: cancel, done: make(chan struct{})}
		go func() {
			defer close(r.done)
			s.runScriptChecks(ctx, scripts, scriptIDs, vars, dir, env)
		}()
		regs = append(regs, r)
	}
	return regs
}

// runScriptChecks runs script checks every interval until ctx ends,
// reporting each outcome to Consul's TTL check: exit 0 passing, 1 warning,
// anything else critical.
func (s *Server) runScriptChecks(ctx context.Context, checks []api.ServiceCheck, ids []string, vars map[string]string, dir string, env []string) {
	if len(checks) == 0 {
		return
	}
	next := make([]time.Time, len(checks))
	for {
		now := time.Now()
		wait := time.Hour
		for i, c := range checks {
			if !now.Before(next[i]) {
				s.runScriptCheck(ctx, c, ids[i], vars, dir, env)
				next[i] = time.Now().Add(max(c.Interval, 10*time.Millisecond))
			}
			wait = min(wait, time.Until(next[i]))
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
	}
}

func (s *Server) runScriptCheck(ctx context.Context, c api.ServiceCheck, id string, vars map[string]string, dir string, env []string) {
	timeout := c.Timeout
	if timeout <= 0 {
		timeout = 30 * time.Second
	}
	cctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	args := make([]string, len(c.Args))
	for i, a := range c.Args {
		args[i] = interpolate(a, vars)
	}
	cmd := exec.CommandContext(cctx, interpolate(c.Command, vars), args...)
	cmd.Dir, cmd.Env = dir, env
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		return
	}
	status := consulapi.HealthPassing
	var exitErr *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &exitErr) && exitErr.ExitCode() == 1:
		status = consulapi.HealthWarning
	default:
		status = consulapi.HealthCritical
	}
	if len(out) > 4096 {
		out = out[:4096]
	}
	if err := s.consul.Agent().UpdateTTLOpts(id, string(out), status, nil); err != nil {
		s.log.Warn("update script check in Consul", "check", id, "error", err)
	}
}

// deregisterServices removes a task's services from Consul when it ends.
func (s *Server) deregisterServices(regs []*registration) {
	for _, r := range regs {
		r.cancel()
		<-r.done
		if err := s.consul.Agent().ServiceDeregister(r.id); err != nil {
			s.log.Warn("deregister service from Consul", "service", r.id, "error", err)
		}
	}
}
