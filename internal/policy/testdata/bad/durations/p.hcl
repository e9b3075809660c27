policy "default" {
  cpu             = 100
  memory          = "2GiB"
  pids            = 2048
  storage         = "10GiB"
  max_sessions    = 5
  max_connections = 100
  idle_timeout    = "30 minutes"
}

policy "negative" {
  cpu             = 100
  memory          = "2GiB"
  pids            = 2048
  storage         = "10GiB"
  max_sessions    = 5
  max_connections = 100
  idle_timeout    = "-5m"
}

policy "seconds" {
  cpu             = 100
  memory          = "2GiB"
  pids            = 2048
  storage         = "10GiB"
  max_sessions    = 5
  max_connections = 100
  idle_timeout    = 1800
}
