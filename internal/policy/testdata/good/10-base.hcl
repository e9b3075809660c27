# Two policies in one file; comments in all three styles.
policy "default" {
  description     = "fallback for everyone"
  cpu             = 100 // one CPU
  memory          = "2GiB"
  memory_max      = "3GiB"
  pids            = 2048
  storage         = "10GiB"
  max_sessions    = 5
  max_connections = 100
  idle_timeout    = "30m"
  datacenter      = "" /* anywhere */
  applies_to {
    roles  = ["user"]
    groups = []
    users  = []
  }
}

policy "admins" {
  driver          = "process"
  cpu             = 200
  memory          = "4096MiB"
  pids            = 4096
  storage         = "20GB"
  max_sessions    = 10
  max_connections = 200
  idle_timeout    = "1h30m"
  priority        = 10
  applies_to {
    roles = ["admin", "admin"]
  }
}
