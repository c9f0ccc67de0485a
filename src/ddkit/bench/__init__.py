"""Benchmark harness: suites as data, a runner that records accuracy, time and memory."""

from ddkit.bench.runner import machine_info, run_suite
from ddkit.bench.suites import SUITES, Suite

__all__ = ["SUITES", "Suite", "machine_info", "run_suite"]
