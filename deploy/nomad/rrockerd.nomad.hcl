# rrockerd on every client node of a Nomad cluster: a system job, one allocation per node.
#
# rrockerd needs root on the host itself (it makes namespaces, mounts and cgroups), so it runs
# with the raw_exec driver, which must be enabled on the clients:
#   plugin "raw_exec" { config { enabled = true } }
# Install /usr/local/bin/rrockerd on every node (or fetch it with an artifact block) and the
# node's PKI in /etc/rrocker/pki: server.pem/.key issued for the node's name and address by
# the fleet's server CA, and client-ca.pem (see deploy/FLEET.md). Then:
#   nomad job run deploy/nomad/rrockerd.nomad.hcl
job "rrockerd" {
  type = "system"

  group "rrockerd" {
    # A node that fails its task gets it back; rrockerd cleans up after a crashed run itself.
    restart {
      attempts = 10
      interval = "5m"
      delay    = "2s"
      mode     = "delay"
    }

    network {
      port "grpc" {
        static = 50051
      }
      port "metrics" {
        static = 9090
      }
    }

    service {
      name     = "rrockerd"
      port     = "grpc"
      provider = "nomad"
    }

    task "rrockerd" {
      driver = "raw_exec"

      config {
        command = "/usr/local/bin/rrockerd"
        args = [
          "--listen", "${NOMAD_ADDR_grpc}",
          "--metrics-listen", "${NOMAD_ADDR_metrics}",
          "--pki-dir", "/etc/rrocker/pki",
          "--state-dir", "/run/rrocker",
          "--images-dir", "/var/lib/rrocker/images",
          # auto: raw_exec shares the host's cgroup namespace and delegates no cgroup to
          # its task, so task cgroups go to /rrocker at each hierarchy's root, as for a
          # daemon started by hand (systemd's unit, by contrast, keeps them in its own).
          "--cgroup-parent", "auto",
          "--log-format", "json",
        ]
      }

      # SIGTERM stops every task (SIGKILL after the grace period, 10 s by default) and waits
      # for their clean-up: give it the time before Nomad kills the daemon.
      kill_signal  = "SIGTERM"
      kill_timeout = "40s"

      resources {
        cpu    = 200
        memory = 256
      }
    }
  }
}
