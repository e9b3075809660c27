policy "large" {
  cpu             = 400
  memory          = "16GiB"
  pids            = 2048
  storage         = "10GiB"
  max_sessions    = 5
  max_connections = 100
  idle_timeout    = "30m"
  applies_to {
    groups = ["ml", "Data"]
    users  = ["alice"]
  }
}

policy "alice" {
  cpu             = 400
  memory          = "16GiB"
  pids            = 2048
  storage         = "10GiB"
  max_sessions    = 5
  max_connections = 100
  idle_timeout    = "30m"
  applies_to {
    users = ["Alice"]
  }
}
