"""The client's one clean-up policy (``destroy_quietly``), its one outage retry
(``retry_outages``) and its status sets, table-tested with a scripted destroy call."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from backendai_jupyter.client import ConnectError, NotFoundError, ServerError
from backendai_jupyter.client.lifecycle import (
    DEAD_STATUSES,
    ENDED_STATUSES,
    FINISHED_STATUSES,
    LIVE_STATUSES,
    destroy_quietly,
    has_ended,
)
from backendai_jupyter.client.outages import OutageTooLong, retry_outages


class Script:
    """A destroy call that fails as scripted (``None``: succeeds), recording each try."""

    def __init__(self, outcomes: Sequence[BaseException | None]) -> None:
        self.outcomes = list(outcomes)
        self.calls = 0

    async def __call__(self, session: str) -> object:
        self.calls += 1
        outcome = self.outcomes.pop(0) if self.outcomes else None
        if outcome is not None:
            raise outcome
        return {}


def _server_error() -> ServerError:
    return ServerError(500, title="boom")


@pytest.mark.parametrize(
    ("outcomes", "kwargs", "expected", "calls"),
    [
        ([None], {}, None, 1),
        ([NotFoundError(404)], {}, None, 1),  # unknown = gone
        ([_server_error()], {}, "boom", 1),
        ([_server_error(), None], {"attempts": 2}, None, 2),
        ([_server_error(), _server_error()], {"attempts": 2}, "boom", 2),
        # an interrupted create: the name may not be registered yet
        ([NotFoundError(404), None], {"attempts": 4, "registering": True}, None, 2),
        ([NotFoundError(404)] * 4, {"attempts": 4, "registering": True}, None, 4),
        ([NotFoundError(404), None], {"attempts": 4}, None, 1),
        # an outage is waited out, not counted as a try
        ([ConnectError("down"), ConnectError("down"), None], {}, None, 3),
    ],
)
def test_destroy_quietly(
    outcomes: list[BaseException | None], kwargs: dict[str, object], expected: str | None,
    calls: int,
) -> None:
    destroy = Script(outcomes)
    why = asyncio.run(destroy_quietly(destroy, "s", outage_limit=30, retry_delay=0,
                                      **kwargs))  # type: ignore[arg-type]
    assert why == expected if expected is None else expected in str(why)
    assert destroy.calls == calls


def test_destroy_quietly_gives_up_after_the_timeout() -> None:
    async def hangs(session: str) -> object:
        await asyncio.sleep(10)
        return {}

    why = asyncio.run(destroy_quietly(hangs, "s", outage_limit=30, timeout=0.05))
    assert why == "no answer within 0.05 s"


def test_retry_outages_raises_other_errors_and_long_outages() -> None:
    with pytest.raises(ServerError):
        asyncio.run(retry_outages(lambda: Script([_server_error()])("s"), 30))
    seen: list[float] = []

    async def down() -> object:
        raise ConnectError("down")

    with pytest.raises(OutageTooLong):
        asyncio.run(retry_outages(down, 0.01, on_retry=lambda r: seen.append(r.delay)))
    assert seen  # each wait was announced before it started


@pytest.mark.parametrize(
    ("status", "ended"),
    [("RUNNING", False), ("terminating", True), ("TERMINATED", True), ("CANCELLED", True),
     ("ERROR", True), ("PENDING", False), ("", False)],
)
def test_has_ended(status: str, ended: bool) -> None:
    assert has_ended(status) is ended


def test_status_sets_nest() -> None:
    assert set(DEAD_STATUSES) < set(FINISHED_STATUSES) < ENDED_STATUSES
    assert not set(DEAD_STATUSES) & set(LIVE_STATUSES)
    assert ENDED_STATUSES - set(DEAD_STATUSES) <= set(LIVE_STATUSES)
