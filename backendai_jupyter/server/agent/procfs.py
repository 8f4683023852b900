"""What ``/proc/<pid>/stat`` says about a process (stdlib only: :mod:`.limits` loads this file by
path, because it also runs as a script outside the package)."""

from __future__ import annotations

from pathlib import Path

__all__ = ["is_alive", "start_time"]


def _fields(pid: int) -> list[str] | None:
    """The fields after the command name (which may hold spaces and parentheses)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat[stat.rfind(")") + 2 :].split()


def start_time(pid: int) -> str | None:
    """Field 22 (start time in clock ticks) of a live process, ``None`` for a gone or zombie one.

    A pid and its start time name one process: a recycled pid has another start time."""
    fields = _fields(pid)
    if fields is None or fields[0] == "Z":
        return None
    return fields[19]


def is_alive(pid: int) -> bool:
    """The process exists and is not a zombie."""
    return start_time(pid) is not None
