policy "gpu" {
  driver          = "docker"
  image           = "ghcr.io/example/workspace-cuda:12"
  cpu             = 800
  memory          = "32GiB"
  memory_max      = "48GiB"
  pids            = 16384
  storage         = "0.5TiB"
  max_sessions    = 3
  max_connections = 50
  idle_timeout    = "4h"
  datacenter      = "gpu-1"
  priority        = 5
  applies_to {
    groups = ["ML", " gpu "]
  }
}

policy "data" {
  driver          = "exec"
  cpu             = 400
  memory          = "16Gi"
  pids            = 8192
  storage         = "100GiB"
  max_sessions    = 5
  max_connections = 100
  idle_timeout    = "2h"
  applies_to {
    groups = ["data", "ml"]
    users  = ["Carol"]
  }
}

policy "vip" {
  cpu             = 1600
  memory          = "64GiB"
  pids            = 32768
  storage         = "1TiB"
  max_sessions    = 20
  max_connections = 500
  idle_timeout    = "0"
  priority        = -1
  image           = null
  applies_to {
    users = ["carol", "dave"]
  }
}

policy "frozen" {
  cpu             = 25
  memory          = "256MiB"
  pids            = 64
  storage         = "1GiB"
  max_sessions    = 1
  max_connections = 5
  idle_timeout    = "5m"
}
