"""Shared test setup: quiet, single-threaded, offline."""

import os

# With 2 threads on a busy 2-core box runs get 5-30x slower (shared/platform/machine.md).
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
