"""What counts as a manager outage during a run, and how long to wait before the next try.

A run survives an outage by retrying the same request (REST ``continue`` with the same run id)
until the manager answers again or :attr:`~._config.ClientConfig.outage_limit` seconds pass.
:func:`outage_reason` and :func:`backoff_delay` are pure; :class:`Outage` counts one outage.

The one retry policy: :func:`next_retry` after each failed try (it says how long to wait, or
raises), and :func:`retry_outages`, which awaits a call again and again through an outage.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from ._exceptions import (
    APIError,
    BackendAIError,
    ClientError,
    ConnectError,
    ProtocolError,
    RequestTimeout,
)
from ._models import Reconnecting

__all__ = [
    "DEFAULT_OUTAGE_LIMIT",
    "Outage",
    "OutageTooLong",
    "backoff_delay",
    "next_retry",
    "outage_reason",
    "retry_outages",
]

T = TypeVar("T")

DEFAULT_OUTAGE_LIMIT = 300.0
_RETRY_STATUSES = {502: "bad gateway", 503: "service unavailable", 504: "gateway timeout"}


def backoff_delay(attempt: int, *, base: float = 0.5, cap: float = 4.0) -> float:
    """Seconds to wait before retry number ``attempt`` (1, 2, ...): doubling from ``base``, capped.

    The cap is small on purpose: a manager restart takes about 12 s and a user watches the cell.
    """
    if attempt < 1:
        return 0.0
    return min(cap, base * 2.0 ** (attempt - 1))


def outage_reason(error: BackendAIError) -> str | None:
    """One line saying why the manager is unreachable, or ``None`` if ``error`` is not an outage.

    Outages: a refused or cut connection, a timeout, and 502/503/504 answers (a manager shutting
    down answers 503 "connect again with the same run ID"). Every other answer (4xx, 500) and a
    malformed answer are real errors, not retried.
    """
    if isinstance(error, ConnectError):
        return "connection refused"
    if isinstance(error, RequestTimeout):
        return "no answer in time"
    if isinstance(error, ProtocolError):
        return None
    if isinstance(error, ClientError):
        return "connection lost"
    if isinstance(error, APIError) and error.status in _RETRY_STATUSES:
        return f"{error.status} {error.title or _RETRY_STATUSES[error.status]}"
    return None


class OutageTooLong(ClientError):
    """The manager stayed unreachable for longer than the configured limit."""


class Outage:
    """One outage: counts attempts and elapsed time, and gives up after ``limit`` seconds."""

    def __init__(self, limit: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.limit = limit
        self._clock = clock
        self.started = clock()
        self.attempts = 0

    @property
    def elapsed(self) -> float:
        return self._clock() - self.started

    def failed(self, reason: str) -> Reconnecting:
        """Record one more failed attempt; raise :class:`OutageTooLong` past the limit."""
        self.attempts += 1
        elapsed = self.elapsed
        if elapsed >= self.limit:
            raise OutageTooLong(
                f"the Backend.AI manager was unreachable for {elapsed:.0f} s ({reason}); "
                "gave up waiting. The session is kept; the run may still be going on in it"
            )
        delay = min(backoff_delay(self.attempts), max(0.0, self.limit - elapsed))
        return Reconnecting(reason=reason, elapsed=elapsed, attempt=self.attempts, delay=delay)


def next_retry(
    error: BackendAIError, outage: Outage | None, limit: float
) -> tuple[Outage, Reconnecting]:
    """After a failed try: the outage so far (pass it to the next failure) and the notice that
    says how long to wait before trying again. ``error`` itself is raised when it is not an
    outage; :class:`OutageTooLong` once the outage has lasted ``limit`` seconds."""
    reason = outage_reason(error)
    if reason is None:
        raise error
    outage = outage or Outage(limit)
    return outage, outage.failed(reason)


async def retry_outages(
    attempt: Callable[[], Awaitable[T]],
    limit: float,
    *,
    on_retry: Callable[[Reconnecting], object] | None = None,
) -> T:
    """``await attempt()`` until it succeeds, waiting out a manager outage for up to ``limit``
    seconds (see :func:`next_retry`); ``on_retry`` sees each wait before it starts."""
    outage: Outage | None = None
    while True:
        try:
            return await attempt()
        except BackendAIError as e:
            outage, reconnecting = next_retry(e, outage, limit)
        if on_retry is not None:
            on_retry(reconnecting)
        await asyncio.sleep(reconnecting.delay)
