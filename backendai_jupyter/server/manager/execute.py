"""Code execution: the per-session run queue and both execute routes (protocol.md §4.1, §4.2).

* REST ``POST /session/{id}``: one request returns as soon as a terminal record
  (``finished``, ``clean-finished``, ``build-finished``, ``waiting-input``) arrives, or after
  ``flush_timeout`` = 2.0 s with ``status: continued`` — the agent's ``get_next_result``.
  The run id is read from ``runId`` *or* ``run_id`` (26.x reads only the latter).
* websocket ``/stream/session/{id}/execute``: one connection = one run, ``input()`` answered by
  one text frame, closing the socket interrupts the run. Upstream sends a frame every 0.2 s;
  here a frame goes out :data:`WS_LINGER` after the first record it holds (at most 0.2 s after
  the last frame while nothing comes): output is forwarded while the cell still runs, instead of
  up to 0.2 s later, and a cell updating a display 300 times reaches the client as the updates
  are made. The REST route keeps upstream's timing (its client relies on a flush prompt).

A new run waits for the previous one to finish (up to the agent's 30 s RPC timeout). The runs
live on the session object (``runs.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from typing import Any

import orjson
from aiohttp import WSMsgType, web

from ...client._exec_stream import REUSE
from ..agent.runs import RECORD_PIECE, Record, Run
from .auth import ACCESS_KEY
from .errors import Problem, decode_json, invalid_api_params, json_body
from .state import REGISTRY, ComputeSession

__all__ = ["aggregate_console", "execute", "next_result", "start_run", "stream_execute"]

REST_FLUSH = 2.0
WS_FLUSH = 0.2
#: Seconds a websocket frame waits, after its first record, for more records to share it: a
#: loop printing a line every millisecond still goes out in ~50 frames a second, not 1000.
WS_LINGER = 0.02
RUN_WAIT = 30.0
#: An answer goes out early once its console text reaches this many characters: a run printing
#: fast is forwarded in bounded pieces as it goes (the client decodes one piece while the next
#: arrives), and no answer holds more than about this much of a large output.
FORWARD_CHUNK = RECORD_PIECE
_TERMINAL = {"finished", "clean-finished", "build-finished"}


def _json_bytes(value: Any) -> bytes:
    # An answer can carry megabytes of output: orjson encodes it several times faster, and its
    # UTF-8 bytes go out as they are (a str in between would be decoded and encoded again).
    return orjson.dumps(value)


def aggregate_console(records: list[Record]) -> list[list[Any]]:
    """Merge consecutive stdout/stderr records, keep everything else in order (agent logic)."""
    # Pieces are joined once at the end: ``+=`` on a list item copies the text each time, which
    # is quadratic for a run printing many megabytes between two flushes.
    runs: list[tuple[str, list[Any]]] = []
    for kind, data in records:
        if kind in ("stdout", "stderr") and runs and runs[-1][0] == kind:
            runs[-1][1].append(data)
        else:
            runs.append((kind, [data]))
    return [
        [kind, "".join(parts) if kind in ("stdout", "stderr") else parts[0]]
        for kind, parts in runs
    ]


async def next_result(
    run: Run, flush_timeout: float, linger: float | None = None
) -> dict[str, Any]:
    """Collect records until a terminal one, ``flush_timeout`` (or ``linger`` seconds after
    the first record, when given) or :data:`FORWARD_CHUNK` of text; never loses a record."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + flush_timeout
    records: list[Record] = []
    size = 0
    status, exit_code, options = "continued", None, None
    while size < FORWARD_CHUNK and (
        record := await run.next_record(deadline - loop.time())
    ) is not None:
        if linger is not None and not records:
            deadline = min(deadline, loop.time() + linger)
        kind, data = record
        if kind in _TERMINAL:
            status, exit_code = kind, int(data.get("exitCode", 0))
            break
        if kind == "waiting-input":
            status, options = kind, data
            break
        records.append((kind, data))
        if isinstance(data, str):
            size += len(data)
    if status == "finished":
        run.finished = True
    return {
        "status": status,
        "runId": run.run_id,
        "exitCode": exit_code,
        "options": options,
        "files": [],
        "console": aggregate_console(records),
    }


def _not_running(sess: ComputeSession) -> Problem:
    return Problem(
        409, "invalid-session-state", "The session is not running.", f"status: {sess.status}"
    )


async def start_run(
    sess: ComputeSession, mode: str, run_id: str | None, code: str, options: dict[str, Any]
) -> Run:
    """Queue a new run behind the session's unfinished one (agent: ``attach_output_queue``).

    An earlier run whose final result was not read yet stays readable by its id. A run is over
    when its task ended, so an abandoned run cannot wedge the queue (upstream it can, until the
    session is destroyed)."""
    proc = sess.process
    if proc is None or sess.status != "RUNNING":
        raise _not_running(sess)
    if not await sess.runs.wait_idle(RUN_WAIT):
        raise Problem(
            500,
            "kernel-execution-failed",
            "Executing user code in the kernel has failed.",
            "the previous run did not finish in time",
            data={"agent-details": {"type": "https://api.backend.ai/probs/agent-timeout"}},
        )
    if sess.process is not proc or sess.status != "RUNNING":  # it ended while we waited
        raise _not_running(sess)
    run = Run(run_id or secrets.token_hex(16))
    sess.runs.add(run)
    if mode == "batch":
        run.task = asyncio.create_task(proc.run_batch(run, options))
    else:
        run.task = asyncio.create_task(proc.run_code(run, code))
    sess.num_queries += 1
    return run


def find_run(sess: ComputeSession, run_id: str) -> Run:
    run = sess.runs.get(run_id)
    if run is None:
        raise invalid_api_params(f"Unknown run ID: {run_id}")
    return run


async def execute(request: web.Request) -> web.Response:
    """``POST /session/{id}``: query / continue / input / batch / complete."""
    ak = request[ACCESS_KEY]
    sess = request.app[REGISTRY].get(request.match_info["session_name"], ak)
    body = await json_body(request)
    mode = body.get("mode")
    if mode not in ("query", "batch", "complete", "continue", "input"):
        raise invalid_api_params("Input validation error", {"mode": "invalid mode"})
    run_id = body.get("run_id", body.get("runId"))
    code = body.get("code") or ""
    if not isinstance(code, str) or (run_id is not None and not isinstance(run_id, str)):
        raise invalid_api_params("Input validation error")
    options = body.get("options") or {}
    sess.last_used = time.monotonic()
    if mode == "complete":
        return web.json_response({"result": await _complete(sess, code, options)})
    if mode in ("continue", "input"):
        if not run_id:
            raise invalid_api_params("continuation requires explicit run ID")
        run = find_run(sess, run_id)
        if mode == "input":
            await run.inputs.put(code)
    else:
        run = await start_run(
            sess, mode, run_id, code, options if isinstance(options, dict) else {}
        )
    answer = _json_bytes({"result": await next_result(run, REST_FLUSH)})
    return web.Response(body=answer, content_type="application/json")


COMPLETE_WAIT = 2.0


async def _complete(sess: ComputeSession, code: str, options: dict[str, Any]) -> dict[str, Any]:
    """Completion through the kernel (stock runners return nothing; the shape is the same).
    A kernel busy with a run answers nothing within :data:`COMPLETE_WAIT`: no suggestions."""
    suggestions: list[str] = []
    kc: Any = sess.process.kc if sess.process is not None else None

    async def ask() -> None:
        msg_id = kc.complete(code, len(code))
        for _ in range(50):
            reply = await kc.get_shell_msg(timeout=COMPLETE_WAIT)
            if reply.get("parent_header", {}).get("msg_id") == msg_id:
                suggestions.extend(reply["content"].get("matches", []))
                return

    if kc is not None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(ask(), COMPLETE_WAIT)
    return {"status": "finished", "error": None, "suggestions": suggestions}


async def complete(request: web.Request) -> web.Response:
    ak = request[ACCESS_KEY]
    sess = request.app[REGISTRY].get(request.match_info["session_name"], ak)
    body = await json_body(request)
    code = body.get("code", "")
    return web.json_response({"result": await _complete(sess, str(code), {})})


async def stream_execute(request: web.Request) -> web.StreamResponse:
    """``GET /stream/session/{id}/execute`` (websocket): one run, or several in turn when the
    client asks to reuse the socket (:data:`REUSE`)."""
    ak = request[ACCESS_KEY]
    sess = request.app[REGISTRY].get(request.match_info["session_name"], ak)
    ws = web.WebSocketResponse(autoping=True)
    await ws.prepare(request)
    try:
        while await _stream_run(ws, sess):
            pass
    except (ConnectionResetError, asyncio.CancelledError):
        pass
    finally:
        await ws.close()
    return ws


async def _stream_run(ws: web.WebSocketResponse, sess: ComputeSession) -> bool:
    """One run on the socket; True when it finished and the socket takes the next run."""
    run: Run | None = None
    try:
        first = await ws.receive()
        if first.type != WSMsgType.TEXT:
            return False
        try:
            params = decode_json(first.data)
            mode = params.get("mode", "query")
            if mode not in ("query", "batch") or not isinstance(params.get("code", ""), str):
                raise ValueError(f"unsupported mode {mode!r}")
        except (ValueError, AttributeError) as e:
            await ws.send_json({"status": "error", "msg": f"Invalid API parameters: {e}"})
            return False
        try:
            run = await start_run(
                sess, mode, None, params.get("code", ""), params.get("options") or {}
            )
        except Problem as p:
            await ws.send_json({"status": "error", "msg": f"BackendError: {p}"})
            return False
        reuse = params.get(REUSE) is True
        while True:
            sess.last_used = time.monotonic()
            result = await next_result(run, WS_FLUSH, WS_LINGER)
            if ws.closed:
                return False
            result.pop("runId", None)
            if result["status"] == "finished" and reuse:
                result[REUSE] = True
            await ws.send_frame(_json_bytes(result), WSMsgType.TEXT)
            if result["status"] == "finished":
                return reuse
            if result["status"] == "waiting-input":
                msg = await ws.receive()
                if msg.type != WSMsgType.TEXT:
                    return False
                await run.inputs.put(msg.data)
    finally:
        if run is not None and not run.finished and sess.process is not None:
            sess.process.interrupt()  # the client went away mid-run (manager does the same)
