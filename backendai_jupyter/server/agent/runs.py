"""A session's runs: what one execution produces, and the session's queue of them.

The agent keeps a run's records until the client has read its final result; a new run waits for
the previous one to finish. :class:`SessionRuns` holds that state on the session object (not in
module globals), and everything waits on asyncio primitives: the previous run's task, the run's
record queue, and one pending ``get`` carried from one REST long-poll to the next.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

__all__ = ["RECORD_PIECE", "Record", "Run", "SessionRuns", "text_pieces"]

Record = tuple[str, Any]

#: The most text one stdout/stderr record holds. A kernel printing fast sends tens of MB in
#: one stream message; cut into pieces, it is forwarded (and decoded by the client) piece by
#: piece, and no later hop needs to hold all of it at once.
RECORD_PIECE = 1 << 20


def text_pieces(text: str, size: int = RECORD_PIECE) -> list[str]:
    """``text`` cut into consecutive pieces of at most ``size`` characters (one when short)."""
    if len(text) <= size:
        return [text]
    return [text[i : i + size] for i in range(0, len(text), size)]

#: Runs whose task ended but whose final result nobody has read yet, kept per session so that a
#: client that comes back late can still read it (the oldest is dropped beyond this).
UNREAD_KEPT = 8


@dataclass
class Run:
    """One execution: records flow out through ``records``; ``input()`` answers flow in."""

    run_id: str
    records: asyncio.Queue[Record] = field(default_factory=asyncio.Queue)
    inputs: asyncio.Queue[str] = field(default_factory=asyncio.Queue)
    #: The client has read the final (``finished``) result.
    finished: bool = False
    task: asyncio.Task[None] | None = None
    #: A ``records.get()`` a long-poll gave up waiting for; the next poll takes it over, so a
    #: record is never lost between two requests.
    getter: asyncio.Task[Record] | None = None

    @property
    def running(self) -> bool:
        return self.task is not None and not self.task.done()

    async def next_record(self, timeout: float) -> Record | None:
        """The next record, or ``None`` after ``timeout`` seconds (the wait carries over)."""
        getter = self.getter or asyncio.ensure_future(self.records.get())
        self.getter = None
        done, _ = await asyncio.wait({getter}, timeout=max(0.0, timeout))
        if not done:
            self.getter = getter
            return None
        return getter.result()

    def cancel(self) -> None:
        for task in (self.getter, self.task):
            if task is not None:
                task.cancel()


class SessionRuns:
    """The runs of one session, by run id; at most one runs at a time."""

    def __init__(self) -> None:
        self._runs: OrderedDict[str, Run] = OrderedDict()

    def get(self, run_id: str) -> Run | None:
        return self._runs.get(run_id)

    def current(self) -> Run | None:
        """The run still executing, if any."""
        return next((r for r in reversed(self._runs.values()) if r.running), None)

    async def wait_idle(self, timeout: float) -> bool:
        """Wait until no run executes; ``False`` when ``timeout`` passed first."""
        # Look again after every wake-up: two requests queued behind the same run both wake
        # when it ends, and the first one's new run must make the second wait (two runs on one
        # kernel client split its iopub messages between them, and one never sees its end).
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            busy = {r.task for r in self._runs.values() if r.task is not None and not r.task.done()}
            if not busy:
                return True
            left = deadline - loop.time()
            if left <= 0:
                return False
            await asyncio.wait(busy, timeout=left)

    def add(self, run: Run) -> None:
        """Register a new run; forget runs whose final result was read, and the oldest unread
        ones beyond :data:`UNREAD_KEPT`. A reused run id replaces the earlier run."""
        old = self._runs.pop(run.run_id, None)
        if old is not None:
            old.cancel()
        for rid in [rid for rid, r in self._runs.items() if r.finished and not r.running]:
            self._runs.pop(rid).cancel()
        idle = [rid for rid, r in self._runs.items() if not r.running]
        for rid in idle[: max(0, len(idle) - UNREAD_KEPT + 1)]:
            self._runs.pop(rid).cancel()
        self._runs[run.run_id] = run

    def close(self) -> None:
        """The session ends: cancel everything still waiting or running."""
        for run in self._runs.values():
            run.cancel()
        self._runs.clear()

    def __len__(self) -> int:
        return len(self._runs)

    def __contains__(self, run_id: object) -> bool:
        return run_id in self._runs
