policy "default" {
  cpu = 100
}
