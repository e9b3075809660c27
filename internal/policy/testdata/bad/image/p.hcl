policy "default" {
  driver          = "docker"
  cpu             = 100
  memory          = "2GiB"
  pids            = 2048
  storage         = "10GiB"
  max_sessions    = 5
  max_connections = 100
  idle_timeout    = "30m"
}

policy "exec" {
  driver          = "exec"
  image           = "ubuntu:24.04"
  cpu             = 100
  memory          = "2GiB"
  pids            = 2048
  storage         = "10GiB"
  max_sessions    = 5
  max_connections = 100
  idle_timeout    = "30m"
}

policy "blank" {
  driver          = "docker"
  image           = "  "
  cpu             = 100
  memory          = "2GiB"
  pids            = 2048
  storage         = "10GiB"
  max_sessions    = 5
  max_connections = 100
  idle_timeout    = "30m"
}

policy "nodriver" {
  image           = "ubuntu:24.04"
  cpu             = 100
  memory          = "2GiB"
  pids            = 2048
  storage         = "10GiB"
  max_sessions    = 5
  max_connections = 100
  idle_timeout    = "30m"
}
