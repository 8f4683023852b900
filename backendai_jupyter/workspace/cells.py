"""A remote cell, start to reply, in one call on the workspace's loop: :meth:`CellRunner.run_cell`.

The proxy kernel hands a cell over (its code, count and flags, and the sink carrying its parent
header) and awaits ONE call (:meth:`~.Workspace.call`); everything a cell needs on the way
happens here, on the loop that owns the session:

* **Comms first**: what the front-end sent before the cell is delivered before it, and what
  comes meanwhile waits (``around``, the kernel's comm bridge, held for the cell).
* **The session**: started (or found again) with its progress line, then the cell runs through
  the one execution path (:meth:`.KernelSession.run` → :func:`.relay`).
* **Interrupts** (:meth:`CellRunner.interrupt`, from any thread): the remote run is asked to stop
  and gets :data:`INTERRUPT_GRACE` seconds before the cell is abandoned; during a manager outage
  it is abandoned at once (the interrupt could not reach it). A pending ``input()`` then gets an
  empty answer, since the runner would otherwise hold the session's run queue.
* **The reply**: the remote ``execute_reply`` decides ``ok``/``error`` when the rich channel
  carried it (an exception an ``Output`` widget swallowed leaves it ``ok``, as in ipykernel);
  otherwise an ``error`` message or a failed exit code does. Session ends map to
  ``SessionTerminated`` / ``SessionWedged``; a kept session that ended makes the *next* cell
  say so instead of silently starting a new one under the same name.

:func:`outcome_reply` and :func:`error_reply` are the pure part.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from ..client import BackendAIError, Reconnecting, Resumed, SessionGone, SessionWedged
from ..display.outputs import error_content, parse_traceback_text
from ..richchannel import remote_reply
from .relay import Outcome, Sink

__all__ = [
    "HELPER_TIMEOUT",
    "INTERRUPT_GRACE",
    "Cell",
    "CellRunner",
    "CellSink",
    "RemoteSession",
    "error_reply",
    "outcome_reply",
]

log = logging.getLogger(__name__)

INTERRUPT_GRACE = 1.2
"""Seconds a remote run gets to stop after an interrupt before the cell is abandoned."""
INTERRUPT_SEND = 0.8
"""Seconds the interrupt request itself may take."""
HELPER_TIMEOUT = 5.0
"""Seconds a completion or inspection may take before it answers empty."""


@dataclass(frozen=True)
class Cell:
    """One ``execute_request`` as the remote ``do_execute`` should see it."""

    code: str
    count: int
    silent: bool = False
    store_history: bool = True
    user_expressions: Mapping[str, str] | None = None
    allow_stdin: bool = True


class CellSink(Sink, Protocol):
    """The kernel's sink for a cell: a :class:`Sink` with an updating status line."""

    def progress(self) -> Callable[[str], None]:
        """A new status line (a display updated in place), e.g. for session start-up."""


class RemoteSession(Protocol):
    """What a cell needs of the kernel session (:class:`.KernelSession`)."""

    async def ensure(self, progress: Callable[[str], None] | None = None) -> str: ...

    async def run(
        self,
        code: str,
        sink: Sink,
        *,
        count: int | None = None,
        silent: bool = False,
        store_history: bool = True,
        user_expressions: dict[str, Any] | None = None,
        allow_stdin: bool = True,
    ) -> Outcome: ...

    async def interrupt(self) -> None: ...

    async def check_gone(self) -> SessionGone | None: ...

    async def stop(self) -> None: ...

    def kept_name(self) -> str | None: ...

    async def helper(self, method: str, *args: str | int) -> dict[str, Any] | None: ...


Around = Callable[[], contextlib.AbstractAsyncContextManager[None]]


# -- the pure part ------------------------------------------------------------------------------


def error_reply(count: int, ename: str, evalue: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """A cell that failed on our side: its reply and the ``error`` message to show."""
    content = error_content(ename, evalue, [f"{ename}: {evalue}"])
    return {"status": "error", "execution_count": count, **content}, content


def outcome_reply(
    outcome: Outcome, count: int, interrupted: bool
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """The reply to a cell that ran, and the ``error`` message still to show (if any).

    ============================================== ============================================
    outcome                                        reply
    ============================================== ============================================
    remote ``execute_reply`` says ``ok``           ``ok`` (an error it showed was swallowed)
    an ``error`` message (and no ``ok`` reply)     ``error`` with it (already shown)
    exit code 130 and no stderr                    ``RemoteError``: the run was killed
    another non-zero exit code                     the exception named on stderr
    none of those, but interrupted                 ``KeyboardInterrupt``
    none of those                                  ``ok``
    ============================================== ============================================

    ``payload`` and ``user_expressions`` of the remote reply go into every reply but ours.
    """
    extra = remote_reply(outcome.remote_reply)  # payloads (pager, %load), user_expressions
    error = outcome.error
    if outcome.remote_reply is not None:
        content = outcome.remote_reply.payload.get("content")
        if isinstance(content, Mapping) and content.get("status") == "ok":
            error = None
    if error is not None:
        return {"status": "error", "execution_count": count, **error, **extra}, None
    if outcome.exit_code not in (0, None):
        if outcome.exit_code == 130 and not outcome.stderr_tail:
            ename, evalue = "RemoteError", "the remote run was killed (exit code 130)"
        else:
            ename, evalue = parse_traceback_text(outcome.stderr_tail)
        # The traceback text was already shown on stderr; the error carries the summary.
        return error_reply(count, ename, evalue)
    if interrupted:
        return error_reply(count, "KeyboardInterrupt", "interrupted")
    return {"status": "ok", "execution_count": count, **extra}, None


# -- the runner ---------------------------------------------------------------------------------


class _Watch:
    """The sink the execution path sees: notes outages, and answers a pending ``input()``
    with "" once an interrupt was sent."""

    def __init__(self, sink: Sink, runner: CellRunner, stopped: asyncio.Event) -> None:
        self.sink, self.runner, self.stopped = sink, runner, stopped

    def publish(
        self,
        msg_type: str,
        content: dict[str, Any],
        *,
        metadata: dict[str, Any] | None = None,
        buffers: Sequence[bytes] | None = None,
    ) -> None:
        self.sink.publish(msg_type, content, metadata=metadata, buffers=buffers)

    async def ask(self, prompt: str, password: bool) -> str | None:
        asking = asyncio.ensure_future(self.sink.ask(prompt, password))
        stop = asyncio.ensure_future(self.stopped.wait())
        try:
            await asyncio.wait({asking, stop}, return_when=asyncio.FIRST_COMPLETED)
        except BaseException:  # the cell was abandoned: stop asking
            asking.cancel()
            raise
        finally:
            stop.cancel()
        if asking.done():
            return asking.result()
        # The remote input() has raised KeyboardInterrupt, but the runner still waits for an
        # answer and would hold the session's run queue: give it one.
        await _cancel(asking)
        return ""

    def notice(self, event: object) -> None:
        if isinstance(event, Reconnecting):
            self.runner.outage = True
        elif isinstance(event, Resumed):
            self.runner.outage = False
        self.sink.notice(event)


class CellRunner:
    """Runs the kernel's remote cells on the workspace's loop; see the module docstring.

    Everything but :meth:`interrupt` is called on that loop.
    """

    def __init__(self, session: RemoteSession) -> None:
        self.kernel_session = session
        self.outage = False
        """The manager was unreachable at the last news (a Reconnecting not yet Resumed): an
        interrupt then abandons the cell at once, completion and inspection answer empty."""
        self.lost_kept: str | None = None
        """A kept session that ended, for the next cell to report."""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._interrupted: asyncio.Event | None = None

    def interrupt(self) -> None:
        """Interrupt the running cell, if any (thread-safe: the control thread calls it)."""
        loop, event = self._loop, self._interrupted
        if loop is not None and event is not None:
            loop.call_soon_threadsafe(event.set)

    async def run_cell(
        self, cell: Cell, sink: CellSink, around: Around | None = None
    ) -> dict[str, Any]:
        """Run ``cell`` (its output on ``sink``) and return its ``execute_reply`` content."""
        async with around() if around is not None else _nothing():
            return await self._run(cell, sink)

    async def _run(self, cell: Cell, sink: CellSink) -> dict[str, Any]:
        if self.lost_kept is not None:
            name, self.lost_kept = self.lost_kept, None
            return self._fail(
                sink,
                cell.count,
                "SessionTerminated",
                f"the kept session {name!r} has ended and its variables are lost; no new "
                "session was started on its own. Run a cell again to start a new one",
            )
        self._loop = asyncio.get_running_loop()
        self._interrupted = interrupted_event = asyncio.Event()
        stopped = asyncio.Event()  # the remote run was asked to stop
        try:
            return await self._attempt(cell, sink, interrupted_event, stopped)
        except SessionGone as e:
            self._note_lost_kept()
            return self._fail(sink, cell.count, "SessionTerminated", str(e))
        except SessionWedged as e:
            return self._fail(
                sink,
                cell.count,
                "SessionWedged",
                f"{e} To do so: restart the kernel, or run %backendai kernel stop and then "
                "any cell.",
            )
        except BackendAIError as e:
            gone = await self.kernel_session.check_gone()
            if gone is not None:
                self._note_lost_kept()
                await self.kernel_session.stop()
                return self._fail(sink, cell.count, "SessionTerminated", str(gone))
            return self._fail(sink, cell.count, type(e).__name__, str(e))
        finally:
            self._interrupted = None

    async def _attempt(
        self, cell: Cell, sink: CellSink, interrupted: asyncio.Event, stopped: asyncio.Event
    ) -> dict[str, Any]:
        starting = asyncio.ensure_future(self.kernel_session.ensure(sink.progress()))
        if await self._until_interrupted(starting, interrupted, stopped) is not None:
            return self._fail(
                sink, cell.count, "KeyboardInterrupt", "interrupted while the session was starting"
            )
        starting.result()
        work = asyncio.ensure_future(
            self.kernel_session.run(
                cell.code,
                _Watch(sink, self, stopped),
                count=cell.count,
                silent=cell.silent,
                store_history=cell.store_history,
                user_expressions=dict(cell.user_expressions or {}),
                allow_stdin=cell.allow_stdin,
            )
        )
        abandoned = await self._until_interrupted(work, interrupted, stopped)
        if abandoned:
            why = (
                "the Backend.AI manager is unreachable, so the interrupt could not reach "
                "the run; it was abandoned"
                if self.outage
                else "the remote code did not stop within "
                f"{INTERRUPT_GRACE:.1f} s and was abandoned"
            )
            text = f"interrupted; {why} (it may still be running)"
            return self._fail(sink, cell.count, "KeyboardInterrupt", text)
        outcome: Outcome = work.result()
        self.outage = False
        reply, error = outcome_reply(outcome, cell.count, abandoned is False)
        if error is not None:
            sink.publish("error", error)
        return reply

    async def _until_interrupted(
        self, work: asyncio.Future[Any], interrupted: asyncio.Event, stopped: asyncio.Event
    ) -> bool | None:
        """Wait for ``work``. None: it finished; False: it finished after an interrupt;
        True: it was abandoned after an interrupt."""
        waiter = asyncio.ensure_future(interrupted.wait())
        try:
            done, _ = await asyncio.wait({work, waiter}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            waiter.cancel()
        if work in done:
            return None
        if self.outage:
            # The manager is unreachable: the interrupt cannot reach the run, so waiting for
            # it is pointless. The run is abandoned (the client drains it once it can).
            await _cancel(work)
            return True
        with contextlib.suppress(BackendAIError, asyncio.TimeoutError):
            await asyncio.wait_for(self.kernel_session.interrupt(), INTERRUPT_SEND)
        stopped.set()
        try:
            await asyncio.wait_for(asyncio.shield(work), INTERRUPT_GRACE)
            return False
        except asyncio.TimeoutError:
            await _cancel(work)
            return True

    def _note_lost_kept(self) -> None:
        self.lost_kept = self.kernel_session.kept_name()

    def _fail(self, sink: Sink, count: int, ename: str, evalue: str) -> dict[str, Any]:
        reply, content = error_reply(count, ename, evalue)
        sink.publish("error", content)
        return reply

    async def helper(self, method: str, *args: str | int) -> dict[str, Any] | None:
        """A completion/inspection reply from the remote kernel; None when there is none soon
        (no rich session, a manager outage: answered empty at once rather than waited for)."""
        if self.outage:
            return None
        try:
            helper = self.kernel_session.helper(method, *args)
            reply = await asyncio.wait_for(helper, HELPER_TIMEOUT)
        except (BackendAIError, asyncio.TimeoutError) as e:
            log.debug("remote %s failed: %s", method, e)
            return None
        return reply if reply is not None and reply.get("status") == "ok" else None

    async def complete(self, code: str, cursor_pos: int) -> dict[str, Any]:
        """The ``complete_reply`` content: the remote kernel's, else no matches."""
        reply = await self.helper("do_complete", code, cursor_pos)
        empty = {"matches": [], "cursor_start": cursor_pos, "cursor_end": cursor_pos}
        return reply or {"status": "ok", **empty, "metadata": {}}

    async def inspect(self, code: str, cursor_pos: int, detail_level: int) -> dict[str, Any]:
        """The ``inspect_reply`` content: the remote kernel's, else nothing found."""
        reply = await self.helper("do_inspect", code, cursor_pos, detail_level)
        return reply or {"status": "ok", "found": False, "data": {}, "metadata": {}}


async def _cancel(work: asyncio.Future[Any]) -> None:
    work.cancel()
    with contextlib.suppress(BaseException):
        await work


@contextlib.asynccontextmanager
async def _nothing() -> AsyncIterator[None]:
    yield
