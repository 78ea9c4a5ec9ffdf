"""Facts about the machine and this process: CPU, commit, load, memory."""

from __future__ import annotations

import ctypes
import datetime
import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

from .common import bench_order
from .reference import best_build_us


def git_commit() -> tuple[str, bool | None]:
    root = Path(__file__).resolve().parents[2]  # the checkout: tui/bench/machine.py
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True,
                              timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "engine", "tui"], cwd=root,
                               capture_output=True, text=True, timeout=10, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown", None
    return head or "unknown", bool(dirty)


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def product_build_us() -> float:
    """Microseconds to build the product's `Order` as the workloads do (best of several):
    beside the yard stick, it shows what the product's own Order costs today."""
    return best_build_us(lambda i: bench_order("c", i))


def machine_info(quick: bool) -> dict[str, Any]:
    commit, dirty = git_commit()
    try:
        load = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        load = None
    return {
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "cpu_model": cpu_model(),
        "git_commit": commit,
        "git_dirty": dirty,
        "load_average_at_start": load,
        "timestamp": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "quick": quick,
    }


def peak_rss_bytes() -> int:
    try:
        import resource
    except ImportError:  # Windows: psutil's peak working set
        import psutil

        info = psutil.Process().memory_info()
        return int(getattr(info, "peak_wset", info.rss))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024  # Linux reports kB


def rss_mb() -> float:
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return peak_rss_bytes() / 2**20  # elsewhere: the peak, the best there is without psutil


class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]


def heap_figures() -> dict[str, Any]:
    """Where RSS goes: Python's live allocations (`sys.getallocatedblocks`, thousands)
    and, with glibc, the C heap in use and held free. Growth in "held free" while the
    live figures stay level is the allocator keeping memory, not a leak. Without glibc
    only the first figure is given."""
    figures: dict[str, Any] = {"py_blocks_k": sys.getallocatedblocks() // 1000}
    try:
        libc = ctypes.CDLL("libc.so.6")
        mallinfo2 = libc.mallinfo2
    except (OSError, AttributeError):
        return figures
    mallinfo2.restype = _MallInfo2
    info = mallinfo2()
    figures["malloc_inuse_mb"] = round((info.uordblks + info.hblkhd) / 2**20, 1)
    figures["malloc_free_mb"] = round(info.fordblks / 2**20, 1)
    return figures
