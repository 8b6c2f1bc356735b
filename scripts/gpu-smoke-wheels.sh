#!/usr/bin/env bash
# Wheels for perf/gpu_smoke.py on a GPU machine with no network, built or fetched here (needs pip's
# network): DeepSpeed built from its source release (pure Python: its CUDA ops are JIT-compiled on
# first use, so the wheel fits any torch/CUDA), and the pure-Python packages rlspec's train path needs
# that a torch + transformers image lacks, for that machine's Python (default 3.12, x86-64 Linux).
#
#   scripts/gpu-smoke-wheels.sh [OUT_DIR] [PYTHON_VERSION]     # default build/gpu-wheels 3.12
#
# On the GPU machine (the repository copied there, OUT_DIR carried along); pip takes from OUT_DIR
# only what the image lacks:
#   python3 -m pip install --no-index --find-links build/gpu-wheels deepspeed pydantic hjson math-verify
#   python3 -m pip install --no-index --no-deps --no-build-isolation -e .
#   python3 perf/gpu_smoke.py          # -> perf/results/gpu_smoke.json
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
OUT=${1:-$ROOT/build/gpu-wheels}
PYV=${2:-3.12}
PIP="$ROOT/.venv/bin/python -m pip"
mkdir -p "$OUT"
# DeepSpeed's version is pinned to the one the CPU tests run (pyproject: deepspeed>=0.17).
$PIP wheel -q --no-deps -w "$OUT" "deepspeed==0.19.8"
# Not in a torch + transformers image: DeepSpeed's hjson and pydantic, rlspec's pydantic and math
# grader, with their dependencies (none needs torch) for the target's Python and platform
# (pydantic-core is compiled).
$PIP download -q --only-binary=:all: --python-version "$PYV" --implementation cp \
  --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 -d "$OUT" \
  "pydantic>=2.10,<3" "hjson" "math-verify>=0.9,<0.10"
ls -l "$OUT"
