# Data and machine-learning work: notebooks and builds that need memory and
# a longer idle timeout. A group match outranks a role match, so an admin
# who is also in "data" gets this policy, not "admins".
policy "large" {
  description     = "Data and ML groups: four CPUs, 16GiB (24GiB burst), 100GiB home"
  cpu             = 400
  memory          = "16GiB"
  memory_max      = "24GiB"
  pids            = 8192
  storage         = "100GiB"
  max_sessions    = 5
  max_connections = 200
  idle_timeout    = "2h"

  applies_to {
    groups = ["data", "ml"]
  }
}
