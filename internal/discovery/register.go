package discovery

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/hashicorp/consul/api"
)

// Defaults of Registration.
const (
	DefaultGatewayService  = "codehub-gateway"
	DefaultCheckPath       = "/healthz"
	DefaultCheckInterval   = 10 * time.Second
	DefaultCheckTimeout    = 5 * time.Second
	DefaultDeregisterAfter = time.Minute
)

// Registration is how a gateway registers itself with its local Consul
// agent, so that load balancers (and other gateways) find it.
type Registration struct {
	// ID is unique per gateway (default Name-Address-Port).
	ID string
	// Name is the service name (default "codehub-gateway").
	Name string
	// Address and Port are where other machines reach this gateway; a
	// wildcard address (0.0.0.0, ::) is refused with ErrNoAddress.
	Address string
	Port    int
	Tags    []string
	Meta    map[string]string
	// CheckPath is the path the agent polls (default "/healthz"), every
	// Interval (default 10s), giving up after Timeout (default 5s).
	CheckPath string
	Interval  time.Duration
	Timeout   time.Duration
	// Scheme is "http" (default) or "https"; TLSSkipVerify lets the agent
	// check a gateway with a self-signed certificate.
	Scheme        string
	TLSSkipVerify bool
	// DeregisterAfter removes a gateway whose check has been critical this
	// long (default 1m, Consul's minimum), so that one that died without
	// deregistering does not linger in the catalog.
	DeregisterAfter time.Duration
}

// ServiceID is the ID the registration is made under.
func (r Registration) ServiceID() string {
	if r.ID != "" {
		return r.ID
	}
	name := r.Name
	if name == "" {
		name = DefaultGatewayService
	}
	return name + "-" + r.Address + "-" + strconv.Itoa(r.Port)
}

// CheckID is the ID of the registration's health check.
func (r Registration) CheckID() string { return "service:" + r.ServiceID() }

// RegisterGateway registers (or re-registers, idempotently) the gateway
// as a service with an HTTP check on its health path. Call Deregister on
// shutdown. It returns ErrNoAddress without a routable address.
func (d *Discovery) RegisterGateway(ctx context.Context, r Registration) error {
	if r.Address == "" || r.Port <= 0 || r.Port > 65535 {
		return fmt.Errorf("register gateway %q:%d: %w", r.Address, r.Port, ErrNoAddress)
	}
	if ip := net.ParseIP(r.Address); ip != nil && ip.IsUnspecified() {
		return fmt.Errorf("register gateway %s: %w (set consul.advertise-addr)", r.Address, ErrNoAddress)
	}
	if r.Name == "" {
		r.Name = DefaultGatewayService
	}
	if r.CheckPath == "" {
		r.CheckPath = DefaultCheckPath
	}
	if r.Interval <= 0 {
		r.Interval = DefaultCheckInterval
	}
	if r.Timeout <= 0 {
		r.Timeout = DefaultCheckTimeout
	}
	if r.Scheme == "" {
		r.Scheme = "http"
	}
	if r.Scheme != "http" && r.Scheme != "https" {
		return fmt.Errorf("register gateway: scheme %q is not http or https", r.Scheme)
	}
	if r.DeregisterAfter <= 0 {
		r.DeregisterAfter = DefaultDeregisterAfter
	}
	id := r.ServiceID()
	reg := &api.AgentServiceRegistration{
		ID:      id,
		Name:    r.Name,
		Address: r.Address,
		Port:    r.Port,
		Tags:    r.Tags,
		Meta:    r.Meta,
		Check: &api.AgentServiceCheck{
			CheckID:                        r.CheckID(),
			Name:                           "codehub gateway health",
			HTTP:                           r.Scheme + "://" + net.JoinHostPort(r.Address, strconv.Itoa(r.Port)) + r.CheckPath,
			Method:                         http.MethodGet,
			Interval:                       r.Interval.String(),
			Timeout:                        r.Timeout.String(),
			TLSSkipVerify:                  r.TLSSkipVerify,
			DeregisterCriticalServiceAfter: r.DeregisterAfter.String(),
		},
	}
	opts := api.ServiceRegisterOpts{ReplaceExistingChecks: true}.WithContext(ctx)
	err := d.cfg.Client.Agent().ServiceRegisterOpts(reg, opts)
	d.called("agent.service.register", err)
	if err != nil {
		return wrap("register gateway "+id, err)
	}
	d.log.Info("gateway registered", "id", id, "check", reg.Check.HTTP)
	return nil
}

// Deregister removes a service registered with the local agent; one that
// is not registered is no error.
func (d *Discovery) Deregister(ctx context.Context, id string) error {
	err := d.cfg.Client.Agent().ServiceDeregisterOpts(id, (&api.QueryOptions{}).WithContext(ctx))
	d.called("agent.service.deregister", err)
	if err != nil && statusCode(err) != http.StatusNotFound {
		return wrap("deregister "+id, err)
	}
	d.log.Info("deregistered", "id", id)
	return nil
}

// wrap adds what was being done to a Consul error, keeping it inspectable
// (api.StatusError for an answer, a net error for none).
func wrap(op string, err error) error {
	return fmt.Errorf("consul: %s: %w", op, err)
}
