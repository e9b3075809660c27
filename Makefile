# codehub: `make setup && make run` to try it, `make test` to test it.

GO        ?= go
CACHE     ?= $(HOME)/.cache/codehub
BIN       := bin/codehub
# Where `make run` listens, and its mode: multi (user accounts, a workspace
# each) or single (one password, the IDE opening WORKSPACE).
BIND      ?= 127.0.0.1:8080
MODE      ?= multi
WORKSPACE ?= $(CURDIR)
# Version stamped into the binary.
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS   := -X github.com/codehub-dev/codehub/internal/buildinfo.version=$(VERSION)
# Go test flags; `make test TESTFLAGS=-run=TestLogin` narrows a run.
TESTFLAGS ?=
# How long `make test` runs each fuzz target (0 skips fuzzing), and how
# long `make fuzz` does.
FUZZSHORT ?= 2s
FUZZTIME  ?= 1m

export CODEHUB_CACHE := $(CACHE)

.PHONY: all setup build run test test-short test-agents fuzz bench lint fmt clean

all: build

## setup: install Node.js 24 and code-server into $(CACHE) (cached by version)
setup:
	@scripts/setup.sh >/dev/null

## build: build bin/codehub
build:
	$(GO) build -trimpath -ldflags "$(LDFLAGS)" -o $(BIN) ./cmd/codehub

## run: build and start the gateway (multi-user on SQLite and local workspaces), printing the URL and how to sign in
run: setup build
ifeq ($(MODE),single)
	$(BIN) --bind-addr $(BIND) $(WORKSPACE)
else
	$(BIN) --deployment-mode multi --bind-addr $(BIND)
endif

## test: every test, including the real code-server and headless Chromium ones, then each fuzz target for FUZZSHORT
test: setup
	CODEHUB_E2E=require $(GO) test -race -count=1 -timeout 30m $(TESTFLAGS) ./...
	GO=$(GO) scripts/fuzz.sh $(FUZZSHORT)

## fuzz: each fuzz target for FUZZTIME (default 1m)
fuzz:
	GO=$(GO) scripts/fuzz.sh $(FUZZTIME)

## test-short: unit tests only (no code-server, no browser)
test-short:
	$(GO) test -short -count=1 ./...

# The packages whose tests run against real Nomad, Consul and Vault agents
# when their addresses are set (README: Testing against real agents), and
# the cluster tests of cmd/codehub.
AGENT_PKGS := ./internal/orchestrator/nomad/... ./internal/discovery/... ./internal/vault/... \
	./internal/token/vaulttransit/... ./internal/testfake/vault/... ./internal/testfake/consul/...

## test-agents: every Nomad, Consul and Vault test against the agents NOMAD_ADDR, CONSUL_HTTP_ADDR and VAULT_ADDR (with VAULT_TOKEN) name
test-agents:
	@missing=""; for v in NOMAD_ADDR CONSUL_HTTP_ADDR VAULT_ADDR VAULT_TOKEN; do \
		[ -n "$$(printenv $$v)" ] || missing="$$missing $$v"; done; \
	if [ -n "$$missing" ]; then echo "test-agents: set$$missing (README: Testing against real agents)" >&2; exit 2; fi
	@scripts/setup.sh >/dev/null
	CODEHUB_E2E=require $(GO) test -race -count=1 -timeout 30m $(TESTFLAGS) $(AGENT_PKGS)
	CODEHUB_E2E=require $(GO) test -race -count=1 -timeout 30m -run '^TestCluster' $(TESTFLAGS) ./cmd/codehub

## bench: Go benchmarks, then the load comparison against direct and nginx
bench: setup build
	$(GO) test -run '^$$' -bench . -benchmem -count=1 ./...
	$(GO) run ./cmd/loadgen -gateway $(BIN)

## lint: go vet and a gofmt check
lint:
	$(GO) vet ./...
	@out="$$(gofmt -l cmd internal)"; if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

fmt:
	gofmt -w cmd internal

clean:
	rm -rf bin artifacts
