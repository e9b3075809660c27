policy "default" {
  cpu             = 100
  memory          = "2GiB"
  pids            = 2048
  storage         = "10GiB"
  max_sessions    = 5
  max_connections = 100
  idle_timeout    = "30m"
  applies_to {
    roles  = ["admins", "superuser"]
    users  = ["Bob Smith", "bob"]
    groups = ["", "ok"]
    teams  = ["x"]
    nested {}
  }
  applies_to {
    roles = ["user"]
  }
  apply_to {
  }
  applies_to "x" {
  }
}

policy "lists" {
  cpu             = 100
  memory          = "2GiB"
  pids            = 2048
  storage         = "10GiB"
  max_sessions    = 5
  max_connections = 100
  idle_timeout    = "30m"
  applies_to {
    roles  = "user"
    groups = [1, 2]
  }
}
