"""``BackendAIKernel``: an IPython kernel whose cells run in a Backend.AI compute session.

Cells go to the remote session (see :mod:`.routing`); ``%backendai ...`` lines and ``%%local``
cells run in this process's own IPython, so magics and widgets keep working. This module keeps
to Jupyter message handling:

* the session, the client and the configuration belong to the process's workspace
  (:mod:`backendai_jupyter.workspace`), shared with the magics (``%backendai config``,
  ``%backendai kernel stop`` act on it); the kernel's loop awaits it (``workspace.call``);
* a remote cell is ONE awaited workspace call (``workspace.cells.run_cell``: session start,
  the run, interrupts, outages, lost sessions and the reply are the workspace's) whose output
  goes into an :class:`~.sink.IOPubSink` carrying the cell's parent header;
* interrupts arrive on the control thread (``interrupt_mode: message``) and are handed to the
  workspace (``cells.interrupt()``);
* ``kernel_info`` reads the session's snapshot, completion and inspection are one call each:
  the kernel's threads never read the live session (only ``close_sync`` at exit, which locks).
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

from ipykernel.ipkernel import IPythonKernel

from .._version import __version__
from ..client import BackendAIError
from ..workspace import Cell, current
from . import comms
from .fidelity import exit_requested, kernel_info_for
from .routing import local_body, route
from .sink import IOPubSink, StdinChannel

__all__ = ["BackendAIKernel"]

log = logging.getLogger(__name__)


# ipykernel is only partly annotated; treat the base class as dynamic rather than sprinkling
# ignores over every inherited call.
_IPythonKernel: Any = IPythonKernel


class BackendAIKernel(_IPythonKernel):  # type: ignore[misc]
    implementation = "backendai_jupyter"
    implementation_version = __version__

    @property
    def banner(self) -> str:
        remote = self.workspace.kernel_session
        image = remote.image or remote.settings.image or "auto (the cluster's newest Python image)"
        return (
            "Backend.AI Python (remote GPU): cells run in a Backend.AI compute session.\n"
            f"Image: {image}.\n"
            "%backendai config set KEY=VALUE … before the first cell; %%local runs a cell here."
        )

    @property
    def kernel_info(self) -> dict[str, Any]:
        # The session's interpreter once it runs (version, lexer), ours before.
        remote_info = self.workspace.kernel_session.snapshot.remote_info
        return kernel_info_for(super().kernel_info, remote_info)

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.workspace = current()
        self._exec_ident: Any = None
        self._running_local = False
        self._startup: asyncio.Future[Any] | None = None
        self._stdin: StdinChannel | None = None
        self._load_magics()
        self.comms = comms.attach(self, self.workspace)  # front-end comm messages (widgets)
        atexit.register(self.workspace.kernel_session.close_sync)
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
        with contextlib.suppress(Exception):
            removed = await self.workspace.call(self.workspace.kernel_session.cleanup_orphans())
            if removed:
                log.info("destroyed orphaned sessions: %s", ", ".join(removed))
        if self.workspace.settings.start == "kernel-start":
            starting = self.workspace.call(self.workspace.kernel_session.ensure())
            self._startup = asyncio.ensure_future(starting)
            self._startup.add_done_callback(lambda f: f.cancelled() or f.exception())

    def _on_sigterm(self, signum: int, frame: types.FrameType | None) -> None:
        self.workspace.kernel_session.close_sync()
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGTERM)

    # -- messages -------------------------------------------------------------------------------

    async def execute_request(self, stream: Any, ident: Any, parent: Any) -> None:
        self._exec_ident = ident
        try:
            await super().execute_request(stream, ident, parent)
        finally:
            # ipykernel 7 ends a comm message it dispatched concurrently by restoring the shell
            # parent it saw when that message came. A remote delivery takes milliseconds (a
            # local comm handler none), so one that ends while this cell runs put back an older
            # parent, and the idle that follows this reply answered that comm message instead:
            # nbclient then waited its whole iopub_timeout for this cell's idle.
            self.set_parent(ident, parent, channel="shell")

    async def dispatch_shell(self, *args: Any, **kwargs: Any) -> None:
        # ipykernel 7 dispatches comm messages "concurrently" (no busy/idle) while another
        # request runs; the comm bridge publishes that status itself (see comm_messages.Pending).
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
        else:
            self.workspace.cells.interrupt()
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
        stored = store_history and not silent
        if stored:
            # Remote cells go into this kernel's history too: history requests (a console's
            # up-arrow, %history in a %%local cell) see the same numbers as the remote.
            self.shell.history_manager.store_inputs(count, code)
        cell = Cell(code, count, silent, store_history, user_expressions, allow_stdin)
        try:
            # The one hop: the cell, start to reply, on the workspace's loop.
            sink = self._sink(silent, allow_stdin)
            running = self.workspace.cells.run_cell(cell, sink, self.comms.remote_cell)
            reply = await self.workspace.call(running)
            await sink.settle()  # widget cells: the reply trails their output (nbclient#312)
        finally:
            if stored:
                self.shell.execution_count += 1
        if exit_requested(reply.get("payload") or []):
            self.shell.exit_now = True  # exit/quit: this kernel stops, as a local one does
        return reply

    def _sink(self, silent: bool, allow_stdin: bool) -> IOPubSink:
        if self._stdin is None:
            self._stdin = StdinChannel(self.session, self.stdin_socket)
        return IOPubSink(
            self,
            self.get_parent("shell"),
            silent=silent,
            stdin=self._stdin if allow_stdin else None,
            ident=self._exec_ident,
            outgoing=self.comms.outgoing,
        )

    # -- completion / inspection ----------------------------------------------------------------

    async def do_complete(self, code: str, cursor_pos: int | None) -> dict[str, Any]:
        cursor_pos = len(code) if cursor_pos is None else cursor_pos
        if route(code) == "local":
            local: dict[str, Any] = super().do_complete(code, cursor_pos)
            return local
        return await self.workspace.call(self.workspace.cells.complete(code, cursor_pos))

    async def do_inspect(
        self, code: str, cursor_pos: int, detail_level: int = 0, omit_sections: Any = ()
    ) -> dict[str, Any]:
        if route(code) == "local":
            local: dict[str, Any] = super().do_inspect(code, cursor_pos, detail_level)
            return local
        inspecting = self.workspace.cells.inspect(code, cursor_pos, int(detail_level))
        return await self.workspace.call(inspecting)

    async def do_shutdown(self, restart: bool) -> dict[str, Any]:
        # Runs on the control thread; the workspace's loop does the work.
        try:
            await asyncio.wait_for(self.workspace.call(self.workspace.aclose()), 30)
        except (BackendAIError, asyncio.TimeoutError) as e:
            log.warning("session cleanup at shutdown failed: %s", e)
        reply: dict[str, Any] = super().do_shutdown(restart)
        return reply
