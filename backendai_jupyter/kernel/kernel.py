"""``BackendAIKernel``: an IPython kernel whose cells run in a Backend.AI compute session.

Cells go to the remote session (see :mod:`.routing`); ``%backendai ...`` lines and ``%%local``
cells run in this process's own IPython, so magics and widgets keep working. Everything remote
is awaited on the kernel's own event loop (ipykernel 7 awaits ``do_*``); interrupts arrive on the
control thread (``interrupt_mode: message``) and are handed to that loop.

Output mapping lives in :mod:`backendai_jupyter.display.outputs` (pure, shared with the
magics); the rich channel that carries full display messages is described in :mod:`.bootstrap`;
the session's lifecycle in :mod:`.remote`.
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
from collections.abc import Callable
from typing import Any

import zmq
from ipykernel.ipkernel import IPythonKernel

from .. import __version__
from ..client import Finished, Output, WaitingInput
from ..client._exceptions import BackendAIError, ConfigError
from ..display.outputs import (
    Frame,
    FrameDecoder,
    IopubMessage,
    Message,
    console_to_messages,
    error_content,
    frame_message,
    parse_traceback_text,
    remote_reply,
)
from .bootstrap import EOF_REPLY, cell_header
from .remote import RemoteSession, SessionGone
from .routing import local_body, route
from .settings import SessionSettings

__all__ = ["BackendAIKernel"]

log = logging.getLogger(__name__)

INTERRUPT_GRACE = 1.2
"""Seconds a remote run gets to stop after an interrupt before the cell is abandoned."""
HELPER_TIMEOUT = 5.0
_STDERR_TAIL = 64 * 1024


class _Run:
    """What one remote cell produced that the reply needs."""

    def __init__(
        self,
        count: int,
        silent: bool,
        store_history: bool = True,
        user_expressions: dict[str, Any] | None = None,
    ) -> None:
        self.count = count
        self.silent = silent
        self.store_history = store_history
        self.user_expressions = user_expressions or {}
        self.remote_reply: Frame | None = None
        self.error: dict[str, Any] | None = None
        self.stderr_tail = ""
        self.exit_code: int | None = None
        self.interrupted = False


# ipykernel is only partly annotated; treat the base class as dynamic rather than sprinkling
# ignores over every inherited call.
_IPythonKernel: Any = IPythonKernel


class BackendAIKernel(_IPythonKernel):  # type: ignore[misc]
    implementation = "backendai_jupyter"
    implementation_version = __version__

    @property
    def banner(self) -> str:
        return (
            "Backend.AI Python (remote GPU): cells run in a Backend.AI compute session.\n"
            "%backendai config KEY=VALUE … before the first cell; %%local runs a cell here."
        )

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.backendai = RemoteSession(
            SessionSettings.from_env(), notebook_key=os.environ.get("JPY_SESSION_NAME")
        )
        self._loop: asyncio.AbstractEventLoop | None = None
        self._interrupted: asyncio.Event | None = None
        self._exec_ident: Any = None
        self._running_local = False
        self._startup: asyncio.Task[None] | None = None
        self._load_magics()
        atexit.register(self.backendai.close_sync)
        with contextlib.suppress(ValueError):  # not the main thread (in-process tests)
            signal.signal(signal.SIGTERM, self._on_sigterm)

    # -- setup ----------------------------------------------------------------------------------

    def _load_magics(self) -> None:
        if self.shell is None:
            return
        # The %backendai magics are optional here: load them when the package provides them.
        try:
            magics = importlib.import_module("backendai_jupyter.magics")
            load = getattr(magics, "load_ipython_extension", None)
            if load is not None:
                load(self.shell)
        except Exception:
            log.exception("loading the %backendai magics failed")
        # ``%backendai config ...`` and ``%backendai kernel ...`` act on this kernel's own session;
        # every other sub-command goes to the magics.
        self._magic_delegate = self.shell.magics_manager.magics["line"].get("backendai")
        self.shell.register_magic_function(self._kernel_magic, "line", "backendai")
        self.shell.register_magic_function(self._local_magic, "cell", "local")

    def _local_magic(self, line: str, cell: str) -> None:
        """Run this cell in the proxy kernel's own Python, not in the Backend.AI session."""
        # A %%local cell of the notebook never gets here (the kernel runs its body directly);
        # this serves %%local used inside local code.
        self.shell.run_cell(cell, store_history=False)

    def _kernel_magic(self, line: str) -> Any:
        """%backendai config [KEY=VALUE ...] | kernel [config|status|stop] | <magics command>

        ``config`` with no arguments shows the settings of this kernel's session; with
        ``KEY=VALUE`` pairs (image, resources, mounts, env, start, keep, name, rich,
        scaling_group) it changes them for the session that the next remote cell starts.
        ``kernel stop`` destroys the session now; the next remote cell starts a new one.
        """
        words = line.split()
        cmd, args = (words[0], words[1:]) if words else ("", [])
        remote = self.backendai
        if cmd == "kernel" and args[:1] == ["config"]:
            cmd, args = "config", args[1:]
        elif cmd == "config" and (not args or not all("=" in a for a in args)):
            # The magics' own ``config`` (client configuration), then this kernel's settings.
            if self._magic_delegate is not None:
                self._magic_delegate(line)
            if args:
                return None
            print("-- this kernel's session --")
        if cmd == "config":
            if args:
                remote.settings = remote.settings.update(args)
                if remote.active:
                    print("Saved; it applies to the next session (%backendai kernel stop).")
            for key, value in remote.settings.describe().items():
                print(f"{key:14} {value}")
            return None
        if cmd == "kernel":
            sub = args[0] if args else "status"
            if sub == "status":
                if remote.active:
                    mode = "rich" if remote.rich else "plain"
                    print(f"session {remote.session_name} ({remote.session_id}), {mode} output")
                else:
                    print("no session yet; it starts with the first remote cell")
            elif sub == "stop":
                if self._loop is not None and remote.active:
                    print("stopping the session; the next remote cell starts a new one")
                    asyncio.ensure_future(self._stop_session(), loop=self._loop)
            else:
                raise ConfigError("usage: %backendai kernel [status|stop]")
            return None
        if self._magic_delegate is not None:
            return self._magic_delegate(line)
        raise ConfigError("usage: %backendai config [KEY=VALUE ...] | kernel [status|stop]")

    async def _stop_session(self) -> None:
        remote = self.backendai
        sid = remote.session_id
        if sid and remote.client:
            with contextlib.suppress(BackendAIError):
                await remote.client.sessions.destroy(sid, forced=True)
        remote.forget()

    def start(self) -> None:
        super().start()
        self.io_loop.add_callback(self._on_loop_start)

    async def _on_loop_start(self) -> None:
        self._loop = asyncio.get_running_loop()
        with contextlib.suppress(Exception):
            removed = await self.backendai.cleanup_orphans()
            if removed:
                log.info("destroyed orphaned sessions: %s", ", ".join(removed))
        if self.backendai.settings.start == "kernel-start":
            self._startup = asyncio.ensure_future(self._start_early())

    async def _start_early(self) -> None:
        with contextlib.suppress(BackendAIError):
            await self.backendai.ensure()

    def _on_sigterm(self, signum: int, frame: types.FrameType | None) -> None:
        self.backendai.close_sync()
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGTERM)

    # -- messages -------------------------------------------------------------------------------

    async def execute_request(self, stream: Any, ident: Any, parent: Any) -> None:
        self._exec_ident = ident
        await super().execute_request(stream, ident, parent)

    async def interrupt_request(self, stream: Any, ident: Any, parent: Any) -> None:
        # Runs on the control thread: hand the interrupt to the loop that owns the client.
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
        try:
            run = _Run(count, silent, store_history, user_expressions)
            reply = await self._execute_remote(code, run, allow_stdin)
        finally:
            if store_history and not silent:
                self.shell.execution_count += 1
        reply.setdefault("execution_count", count)
        return reply

    # -- remote execution -----------------------------------------------------------------------

    def _publish(self, msg: Message | IopubMessage, run: _Run) -> None:
        full = msg if isinstance(msg, IopubMessage) else IopubMessage(*msg)
        msg_type, content = full.msg_type, full.content
        if msg_type == "error":
            run.error = content
        if run.silent:
            return
        if msg_type == "execute_result":
            content["execution_count"] = run.count
        self.send_response(
            self.iopub_socket,
            msg_type,
            content,
            metadata=full.metadata or None,
            buffers=list(full.buffers) or None,
        )

    def _progress_display(self, run: _Run) -> Callable[[str], None]:
        display_id = f"backendai-{os.urandom(6).hex()}"
        shown = False

        def show(text: str) -> None:
            nonlocal shown
            if run.silent:
                return
            content = {
                "data": {"text/plain": text},
                "metadata": {},
                "transient": {"display_id": display_id},
            }
            self.send_response(
                self.iopub_socket, "update_display_data" if shown else "display_data", content
            )
            shown = True

        return show

    async def _until_interrupted(self, work: asyncio.Future[Any], run: _Run) -> bool:
        """Wait for ``work``; True if it was abandoned after an interrupt."""
        assert self._interrupted is not None
        waiter = asyncio.ensure_future(self._interrupted.wait())
        try:
            done, _ = await asyncio.wait({work, waiter}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            waiter.cancel()
        if work in done:
            return False
        run.interrupted = True
        with contextlib.suppress(BackendAIError, asyncio.TimeoutError):
            await asyncio.wait_for(self.backendai.interrupt(), 0.8)
        try:
            await asyncio.wait_for(asyncio.shield(work), INTERRUPT_GRACE)
            return False
        except asyncio.TimeoutError:
            work.cancel()
            with contextlib.suppress(BaseException):
                await work
            return True

    async def _execute_remote(self, code: str, run: _Run, allow_stdin: bool) -> dict[str, Any]:
        self._interrupted = asyncio.Event()
        remote = self.backendai
        try:
            starting = asyncio.ensure_future(remote.ensure(self._progress_display(run)))
            if await self._until_interrupted(starting, run):
                return self._error_reply(
                    run, "KeyboardInterrupt", "interrupted while the session was starting"
                )
            starting.result()
            work = asyncio.ensure_future(self._consume(code, run, allow_stdin))
            abandoned = await self._until_interrupted(work, run)
            if abandoned:
                return self._error_reply(
                    run,
                    "KeyboardInterrupt",
                    "interrupted; the remote code did not stop within "
                    f"{INTERRUPT_GRACE:.1f} s and was abandoned (it may still be running)",
                )
            work.result()
        except SessionGone as e:
            return self._error_reply(run, "SessionTerminated", str(e))
        except BackendAIError as e:
            gone = await remote.check_gone()
            if gone is not None:
                remote.forget()
                return self._error_reply(run, "SessionTerminated", str(gone))
            return self._error_reply(run, type(e).__name__, str(e))
        finally:
            self._interrupted = None
        return self._finish_reply(run)

    async def _consume(self, code: str, run: _Run, allow_stdin: bool) -> None:
        remote = self.backendai
        decoder = FrameDecoder(remote.nonce) if remote.nonce else None
        if remote.nonce:
            # The notebook's count, flags and user_expressions ride along (see bootstrap).
            code = (
                cell_header(
                    remote.nonce,
                    count=run.count,
                    silent=run.silent,
                    store_history=run.store_history,
                    user_expressions=run.user_expressions,
                    allow_stdin=allow_stdin,
                )
                + code
            )
        exe = remote.execute(code)
        async for ev in exe:
            if isinstance(ev, Output):
                kind, data = ev.item.kind, ev.item.data
                if kind == "stdout" and decoder is not None and isinstance(data, str):
                    self._publish_parts(decoder.feed(data), run)
                    continue
                if kind == "stderr" and isinstance(data, str):
                    run.stderr_tail = (run.stderr_tail + data)[-_STDERR_TAIL:]
                for msg in console_to_messages(kind, data):
                    self._publish(msg, run)
            elif isinstance(ev, WaitingInput):
                if decoder is not None:
                    self._publish_parts(decoder.flush(), run)
                await exe.send_input(await self._answer_input(ev, allow_stdin))
            elif isinstance(ev, Finished):
                run.exit_code = ev.exit_code
        if decoder is not None:
            self._publish_parts(decoder.flush(), run)

    def _publish_parts(self, parts: list[str | Frame], run: _Run) -> None:
        for part in parts:
            if isinstance(part, Frame):
                if part.type == "execute_reply":
                    run.remote_reply = part
                    continue
                msg = frame_message(part, run.count)
                if msg is not None:
                    self._publish(msg, run)
            elif part:
                self._publish(("stream", {"name": "stdout", "text": part}), run)

    async def _answer_input(self, ev: WaitingInput, allow_stdin: bool) -> str:
        if not allow_stdin:
            # The patched remote input() turns this into a descriptive EOFError; a plain
            # remote ipykernel raises EOFError for "\x04".
            return EOF_REPLY if self.backendai.rich else "\x04"
        return await self._stdin_request(ev.prompt, ev.is_password)

    async def _stdin_request(self, prompt: str, password: bool) -> str:
        """ipykernel's ``_input_request``, but awaiting so that an interrupt can cancel it."""
        while True:  # purge stale replies
            try:
                self.stdin_socket.recv_multipart(zmq.NOBLOCK)
            except zmq.ZMQError as e:
                if e.errno == zmq.EAGAIN:
                    break
                raise
        content = {"prompt": prompt, "password": password}
        self.session.send(
            self.stdin_socket,
            "input_request",
            content,
            self.get_parent("shell"),
            ident=self._exec_ident,
        )
        while True:
            _ident, reply = self.session.recv(self.stdin_socket, zmq.NOBLOCK)
            if reply is not None:
                try:
                    return str(reply["content"]["value"])
                except (KeyError, TypeError):
                    return ""
            await asyncio.sleep(0.01)

    def _error_reply(self, run: _Run, ename: str, evalue: str) -> dict[str, Any]:
        content = error_content(ename, evalue, [f"{ename}: {evalue}"])
        self._publish(("error", content), run)
        return {"status": "error", "execution_count": run.count, **content}

    def _finish_reply(self, run: _Run) -> dict[str, Any]:
        extra = remote_reply(run.remote_reply)  # payloads (pager, %load, exit), user_expressions
        if run.error is not None:
            return {"status": "error", "execution_count": run.count, **run.error, **extra}
        if run.exit_code not in (0, None):
            if run.exit_code == 130 and not run.stderr_tail:
                ename, evalue = "RemoteError", "the remote run was killed (exit code 130)"
            else:
                ename, evalue = parse_traceback_text(run.stderr_tail)
            # The traceback text was already shown on stderr; the error carries the summary.
            return self._error_reply(run, ename, evalue)
        if run.interrupted:
            return self._error_reply(run, "KeyboardInterrupt", "interrupted")
        return {"status": "ok", "execution_count": run.count, **extra}

    # -- completion / inspection ----------------------------------------------------------------

    async def _remote_helper(self, method: str, *args: str | int) -> dict[str, Any] | None:
        remote = self.backendai
        if not remote.active or not remote.rich:
            return None
        try:
            return await asyncio.wait_for(remote.helper(method, *args), HELPER_TIMEOUT)
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
        # shutdown_request runs on the control thread; the client belongs to the shell's loop.
        try:
            loop = self._loop
            if loop is not None and loop.is_running() and loop is not asyncio.get_running_loop():
                future = asyncio.run_coroutine_threadsafe(self.backendai.close(), loop)
                await asyncio.wait_for(asyncio.wrap_future(future), 30)
            elif loop is None or loop is asyncio.get_running_loop():
                await asyncio.wait_for(self.backendai.close(), 30)
            else:
                self.backendai.close_sync()
        except (BackendAIError, asyncio.TimeoutError) as e:
            log.warning("session cleanup at shutdown failed: %s", e)
        reply: dict[str, Any] = super().do_shutdown(restart)
        return reply
