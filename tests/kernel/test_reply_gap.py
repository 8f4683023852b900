"""The gap between a widget cell's last message and its reply (jupyter/nbclient#312).

The sink publishes through the kernel's real jupyter_client ``Session`` onto a real zmq socket;
what is checked is only when ``settle()`` lets the reply go.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import zmq
from jupyter_client.session import Session

from backendai_jupyter.kernel.sink import REPLY_GAP, IOPubSink


@dataclass
class Kernel:
    session: Any
    iopub_socket: Any


@pytest.fixture
def kernel() -> Iterator[Kernel]:
    ctx = zmq.Context()
    pub = ctx.socket(zmq.PUB)
    pub.bind("inproc://iopub")
    try:
        yield Kernel(Session(key=b""), pub)
    finally:
        pub.close(0)
        ctx.term()


async def settle_time(sink: IOPubSink) -> float:
    t0 = time.monotonic()
    await sink.settle()
    return time.monotonic() - t0


STREAM = ("stream", {"name": "stdout", "text": "x\n"})
COMM = ("comm_msg", {"comm_id": "c", "data": {"method": "update", "state": {"msg_id": "m"}}})


@pytest.mark.parametrize(
    ("messages", "waits"),
    [
        ((), False),  # nothing published
        ((STREAM, STREAM), False),  # plain output: the reply goes at once
        ((COMM,), True),  # widget traffic
        ((COMM, STREAM), True),  # output after widget traffic may be captured by an Output
    ],
)
async def test_settle_waits_only_after_widget_traffic(
    kernel: Kernel, messages: tuple[tuple[str, dict[str, Any]], ...], waits: bool
) -> None:
    sink = IOPubSink(kernel, {"header": {"msg_id": "m"}})
    for msg_type, content in messages:
        sink.publish(msg_type, content)
    took = await settle_time(sink)
    if waits:
        assert took >= REPLY_GAP * 0.9
    else:
        assert took < REPLY_GAP / 2


async def test_a_silent_cell_never_waits(kernel: Kernel) -> None:
    sink = IOPubSink(kernel, {"header": {"msg_id": "m"}}, silent=True)
    sink.publish(*COMM)
    assert await settle_time(sink) < REPLY_GAP / 2


async def test_the_gap_counts_from_the_last_message(kernel: Kernel) -> None:
    sink = IOPubSink(kernel, {"header": {"msg_id": "m"}})
    sink.publish(*COMM)
    time.sleep(REPLY_GAP)  # the cell went on for longer than the gap: nothing left to wait
    assert await settle_time(sink) < REPLY_GAP / 2
