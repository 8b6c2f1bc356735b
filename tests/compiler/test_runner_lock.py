"""`rlspec run` stopped alone (SIGTERM to the runner, not its process group) leaves Snakemake running;
the build folder must stay locked until that Snakemake is gone, so a second run cannot start next
to it (and cannot mistake its live Snakemake lock for one a killed run left behind).

Real processes: the runner runs in a child Python process with Snakemake's command replaced by a
sleeper (the stand-in for a Snakemake that is still working), then only the runner is terminated.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from rlspec.compiler.runner import hold_build_lock

RUNNER = """
import sys, time
from pathlib import Path
from rlspec.compiler import runner
runner.snakemake_command = lambda build, **kw: [sys.executable, "-c", "import time; time.sleep(1" + "20)"]
runner.run_snakemake(Path(sys.argv[1]), total_jobs=1)
"""


def _pids_running(pattern: str) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if pattern in (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"):
                    out.append(int(entry.name))
            except OSError:
                pass
    return out


def test_build_folder_stays_locked_while_an_orphaned_snakemake_runs(tmp_path):
    build = tmp_path / "build"
    runner = subprocess.Popen([sys.executable, "-c", RUNNER, str(build)], start_new_session=True,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while not _pids_running("import time; time.sleep(120)") and time.monotonic() < deadline:
            time.sleep(0.1)
        [sleeper] = _pids_running("import time; time.sleep(120)")
        assert hold_build_lock(build) is None  # the runner holds it

        runner.send_signal(signal.SIGTERM)  # the runner alone: its "Snakemake" lives on
        runner.wait(timeout=30)
        assert _pids_running("import time; time.sleep(120)") == [sleeper]
        assert hold_build_lock(build) is None, "a second run could start next to the live Snakemake"

        os.kill(sleeper, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while _pids_running("import time; time.sleep(120)") and time.monotonic() < deadline:
            time.sleep(0.1)
        lock = hold_build_lock(build)
        assert lock is not None  # once it is gone the folder is free again
        lock.close()
    finally:
        for pid in _pids_running("import time; time.sleep(120)"):
            os.kill(pid, signal.SIGKILL)
        if runner.poll() is None:
            os.killpg(runner.pid, signal.SIGKILL)
