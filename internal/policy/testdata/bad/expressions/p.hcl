policy "default" {
  cpu             = var.cpu
  memory          = upper("2gib")
  pids            = 2048
  storage         = "10GiB"
  max_sessions    = 5
  max_connections = 100
  idle_timeout    = "30m"
}
