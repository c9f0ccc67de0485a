"""Memory and time meters for benchmarks (one implementation, used by every script).

Resident memory is read from ``/proc/self/statm`` where it exists (Linux), else from
``getrusage``. :class:`PeakRSS` samples it on a thread, because PyTorch's allocations are not
seen by ``tracemalloc``; before it starts, freed heap memory is handed back to the system
(glibc ``malloc_trim``) so that one measured block does not hide the next one's allocations.
"""

from __future__ import annotations

import os
import platform
import resource
import threading
import time
from pathlib import Path
from typing import Any

from ddkit.context import BUDGET_ENV, memory_budget
from ddkit.errors import ConfigError

__all__ = [
    "BUDGET_ENV",
    "PeakRSS",
    "check_memory",
    "high_water_mb",
    "memory_budget",
    "peak_rss_mb",
    "release_free_memory",
    "reset_high_water",
    "rss_bytes",
]

_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def check_memory(what: str, nbytes: int, fix: str, error: type[Exception] = ConfigError) -> None:
    """Refuse (``error``, one line) before allocating ``nbytes`` for ``what`` when they exceed
    :func:`memory_budget`; ``fix`` says what to change."""
    budget = memory_budget()
    if nbytes > budget:
        raise error(
            f"{what} would take {nbytes / 2**30:,.1f} GiB, more than the memory budget of "
            f"{budget / 2**30:,.1f} GiB (${BUDGET_ENV}); {fix}"
        )


def peak_rss_mb() -> float:
    """The process's peak resident set size since it started (``ru_maxrss``), in MiB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def rss_bytes() -> int:
    """The process's resident set size now, in bytes."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * _PAGE
    except OSError:  # no procfs: the peak is the best available figure
        return int(peak_rss_mb() * 2**20)


def process_seconds() -> float:
    """Seconds since this process started (Linux: from ``/proc``; elsewhere 0.0), e.g. what a
    command spent starting and loading before the work it estimates."""
    try:
        with open("/proc/self/stat") as f:
            start_ticks = int(f.read().rsplit(")", 1)[1].split()[19])
        with open("/proc/uptime") as f:
            uptime = float(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 0.0
    return max(uptime - start_ticks / os.sysconf("SC_CLK_TCK"), 0.0)


def high_water_mb() -> float:
    """The resident high-water mark (``VmHWM``) since :func:`reset_high_water`, in MiB (Linux)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    raise OSError("VmHWM is not in /proc/self/status")


def reset_high_water() -> None:
    """Reset the kernel's resident high-water mark to the current size (Linux)."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def release_free_memory() -> None:
    """Hand freed heap memory back to the system (glibc only; a no-op elsewhere)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


class PeakRSS:
    """Context manager: the peak resident memory of a block above its level at entry, sampled
    every ``dt`` seconds; also the block's wall and CPU seconds.

    >>> with PeakRSS() as m:
    ...     work()
    >>> m.extra_mb, m.seconds, m.cpu_seconds
    """

    def __init__(self, dt: float = 0.001) -> None:
        self.dt = dt
        self.base = self.peak = 0
        self.seconds = self.cpu_seconds = 0.0

    def __enter__(self) -> PeakRSS:
        release_free_memory()
        self.base = self.peak = rss_bytes()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()
        self._t0, self._c0 = time.perf_counter(), time.process_time()
        return self

    def _watch(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, rss_bytes())
            time.sleep(self.dt)

    def __exit__(self, *exc: Any) -> None:
        self.seconds = time.perf_counter() - self._t0
        self.cpu_seconds = time.process_time() - self._c0
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_bytes())

    @property
    def extra_mb(self) -> float:
        """Peak resident memory above the level at entry, in MiB."""
        return (self.peak - self.base) / 2**20


#: /proc/cpuinfo flags that change which kernels oneDNN runs (and so the last bits of results)
CPU_EXTENSIONS = frozenset({"avx512_bf16", "avx512_fp16", "avx512_vnni", "amx_tile", "amx_bf16"})


def machine_info() -> dict[str, Any]:
    """The machine a measurement ran on: CPU model, torch's vector capability, cores, threads,
    versions, and its first GPU's name where torch sees one (else ``None``)."""
    import torch

    cpu, flags = None, set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and cpu is None:
                cpu = value.strip()
            elif key.strip() == "flags" and not flags:
                flags = set(value.split())
    except OSError:
        pass
    return {
        "cpu": cpu or platform.processor() or platform.machine(),
        # the matrix extensions oneDNN may pick kernels by: two CPUs of one model name can differ
        # here, and so can their float results (the same set evaluated gives other accuracies)
        "cpu_extensions": sorted(flags & CPU_EXTENSIONS),
        "capability": torch.backends.cpu.get_cpu_capability(),  # the vector width torch uses
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }
