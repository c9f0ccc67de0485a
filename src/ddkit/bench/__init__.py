"""Benchmark harness: suites as data, a runner that records accuracy, time and memory."""

from ddkit.bench.runner import run_suite
from ddkit.bench.selection import CellSelection
from ddkit.bench.suites import SUITES, Suite
from ddkit.meter import machine_info

__all__ = ["SUITES", "CellSelection", "Suite", "machine_info", "run_suite"]
