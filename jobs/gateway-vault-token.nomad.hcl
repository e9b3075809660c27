# codehub gateway for Nomad 1.6 (and clusters that keep Vault's legacy
# token workflow): jobs/gateway.nomad.hcl but for its vault block, which
# names a Vault policy instead of a workload identity role. Nomad 1.6's
# servers hold a Vault token (vault { token, create_from_role }) and give
# the task a token of the policy codehub-gateway, renewed while it runs.
# Read jobs/gateway.nomad.hcl for the rest; keep the two alike (a test
# checks that they differ in the vault block only).
#
#   nomad job run jobs/gateway-vault-token.nomad.hcl

job "codehub-gateway" {
  type        = "service"
  datacenters = ["*"]
  priority    = 80

  group "gateway" {
    count = 2

    # Never two gateways on one machine, and spread over datacenters.
    constraint {
      operator = "distinct_hosts"
      value    = "true"
    }

    spread {
      attribute = "${node.datacenter}"
      weight    = 100
    }

    # One at a time, only when healthy, back to the last good version if
    # the new one never gets healthy. The old gateway drains its requests
    # and closes its WebSockets with 1001; editors reconnect to another.
    update {
      max_parallel      = 1
      health_check      = "checks"
      min_healthy_time  = "10s"
      healthy_deadline  = "3m"
      progress_deadline = "10m"
      auto_revert       = true
      canary            = 0
      stagger           = "30s"
    }

    restart {
      attempts = 5
      interval = "5m"
      delay    = "10s"
      mode     = "delay"
    }

    # A static port: the load balancer (terraform/cluster) targets it.
    network {
      port "http" {
        static = 8080
        to     = 8080
      }
    }

    service {
      name = "codehub-gateway"
      port = "http"
      tags = ["http", "dc-${node.datacenter}"]

      check {
        name     = "healthz"
        type     = "http"
        path     = "/healthz"
        interval = "10s"
        timeout  = "2s"
      }
    }

    task "gateway" {
      driver = "docker"

      # The host's network: the local Consul agent listens on its
      # loopback only, and the static port is the host's (no mapping).
      config {
        image        = "ghcr.io/codehub-dev/codehub:latest"
        network_mode = "host"
        args         = ["--config", "/secrets/codehub.hcl"]
      }

      vault {
        policies    = ["codehub-gateway"]
        change_mode = "restart"
      }

      identity {
        env = true
      }

      template {
        destination = "secrets/ca.pem"
        perms       = "0600"
        data        = <<-EOT
          {{- with nomadVar "nomad/jobs/codehub-gateway" }}{{ .ca_pem }}{{ end }}
        EOT
      }

      template {
        destination = "secrets/codehub.hcl"
        perms       = "0600"
        change_mode = "restart"
        splay       = "30s"
        data        = <<-EOT
          bind_addr       = "0.0.0.0:8080"
          deployment_mode = "multi"
          data_dir        = "{{ env "NOMAD_ALLOC_DIR" }}/data"
          log_format      = "json"
          trusted_proxies = ["10.0.0.0/8"]

          multi_user {
            auth {
              provider = "database"
              database {
                type     = "postgres"
          {{- range service "postgres" }}
                host     = "{{ .Address }}"
                port     = {{ .Port }}
          {{- end }}
                database = "codehub"
                sslmode  = "require"
              }
              session {
                store = "redis"
          {{- range service "redis" }}
                host  = "{{ .Address }}"
                port  = {{ .Port }}
          {{- end }}
          {{- with nomadVar "nomad/jobs/codehub-gateway" }}
                password = "{{ .redis_password }}"
          {{- end }}
              }
            }
            isolation {
              strategy = "container"
              policies = "/etc/codehub/policies"
            }
            scaling {
              container_pool {
                enabled        = true
                warm_pool_size = 2
              }
            }
          }

          nomad {
            address       = "unix://{{ env "NOMAD_SECRETS_DIR" }}/api.sock"
            namespace     = "default"
            job           = "codehub-workspace"
            warm_pool_job = "codehub-warm-pool"
          }

          consul {
            address          = "127.0.0.1:8500"
            scheme           = "http"
            service          = "codehub-workspace"
            # Nomad registers this gateway (the service block above).
            register_gateway = false
          {{- with nomadVar "nomad/jobs/codehub-gateway" }}
            token            = "{{ .consul_token }}"
          {{- end }}
          }

          vault {
            address = "{{ with service "vault" }}{{ with index . 0 }}https://{{ .Address }}:{{ .Port }}{{ end }}{{ end }}"
            tls {
              ca_file = "{{ env "NOMAD_SECRETS_DIR" }}/ca.pem"
            }
            auth {
              method = "token"
            }
            database {
              enabled = true
              mount   = "database"
              role    = "codehub"
            }
            transit {
              enabled = true
              mount   = "transit"
              key     = "codehub-jwt"
            }
            # The audit log's keys: the allocation's disk does not
            # outlive it.
            audit {
              enabled = true
              mount   = "secret"
              path    = "codehub/audit-keys"
            }
          }
        EOT
      }

      resources {
        cpu    = 1000
        memory = 512
      }

      kill_timeout = "30s"
    }
  }
}
