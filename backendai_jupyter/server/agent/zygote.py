"""A fork server ("zygote") that starts ipykernels in milliseconds instead of ~0.3 CPU-seconds.

Starting an ipykernel is almost all Python + IPython + zmq + debugpy imports. The zygote is one
helper process per local endpoint that does those imports once — starting no thread, no zmq
context, no event loop — and then, per request, ``fork()``\\ s a child that becomes the kernel:

* ``setsid()`` (its own session/process group, so ``killpg``/``kill_tree`` work as today),
  default signal dispositions, every inherited fd closed;
* the limits of :mod:`.limits` (affinity, cgroup or ``RLIMIT_DATA``) applied to itself, exactly
  what the ``limits.py`` launcher does before ``exec``;
* ``chdir`` to the session's working directory, stdout/stderr appended to the session log, stdin
  a pipe nobody writes to (what ``jupyter_client.launch_kernel`` gives a kernel);
* ``os.environ`` replaced wholesale, ``JPY_PARENT_PID`` set to its parent (the zygote: if the
  zygote goes, ipykernel's parent poller ends the kernel), ``sys.argv``/``sys.path[0]``/time zone/
  ``tempfile.tempdir`` set as a fresh ``python -m ipykernel_launcher -f CONN`` would have them;
* then ``IPKernelApp.launch_instance(argv)``; when the kernel ends, the interpreter exits
  normally (``atexit`` handlers — IPython's history — run).

Protocol: newline-delimited JSON over a socketpair (fd given on the command line). Zygote →
endpoint: ``{"hello": pid, "env_read": [...]}`` once the imports are done; ``{"id": n, "pid": p}``
or ``{"id": n, "error": "..."}`` per request; ``{"exit": pid, "status": rc}`` whenever it reaps a
child (``rc`` as ``Popen.returncode``: negative = killed by that signal). Endpoint → zygote:
``{"id": n, "argv": [...], "env": {...}, "cwd": "...", "limits": {...}, "log": "..."}``. EOF from
the endpoint (it exited, however it exited) makes the zygote SIGKILL its children's process
groups and exit: no orphans.

Only what the pre-imported modules cannot have baked in may differ between a session's
environment and the zygote's: the zygote records every environment variable read while
importing (plus ``PYTHON*``/``LC_*``/``LANG``, read by the interpreter itself); a session whose
values differ for any of those — or whose ``$HOME`` has a user site-packages directory the
interpreter would add — is started the classic way (``ZygoteProvisioner`` falls back by itself).

The endpoint side is :class:`Zygote` (the helper process and its protocol) and
:class:`ZygoteProvisioner` (a ``jupyter_client`` provisioner whose ``process`` is a pid the
zygote owns). ``BACKENDAI_JUPYTER_NO_ZYGOTE=1`` disables the whole thing.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import site
import socket
import sys
from pathlib import Path
from typing import Any

from jupyter_client.connect import KernelConnectionInfo
from jupyter_client.provisioning.local_provisioner import LocalProvisioner

from .limits import ENV_VAR, launcher_argv
from .procfs import start_time

__all__ = ["NO_ZYGOTE_VAR", "Zygote", "ZygoteError", "ZygoteProcess", "ZygoteProvisioner"]

NO_ZYGOTE_VAR = "BACKENDAI_JUPYTER_NO_ZYGOTE"

# Variables the interpreter reads at startup (C level), so they must match the zygote's.
_STARTUP_PREFIXES = ("PYTHON", "LC_", "PYDEVD", "DEBUGPY")
_STARTUP_VARS = frozenset({"LANG", "LANGUAGE"})
# Set per kernel by the child itself (or handled explicitly there).
_PER_KERNEL = frozenset({"HOME", "PWD", "TZ", "JPY_PARENT_PID"})


class ZygoteError(RuntimeError):
    """The zygote could not start a kernel (the caller starts it the classic way)."""



class ZygoteProcess:
    """A kernel the zygote forked, shaped like the ``Popen`` that ``LocalProvisioner``
    expects (``pid``, ``poll``, ``wait``, ``send_signal``, ``kill``, ``terminate``)."""

    stdin = stdout = stderr = None

    def __init__(self, zygote: Zygote, pid: int) -> None:
        self.zygote = zygote
        self.pid = pid
        self.start = start_time(pid)
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None:
            rc = self.zygote.exits.pop(self.pid, None)
            if rc is not None:
                self.returncode = rc
            elif not self.zygote.running and start_time(self.pid) != self.start:
                self.returncode = -signal.SIGKILL  # orphaned and gone: status unknown
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        rc = self.poll()
        if rc is None:
            raise RuntimeError("ZygoteProcess.wait() is only called once poll() is set")
        return rc

    def send_signal(self, sig: int) -> None:
        if self.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, sig)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)


class Zygote:
    """The endpoint's handle on its zygote process."""

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.env = dict(env)
        self.log_path = log_path
        self.proc: asyncio.subprocess.Process | None = None
        self.pid: int | None = None
        self.env_read: frozenset[str] = frozenset()
        self.exits: dict[int, int] = {}
        self.running = False
        self.failed: str | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._reader_task: asyncio.Task[None] | None = None
        self._hello = asyncio.Event()
        self._pending: dict[int, asyncio.Future[int]] = {}
        self._next_id = 0

    @staticmethod
    def disabled() -> bool:
        return os.environ.get(NO_ZYGOTE_VAR, "") not in ("", "0")

    async def start(self) -> None:
        """Start the helper (its imports go on in the background; see :meth:`ready`)."""
        try:
            await self._start()
        except Exception as e:  # never fatal: kernels then start the classic way
            self.failed = f"the zygote did not start: {e}"
            self._hello.set()

    async def _start(self) -> None:
        ours, theirs = socket.socketpair()
        try:
            with open(self.log_path, "ab") as log:
                self.proc = await asyncio.create_subprocess_exec(
                    sys.executable,
                    str(Path(__file__).with_name("zygote_main.py")),
                    str(theirs.fileno()),
                    pass_fds=(theirs.fileno(),),
                    stdin=asyncio.subprocess.DEVNULL,
                    stdout=log,
                    stderr=log,
                    env=self.env,
                    cwd="/",
                    start_new_session=True,
                )
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        reader, self._writer = await asyncio.open_unix_connection(sock=ours, limit=2**20)
        self._reader_task = asyncio.create_task(self._read(reader))

    async def _read(self, reader: asyncio.StreamReader) -> None:
        try:
            while line := await reader.readline():
                msg = json.loads(line)
                if "exit" in msg:
                    self.exits[int(msg["exit"])] = int(msg["status"])
                elif "id" in msg:
                    fut = self._pending.pop(int(msg["id"]), None)
                    if fut is not None and not fut.done():
                        if "pid" in msg:
                            fut.set_result(int(msg["pid"]))
                        else:
                            fut.set_exception(ZygoteError(str(msg.get("error"))))
                elif "hello" in msg:
                    self.pid = int(msg["hello"])
                    self.env_read = frozenset(msg.get("env_read", ()))
                    self.running = True
                    self._hello.set()
                elif "fatal" in msg:
                    self.failed = str(msg["fatal"])
        except (OSError, ValueError) as e:
            self.failed = self.failed or f"protocol error: {e}"
        finally:
            self.running = False
            self.failed = self.failed or "the zygote exited"
            self._hello.set()
            for fut in self._pending.values():
                if not fut.done():
                    fut.set_exception(ZygoteError(self.failed))
            self._pending.clear()

    async def ready(self, timeout: float = 60.0) -> bool:
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._hello.wait(), timeout)
        return self.running

    def compatible(self, env: dict[str, str]) -> bool:
        """Whether a kernel with ``env`` may be forked (see the module docstring)."""
        keys = {k for k in (*env, *self.env) if k.startswith(_STARTUP_PREFIXES)}
        keys |= _STARTUP_VARS | self.env_read
        if any(env.get(k) != self.env.get(k) for k in keys - _PER_KERNEL):
            return False
        if site.ENABLE_USER_SITE and "PYTHONUSERBASE" not in env:
            base = os.path.join(env.get("HOME", "/nonexistent"), ".local")
            v = sys.version_info
            if os.path.isdir(f"{base}/lib/python{v[0]}.{v[1]}/site-packages"):
                return False
        return True

    async def spawn(
        self, argv: list[str], env: dict[str, str], cwd: str, limits: dict[str, Any], log: str
    ) -> int:
        if not self.running or self._writer is None:
            raise ZygoteError(self.failed or "the zygote is not running")
        self._next_id += 1
        fut: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._pending[self._next_id] = fut
        req = {"id": self._next_id, "argv": argv, "env": env, "cwd": cwd}
        req |= {"limits": limits, "log": log}
        self._writer.write((json.dumps(req) + "\n").encode())
        return await asyncio.wait_for(fut, 30)

    async def close(self) -> None:
        """EOF to the zygote: it SIGKILLs what is left of its kernels and exits."""
        if self._writer is not None:
            self._writer.close()
            with contextlib.suppress(Exception):
                await self._writer.wait_closed()
        if self.proc is not None:
            try:
                await asyncio.wait_for(self.proc.wait(), 5)
            except asyncio.TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    self.proc.kill()
                await self.proc.wait()
        if self._reader_task is not None:
            with contextlib.suppress(Exception):
                await self._reader_task

    def close_now(self) -> None:
        """Synchronous last resort (server exit)."""
        if self.proc is not None and self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()


class ZygoteProvisioner(LocalProvisioner):
    """``LocalProvisioner`` whose kernel is forked by the zygote; the classic launch (the
    ``limits.py`` launcher + ``Popen``) when the zygote is unusable for this kernel."""

    zygote: Zygote | None
    log_path: str
    #: Host uid/gid of the session's user: the connection file must be readable by it.
    owner: tuple[int, int] | None = None

    async def launch_kernel(self, cmd: list[str], **kwargs: Any) -> KernelConnectionInfo:
        conn = str(getattr(self.parent, "connection_file", "") or "")
        if self.owner is not None and conn:
            # Written by jupyter_client (0600) in the session's runtime directory, which only
            # the endpoint can write to: no symlink can be there.
            os.chown(conn, *self.owner, follow_symlinks=False)
        if self.zygote is None:
            return await super().launch_kernel(launcher_argv(cmd), **kwargs)
        env = dict(kwargs.get("env") or os.environ)
        raw = env.pop(ENV_VAR, "")
        cwd = str(kwargs.get("cwd") or os.getcwd())
        if await self.zygote.ready() and self.zygote.compatible(env):
            limits = json.loads(raw) if raw else {}
            try:
                pid = await self.zygote.spawn(cmd, env, cwd, limits, self.log_path)
            except (ZygoteError, asyncio.TimeoutError):
                pass
            else:
                self.process = ZygoteProcess(self.zygote, pid)  # type: ignore[assignment]
                self.pid = self.pgid = pid
                self.cwd = cwd
                return self.connection_info
        return await super().launch_kernel(launcher_argv(cmd), **kwargs)
