policy "default" {
  cpu = 100
  memory = "2GiB"
