"""What the client knows about a session's life: which statuses mean what, and how to destroy a
session without raising (clean-up paths: an interrupted run, a kernel's end, a cancelled job).

Pure apart from :func:`destroy_quietly`, which takes the destroy call as an argument (callers
use :meth:`~.sessions.Sessions.destroy_quietly`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from ._exceptions import BackendAIError, NotFoundError
from .outages import retry_outages

__all__ = [
    "DEAD_STATUSES",
    "ENDED_STATUSES",
    "FINISHED_STATUSES",
    "LIVE_STATUSES",
    "destroy_quietly",
    "has_ended",
]

#: The listing's "live" group: sessions that hold (or are about to hold) resources.
LIVE_STATUSES = (
    "PENDING",
    "SCHEDULED",
    "PREPARING",
    "PREPARED",
    "CREATING",
    "PULLING",
    "RUNNING",
    "RESTARTING",
    "RUNNING_DEGRADED",
    "TERMINATING",
    "RESIZING",
    "SUSPENDED",
    "BUILDING",
    "ERROR",
)
#: The listing's "dead" group (``ps --dead``): gone for good.
DEAD_STATUSES = ("TERMINATED", "CANCELLED")
#: Ended with an outcome to read (a batch session's ``result``): dead, or failed.
FINISHED_STATUSES = (*DEAD_STATUSES, "ERROR")
#: A session that runs no more code: finished, or on its way there.
ENDED_STATUSES = frozenset({"TERMINATING", *FINISHED_STATUSES})


def has_ended(status: str) -> bool:
    """Whether a session in ``status`` (any case) runs no more code."""
    return status.upper() in ENDED_STATUSES


async def destroy_quietly(
    destroy: Callable[[str], Awaitable[object]],
    session: str,
    *,
    outage_limit: float,
    timeout: float | None = 60.0,
    attempts: int = 1,
    retry_delay: float = 0.5,
    registering: bool = False,
) -> str | None:
    """Destroy ``session`` with ``destroy``, never raising a client error: ``None`` once it is
    gone (destroyed, or unknown to the manager), else one line saying why not.

    A manager outage is waited out (up to ``outage_limit``); another failure is tried again,
    ``retry_delay`` seconds later, up to ``attempts`` tries in all (a session still starting
    refuses to go). With ``registering`` (a create was interrupted: the manager may not know
    the name yet) "not found" is tried again too. ``timeout`` bounds the whole.
    """
    async def tries() -> str | None:
        why = ""
        for attempt in range(1, attempts + 1):
            try:
                await retry_outages(lambda: destroy(session), outage_limit)
                return None
            except NotFoundError as e:
                if not registering or attempt == attempts:
                    return None
                why = str(e)
            except BackendAIError as e:
                why = str(e)
            if attempt < attempts:
                await asyncio.sleep(retry_delay)
        return why

    try:
        return await asyncio.wait_for(tries(), timeout)
    except asyncio.TimeoutError:
        return f"no answer within {timeout:g} s"
