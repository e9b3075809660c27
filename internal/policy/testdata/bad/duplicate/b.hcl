# Same name as in a.hcl.
policy "default" {
  cpu             = 200
  memory          = "4GiB"
  pids            = 2048
  storage         = "10GiB"
  max_sessions    = 5
  max_connections = 100
  idle_timeout    = "30m"
}
