"""The live pump's pacing over REST (richchannel/remote/live.py): a cell's writer waits while its
output runs too far ahead of the answers, and never in the cases where nobody would answer."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from backendai_jupyter.richchannel.remote import live
from backendai_jupyter.richchannel.remote.live import Pump, message_content, message_type


@pytest.mark.parametrize(
    ("msg_or_type", "args", "kwargs", "kind", "content"),
    [
        ("stream", ({"text": "a"},), {}, "stream", {"text": "a"}),
        ("display_data", (), {"content": {"data": {}}}, "display_data", {"data": {}}),
        # ipykernel's streams send whole messages
        ({"header": {"msg_type": "stream"}, "content": {"text": "b"}}, (), {}, "stream",
         {"text": "b"}),
        ({"msg_type": "status", "content": {"execution_state": "idle"}}, (), {}, "status",
         {"execution_state": "idle"}),
    ],
)
def test_message_type_and_content(
    msg_or_type: Any, args: Any, kwargs: Any, kind: str, content: Any
) -> None:
    assert message_type(msg_or_type) == kind
    assert message_content(msg_or_type, args, kwargs) == content


def _pump(sent: int, *, flushing: bool = True, cell: Any = ("ident", {})) -> Pump:
    pump = Pump(kernel=None, prefix="\x1b]BAIF;x;", flush=flushing)
    pump.cell = cell
    pump.sent = sent
    pump.ahead_left = live.AHEAD_WAIT
    return pump


def _paced(pump: Pump) -> tuple[threading.Thread, list[float]]:
    took: list[float] = []

    def write() -> None:
        start = time.monotonic()
        pump.keep_pace()
        took.append(time.monotonic() - start)

    thread = threading.Thread(target=write)  # a thread the kernel did not start
    thread.start()
    return thread, took


def test_a_writer_far_ahead_waits_for_the_next_answer() -> None:
    pump = _pump(live.AHEAD_MAX + 1)
    thread, took = _paced(pump)
    time.sleep(0.2)
    assert thread.is_alive()  # still waiting: nothing was answered
    pump.answered(pump.sent)
    thread.join(5)
    assert not thread.is_alive() and 0.15 < took[0] < 5


@pytest.mark.parametrize(
    "case",
    [
        "within the limit",
        "websocket (nobody asks)",
        "no cell runs",
        "waited its share",
        "an input() waits",
    ],
)
def test_a_writer_does_not_wait(case: str) -> None:
    pump = {
        "within the limit": lambda: _pump(live.AHEAD_MAX),
        "websocket (nobody asks)": lambda: _pump(live.AHEAD_MAX + 1, flushing=False),
        "no cell runs": lambda: _pump(live.AHEAD_MAX + 1, cell=None),
        "waited its share": lambda: _pump(live.AHEAD_MAX + 1),
        "an input() waits": lambda: _pump(live.AHEAD_MAX + 1),
    }[case]()
    pump.user_input = case == "an input() waits"
    if case == "waited its share":
        pump.ahead_left = 0.0
    thread, took = _paced(pump)
    thread.join(5)
    assert not thread.is_alive() and took[0] < 1


def test_an_input_releases_a_waiting_writer() -> None:
    """A user's input() holds the pump's requests back: a writer waiting for one goes on."""
    pump = _pump(live.AHEAD_MAX + 1)
    thread, _ = _paced(pump)
    time.sleep(0.1)
    pump.user_input = True  # what the guarded input() sets, then it wakes the writers
    pump.answered(0)
    thread.join(5)
    assert not thread.is_alive()


def test_the_cells_end_releases_a_waiting_writer() -> None:
    pump = _pump(live.AHEAD_MAX + 1)
    thread, _ = _paced(pump)
    time.sleep(0.1)
    pump.cell = None  # end_cell: the cell is over, then every writer is woken
    pump.answered(0)
    thread.join(5)
    assert not thread.is_alive()
