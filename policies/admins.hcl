# Administrators: a little more room, and sessions enough for several
# devices. Priority 10 wins over "default" for an admin who also has the
# role "user".
policy "admins" {
  description     = "Administrators: two CPUs, 8GiB, 20GiB home"
  cpu             = 200
  memory          = "8GiB"
  memory_max      = "8GiB"
  pids            = 4096
  storage         = "20GiB"
  max_sessions    = 10
  max_connections = 200
  idle_timeout    = "1h"
  priority        = 10

  applies_to {
    roles = ["admin"]
  }
}
