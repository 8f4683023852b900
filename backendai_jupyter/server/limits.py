"""Real resource limits for session processes: CPU affinity and a memory cap.

Every session process (the ipykernel, batch steps, the startup command) is started through this
module's tiny launcher: ``python .../server/limits.py -- CMD...``. It reads the
limits from ``BJUP_LIMITS`` (JSON), applies them to *itself* and then ``exec``\\ s the command, so
the limits hold from the first instruction of the real program and are inherited by everything
it spawns — no ``preexec_fn`` (unsafe with threads) and no race after start.

Memory: a cgroup v2 ``memory.max`` when the server can create a child cgroup of its own one;
otherwise ``RLIMIT_DATA``. ``RLIMIT_DATA`` (heap + private writable mappings, Linux ≥ 4.7) is used
rather than ``RLIMIT_AS`` because an idle ipykernel already *reserves* ~220 MiB of address space
(thread stacks, arenas) while using ~130 MiB of data; an address-space cap of ``mem=256m`` would
kill the kernel at start instead of failing the user's oversized allocation.
"""

from __future__ import annotations

import json
import os
import re
import resource
import sys
from decimal import Decimal, InvalidOperation
from pathlib import Path

__all__ = [
    "ENV_VAR",
    "apply_limits",
    "cgroup_for_session",
    "format_amount",
    "launcher_argv",
    "parse_amount",
]

ENV_VAR = "BJUP_LIMITS"

_UNITS = {"": 1, "k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40, "p": 2**50, "e": 2**60}
_AMOUNT_RE = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*([kmgtpe]?)(i?b?)?\s*$", re.IGNORECASE)


def parse_amount(slot: str, value: str | int | float) -> Decimal:
    """Parse a slot amount the way the manager does: ``mem`` takes binary suffixes (``"1g"``).

    Raises ``ValueError`` for anything unparsable or negative.
    """
    text = str(value)
    if slot == "mem" or slot.endswith(".mem"):
        m = _AMOUNT_RE.match(text)
        if m is None:
            raise ValueError(f"invalid amount for {slot}: {text!r}")
        amount = Decimal(m.group(1)) * _UNITS[m.group(2).lower()]
        return amount.to_integral_value()
    try:
        amount = Decimal(text)
    except InvalidOperation:
        raise ValueError(f"invalid amount for {slot}: {text!r}") from None
    if not amount.is_finite() or amount < 0:
        raise ValueError(f"invalid amount for {slot}: {text!r}")
    return amount


def format_amount(amount: Decimal) -> str:
    """Decimal → the manager's string form (``"1"``, ``"0.5"``, ``"1073741824"``)."""
    text = format(amount.normalize(), "f")
    return text


def launcher_argv(cmd: list[str]) -> list[str]:
    # Run this file as a script (stdlib only), not ``-m``: importing the package would pull in
    # aiohttp/jupyter_client for every process start.
    return [sys.executable, os.path.abspath(__file__), "--", *cmd]


def cgroup_for_session(session_id: str) -> Path | None:
    """Create a cgroup v2 child for a session if we may; ``None`` means "use rlimits"."""
    root = Path("/sys/fs/cgroup")
    if not (root / "cgroup.controllers").exists():
        return None  # cgroup v1 or none: not writable in a portable way
    try:
        own = Path("/proc/self/cgroup").read_text().splitlines()
        rel = next(line.split("::", 1)[1] for line in own if line.startswith("0::"))
        parent = root / rel.lstrip("/")
        if "memory" not in (parent / "cgroup.subtree_control").read_text().split():
            return None
        child = parent / f"bjup-{session_id}"
        child.mkdir(exist_ok=True)
        return child
    except (OSError, StopIteration):
        return None


def apply_limits(limits: dict[str, object]) -> None:
    """Apply ``{"cpus": [..], "mem": bytes, "cgroup": path}`` to the current process."""
    cpus = limits.get("cpus")
    if isinstance(cpus, list) and cpus and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {int(c) for c in cpus})
    mem = limits.get("mem")
    if isinstance(mem, int) and mem > 0:
        cgroup = limits.get("cgroup")
        applied = False
        if isinstance(cgroup, str):
            try:
                Path(cgroup, "memory.max").write_text(str(mem))
                Path(cgroup, "memory.swap.max").write_text("0")
                Path(cgroup, "cgroup.procs").write_text(str(os.getpid()))
                applied = True
            except OSError:
                applied = False
        if not applied:
            resource.setrlimit(resource.RLIMIT_DATA, (mem, mem))


def main(argv: list[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] == "--":
        args = args[1:]
    if not args:
        sys.exit("usage: python limits.py -- CMD [ARGS...]")
    raw = os.environ.pop(ENV_VAR, "")
    if raw:
        apply_limits(json.loads(raw))
    os.execvp(args[0], args)


if __name__ == "__main__":
    main()
