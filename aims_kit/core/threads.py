"""How many threads torch may use: the cores this process may actually run on, not the machine's.

torch starts one intra-op thread per physical core of the machine. In a container limited by a
cgroup CPU quota, under ``taskset``, or with two kit processes on one small box (a notebook
kernel and an ``eval``, two students on a 2-core VM) that oversubscribes the cores, and spinning
OpenMP threads then slow each other 10-50x. The kit therefore sets the thread count from the CPU
affinity and the cgroup quota, or from the ``threads`` parameter (0: that automatic choice).
"""

from __future__ import annotations

import math
import os
import sys
from pathlib import Path

#: Threads per process asked for by ``python -m aims_kit run -p threads=N`` (0 or unset: automatic).
THREADS_ENV = "AIMS_KIT_THREADS"
CGROUP_ROOT = Path("/sys/fs/cgroup")


def affinity_cores() -> int:
    """CPUs the scheduler lets this process run on (``taskset``, cpusets)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def cgroup_quota_cores(root: Path = CGROUP_ROOT, proc_cgroup: Path = Path("/proc/self/cgroup")) -> int | None:
    """Whole CPUs allowed by a cgroup CPU quota (v2 ``cpu.max`` or v1 ``cpu.cfs_quota_us``), ``None`` if unlimited.

    A fractional quota rounds up (1.5 CPUs: 2 threads, each runs part of the time).
    """
    try:
        lines = proc_cgroup.read_text().splitlines()
    except OSError:
        return None
    limits = []
    for line in lines:
        _, controllers, path = line.split(":", 2)
        relative = path.lstrip("/")
        if controllers == "":  # cgroup v2: one unified hierarchy
            candidates = [(root / relative / "cpu.max", None), (root / "cpu.max", None)]
        elif "cpu" in controllers.split(","):
            folder = root / controllers
            candidates = [(folder / relative / "cpu.cfs_quota_us", folder / relative / "cpu.cfs_period_us"),
                          (folder / "cpu.cfs_quota_us", folder / "cpu.cfs_period_us")]
        else:
            continue
        for quota_file, period_file in candidates:
            quota = _read_quota(quota_file, period_file)
            if quota is not None:
                limits.append(quota)
                break
    return min(limits) if limits else None


def _read_quota(quota_file: Path, period_file: Path | None) -> int | None:
    try:
        if period_file is None:  # v2: "max 100000" or "150000 100000"
            quota, period = quota_file.read_text().split()[:2]
        else:
            quota, period = quota_file.read_text().strip(), period_file.read_text().strip()
    except (OSError, ValueError):
        return None
    if quota in ("max", "-1") or int(period) <= 0:
        return None
    return max(1, math.ceil(int(quota) / int(period)))


def available_cores() -> int:
    """The cores this process can really use: its CPU affinity, capped by a cgroup quota."""
    quota = cgroup_quota_cores()
    return min(affinity_cores(), quota) if quota else affinity_cores()


def requested_threads() -> int:
    """The ``threads`` parameter as the runner passed it (0: automatic); a bad value is an error."""
    raw = os.environ.get(THREADS_ENV, "").strip() or "0"
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"{THREADS_ENV}={raw!r}: the threads parameter must be a whole number (0: automatic)") from None
    if value < 0:
        raise ValueError(f"{THREADS_ENV}={raw!r}: the threads parameter must be 0 (automatic) or more")
    return value


#: The variables torch (OpenMP and MKL builds alike) and numpy's BLAS read their thread count from.
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")


def user_thread_variables() -> dict[str, int]:
    """Thread variables the user set to a positive whole number (the automatic choice respects them)."""
    found = {}
    for name in THREAD_VARIABLES:
        raw = os.environ.get(name, "").strip()
        if raw.isdigit() and int(raw) > 0:
            found[name] = int(raw)
    return found


def plan_threads(requested: int = 0) -> int:
    """The thread count :func:`configure_threads` applies: the parameter, else the user's variables, else the cores."""
    user = user_thread_variables()
    return requested if requested > 0 else (min(user.values()) if user else available_cores())


def describe(threads: int, requested: int = 0) -> str:
    """The one line that says what was chosen and why."""
    user = user_thread_variables()
    if requested:
        how = f"threads={requested} asked for"
    elif user:
        how = "from " + ", ".join(f"{name}={value}" for name, value in user.items()) + " in the environment"
    else:
        quota = cgroup_quota_cores()
        how = f"automatic from {affinity_cores()} CPUs in this process's affinity" + (f", cgroup quota {quota}" if quota else "")
    return f"torch threads per process: {threads} ({how}; set with -p threads=N)"


def configure_threads() -> int:
    """Apply the thread count to this process and the processes it starts; returns it.

    Before torch is imported, ``OMP_NUM_THREADS`` and ``MKL_NUM_THREADS`` decide torch's intra-op
    threads (and numpy's BLAS): they are set here, unless the user set one of them and asked for
    no explicit ``threads``. Once torch is imported, ``torch.set_num_threads`` applies the number.
    """
    requested = requested_threads()
    threads = plan_threads(requested)
    if requested or not user_thread_variables():
        for name in THREAD_VARIABLES:
            os.environ[name] = str(threads)
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(threads)
    return threads
