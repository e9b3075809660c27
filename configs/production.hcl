# Production: users in PostgreSQL, sessions in Redis, workspaces in
# containers. The HCL form of production.yaml.

bind_addr       = "0.0.0.0:3000"
auth            = "none" # sign-in is handled by the user database
deployment_mode = "multi"
cert            = false # TLS ends at the load balancer

multi_user {
  auth {
    provider = "database"

    database {
      type     = "postgres"
      host     = "postgres.internal"
      port     = 5432
      database = "code_server"
      username = "code_server"
      password = env("DB_PASSWORD")
    }

    session {
      store = "redis"
      host  = "redis.internal"
      port  = 6379
      ttl   = "12h"
    }
  }

  isolation {
    strategy = "container"

    container {
      runtime = "docker"
      image   = "code-server-user:latest"
      network = "code-server-network"

      limits {
        memory = "2048m"
        cpu    = 2
      }

      volumes = [
        { type = "volume", name = "user-{userId}-data", mount_path = "/home/coder" },
        { type = "bind", source = "/opt/code-server/extensions", mount_path = "/usr/lib/code-server/extensions", read_only = true },
      ]
    }
  }

  limits {
    max_sessions_per_user      = 5
    max_concurrent_connections = 100
    storage_quota_mb           = 10000
    memory_limit_mb            = 2048
    cpu_limit_percent          = 50
  }

  features {
    audit_logging   = true
    usage_analytics = true
    admin_dashboard = true
    metrics_export  = "prometheus"
  }

  scaling {
    container_pool {
      enabled          = true
      warm_pool_size   = 5
      max_idle_minutes = 30
    }
    auto_cleanup {
      enabled                          = true
      idle_session_minutes             = 60
      expired_session_cleanup_interval = 300
    }
  }
}
