"""A memory cgroup per sandbox worker: one limit on everything a program uses, however it allocates.

What: ``ProgramCgroup.create(name)`` makes a memory cgroup next to (v2: below) this process's own,
or returns None when the machine does not let us (not root, no memory controller, read-only
cgroupfs); ``adopt(pid)`` moves the worker's zygote in, ``set_limit(bytes)``, ``oom_kills()``,
``shmem()``, ``remove()``.
Why: ``RLIMIT_AS`` is per process and counts only mappings, so a program that forks 32 children, or
fills memfds / SysV shm / tmpfs files it has unmapped, used 5x its limit on a host with no swap.
A cgroup charges every page (anonymous, page tables, shmem, tmpfs) to the program however many
processes it spreads them over, and its OOM killer acts at the limit.
How: the zygote, which forks every program of its worker, lives in the cgroup, so each program
starts inside it; the zygote's own warm pages were charged before the move and stay where they were
(neither v1 nor v2 moves charges on migration), so the limit is the program's memory. Works with
cgroup v1 (``memory.limit_in_bytes``, ``memory.oom_control``: this machine, where the memory
controller is a v1 hierarchy) and v2 (``memory.max``, ``memory.events``; in our own cgroup if its
``cgroup.subtree_control`` has or accepts ``+memory``, else in its parent's if that one has it and
lets us write; written to the kernel's documented interface, untested here because this machine
binds the memory controller to v1).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

MOUNTS = Path("/proc/self/mountinfo")
OWN = Path("/proc/self/cgroup")


class ProgramCgroup:
    """One memory cgroup; see the module docstring."""

    def __init__(self, path: Path, version: int):
        self.path, self.version = path, version
        self.limit: int | None = None

    @classmethod
    def create(cls, name: str) -> ProgramCgroup | None:
        """A new cgroup ``name`` under ours, or None when this machine gives us none."""
        for version, parent in _candidates():
            _remove_stale(parent)
            path = parent / name
            try:
                path.mkdir()
            except FileExistsError:
                pass
            except OSError:
                continue
            group = cls(path, version)
            if group._usable():
                return group
            group.remove()
        return None

    @property
    def kind(self) -> str:
        return f"cgroup-v{self.version}"

    def _usable(self) -> bool:
        return (self.path / ("memory.max" if self.version == 2 else "memory.limit_in_bytes")).exists()

    def adopt(self, pid: int) -> None:
        (self.path / "cgroup.procs").write_text(str(pid))

    def set_limit(self, limit: int) -> None:
        """At most ``limit`` bytes of memory and no swap for everything in the cgroup."""
        if limit == self.limit:
            return
        if self.version == 2:
            self._write("memory.max", limit)
            self._write("memory.swap.max", 0, optional=True)
        else:
            # v1 wants memsw (memory + swap) >= memory at every moment: raise it first, lower it last.
            raising = limit > int((self.path / "memory.limit_in_bytes").read_text())
            if raising:
                self._write("memory.memsw.limit_in_bytes", limit, optional=True)
            self._write("memory.limit_in_bytes", limit)
            if not raising:
                self._write("memory.memsw.limit_in_bytes", limit, optional=True)
            self._write("memory.swappiness", 0, optional=True)
        self.limit = limit

    def _write(self, name: str, value: int, optional: bool = False) -> None:
        try:
            (self.path / name).write_text(str(value))
        except FileNotFoundError:
            if not optional:
                raise

    def oom_kills(self) -> int:
        """How many processes the kernel's OOM killer ended in this cgroup so far."""
        name = "memory.events" if self.version == 2 else "memory.oom_control"
        return self._field(name, "oom_kill")

    def shmem(self) -> int:
        """Bytes of shared memory (tmpfs, SysV shm, memfd) still charged here."""
        return self._field("memory.stat", "shmem" if self.version == 2 else "total_shmem")

    def _field(self, name: str, key: str) -> int:
        for line in (self.path / name).read_text().splitlines():
            k, _, v = line.partition(" ")
            if k == key:
                return int(v)
        return 0

    def wait_shmem_below(self, limit: int, timeout: float) -> bool:
        """Wait for the kernel to free what an ended program left (an IPC namespace is freed
        asynchronously); True once shmem is below ``limit`` bytes."""
        deadline = time.monotonic() + timeout
        while self.shmem() >= limit:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.001)
        return True

    def remove(self) -> None:
        """Remove the cgroup (it must hold no process; retried briefly while the last ones exit)."""
        for _ in range(100):
            try:
                self.path.rmdir()
                return
            except FileNotFoundError:
                return
            except OSError:
                time.sleep(0.01)


def _candidates() -> list[tuple[int, Path]]:
    """(version, the cgroup dir to create ours in), best first: v2 if it offers memory, then v1."""
    v2_mount, v1_mount = None, None
    for line in MOUNTS.read_text().splitlines():
        left, _, right = line.partition(" - ")
        fields, fs = left.split(), right.split()
        if fs[0] == "cgroup2":
            v2_mount = v2_mount or Path(fields[4])
        elif fs[0] == "cgroup" and "memory" in fs[2].split(","):
            v1_mount = v1_mount or Path(fields[4])
    own = {}
    for line in OWN.read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        own[controllers] = path.lstrip("/")
    found = []
    if v2_mount is not None and "" in own:
        mine = v2_mount / own[""]
        # Below our own cgroup if it may have children with memory (it usually holds processes, which
        # forbids that), else next to it, in the parent that gave ours the memory controller.
        parents = [(mine, True)] + ([(mine.parent, False)] if mine != v2_mount else [])
        for parent, ours in parents:
            if _memory_delegated(parent, may_enable=ours):
                found.append((2, parent))
                break
    if v1_mount is not None:
        path = next((p for c, p in own.items() if "memory" in c.split(",")), None)
        if path is not None:
            found.append((1, v1_mount / path))
    return found


def _memory_delegated(parent: Path, may_enable: bool) -> bool:
    """Whether cgroups made in ``parent`` get the memory controller (enabling it in a cgroup of
    our own; never in one that is not: that would change what its other children get)."""
    control = parent / "cgroup.subtree_control"
    try:
        if "memory" in control.read_text().split():
            return True
        if not may_enable or "memory" not in (parent / "cgroup.controllers").read_text().split():
            return False
        control.write_text("+memory")  # fails (EBUSY) when processes live in parent itself
        return True
    except OSError:
        return False


def host_pid(root: int, nspid: int) -> int | None:
    """The host pid of the descendant of ``root`` that the pid namespace one level below ours
    (the sandbox's) calls ``nspid``."""
    frontier, seen = [root], set()
    while frontier:
        pid = frontier.pop()
        if pid in seen:
            continue
        seen.add(pid)
        try:
            status = Path(f"/proc/{pid}/status").read_text()
            children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        except OSError:
            continue
        ns = next((line.split()[1:] for line in status.splitlines() if line.startswith("NSpid:")), [])
        if pid != root and len(ns) > 1 and int(ns[1]) == nspid:
            return pid
        frontier.extend(int(c) for c in children)
    return None


def _remove_stale(parent: Path) -> None:
    """Remove the (empty) cgroups that parents killed before they could remove their own left."""
    for path in parent.glob("rlspec-sandbox-*-*"):
        pid = path.name.split("-")[2]
        if pid.isdigit() and not Path(f"/proc/{pid}").exists():
            try:
                path.rmdir()
            except OSError:
                pass  # still holds a process, or another parent got there first


def tag() -> str:
    """A name prefix unique to this process (cgroups outlive a crashed parent; the pid tells whose)."""
    return f"rlspec-sandbox-{os.getpid()}"
