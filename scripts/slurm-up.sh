#!/usr/bin/env bash
# Bring up a throw-away single-node Slurm cluster on loopback (munge + slurmctld + slurmd), for
# running compiled workflows with `rlspec run SPEC --profile slurm` on this machine and for the
# tests marked `slurm`. Debian 12, run as root, no systemd needed. Stop it with scripts/slurm-down.sh.
#
#   scripts/slurm-up.sh          # idempotent: a second run only checks (and resumes a drained node)
#
# What it does: installs the Debian packages if missing, starts each daemon that is not already
# running (pid files under /run), waits until the node is idle, and installs Snakemake's Slurm
# executor plugin into the project's .venv (the `slurm` extra in pyproject.toml). Every setting
# below was measured on this kind of machine (gVisor-style sandbox, 2 cores); see
# docs/slurm.md for the Snakemake flags this cluster needs (squeue status, 1 s first check).
#
# Environment: RLSPEC_SLURM_PARTITION (default `debug`), the partition's name.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PART=${RLSPEC_SLURM_PARTITION:-debug}
CONF=/etc/slurm/slurm.conf
export DEBIAN_FRONTEND=noninteractive

[ "$(id -u)" = 0 ] || { echo "slurm-up.sh: run as root (it installs packages and starts daemons)" >&2; exit 2; }

wait_for() { # wait_for SECONDS CMD...: poll every 0.1 s
  local t=$1; shift
  for _ in $(seq $((t * 10))); do "$@" >/dev/null 2>&1 && return 0; sleep 0.1; done
  echo "slurm-up.sh: timeout after ${t}s waiting for: $*" >&2; return 1
}
alive() { [ -s "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; } # alive PIDFILE

# 1. Packages. Their postinst scripts create the slurm and munge users and /etc/munge/munge.key;
#    with no init system apt starts nothing ("policy-rc.d denied execution"), so we start the
#    daemons ourselves. The lock timeout: other jobs on this machine may be running apt.
pkgs="slurmctld slurmd slurm-client munge"
missing=""
for p in $pkgs; do dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"; done
if [ -n "$missing" ]; then
  apt-get -o DPkg::Lock::Timeout=300 update -qq
  apt-get -o DPkg::Lock::Timeout=300 install -y -qq --no-install-recommends $missing >/dev/null
fi
install -d -o slurm -g slurm /var/lib/slurm/slurmctld /var/lib/slurm/slurmd /var/log/slurm

# 2. munge: Slurm's daemons and clients authenticate every message with it.
if ! alive /run/munge/munged.pid; then
  [ -s /etc/munge/munge.key ] || runuser -u munge -- mungekey --create
  install -d -o munge -g munge -m 0755 /run/munge
  # --force: start even if a killed munged left its socket behind.
  runuser -u munge -- /usr/sbin/munged --force   # daemonizes; pid in /run/munge/munged.pid
fi
wait_for 10 sh -c 'munge -n | unmunge'

# 3. slurm.conf. The node line is what `slurmd -C` detects (name = `hostname -s`, real CPUs and
#    memory), so the node is never drained for "low memory" or "low CPU count".
H=$(hostname -s)
NODE=$(slurmd -C | head -1)
new=$(cat <<EOF
# Written by rlspec scripts/slurm-up.sh: a throw-away single-node cluster on loopback.
ClusterName=rlspec
# NodeAddr/ControlAddr 127.0.0.1: all traffic stays on loopback even if the hostname does not resolve.
SlurmctldHost=${H}(127.0.0.1)
SlurmUser=slurm
AuthType=auth/munge
MpiDefault=none
# There is no /bin/mail here; without this slurmctld logs "Configured MailProg is invalid".
MailProg=/bin/true
# The default proctrack/cgroup cannot work in this sandbox ("cgroup namespace 'freezer' not
# mounted"): every job step fails and the node is drained. Plain process tracking works.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
# A node that was DOWN comes back by itself when slurmd registers again.
ReturnToService=2
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmdSpoolDir=/var/lib/slurm/slurmd
StateSaveLocation=/var/lib/slurm/slurmctld
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
SchedulerType=sched/backfill
# The default batch_sched_delay=3 starts one wave of jobs every 3 s; 0 makes it about 1 s.
SchedulerParameters=batch_sched_delay=0
# Pack jobs per core and per MB, so two 1-CPU jobs run side by side on the 2 cores.
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
# A job that passes no --mem would otherwise get the whole node's memory and run alone.
DefMemPerCPU=500
# No slurmdbd: sacct fails ("accounting storage is disabled"), so Snakemake's Slurm plugin must
# poll with --slurm-status-command squeue, or it waits forever for jobs that finished long ago.
# squeue sees finished jobs for MinJobAge (default 300 s); do not lower it (the plugin then
# silently falls back to sacct).
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
${NODE} NodeAddr=127.0.0.1 State=UNKNOWN
PartitionName=${PART} Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
)
if [ ! -f "$CONF" ] || [ "$(cat "$CONF")" != "$new" ]; then
  # Daemons running with another slurm.conf disagree ("appears to have a different slurm.conf"):
  # stop them first, they are started again below.
  "$ROOT/scripts/slurm-down.sh" --slurm-only
  install -d /etc/slurm
  printf '%s\n' "$new" > "$CONF"
fi

# 4. Daemons; both daemonize and write their pid files. -c: start slurmctld from a clean state
#    (no jobs or drained node left from an earlier cluster); this cluster is throw-away.
alive /run/slurmctld.pid || /usr/sbin/slurmctld -c
wait_for 30 sh -c 'scontrol ping | grep -q UP'
alive /run/slurmd.pid || /usr/sbin/slurmd
# A job-launch failure drains the node, and every later job then waits forever (PENDING).
state() { sinfo -h -n "$H" -o %T; }
wait_for 30 sh -c "sinfo -h -n $H -o %T | grep -qvE '^(unknown|down)'" || true
case "$(state)" in
  drain*|drng*|down*|*drain) echo "slurm-up.sh: node $H is $(state); resuming it" >&2
                             scontrol update nodename="$H" state=resume ;;
esac
wait_for 30 sh -c "sinfo -h -n $H -o %T | grep -qE '^(idle|mixed|allocated|completing)$'"

# 5. Snakemake's Slurm executor plugin, into the project's venv only (not the default install:
#    with it installed and the slurm binaries on PATH, every snakemake call probes
#    `scontrol show config`, which takes ~10 s while no slurmctld answers).
if [ -x "$ROOT/.venv/bin/python" ] && ! "$ROOT/.venv/bin/python" -c \
    "import importlib.util as u, sys; sys.exit(u.find_spec('snakemake_executor_plugin_slurm') is None)"; then
  reqs=$("$ROOT/.venv/bin/python" - "$ROOT/pyproject.toml" <<'PY'
import sys, tomllib
print(" ".join(tomllib.load(open(sys.argv[1], "rb"))["project"]["optional-dependencies"]["slurm"]))
PY
)
  "$ROOT/.venv/bin/python" -m pip install -q $reqs
fi

sinfo
