# Applies to nobody by rule: an admin assigns it by name (user metadata
# "policy" = "restricted"), for guests, contractors, or an account whose
# workspace misbehaved. An assignment wins over every rule, and an
# assignment naming a policy that no longer exists stops the user's
# workspace from starting rather than lifting the restriction.
policy "restricted" {
  description     = "Assigned by an admin: half a CPU, 1GiB, 2GiB home, short idle timeout"
  cpu             = 50
  memory          = "1GiB"
  pids            = 512
  storage         = "2GiB"
  max_sessions    = 2
  max_connections = 20
  idle_timeout    = "10m"
}
