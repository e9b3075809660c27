# A small team on one machine: users in SQLite, sessions in memory, one
# directory per user. The HCL form of small-team.yaml.

bind_addr       = "0.0.0.0:3000"
auth            = "none" # sign-in is handled by the user database
deployment_mode = "multi"
cert            = true
cert_path       = "/etc/ssl/certs/code-server.crt"
cert_key        = "/etc/ssl/private/code-server.key"

multi_user {
  auth {
    provider = "database"

    database {
      type = "sqlite"
      path = "/var/lib/code-server/users.db"
    }

    session {
      store = "memory" # OK for a single gateway
      ttl   = "24h"
    }
  }

  isolation {
    strategy  = "directory"
    base_path = "/var/lib/code-server/users"
  }

  limits {
    max_sessions_per_user      = 3
    max_concurrent_connections = 50
    storage_quota_mb           = 5000
  }

  features {
    audit_logging   = true
    admin_dashboard = true
  }
}
