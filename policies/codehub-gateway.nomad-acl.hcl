# Nomad ACL policy "codehub-gateway": what one codehub gateway may do in
# Nomad, and nothing else. It is attached to the job codehub-gateway
# (terraform/codehub/nomad.tf, or `nomad acl policy apply -namespace NS
# -job codehub-gateway`), so that the job's workload identity carries it:
# the gateway's NOMAD_TOKEN (identity { env = true }) is short-lived, bound
# to its allocation, and no other token holds these rights.
#
# Workspace tasks need no Nomad token: the gateway dispatches and stops
# them, and they never call Nomad.
#
# Nomad ACLs are per namespace, not per job: every capability below covers
# every job in the namespace. Run codehub in a namespace of its own when the
# cluster runs anything else (change the label, and nomad.namespace).

namespace "default" {
  capabilities = [
    # Start a workspace: dispatch the parameterized jobs codehub-workspace
    # and codehub-warm-pool (nomad.job, nomad.warm-pool-job), or their
    # per-policy variants.
    "dispatch-job",

    # Follow a workspace: read the jobs, their evaluations (why a workspace
    # cannot be placed), allocations (state, node, address and port) and
    # the Job, Evaluation and Allocation topics of the event stream.
    "read-job",

    # Find the gateway's workspaces after a restart (dispatched children of
    # codehub-workspace, by prefix).
    "list-jobs",

    # Two things need submit-job, and no narrower capability does either:
    # - stopping a workspace: Nomad stops a dispatched job by deregistering
    #   it;
    # - registering the per-policy variants of the workspace job: memory,
    #   CPU and image are fixed when a parameterized job is registered,
    #   not at dispatch, so each isolation policy gets its own copy of the
    #   operator's job (internal/orchestrator/nomad).
    # It lets the holder register any job in this namespace: hence the
    # namespace advice above, and client nodes that refuse raw_exec and
    # privileged containers, and offer no host volume but the homes
    # (terraform/cluster).
    "submit-job",

    # Restart a workspace's agent in place when it hangs (Nomad's own
    # restart policy restarts one that dies): the same allocation, node,
    # port and files, far quicker than a new dispatch.
    "alloc-lifecycle",
  ]
}

# The exec group of jobs/workspace.nomad.hcl mounts the users' homes, the
# host volume "codehub-homes": registering the per-policy copy of it needs
# this, besides submit-job (without it every exec start is refused with
# "Permission denied"). Name every host volume your job files mount.
host_volume "codehub-homes" {
  policy = "write"
}

# Not granted, on purpose:
# - node: the orchestrator reads a node only to name a workspace's
#   datacenter when its job may run in several; with one datacenter (the
#   Terraform cluster) it never does, and it works without. Add
#   `node { policy = "read" }` for jobs spanning datacenters: it shows
#   every node's name, address and attributes.
# - read-logs, read-fs, alloc-exec: the gateway never reads into a
#   workspace; its agent reports what the gateway needs.
# - variables: the gateway's task reads its own variable
#   (nomad/jobs/codehub-gateway) through its identity's implicit policy.
# - agent, operator, quota, plugin: not used. (The gateway logs Nomad's
#   warning when memory_max is ignored; it does not read the scheduler
#   configuration itself.)
