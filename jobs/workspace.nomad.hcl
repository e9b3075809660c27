# codehub workspace: one person's IDE. The gateway dispatches this job
# once per workspace start; the dispatched task runs `codehub agent`, which
# supervises code-server and serves it, on one port, only to requests that
# carry the workspace's secret.
#
#   nomad namespace apply codehub                       # optional
#   nomad job run -namespace codehub jobs/workspace.nomad.hcl
#
# Registering a parameterized job runs nothing. The gateway needs a Nomad
# ACL token with, in this namespace: dispatch-job, read-job, list-jobs and
# submit-job (see "Resources per policy" below); node:read is optional.
#
# Who and what: dispatch meta. The gateway sends user_id, workspace_id and
# the policy's name, and, when it has them, the username and the policy's
# limits and image. meta {} below holds the defaults of the optional keys.
#
# The secret: the dispatch payload. Meta is readable by anyone with
# read-job, so the per-workspace secret travels as the payload, which Nomad
# writes into the task's local/secret. Nomad writes payloads with mode
# 0777 (less the client's umask) and the agent refuses a secret file that
# group or others may read, so the template below copies it into secrets/
# (the task's private, in-memory directory, hidden from `nomad alloc fs`)
# with mode 0600 and the workspace account as owner; the agent reads that
# copy with --secret-file.
#
# Resources per policy: Nomad cannot take cpu, memory or memory_max from
# meta (the scheduler places an allocation before anything is
# interpolated), nor datacenters, group counts or volume sources. So this
# job is a template: for each isolation policy the gateway registers a copy
# named "codehub-workspace-<policy>" with the policy's cpu (its percent of
# a core, at 1000 MHz a core unless the orchestrator is told otherwise),
# memory, memory_max, pids limit, datacenter and storage limit (meta
# storage_limit_bytes, for the agent's --storage-limit), keeping
# only the group of the policy's driver (docker by default, or exec), and
# dispatches that copy. It registers a copy again only when the policy or
# this job changed (meta codehub_hash). The resources below are the
# defaults a copy starts from. (Operators who prefer not to grant
# submit-job can run those copies themselves: `nomad job inspect` one the
# gateway made, or edit this file's ID and resources per policy.)
#
# Health: the agent answers nothing, not even its health, without the
# secret, and a check's header would copy the secret into Consul's catalog
# where every reader of the service sees it. So the Consul check is a
# script check: Nomad runs it inside the task, where the secret is, and
# reports the result to Consul as a TTL check. It asks the agent's
# /_agent/health with the secret, in both headers the agent wants of calls
# to its own endpoints (X-Codehub-Workspace-Secret and
# X-Codehub-Agent-Control), and passes when the IDE runs; otherwise it
# exits 2, critical (exit 1 would be Consul's "warning", which still gets
# traffic). The image must have /bin/sh and curl or wget (the exec group
# uses the host's).
#
# A crash: the restart block below starts the agent again in the same
# allocation (same node, port, files and, on exec, the same chroot, which
# is not built again); the gateway waits for that instead of dispatching a
# new workspace, and starts a new one only when Nomad gives up.
#
# The user's files: the docker group mounts a Docker volume per user,
# "codehub-home-<user_id>" (interpolated at run time, when Nomad's own
# volume blocks cannot be: their source is needed for scheduling). With
# the "local" volume driver a home stays on the node that created it; use
# a networked driver (meta volume_driver: an NFS-backed local volume, or a
# CSI-backed Docker volume plugin) so that homes follow their users. The
# Nomad clients need the docker plugin's volumes enabled:
#   plugin "docker" { config { volumes { enabled = true } } }
# user_id is checked by the gateway (letters, digits, . _ @ -) before it
# is interpolated here.

job "codehub-workspace" {
  type        = "batch"
  datacenters = ["*"]
  # Above ordinary batch work: a person is waiting.
  priority = 70

  parameterized {
    payload       = "required"
    meta_required = ["user_id", "workspace_id", "policy"]
    meta_optional = ["session_id", "username", "memory_mb", "memory_max_mb", "cpu", "image", "storage_mb", "datacenter"]
  }

  meta {
    session_id    = ""
    username      = ""
    memory_mb     = "2048"
    memory_max_mb = "0"
    cpu           = "1000"
    image         = "ghcr.io/codehub-dev/workspace:latest"
    storage_mb    = "10000"
    datacenter    = ""

    # Set in each policy's copy by the gateway.
    storage_limit_bytes = "10485760000"
    # The Docker volume driver of the users' homes.
    volume_driver = "local"
  }

  # The default group: Docker, one container per workspace.
  group "workspace" {
    count = 1

    # An IDE that crashes is restarted in place a few times, with a short
    # pause, then the allocation fails and is rescheduled elsewhere, with
    # growing delays, a bounded number of times: never a crash loop
    # forever.
    restart {
      attempts = 3
      interval = "10m"
      delay    = "2s"
      mode     = "fail"
    }

    reschedule {
      attempts       = 5
      interval       = "1h"
      delay          = "10s"
      delay_function = "exponential"
      max_delay      = "5m"
      unlimited      = false
    }

    network {
      port "http" {}
    }

    ephemeral_disk {
      size = 500
    }

    task "agent" {
      driver = "docker"
      # The workspace account of the image; the template below gives it
      # the secret's copy.
      user = "1000:1000"

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
        image      = "${NOMAD_META_image}"
        ports      = ["http"]
        command    = "codehub"
        args = [
          "agent",
          "--listen", "0.0.0.0:${NOMAD_PORT_http}",
          "--secret-file", "${NOMAD_SECRETS_DIR}/agent-secret",
          "--user-data-dir", "/home/coder/state",
          "--extensions-dir", "/home/coder/extensions",
          "--folder", "/home/coder/workspaces",
          "--storage-path", "/home/coder",
          "--storage-limit", "${NOMAD_META_storage_limit_bytes}",
          "--log-format", "json",
        ]
        pids_limit   = 1024
        cap_drop     = ["ALL"]
        security_opt = ["no-new-privileges"]

        mount {
          type   = "volume"
          target = "/home/coder"
          source = "codehub-home-${NOMAD_META_user_id}"
          volume_options {
            driver_config {
              name = "${NOMAD_META_volume_driver}"
            }
          }
        }
      }

      env {
        HOME = "/home/coder"
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
          "user-${NOMAD_META_user_id}",
          "dc-${node.datacenter}",
          "workspace-${NOMAD_META_workspace_id}",
          "policy-${NOMAD_META_policy}",
        ]
        meta {
          workspace_id = "${NOMAD_META_workspace_id}"
          user_id      = "${NOMAD_META_user_id}"
          policy       = "${NOMAD_META_policy}"
          alloc_id     = "${NOMAD_ALLOC_ID}"
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

  # The alternative: the exec driver (Linux namespaces, cgroup limits, a
  # chroot), for clusters without Docker. A policy with driver = "exec"
  # selects it; count = 0 keeps it out of the default. What the clients
  # need (README "Nomad, Consul and Vault", terraform/cluster does it):
  # - Nomad running as root, with the exec driver;
  # - /usr/local/bin/codehub and code-server (/usr/local/bin/code-server
  #   and what it runs) inside the chroot: the client's chroot_env;
  # - an account "codehub" with uid and gid 10100 (the template below
  #   gives it the secret's copy);
  # - the host volume "codehub-homes", the same shared filesystem on every
  #   client, owned by that account:
  #     client { host_volume "codehub-homes" { path = "/srv/codehub/homes" } }
  # Every exec workspace runs as that one account and sees the whole homes
  # tree (exec cannot mount a per-user source): keep it for trusted teams,
  # or prefer the docker group.
  #
  # Nothing of the host may be written from here: the exec driver gives a
  # task Nomad's default capabilities (chown, dac_override, fowner,
  # setuid...) even when it runs as an unprivileged user, and builds its
  # chroot of hard links to the host's own files, so cap_drop = ["all"]
  # below is what keeps a terminal from appending to /etc/passwd of the
  # host; and the agent sets no_new_privs (--no-new-privileges), which the
  # driver cannot, so that no set-uid program of the chroot gives the
  # user's code root's identity back. The exec driver has no pids limit:
  # a policy's pids is enforced on the docker group only.
  group "workspace-exec" {
    count = 0

    constraint {
      attribute = "${attr.driver.exec}"
      value     = "1"
    }

    restart {
      attempts = 3
      interval = "10m"
      delay    = "2s"
      mode     = "fail"
    }

    reschedule {
      attempts       = 5
      interval       = "1h"
      delay          = "10s"
      delay_function = "exponential"
      max_delay      = "5m"
      unlimited      = false
    }

    network {
      port "http" {}
    }

    volume "homes" {
      type      = "host"
      source    = "codehub-homes"
      read_only = false
    }

    task "agent" {
      driver = "exec"
      user   = "codehub"

      dispatch_payload {
        file = "secret"
      }

      # uid and gid: the codehub account's on the clients.
      template {
        source      = "local/secret"
        destination = "secrets/agent-secret"
        perms       = "0600"
        uid         = 10100
        gid         = 10100
        change_mode = "noop"
      }

      volume_mount {
        volume      = "homes"
        destination = "/homes"
      }

      config {
        command = "/usr/local/bin/codehub"
        args = [
          "agent",
          "--listen", "0.0.0.0:${NOMAD_PORT_http}",
          "--secret-file", "${NOMAD_SECRETS_DIR}/agent-secret",
          "--code-server", "/usr/local/bin/code-server",
          "--no-new-privileges",
          "--user-data-dir", "/homes/${NOMAD_META_user_id}/state",
          "--extensions-dir", "/homes/${NOMAD_META_user_id}/extensions",
          "--folder", "/homes/${NOMAD_META_user_id}/workspaces",
          "--storage-path", "/homes/${NOMAD_META_user_id}",
          "--storage-limit", "${NOMAD_META_storage_limit_bytes}",
          "--log-format", "json",
        ]
        cap_drop = ["all"]
      }

      env {
        HOME  = "/homes/${NOMAD_META_user_id}"
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
          "user-${NOMAD_META_user_id}",
          "dc-${node.datacenter}",
          "workspace-${NOMAD_META_workspace_id}",
          "policy-${NOMAD_META_policy}",
        ]
        meta {
          workspace_id = "${NOMAD_META_workspace_id}"
          user_id      = "${NOMAD_META_user_id}"
          policy       = "${NOMAD_META_policy}"
          alloc_id     = "${NOMAD_ALLOC_ID}"
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
