# Not an isolation policy: Load skips other tools' policy files.
path "transit/sign/codehub-jwt" {
  capabilities = ["update"]
}
