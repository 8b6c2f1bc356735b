#!/usr/bin/env bash
# Stop the throw-away Slurm cluster that scripts/slurm-up.sh started. Each daemon is stopped by the
# pid in its pid file (SIGTERM, then SIGKILL after 10 s); nothing is killed by name, so other
# processes on the machine are never touched. Idempotent: with nothing running it does nothing.
#
#   scripts/slurm-down.sh                 # slurmd, slurmctld, munged
#   scripts/slurm-down.sh --slurm-only    # keep munged (slurm-up.sh uses this to apply a new slurm.conf)
#
# The Debian packages stay installed, so the next slurm-up.sh takes seconds. slurm.conf is removed
# (slurm-up.sh writes it again): while it exists and no slurmctld answers, every snakemake call
# with the Slurm plugin installed waits ~10 s on the plugin's `scontrol show config` probe; without
# it that probe fails at once.
set -euo pipefail
pidfiles="/run/slurmd.pid /run/slurmctld.pid"   # slurmd first: it reports to slurmctld
[ "${1:-}" = "--slurm-only" ] || pidfiles="$pidfiles /run/munge/munged.pid"

for f in $pidfiles; do
  [ -s "$f" ] || continue
  pid=$(cat "$f")
  if kill -0 "$pid" 2>/dev/null; then
    kill "$pid"
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then
      echo "slurm-down.sh: pid $pid ($f) still alive after 10 s; SIGKILL" >&2
      kill -9 "$pid"
    fi
  fi
  rm -f "$f"
done
[ "${1:-}" = "--slurm-only" ] || rm -f /etc/slurm/slurm.conf
