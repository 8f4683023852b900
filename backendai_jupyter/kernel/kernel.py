"""``BackendAIKernel``: an IPython kernel whose cells run in a Backend.AI compute session.

Cells go to the remote session (see :mod:`.routing`); ``%backendai ...`` lines and ``%%local``
cells run in this process's own IPython, so magics and widgets keep working. This module keeps
to Jupyter message handling:

* the session, the client and the configuration belong to the process's workspace
  (:mod:`backendai_jupyter.workspace`), shared with the magics (``%backendai config``,
  ``%backendai kernel stop`` act on it); the kernel's loop awaits it (``workspace.call``);
* a remote cell's output goes through the one execution path (``workspace.relay``) into an
  :class:`~.sink.IOPubSink` carrying the cell's parent header;
* interrupts arrive on the control thread (``interrupt_mode: message``) and are handed to the
  shell's loop, which interrupts the remote run and, after a grace period, abandons it.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import importlib
import logging
import os
import signal
import types
from typing import Any

import zmq
from ipykernel.ipkernel import IPythonKernel

from .. import __version__
from ..client import Reconnecting, Resumed
from ..client._exceptions import BackendAIError, SessionGone, SessionWedged
from ..display.outputs import error_content, parse_traceback_text, remote_reply
from ..workspace import Outcome, current
from . import comms
from .fidelity import exit_requested, kernel_info_for
from .routing import local_body, route
from .sink import IOPubSink

__all__ = ["BackendAIKernel"]

log = logging.getLogger(__name__)

INTERRUPT_GRACE = 1.2
"""Seconds a remote run gets to stop after an interrupt before the cell is abandoned."""
HELPER_TIMEOUT = 5.0
_STDERR_TAIL = 64 * 1024


# ipykernel is only partly annotated; treat the base class as dynamic rather than sprinkling
# ignores over every inherited call.
_IPythonKernel: Any = IPythonKernel


class BackendAIKernel(_IPythonKernel):  # type: ignore[misc]
    implementation = "backendai_jupyter"
    implementation_version = __version__

    @property
    def banner(self) -> str:
        remote = self.workspace.session
        image = remote.image or remote.settings.image or "auto (the cluster's newest Python image)"
        return (
            "Backend.AI Python (remote GPU): cells run in a Backend.AI compute session.\n"
            f"Image: {image}.\n"
            "%backendai config set KEY=VALUE … before the first cell; %%local runs a cell here."
        )

    @property
    def kernel_info(self) -> dict[str, Any]:
        # The session's interpreter once it runs (version, lexer), ours before.
        return kernel_info_for(super().kernel_info, self.workspace.session.remote_info)

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.workspace = current()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._interrupted: asyncio.Event | None = None
        self._interrupt_sent = False
        """The remote kernel was asked to stop: a pending input() gets an answer (see below)."""
        self._exec_ident: Any = None
        self._running_local = False
        self._startup: asyncio.Future[Any] | None = None
        #: The manager was unreachable at the last news (a Reconnecting not yet Resumed): an
        #: interrupt then abandons the cell at once, completion and inspection answer empty.
        self._outage = False
        #: A kept session that ended: the next remote cell says so instead of silently starting
        #: a new one under the same name (its state is gone); the cell after that starts it.
        self._lost_kept: str | None = None
        self._load_magics()
        self.comms = comms.attach(self, self.workspace)  # front-end comm messages (widgets)
        atexit.register(self.workspace.session.close_sync)
        with contextlib.suppress(ValueError):  # not the main thread (in-process tests)
            signal.signal(signal.SIGTERM, self._on_sigterm)

    # -- setup ----------------------------------------------------------------------------------

    def _load_magics(self) -> None:
        if self.shell is None:
            return
        # %backendai (config, kernel stop, ps, run, ...) acts on this process's workspace.
        try:
            importlib.import_module("backendai_jupyter.magics").load_ipython_extension(self.shell)
        except Exception:
            log.exception("loading the %backendai magics failed")
        self.shell.register_magic_function(self._local_magic, "cell", "local")

    def _local_magic(self, line: str, cell: str) -> None:
        """Run this cell in the proxy kernel's own Python, not in the Backend.AI session."""
        # A %%local cell of the notebook never gets here (the kernel runs its body directly);
        # this serves %%local used inside local code.
        self.shell.run_cell(cell, store_history=False)

    def start(self) -> None:
        super().start()
        self.io_loop.add_callback(self._on_loop_start)

    async def _on_loop_start(self) -> None:
        self._loop = asyncio.get_running_loop()
        session = self.workspace.session
        with contextlib.suppress(Exception):
            removed = await self.workspace.call(session.cleanup_orphans())
            if removed:
                log.info("destroyed orphaned sessions: %s", ", ".join(removed))
        if session.settings.start == "kernel-start":
            self._startup = asyncio.ensure_future(self.workspace.call(session.ensure()))
            self._startup.add_done_callback(lambda f: f.cancelled() or f.exception())

    def _on_sigterm(self, signum: int, frame: types.FrameType | None) -> None:
        self.workspace.session.close_sync()
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGTERM)

    # -- messages -------------------------------------------------------------------------------

    async def execute_request(self, stream: Any, ident: Any, parent: Any) -> None:
        self._exec_ident = ident
        await super().execute_request(stream, ident, parent)

    async def dispatch_shell(self, *args: Any, **kwargs: Any) -> None:
        # ipykernel 7 dispatches comm messages "concurrently" (no busy/idle) while another
        # request runs; the comm bridge publishes that status itself (see comms.Pending).
        token = comms.DISPATCH_CONCURRENT.set(bool(kwargs.get("concurrent")))
        try:
            await super().dispatch_shell(*args, **kwargs)
        finally:
            comms.DISPATCH_CONCURRENT.reset(token)

    async def comm_info_request(self, stream: Any, ident: Any, parent: Any) -> None:
        found = await self.comms.comm_info(parent["content"].get("target_name"))
        self.session.send(
            stream, "comm_info_reply", {"status": "ok", "comms": found}, parent, ident
        )

    async def interrupt_request(self, stream: Any, ident: Any, parent: Any) -> None:
        # Runs on the control thread: hand the interrupt to the shell's loop.
        if self._running_local:
            with contextlib.suppress(OSError):
                self._send_interrupt_children()
        elif self._loop is not None and self._interrupted is not None:
            self._loop.call_soon_threadsafe(self._interrupted.set)
        self.session.send(stream, "interrupt_reply", {"status": "ok"}, parent, ident=ident)

    async def do_execute(
        self,
        code: str,
        silent: bool,
        store_history: bool = True,
        user_expressions: dict[str, Any] | None = None,
        allow_stdin: bool = False,
        *,
        cell_meta: dict[str, Any] | None = None,
        cell_id: str | None = None,
    ) -> dict[str, Any]:
        self._loop = asyncio.get_running_loop()
        if route(code) == "local" or not code.strip():
            self._running_local = True
            try:
                reply: dict[str, Any] = await super().do_execute(
                    local_body(code),
                    silent,
                    store_history,
                    user_expressions,
                    allow_stdin,
                    cell_meta=cell_meta,
                    cell_id=cell_id,
                )
                return reply
            finally:
                self._running_local = False
        count = self.shell.execution_count
        sink = IOPubSink(
            self,
            self.get_parent("shell"),
            silent=silent,
            allow_stdin=allow_stdin,
            ident=self._exec_ident,
            loop=self._loop,
            outgoing=self.comms.outgoing,
            on_event=self._on_run_event,
        )
        cell = {
            "count": count,
            "silent": silent,
            "store_history": store_history,
            "user_expressions": user_expressions,
            "allow_stdin": allow_stdin,
        }
        stored = store_history and not silent
        if stored:
            # Remote cells go into this kernel's history too: history requests (a console's
            # up-arrow, %history in a %%local cell) see the same numbers as the remote.
            self.shell.history_manager.store_inputs(count, code)
        try:
            # Front-end comm messages that came first go first; those that come meanwhile wait.
            async with self.comms.remote_cell():
                reply = await self._execute_remote(code, cell, sink)
        finally:
            if stored:
                self.shell.execution_count += 1
        if exit_requested(reply.get("payload") or []):
            self.shell.exit_now = True  # exit/quit: this kernel stops, as a local one does
        return reply

    # -- remote execution -----------------------------------------------------------------------

    def _on_run_event(self, event: object) -> None:
        # Called on the workspace's loop thread; a plain flag is enough for what reads it.
        if isinstance(event, Reconnecting):
            self._outage = True
        elif isinstance(event, Resumed):
            self._outage = False

    async def _until_interrupted(self, work: asyncio.Future[Any]) -> bool | None:
        """Wait for ``work``. None: it finished; False: it finished after an interrupt;
        True: it was abandoned after an interrupt."""
        assert self._interrupted is not None
        waiter = asyncio.ensure_future(self._interrupted.wait())
        try:
            done, _ = await asyncio.wait({work, waiter}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            waiter.cancel()
        if work in done:
            return None
        if self._outage:
            # The manager is unreachable: the interrupt cannot reach the run, so waiting for
            # it is pointless. The run is abandoned (the client drains it once it can).
            work.cancel()
            with contextlib.suppress(BaseException):
                await work
            return True
        with contextlib.suppress(BackendAIError, asyncio.TimeoutError):
            await asyncio.wait_for(self.workspace.call(self.workspace.session.interrupt()), 0.8)
        self._interrupt_sent = True
        try:
            await asyncio.wait_for(asyncio.shield(work), INTERRUPT_GRACE)
            return False
        except asyncio.TimeoutError:
            work.cancel()
            with contextlib.suppress(BaseException):
                await work
            return True

    async def _execute_remote(
        self, code: str, cell: dict[str, Any], sink: IOPubSink
    ) -> dict[str, Any]:
        ws, remote = self.workspace, self.workspace.session
        count: int = cell["count"]
        if self._lost_kept is not None:
            name, self._lost_kept = self._lost_kept, None
            return self._error_reply(
                sink,
                count,
                "SessionTerminated",
                f"the kept session {name!r} has ended and its variables are lost; no new "
                "session was started on its own. Run a cell again to start a new one",
            )
        self._interrupted = asyncio.Event()
        self._interrupt_sent = False
        try:
            starting = asyncio.ensure_future(ws.call(remote.ensure(sink.progress())))
            if await self._until_interrupted(starting) is not None:
                return self._error_reply(
                    sink, count, "KeyboardInterrupt", "interrupted while the session was starting"
                )
            starting.result()
            work = asyncio.ensure_future(ws.call(remote.run(code, sink, **cell)))
            interrupted = await self._until_interrupted(work)
            if interrupted:
                why = (
                    "the Backend.AI manager is unreachable, so the interrupt could not reach "
                    "the run; it was abandoned"
                    if self._outage
                    else "the remote code did not stop within "
                    f"{INTERRUPT_GRACE:.1f} s and was abandoned"
                )
                text = f"interrupted; {why} (it may still be running)"
                return self._error_reply(sink, count, "KeyboardInterrupt", text)
            outcome: Outcome = work.result()
            self._outage = False
        except SessionGone as e:
            self._note_lost_kept()
            return self._error_reply(sink, count, "SessionTerminated", str(e))
        except SessionWedged as e:
            return self._error_reply(
                sink,
                count,
                "SessionWedged",
                f"{e} To do so: restart the kernel, or run %backendai kernel stop and then "
                "any cell.",
            )
        except BackendAIError as e:
            gone = await ws.call(remote.check_gone())
            if gone is not None:
                self._note_lost_kept()
                await ws.call(remote.stop())
                return self._error_reply(sink, count, "SessionTerminated", str(gone))
            return self._error_reply(sink, count, type(e).__name__, str(e))
        finally:
            self._interrupted = None
        return self._finish_reply(sink, count, outcome, interrupted is False)

    def _note_lost_kept(self) -> None:
        session = self.workspace.session
        settings = session.settings
        if settings.keep or settings.name:
            self._lost_kept = session.session_name or settings.name or "the kept session"

    async def stdin_request(
        self, prompt: str, password: bool, parent: dict[str, Any], ident: Any
    ) -> str:
        """ipykernel's ``_input_request``, but awaiting so that an interrupt can cancel it."""
        while True:  # purge stale replies
            try:
                self.stdin_socket.recv_multipart(zmq.NOBLOCK)
            except zmq.ZMQError as e:
                if e.errno == zmq.EAGAIN:
                    break
                raise
        content = {"prompt": prompt, "password": password}
        self.session.send(self.stdin_socket, "input_request", content, parent, ident=ident)
        while True:
            if self._interrupt_sent:
                # The remote input() has raised KeyboardInterrupt, but the runner still waits
                # for an answer and would hold the session's run queue: give it one.
                return ""
            _ident, reply = self.session.recv(self.stdin_socket, zmq.NOBLOCK)
            if reply is not None:
                try:
                    return str(reply["content"]["value"])
                except (KeyError, TypeError):
                    return ""
            await asyncio.sleep(0.01)

    def _error_reply(self, sink: IOPubSink, count: int, ename: str, evalue: str) -> dict[str, Any]:
        content = error_content(ename, evalue, [f"{ename}: {evalue}"])
        sink.publish("error", content)
        return {"status": "error", "execution_count": count, **content}

    def _finish_reply(
        self, sink: IOPubSink, count: int, outcome: Outcome, interrupted: bool
    ) -> dict[str, Any]:
        extra = remote_reply(outcome.remote_reply)  # payloads (pager, %load), user_expressions
        if outcome.error is not None:
            return {"status": "error", "execution_count": count, **outcome.error, **extra}
        if outcome.exit_code not in (0, None):
            if outcome.exit_code == 130 and not outcome.stderr_tail:
                ename, evalue = "RemoteError", "the remote run was killed (exit code 130)"
            else:
                ename, evalue = parse_traceback_text(outcome.stderr_tail)
            # The traceback text was already shown on stderr; the error carries the summary.
            return self._error_reply(sink, count, ename, evalue)
        if interrupted:
            return self._error_reply(sink, count, "KeyboardInterrupt", "interrupted")
        return {"status": "ok", "execution_count": count, **extra}

    # -- completion / inspection ----------------------------------------------------------------

    async def _remote_helper(self, method: str, *args: str | int) -> dict[str, Any] | None:
        remote = self.workspace.session
        if not remote.active or not remote.rich or self._outage:
            return None  # during an outage: answer empty at once rather than wait
        try:
            return await asyncio.wait_for(
                self.workspace.call(remote.helper(method, *args)), HELPER_TIMEOUT
            )
        except (BackendAIError, asyncio.TimeoutError) as e:
            log.debug("remote %s failed: %s", method, e)
            return None

    async def do_complete(self, code: str, cursor_pos: int | None) -> dict[str, Any]:
        cursor_pos = len(code) if cursor_pos is None else cursor_pos
        if route(code) == "local":
            local: dict[str, Any] = super().do_complete(code, cursor_pos)
            return local
        reply = await self._remote_helper("do_complete", code, cursor_pos)
        if reply is None or reply.get("status") != "ok":
            return {
                "status": "ok",
                "matches": [],
                "cursor_start": cursor_pos,
                "cursor_end": cursor_pos,
                "metadata": {},
            }
        return reply

    async def do_inspect(
        self, code: str, cursor_pos: int, detail_level: int = 0, omit_sections: Any = ()
    ) -> dict[str, Any]:
        if route(code) == "local":
            local: dict[str, Any] = super().do_inspect(code, cursor_pos, detail_level)
            return local
        reply = await self._remote_helper("do_inspect", code, cursor_pos, int(detail_level))
        if reply is None or reply.get("status") != "ok":
            return {"status": "ok", "found": False, "data": {}, "metadata": {}}
        return reply

    async def do_shutdown(self, restart: bool) -> dict[str, Any]:
        # Runs on the control thread; the workspace's loop does the work.
        try:
            await asyncio.wait_for(self.workspace.call(self.workspace.aclose()), 30)
        except (BackendAIError, asyncio.TimeoutError) as e:
            log.warning("session cleanup at shutdown failed: %s", e)
        reply: dict[str, Any] = super().do_shutdown(restart)
        return reply
