"""The one execution path's mapping (pure parts): a scripted event sequence through ``relay``.

A real run cannot be made to fail between two halves of a rich-channel frame on demand, so the
events come from a list here; the kernel and magics suites run ``relay`` against real sessions.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from typing import Any, cast

import pytest

from backendai_jupyter.client import (
    ConsoleItem,
    Execution,
    Finished,
    Output,
    SessionError,
    WaitingInput,
)
from backendai_jupyter.richchannel import encode_frame
from backendai_jupyter.workspace import relay

NONCE = "n0nce-for-tests-123"


class Script:
    """Yields ``events``; raises ``error`` after them, if given."""

    def __init__(self, events: Sequence[object], error: Exception | None = None) -> None:
        self.events, self.error = list(events), error
        self.inputs: list[str] = []

    def __aiter__(self) -> AsyncIterator[object]:
        return self._run()

    async def _run(self) -> AsyncIterator[object]:
        for ev in self.events:
            yield ev
        if self.error is not None:
            raise self.error

    async def send_input(self, text: str) -> None:
        self.inputs.append(text)


class Collect:
    def __init__(self, answer: str | None = None) -> None:
        self.shown: list[tuple[str, dict[str, Any]]] = []
        self.answer = answer

    def publish(self, msg_type: str, content: dict[str, Any], *, metadata: Any = None,
                buffers: Any = None) -> None:
        self.shown.append((msg_type, content))

    async def ask(self, prompt: str, password: bool) -> str | None:
        return self.answer

    def notice(self, event: object) -> None:
        pass


def out(text: str, kind: str = "stdout") -> Output:
    return Output(ConsoleItem(kind, text))


DISPLAY = encode_frame(NONCE, {"t": "msg", "msg_type": "display_data",
                               "content": {"data": {"text/plain": "d"}, "metadata": {}}})


def go(script: Script, sink: Collect, nonce: str | None = NONCE) -> Any:
    return asyncio.run(relay(cast(Execution, script), sink, nonce=nonce, execution_count=3))


def test_order_and_frames_split_across_chunks() -> None:
    sink = Collect()
    half = len(DISPLAY) // 2
    outcome = go(Script([out("a\n" + DISPLAY[:half]), out(DISPLAY[half:] + "b\n"),
                         out("e\n", "stderr"), Finished(0)]), sink)
    assert [(t, c.get("text", c.get("data"))) for t, c in sink.shown] == [
        ("stream", "a\n"), ("display_data", {"text/plain": "d"}), ("stream", "b\n"),
        ("stream", "e\n")]
    assert outcome.exit_code == 0 and outcome.stderr_tail == "e\n"


def test_output_before_a_failure_is_never_lost() -> None:
    sink = Collect()
    # The stream dies while a frame is half received: what came is shown, then the error.
    with pytest.raises(SessionError):
        go(Script([out("printed\n" + DISPLAY[:10])], SessionError("stream closed")), sink)
    assert sink.shown[0] == ("stream", {"name": "stdout", "text": "printed\n"})
    assert "".join(c["text"] for _, c in sink.shown) == "printed\n" + DISPLAY[:10]


@pytest.mark.parametrize(("answer", "nonce", "sent"), [
    ("Ada", NONCE, "Ada"), (None, NONCE, "\x04\x04bai-no-stdin"), (None, None, "\x04"),
])
def test_input_answers(answer: str | None, nonce: str | None, sent: str) -> None:
    script = Script([out("name? "), WaitingInput("name? "), Finished(0)])
    go(script, Collect(answer), nonce)
    assert script.inputs == [sent]
