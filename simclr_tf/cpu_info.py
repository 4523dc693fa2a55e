"""What the kernel says about the CPU (/proc/cpuinfo), without importing TensorFlow.

Read by `--precision=auto` (which instruction sets compute bfloat16) and by the benchmarks,
whose figures name the CPU they were measured on.
"""

from __future__ import annotations

import platform

CPUINFO = "/proc/cpuinfo"


def _first_value(key: str, cpuinfo_path: str) -> str | None:
    """The value of the first `key : value` line (every core repeats them), None if absent or unreadable."""
    try:
        with open(cpuinfo_path, encoding="utf-8", errors="replace") as cpuinfo:
            for line in cpuinfo:
                name, _, value = line.partition(":")
                if name.strip() == key:
                    return value.strip()
    except OSError:
        pass
    return None


def cpu_flags(cpuinfo_path: str = CPUINFO) -> frozenset[str]:
    """The instruction-set flags the kernel reports for the CPU (empty where there is no /proc/cpuinfo)."""
    return frozenset((_first_value("flags", cpuinfo_path) or "").split())


def cpu_model(cpuinfo_path: str = CPUINFO) -> str:
    """The CPU's model name, or what the platform module knows where /proc/cpuinfo has none."""
    return _first_value("model name", cpuinfo_path) or platform.processor() or platform.machine()
