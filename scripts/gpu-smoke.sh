#!/usr/bin/env bash
# Run perf/gpu_smoke.py on a GPU machine with no network and only torch + transformers installed
# (the device image this project is lent: python3 with torch, transformers, pandas, pyarrow, jinja2,
# pyyaml, rich). The wheels it lacks come from scripts/gpu-smoke-wheels.sh, run beforehand on a
# machine with network and carried along as build/gpu-wheels/.
#
#   scripts/gpu-smoke.sh [perf/gpu_smoke.py arguments]      # e.g. --lengths 8192 --steps 3
#
# rlspec is not pip-installed there (its build needs a newer setuptools than an image may have): its
# import name is mapped onto this repository's folders through links in a temporary folder.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
WHEELS=${RLSPEC_GPU_WHEELS:-$ROOT/build/gpu-wheels}
PY=${PYTHON:-python3}
[ -d "$WHEELS" ] || { echo "gpu-smoke.sh: no $WHEELS; run scripts/gpu-smoke-wheels.sh where there is network" >&2; exit 2; }
# pip takes from the folder only what the image lacks (DeepSpeed, hjson, pydantic, math-verify, ...)
"$PY" -m pip install -q --no-index --find-links "$WHEELS" deepspeed pydantic hjson math-verify
SRC=$(mktemp -d)/src
mkdir -p "$SRC/rlspec"
for d in compiler runtime templates; do ln -s "$ROOT/$d" "$SRC/rlspec/$d"; done
export PYTHONPATH="$SRC${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
"$PY" -c "import rlspec.compiler.cli, deepspeed, torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), 'deepspeed', deepspeed.__version__)"
exec "$PY" "$ROOT/perf/gpu_smoke.py" "$@"
