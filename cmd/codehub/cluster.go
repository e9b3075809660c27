package main

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/codehub-dev/codehub/internal/config"
	"github.com/codehub-dev/codehub/internal/discovery"
	"github.com/codehub-dev/codehub/internal/orchestrator/nomad"
	"github.com/codehub-dev/codehub/internal/token"
	"github.com/codehub-dev/codehub/internal/token/vaulttransit"
	"github.com/codehub-dev/codehub/internal/vault"
	"github.com/codehub-dev/codehub/internal/workspace"
	consulapi "github.com/hashicorp/consul/api"
	nomadapi "github.com/hashicorp/nomad/api"
)

// clusterOrchestrator runs workspaces on Nomad and finds them through
// Consul: a dead workspace stops receiving traffic as soon as its check
// fails there.
type clusterOrchestrator struct {
	*nomad.Orchestrator
	disc *discovery.Discovery
}

var (
	_ workspace.Orchestrator = (*clusterOrchestrator)(nil)
	_ workspace.Resolver     = (*clusterOrchestrator)(nil)
)

// Resolve implements workspace.Resolver.
func (c *clusterOrchestrator) Resolve(ctx context.Context, w *workspace.Workspace) (string, bool) {
	return c.disc.Resolve(ctx, w)
}

// Shared says the workspaces belong to the cluster, not to one gateway:
// every gateway re-attaches to every one of them.
func (c *clusterOrchestrator) Shared() bool { return true }

func tlsPaths(t config.TLS) (ca, cert, key string) { return t.CAFile, t.CertFile, t.KeyFile }

// nomadClient builds the Nomad API client: configuration first, then the
// standard NOMAD_* environment.
func nomadClient(cfg *config.Config, getenv func(string) string) (*nomadapi.Client, error) {
	c := nomadapi.DefaultConfig() // reads NOMAD_ADDR, NOMAD_TOKEN, NOMAD_REGION...
	n := cfg.Nomad
	if n.Address != "" {
		c.Address = n.Address
	} else if a := getenv("NOMAD_ADDR"); a != "" {
		c.Address = a
	}
	if n.Token != "" {
		c.SecretID = n.Token
	} else if t := getenv("NOMAD_TOKEN"); t != "" {
		c.SecretID = t
	}
	if n.Region != "" {
		c.Region = n.Region
	}
	if n.Namespace != "" {
		c.Namespace = n.Namespace
	}
	if n.TLS.CAFile != "" || n.TLS.CertFile != "" || n.TLS.Insecure {
		c.TLSConfig = &nomadapi.TLSConfig{CACert: n.TLS.CAFile, ClientCert: n.TLS.CertFile, ClientKey: n.TLS.KeyFile,
			TLSServerName: n.TLS.ServerName, Insecure: n.TLS.Insecure}
	}
	return nomadapi.NewClient(c)
}

// consulClient builds the Consul API client likewise (CONSUL_HTTP_*).
func consulClient(cfg *config.Config, getenv func(string) string) (*consulapi.Client, error) {
	c := consulapi.DefaultConfig()
	k := cfg.Consul
	if k.Address != "" {
		c.Address = k.Address
	} else if a := getenv("CONSUL_HTTP_ADDR"); a != "" {
		c.Address = a
	}
	if k.Token != "" {
		c.Token = k.Token
	} else if t := getenv("CONSUL_HTTP_TOKEN"); t != "" {
		c.Token = t
	} else {
		c.Token = "anonymous" // an empty token would silently mean CONSUL_HTTP_TOKEN
	}
	if k.Scheme != "" {
		c.Scheme = k.Scheme
	}
	if k.Datacenter != "" {
		c.Datacenter = k.Datacenter
	}
	c.TLSConfig = consulapi.TLSConfig{CAFile: k.TLS.CAFile, CertFile: k.TLS.CertFile, KeyFile: k.TLS.KeyFile,
		Address: k.TLS.ServerName, InsecureSkipVerify: k.TLS.Insecure}
	return consulapi.NewClient(c)
}

// openCluster makes the Nomad orchestrator with Consul discovery, stops
// dispatched workspaces the registry does not know, and registers this
// gateway in Consul.
func (a *app) openCluster(ctx context.Context, getenv func(string) string, store workspace.Store) (*clusterOrchestrator, error) {
	cfg := a.cfg
	nc, err := nomadClient(cfg, getenv)
	if err != nil {
		return nil, fmt.Errorf("nomad: %w", err)
	}
	cc, err := consulClient(cfg, getenv)
	if err != nil {
		return nil, fmt.Errorf("consul: %w", err)
	}
	disc := discovery.New(discovery.Config{
		Client: cc, Service: cfg.Consul.Service, Datacenter: cfg.Consul.Datacenter,
		OnCall: func(endpoint string, err error) { a.metrics.ConsulCalls.WithLabelValues(endpoint).Inc() },
	}, a.log.Named("discovery"))
	a.closers = append(a.closers, func() error { disc.Close(); return nil })
	orch := nomad.New(nomad.Config{
		Client: nc, Namespace: cfg.Nomad.Namespace, Region: cfg.Nomad.Region,
		Job: cfg.Nomad.Job, WarmPoolJob: cfg.Nomad.WarmPoolJob,
	}, a.log.Named("nomad"))

	// Dispatched workspaces nobody knows of (a gateway died mid-start).
	known := map[string]bool{}
	if all, err := store.List(ctx); err == nil {
		for _, w := range all {
			if w.ExternalID != "" {
				known[w.ExternalID] = true
			}
		}
		orphans, err := orch.Reconcile(ctx, known)
		if err != nil {
			a.log.Warn("reconcile Nomad jobs with the registry", "error", err)
		}
		for _, id := range orphans {
			a.log.Warn("stopping a workspace job the registry does not know", "job", id)
			if err := orch.StopJob(ctx, id); err != nil {
				a.log.Warn("stop orphaned workspace job", "job", id, "error", err)
			}
		}
	}

	if cfg.Consul.RegisterGateway {
		addr := cfg.Consul.AdvertiseAddr
		if addr == "" {
			addr = cfg.BindAddr
		}
		host, portStr, err := net.SplitHostPort(addr)
		if err != nil {
			return nil, fmt.Errorf("consul.advertise-addr: %w", err)
		}
		if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
			return nil, fmt.Errorf("consul.register-gateway: the gateway listens on %q, which is no address another machine can reach; set consul.advertise-addr (host:port), or register-gateway = false when Nomad registers the gateway", addr)
		}
		port, err := strconv.Atoi(portStr)
		if err != nil || port <= 0 {
			return nil, fmt.Errorf("consul.advertise-addr: %q has no port", addr)
		}
		scheme := "http"
		if cfg.TLSEnabled() {
			scheme = "https"
		}
		reg := discovery.Registration{Name: cfg.Consul.GatewayService, Address: host, Port: port, Scheme: scheme,
			TLSSkipVerify: cfg.TLSEnabled() && cfg.TLSCertFile() == ""}
		if err := disc.RegisterGateway(ctx, reg); err != nil {
			return nil, fmt.Errorf("register the gateway in Consul (set consul.advertise-addr to an address other machines reach): %w", err)
		}
		a.closers = append(a.closers, func() error {
			dctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			return disc.Deregister(dctx, reg.ServiceID())
		})
	}
	return &clusterOrchestrator{Orchestrator: orch, disc: disc}, nil
}

// openVault logs in to Vault when it is configured, and returns the client
// (nil without Vault).
func (a *app) openVault(ctx context.Context, getenv func(string) string) (*vault.Client, error) {
	v := a.cfg.Vault
	addr := v.Address
	if addr == "" {
		addr = getenv("VAULT_ADDR")
	}
	if addr == "" {
		if v.Transit.Enabled || v.Database.Enabled || v.Audit.Enabled {
			return nil, fmt.Errorf("vault.transit, vault.database or vault.audit is enabled but no Vault address is set (vault.address or VAULT_ADDR)")
		}
		return nil, nil
	}
	auth := vault.Auth{Method: v.Auth.Method, Token: v.Auth.Token, RoleID: v.Auth.RoleID,
		SecretIDFile: v.Auth.SecretIDFile, Role: v.Auth.Role, JWTFile: v.Auth.JWTFile}
	if auth.Method == "token" && auth.Token == "" {
		auth.Token = getenv("VAULT_TOKEN")
	}
	if auth.Method == "jwt" {
		auth.Mount = v.Auth.Mount
	}
	vc, err := vault.New(ctx, vault.Config{
		Address: addr, Auth: auth,
		TLS: vault.TLS{CAFile: v.TLS.CAFile, CertFile: v.TLS.CertFile, KeyFile: v.TLS.KeyFile,
			ServerName: v.TLS.ServerName, Insecure: v.TLS.Insecure},
	}, a.log.Named("vault"))
	if err != nil {
		return nil, fmt.Errorf("vault: %w", err)
	}
	a.closers = append(a.closers, func() error { vc.Close(); return nil })
	return vc, nil
}

// keySource is where access tokens are signed: Vault transit, or the key
// file.
func (a *app) keySource(vc *vault.Client, fileKeys func() (token.KeySource, error)) (token.KeySource, error) {
	t := a.cfg.Vault.Transit
	if vc == nil || !t.Enabled {
		return fileKeys()
	}
	src, err := vaulttransit.New(vaulttransit.Config{Client: vc.API(), Mount: t.Mount, Key: t.Key})
	if err != nil {
		return nil, fmt.Errorf("vault transit: %w", err)
	}
	a.log.Info("access tokens are signed by Vault transit", "key", t.Key)
	return src, nil
}
