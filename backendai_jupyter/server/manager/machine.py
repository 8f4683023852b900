"""What this machine has to give sessions: the CPUs this process may run on
(``os.sched_getaffinity``), ``MemTotal`` from ``/proc/meminfo`` and the GPUs ``nvidia-smi`` lists,
each overridable by ``serve --capacity``.

Apart from the scheduler because it is probing, not scheduling: it runs once at start, touches
``/proc`` and ``nvidia-smi``, and knows nothing of sessions or the queue.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

from ..agent.limits import parse_amount

__all__ = ["Capacity", "detect_capacity", "detect_gpus"]


@dataclass
class Capacity:
    cpu_ids: list[int]
    cpu: Decimal
    mem: Decimal
    gpus: list[int] = field(default_factory=list)


def detect_gpus() -> list[int]:
    """GPU indices from ``nvidia-smi`` (empty without NVIDIA GPUs or driver)."""
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return []
    try:
        out = subprocess.run(
            [exe, "--query-gpu=index,memory.total", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [int(line.split(",")[0]) for line in out.splitlines() if line.strip()]


def _mem_total() -> Decimal:
    with contextlib.suppress(OSError, ValueError, StopIteration):
        lines = Path("/proc/meminfo").read_text().splitlines()
        kib = next(line.split()[1] for line in lines if line.startswith("MemTotal:"))
        return Decimal(int(kib) * 1024)
    return Decimal(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))


def detect_capacity(overrides: dict[str, str] | None = None) -> Capacity:
    overrides = overrides or {}
    cpu_ids = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    cpu_ids = cpu_ids or list(range(os.cpu_count() or 1))
    cpu = Decimal(len(cpu_ids))
    if "cpu" in overrides:
        cpu = parse_amount("cpu", overrides["cpu"])
    mem = parse_amount("mem", overrides["mem"]) if "mem" in overrides else _mem_total()
    gpus = detect_gpus()
    if "cuda.device" in overrides:
        gpus = gpus[: int(parse_amount("cuda.device", overrides["cuda.device"]))]
    return Capacity(cpu_ids=cpu_ids, cpu=cpu, mem=mem, gpus=gpus)