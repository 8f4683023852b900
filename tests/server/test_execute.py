"""Query-mode execution over REST and websocket: streaming, errors, input, rich output."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from backendai_jupyter.client import Client, Finished, Output, WaitingInput
from backendai_jupyter.server.agent.runs import RECORD_PIECE, Run, text_pieces
from backendai_jupyter.server.manager.execute import FORWARD_CHUNK, next_result

TRANSPORTS = ["rest", "websocket"]


async def _run(
    client: Client, sid: str, code: str, transport: str, answers: list[str] = ()
) -> tuple[list[Any], int | None]:  # type: ignore[assignment]
    run = client.sessions.execute(sid, code, transport=transport)  # type: ignore[arg-type]
    items: list[Any] = []
    exit_code = None
    pending = list(answers)
    async for ev in run:
        if isinstance(ev, Output):
            items.append((ev.item.kind, ev.item.data))
        elif isinstance(ev, WaitingInput):
            items.append(("waiting", ev.prompt, ev.is_password))
            await run.send_input(pending.pop(0))
        elif isinstance(ev, Finished):
            exit_code = ev.exit_code
    return items, exit_code


def _stdout(items: list[Any]) -> str:
    return "".join(i[1] for i in items if i[0] == "stdout")


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_print(client: Client, session: str, transport: str) -> None:
    items, code = await _run(client, session, "print(6*7)", transport)
    assert code == 0 and _stdout(items) == "42\n"


async def test_websocket_streams_first_output_fast(client: Client, session: str) -> None:
    run = client.sessions.execute(
        session,
        "import time\nprint('a', flush=True)\ntime.sleep(1.5)\nprint('b')",
        transport="websocket",
    )
    start = time.monotonic()
    seen: list[tuple[float, str]] = []
    async for ev in run:
        if isinstance(ev, Output):
            seen.append((time.monotonic() - start, ev.item.data))
    assert seen[0][1] == "a\n" and seen[0][0] < 0.5, seen
    assert seen[-1][1] == "b\n" and seen[-1][0] > 1.0
    assert run.used_transport == "websocket" and run.exit_code == 0


async def test_rest_long_poll_batches(client: Client, session: str) -> None:
    run = client.sessions.execute(
        session, "import time\nprint('a')\ntime.sleep(3)\nprint('b')", transport="rest"
    )
    start = time.monotonic()
    seen: list[tuple[float, str]] = []
    async for ev in run:
        if isinstance(ev, Output):
            seen.append((time.monotonic() - start, ev.item.data))
    # The manager's REST flush timeout is 2.0 s: 'a' comes with the first "continued" answer.
    assert seen[0][1] == "a\n" and 1.5 < seen[0][0] < 2.8, seen
    assert seen[-1][1] == "b\n"


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_error_exit_code_and_traceback(client: Client, session: str, transport: str) -> None:
    items, code = await _run(client, session, "1/0", transport)
    assert code == 1
    stderr = "".join(i[1] for i in items if i[0] == "stderr")
    assert "ZeroDivisionError" in stderr


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_input_round_trip(client: Client, session: str, transport: str) -> None:
    code = "name = input('who? ')\nimport getpass\npw = getpass.getpass('pw: ')\nprint('hi', name, len(pw))"
    items, exit_code = await _run(client, session, code, transport, ["Ada", "secret"])
    waits = [i for i in items if i[0] == "waiting"]
    assert waits == [("waiting", "who? ", False), ("waiting", "pw: ", True)]
    assert "hi Ada 6" in _stdout(items) and exit_code == 0


async def test_html_and_image(client: Client, session: str) -> None:
    code = (
        "from IPython.display import HTML, Image, display\n"
        "import base64\n"
        "display(HTML('<b>bold</b>'))\n"
        "png = base64.b64decode('iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk'"
        " '+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==')\n"
        "display(Image(data=png))\n"
    )
    items, exit_code = await _run(client, session, code, "rest")
    assert exit_code == 0
    assert ("html", "<b>bold</b>") in items
    media = [i for i in items if i[0] == "media"]
    assert media and media[0][1][0] == "image/png"
    assert media[0][1][1].startswith("data:image/png;base64,iVBOR")


async def test_rest_raw_shape_and_run_id_aliases(client: Client, session: str) -> None:
    await client.connect()
    http = client.http
    first = await http.json(
        "POST", f"/session/{session}", json={"mode": "query", "runId": None, "code": "x = input()"}
    )
    result = first["result"]
    assert result["status"] == "waiting-input" and result["options"] == {"is_password": False}
    assert set(result) == {"status", "runId", "exitCode", "options", "files", "console"}
    second = await http.json(
        "POST",
        f"/session/{session}",
        json={"mode": "input", "run_id": result["runId"], "code": "7"},
    )
    assert second["result"]["status"] == "finished" and second["result"]["exitCode"] == 0


async def test_interrupt_sleep(client: Client, session: str) -> None:
    run = client.sessions.execute(session, "import time\ntime.sleep(60)", transport="websocket")
    events: list[Any] = []

    async def consume() -> None:
        async for ev in run:
            events.append(ev)

    task = asyncio.create_task(consume())
    await asyncio.sleep(1.0)
    start = time.monotonic()
    await client.sessions.interrupt(session)
    await asyncio.wait_for(task, 5)
    assert time.monotonic() - start < 1.0
    assert run.exit_code == 1
    assert any(isinstance(e, Output) and "KeyboardInterrupt" in e.item.data for e in events)


async def test_restart_keeps_files(client: Client, session: str) -> None:
    items, _ = await _run(client, session, "open('keep.txt','w').write('x'); v = 1", "rest")
    await client.sessions.restart(session)
    items, code = await _run(
        client, session, "import os; print(os.path.exists('keep.txt'))\nv", "rest"
    )
    assert _stdout(items).startswith("True\n")
    assert code == 1  # NameError: the kernel is fresh


async def test_runs_queued_behind_one_run_take_turns(client: Client, session: str) -> None:
    """Two runs waiting for the same busy run both wake when it ends; only one may start (two
    runs at once on one kernel client split its messages, and one would never finish)."""
    first = asyncio.ensure_future(_run(client, session, "import time\ntime.sleep(1)", "rest"))
    await asyncio.sleep(0.3)
    waiting = [
        asyncio.ensure_future(_run(client, session, f"print('queued', {i})", "rest"))
        for i in range(3)
    ]
    results = await asyncio.wait_for(asyncio.gather(first, *waiting), 60)
    assert [_stdout(items) for items, _ in results[1:]] == [f"queued {i}\n" for i in range(3)]
    assert all(code == 0 for _, code in results)


async def test_large_output_is_forwarded_in_bounded_pieces() -> None:
    # Four 600 kB records, then the end: the answers go out as soon as they hold a piece of
    # FORWARD_CHUNK, not after the flush timeout, and never hold the whole output.
    run = Run("r1")
    record = "y" * 600_000
    for _ in range(4):
        run.records.put_nowait(("stdout", record))
    run.records.put_nowait(("finished", {"exitCode": 0}))
    start = time.monotonic()
    answers = [await next_result(run, 30.0) for _ in range(3)]
    assert time.monotonic() - start < 5
    assert [a["status"] for a in answers] == ["continued", "continued", "finished"]
    texts = [a["console"] for a in answers]
    assert texts[0] == [["stdout", record * 2]] and texts[1] == [["stdout", record * 2]]
    assert texts[2] == [] and all(len(t[0][1]) < 2 * FORWARD_CHUNK for t in texts[:2])


async def test_a_websocket_answer_lingers_only_briefly_after_its_first_record() -> None:
    # The flush timeout bounds the wait for a first record; after it, only the linger: output
    # goes out while the run is still making more.
    run = Run("r1")
    run.records.put_nowait(("stdout", "a"))
    run.records.put_nowait(("stdout", "b"))
    later = asyncio.get_running_loop().call_later(1.0, run.records.put_nowait, ("stdout", "c"))
    start = time.monotonic()
    answer = await next_result(run, 5.0, linger=0.05)
    took = time.monotonic() - start
    later.cancel()
    assert answer["console"] == [["stdout", "ab"]] and answer["status"] == "continued"
    assert 0.04 < took < 0.9


@pytest.mark.parametrize(
    ("length", "size", "want"),
    [(0, 4, [0]), (3, 4, [3]), (4, 4, [4]), (5, 4, [4, 1]), (12, 4, [4, 4, 4])],
)
def test_text_pieces(length: int, size: int, want: list[int]) -> None:
    text = "".join(chr(ord("a") + i % 26) for i in range(length))
    pieces = text_pieces(text, size)
    assert [len(p) for p in pieces] == want and "".join(pieces) == text


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_large_output_arrives_whole_in_bounded_items(
    client: Client, session: str, transport: str
) -> None:
    code = "for i in range(6):\n    print(str(i) * (1024 * 1024 - 1))"
    items, exit_code = await _run(client, session, code, transport)
    assert exit_code == 0
    assert _stdout(items) == "".join(str(i) * (1024 * 1024 - 1) + "\n" for i in range(6))
    assert max(len(i[1]) for i in items) <= FORWARD_CHUNK + RECORD_PIECE


async def test_websocket_reuse_carries_runs_in_turn(client: Client, session: str) -> None:
    """The endpoint's extension: a code message asking ``reuse`` keeps the socket for the next
    run (its ``finished`` frame says so); without it the socket closes after the run."""
    ws = await client.http.ws_connect(f"/stream/session/{session}/execute")
    try:
        for n in (1, 2):
            await ws.send_json({"mode": "query", "code": f"print({n})", "reuse": True})
            frames = []
            while not frames or frames[-1]["status"] != "finished":
                frames.append((await ws.receive(timeout=30)).json())
            assert "".join(c[1] for f in frames for c in f["console"]) == f"{n}\n"
            assert frames[-1]["reuse"] is True
        await ws.send_json({"mode": "query", "code": "print(3)"})
        frames = []
        while not frames or frames[-1]["status"] != "finished":
            frames.append((await ws.receive(timeout=30)).json())
        assert "reuse" not in frames[-1]
        assert (await ws.receive(timeout=30)).kind == "closed"
    finally:
        await ws.close()


async def test_client_keeps_the_reused_socket_for_the_next_run(client: Client, session: str) -> None:
    warm = client.sessions.warm_sockets
    await _run(client, session, "x = 1", "websocket")
    kept = await warm.take(session)
    assert kept is not None and not kept.closed
    warm.finished(session, kept, True)  # back into the pool: the next run takes this very socket
    items, code = await _run(client, session, "print(x + 1)", "websocket")
    assert code == 0 and _stdout(items) == "2\n"
    assert await warm.take(session) is kept and not kept.closed
    await kept.close()
