# Isolation policies: what a user's workspace may use, and to whom each
# policy applies. codehub reads every *.hcl file in this directory
# (multi-user.isolation.policies = "policies") except other tools' policies
# (*.vault.hcl, *.nomad-acl.hcl, *.consul-acl.hcl, *.nomad.hcl).
#
# A user's policy is, in order:
#   1. the one an admin assigned to them by name (user metadata "policy");
#   2. the highest-priority policy listing their username (applies_to.users);
#   3. the highest-priority policy listing one of their groups (metadata
#      "groups");
#   4. the highest-priority policy listing one of their roles;
#   5. the policy named "default".
# Two policies may not list the same user, group or role at one priority.
#
# Keys (all required unless marked optional):
#   description      optional, free text
#   driver           optional: process | directory (local) | docker | exec
#                    (Nomad); left out, the orchestrator's own. A driver the
#                    running orchestrator cannot give fails at start-up.
#   image            the container image; required by, and only for, docker
#   cpu              percent of one CPU (200: two CPUs)
#   memory           what a workspace is given: "512MiB", "4GiB", "10GB"
#   memory_max       optional: what it may burst to; at least memory
#   pids             processes and threads
#   storage          the size of the user's home
#   max_sessions     sign-in sessions per user
#   max_connections  open editor connections per user
#   idle_timeout     Go duration; a workspace unused this long is stopped
#                    ("0": never)
#   datacenter       optional, Nomad: where the workspace runs
#   priority         optional, default 0: the highest matching one wins
#   applies_to       optional block: users, groups, roles (lists)

# Everyone with the role "user": one CPU and 4GiB, like codehub's built-in
# limits, with room to burst for a build.
policy "default" {
  description     = "Every user: one CPU, 4GiB (6GiB burst), 10GiB home"
  cpu             = 100
  memory          = "4GiB"
  memory_max      = "6GiB"
  pids            = 2048
  storage         = "10GiB"
  max_sessions    = 5
  max_connections = 100
  idle_timeout    = "30m"

  applies_to {
    roles = ["user"]
  }
}
