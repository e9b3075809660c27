# Single-user mode: one password, one workspace. The HCL form of
# single-user.yaml; keys may be written with_underscores or with-dashes.

bind_addr       = "127.0.0.1:3000"
auth            = "password"
deployment_mode = "single"
cert            = false

# Keep the password out of the file: read it from the environment.
password = env("CODEHUB_EXAMPLE_PASSWORD")

# The folder the IDE opens.
# folder = "/home/me/src/project"

code_server {
  # Launcher of code-server; empty means the one `make setup` installed.
  # path = "/opt/code-server/bin/code-server"
  start_timeout = "90s"
}

session {
  ttl = "24h"
}

login_throttle {
  per_address_burst    = 5
  per_address_interval = "1m"
  global_burst         = 30
  global_interval      = "2s"
}
