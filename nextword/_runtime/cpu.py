"""How many CPU threads an engine should use on this machine, by default.

Matrix-vector work (one decode step) is bound by memory bandwidth and by the cores' vector
units; two hardware threads of one core share those units, so one thread per *physical* core
is the sweet spot, and more threads than the CPUs this process may really use makes ggml's and
OpenMP's spinning barriers wait for descheduled threads. The count therefore takes, in turn:
the CPUs in this process's affinity mask, the CPU quota of its cgroup (containers), and the
physical cores among the allowed CPUs (from Linux's topology files).
"""

from __future__ import annotations

import math
import os
from pathlib import Path

__all__ = ["cgroup_cpu_limit", "default_threads", "physical_cores", "usable_cpus"]

_SYS_CPU = Path("/sys/devices/system/cpu")
_CGROUP = Path("/sys/fs/cgroup")


def usable_cpus() -> list[int]:
    """The CPU ids this process may run on (its affinity mask; all CPUs where there is none)."""
    try:
        return sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return list(range(os.cpu_count() or 1))


def cgroup_cpu_limit(root: Path = _CGROUP) -> float | None:
    """The CPU quota of this process's cgroup in CPUs (e.g. 1.5), or None when unlimited/unknown.

    Reads cgroup v2 ``cpu.max`` (``"max 100000"`` or ``"150000 100000"``), else cgroup v1
    ``cpu/cpu.cfs_quota_us`` and ``cpu.cfs_period_us``.
    """
    try:
        quota, period = (root / "cpu.max").read_text().split()[:2]
        if quota == "max":
            return None
        return int(quota) / int(period)
    except (OSError, ValueError):
        pass
    try:
        quota_us = int((root / "cpu" / "cpu.cfs_quota_us").read_text())
        period_us = int((root / "cpu" / "cpu.cfs_period_us").read_text())
    except (OSError, ValueError):
        return None
    return quota_us / period_us if quota_us > 0 and period_us > 0 else None


def physical_cores(cpus: list[int] | None = None, sys_cpu: Path = _SYS_CPU) -> int | None:
    """Physical cores among ``cpus`` (default: :func:`usable_cpus`), from each CPU's package and
    core id; None where Linux's topology files are missing."""
    cores: set[tuple[str, str]] = set()
    for cpu in usable_cpus() if cpus is None else cpus:
        topology = sys_cpu / f"cpu{cpu}" / "topology"
        try:
            package = (topology / "physical_package_id").read_text().strip()
            core = (topology / "core_id").read_text().strip()
        except OSError:
            return None
        cores.add((package, core))
    return len(cores) or None


def default_threads() -> int:
    """Engine threads for this process: one per physical core it may use, never more than its
    CPU quota (rounded up) or its allowed CPUs, at least one.

    On a 2-core machine without hyper-threading this is 2, where llama-cpp-python's own default
    (``cpu_count() // 2``) is 1; on 8 cores with 2 hardware threads each it is 8 (16 CPUs).
    """
    cpus = usable_cpus()
    n = physical_cores(cpus) or max(1, len(cpus) // 2)
    n = min(n, len(cpus))
    limit = cgroup_cpu_limit()
    if limit is not None:
        n = min(n, max(1, math.ceil(limit)))
    return max(1, n)
