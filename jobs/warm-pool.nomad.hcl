# codehub warm pool: workspaces started before anyone signs in, so that a
# sign-in gets an IDE in about a second instead of a cold start.
#
#   nomad job run -namespace codehub jobs/warm-pool.nomad.hcl
#
# It is dispatched exactly like jobs/workspace.nomad.hcl (the same
# parameterized block, the secret as payload), with user_id = "" and the
# pool's name in this job's meta. The gateway keeps
# multi-user.scaling.container-pool.warm-pool-size of them running (it
# derives "codehub-warm-pool-<policy>" for the default policy, as for
# workspaces), and on sign-in claims one atomically in its registry (one
# claim wins, whichever gateway asks). Nothing changes in Nomad on a claim:
# a job's meta cannot change without restarting the task, so the claimed
# workspace keeps this job's tags ("warm") and the registry says whose it
# is; discovery finds workspaces by their workspace-<id> tag.
#
# How they are replaced: every claim makes the gateway dispatch a new one;
# one that does not answer its health when claimed is stopped and another
# dispatched; one that dies is stopped by the gateway and replaced the
# same way. A new image or new limits: update this job; dispatches from
# then on use it, and the warm workspaces already running keep theirs until
# they are claimed, or stop them (nomad job status codehub-warm-pool-default,
# then nomad job stop -purge each child) and the gateway refills the pool.
#
# Their files: a warm workspace cannot mount its user's home (no one owns
# it when it starts), so its home is in the allocation's sticky ephemeral
# disk and ends with the workspace. Use the warm pool for policies whose
# work lives in git and settings sync; leave warm-pool-size at 0 where a
# persistent home matters more than a fast start.
#
# Health, secret and resources: as in jobs/workspace.nomad.hcl.
#
# Drivers: like the workspace job, a docker group (the default) and an exec
# group (count 0); the gateway keeps the one of its default policy's
# driver, so that a cluster without Docker has a warm pool too. The exec
# group needs what the workspace job's does (README), less the homes'
# host volume: a warm workspace's home is in its allocation.

job "codehub-warm-pool" {
  type        = "batch"
  datacenters = ["*"]
  # Below real workspaces: a warm one never takes the place of a person's.
  priority = 40

  parameterized {
    payload       = "required"
    meta_required = ["user_id", "workspace_id", "policy"]
    meta_optional = ["session_id", "username", "memory_mb", "memory_max_mb", "cpu", "image", "storage_mb", "datacenter"]
  }

  meta {
    pool          = "default"
    session_id    = ""
    username      = ""
    memory_mb     = "2048"
    memory_max_mb = "0"
    cpu           = "1000"
    image         = "ghcr.io/codehub-dev/workspace:latest"
    storage_mb    = "2000"
    datacenter    = ""

    storage_limit_bytes = "2097152000"
  }

  group "workspace" {
    count = 1

    restart {
      attempts = 2
      interval = "10m"
      delay    = "2s"
      mode     = "fail"
    }

    # A warm workspace that fails is not worth chasing: the gateway
    # dispatches another.
    reschedule {
      attempts  = 0
      unlimited = false
    }

    network {
      port "http" {}
    }

    ephemeral_disk {
      size    = 2000
      sticky  = true
      migrate = true
    }

    task "agent" {
      driver = "docker"
      user   = "1000:1000"

      dispatch_payload {
        file = "secret"
      }

      template {
        source      = "local/secret"
        destination = "secrets/agent-secret"
        perms       = "0600"
        uid         = 1000
        gid         = 1000
        change_mode = "noop"
      }

      config {
        image   = "${NOMAD_META_image}"
        ports   = ["http"]
        command = "codehub"
        args = [
          "agent",
          "--listen", "0.0.0.0:${NOMAD_PORT_http}",
          "--secret-file", "${NOMAD_SECRETS_DIR}/agent-secret",
          "--user-data-dir", "${NOMAD_ALLOC_DIR}/data/home/state",
          "--extensions-dir", "${NOMAD_ALLOC_DIR}/data/home/extensions",
          "--folder", "${NOMAD_ALLOC_DIR}/data/home/workspaces",
          "--storage-path", "${NOMAD_ALLOC_DIR}/data/home",
          "--storage-limit", "${NOMAD_META_storage_limit_bytes}",
          "--log-format", "json",
        ]
        pids_limit   = 1024
        cap_drop     = ["ALL"]
        security_opt = ["no-new-privileges"]
      }

      env {
        HOME = "${NOMAD_ALLOC_DIR}/data/home"
      }

      resources {
        cpu        = 1000
        memory     = 2048
        memory_max = 4096
      }

      kill_timeout = "20s"

      service {
        name = "codehub-workspace"
        port = "http"
        tags = [
          "warm",
          "pool-${NOMAD_META_pool}",
          "dc-${node.datacenter}",
          "workspace-${NOMAD_META_workspace_id}",
          "policy-${NOMAD_META_policy}",
        ]
        meta {
          workspace_id = "${NOMAD_META_workspace_id}"
          user_id      = "${NOMAD_META_user_id}"
          policy       = "${NOMAD_META_policy}"
          alloc_id     = "${NOMAD_ALLOC_ID}"
          pool         = "${NOMAD_META_pool}"
        }

        check {
          name     = "ide"
          type     = "script"
          command  = "/bin/sh"
          args     = ["-c", "s=\"$(cat \"$NOMAD_SECRETS_DIR/agent-secret\")\"; u=\"http://127.0.0.1:$NOMAD_PORT_http/_agent/health\"; { curl -fsS -H \"X-Codehub-Workspace-Secret: $s\" -H \"X-Codehub-Agent-Control: $s\" \"$u\" 2>/dev/null || wget -q -O - --header \"X-Codehub-Workspace-Secret: $s\" --header \"X-Codehub-Agent-Control: $s\" \"$u\"; } | grep -q '\"status\": *\"running\"' || exit 2"]
          # Often: the first run usually comes before code-server is up,
          # and the workspace gets traffic only from the next passing one.
          interval = "2s"
          timeout  = "2s"
        }
      }
    }
  }

  # The exec driver's warm workspace: as the exec group of
  # jobs/workspace.nomad.hcl (no capability, no_new_privs, the codehub
  # account), its home in the allocation.
  group "workspace-exec" {
    count = 0

    constraint {
      attribute = "${attr.driver.exec}"
      value     = "1"
    }

    restart {
      attempts = 2
      interval = "10m"
      delay    = "2s"
      mode     = "fail"
    }

    reschedule {
      attempts  = 0
      unlimited = false
    }

    network {
      port "http" {}
    }

    ephemeral_disk {
      size    = 2000
      sticky  = true
      migrate = true
    }

    task "agent" {
      driver = "exec"
      user   = "codehub"

      dispatch_payload {
        file = "secret"
      }

      template {
        source      = "local/secret"
        destination = "secrets/agent-secret"
        perms       = "0600"
        uid         = 10100
        gid         = 10100
        change_mode = "noop"
      }

      config {
        command = "/usr/local/bin/codehub"
        args = [
          "agent",
          "--listen", "0.0.0.0:${NOMAD_PORT_http}",
          "--secret-file", "${NOMAD_SECRETS_DIR}/agent-secret",
          "--code-server", "/usr/local/bin/code-server",
          "--no-new-privileges",
          "--user-data-dir", "${NOMAD_ALLOC_DIR}/data/home/state",
          "--extensions-dir", "${NOMAD_ALLOC_DIR}/data/home/extensions",
          "--folder", "${NOMAD_ALLOC_DIR}/data/home/workspaces",
          "--storage-path", "${NOMAD_ALLOC_DIR}/data/home",
          "--storage-limit", "${NOMAD_META_storage_limit_bytes}",
          "--log-format", "json",
        ]
        cap_drop = ["all"]
      }

      env {
        HOME  = "${NOMAD_ALLOC_DIR}/data/home"
        PATH  = "/usr/local/bin:/usr/bin:/bin"
        SHELL = "/bin/bash"
      }

      resources {
        cpu        = 1000
        memory     = 2048
        memory_max = 4096
      }

      kill_timeout = "20s"

      service {
        name = "codehub-workspace"
        port = "http"
        tags = [
          "warm",
          "pool-${NOMAD_META_pool}",
          "dc-${node.datacenter}",
          "workspace-${NOMAD_META_workspace_id}",
          "policy-${NOMAD_META_policy}",
        ]
        meta {
          workspace_id = "${NOMAD_META_workspace_id}"
          user_id      = "${NOMAD_META_user_id}"
          policy       = "${NOMAD_META_policy}"
          alloc_id     = "${NOMAD_ALLOC_ID}"
          pool         = "${NOMAD_META_pool}"
        }

        check {
          name     = "ide"
          type     = "script"
          command  = "/bin/sh"
          args     = ["-c", "s=\"$(cat \"$NOMAD_SECRETS_DIR/agent-secret\")\"; u=\"http://127.0.0.1:$NOMAD_PORT_http/_agent/health\"; { curl -fsS -H \"X-Codehub-Workspace-Secret: $s\" -H \"X-Codehub-Agent-Control: $s\" \"$u\" 2>/dev/null || wget -q -O - --header \"X-Codehub-Workspace-Secret: $s\" --header \"X-Codehub-Agent-Control: $s\" \"$u\"; } | grep -q '\"status\": *\"running\"' || exit 2"]
          interval = "2s"
          timeout  = "2s"
        }
      }
    }
  }
}
