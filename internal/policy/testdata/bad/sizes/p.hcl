policy "default" {
  cpu             = 100
  memory          = 2048
  memory_max      = "3G"
  pids            = 2048
  storage         = "10 gigs"
  max_sessions    = 5
  max_connections = 100
  idle_timeout    = "30m"
}

policy "tiny" {
  cpu             = 100
  memory          = "0GiB"
  memory_max      = "512KiB"
  pids            = 2048
  storage         = "2PiB"
  max_sessions    = 5
  max_connections = 100
  idle_timeout    = "30m"
}

policy "huge" {
  cpu             = 100
  memory          = "1GiB"
  pids            = 2048
  storage         = "2000TiB"
  max_sessions    = 5
  max_connections = 100
  idle_timeout    = "30m"
}
