"""Peak memory of one phase of a job: host RSS (Linux VmHWM) and, on GPUs, CUDA allocations.

What: `PhasePeak()` as a context manager resets the process's peak resident set size (writing 5 to
/proc/self/clear_refs sets VmHWM back to the current RSS) and CUDA's peak-allocation counter on
entry, and on exit reads both: `host_gib` (the phase's peak RSS), `gpu_gib` (the phase's peak of
`torch.cuda.max_memory_allocated`, None without CUDA). `process_peak_gib` is the peak RSS of the whole
process so far, kept across resets.

Why: the train job reports its training phase's peak per step (`train_peak_rss_gib`,
`train_peak_gpu_gib`): the number to hold against `rlspec plan`'s estimate, and what
`perf/train_memory.py` compares with TRL. Without the reset, VmHWM would hold the rollout's peak.

How: reads cost microseconds; off Linux the host numbers are None.
"""

from __future__ import annotations

GIB = 2**30


def vm_hwm_gib() -> float | None:
    """This process's peak resident memory (VmHWM) in GiB; None off Linux."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024 / GIB
    except OSError:
        pass
    return None


def _reset_host_peak() -> None:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


class PhasePeak:
    process_peak_gib: float | None = None  # across phases of this process (the resets lose it otherwise)

    def __init__(self) -> None:
        self.host_gib: float | None = None
        self.gpu_gib: float | None = None

    def __enter__(self) -> "PhasePeak":
        before = vm_hwm_gib()
        if before is not None:
            PhasePeak.process_peak_gib = max(PhasePeak.process_peak_gib or 0.0, before)
        _reset_host_peak()
        import torch
        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()
        return self

    def __exit__(self, *exc) -> None:
        self.host_gib = vm_hwm_gib()
        if self.host_gib is not None:
            PhasePeak.process_peak_gib = max(PhasePeak.process_peak_gib or 0.0, self.host_gib)
        import torch
        if torch.cuda.is_available():
            self.gpu_gib = torch.cuda.max_memory_allocated() / GIB
