"""The zygote process itself: ``python zygote_main.py FD`` (see :mod:`.zygote` for the design).

Run as a script, stdlib only until the preload: its own directory is dropped from ``sys.path``
first, so nothing here can shadow a module the kernels import.
"""

from __future__ import annotations

import sys

if __name__ == "__main__":
    del sys.path[0]  # the server directory: never importable by the kernels

import json  # noqa: E402
import os  # noqa: E402
import selectors  # noqa: E402
import signal  # noqa: E402
import socket  # noqa: E402
from typing import Any  # noqa: E402

KERNEL_MODULE = "ipykernel_launcher"

# What a kernel imports by the time it answers ``kernel_info`` (measured: ``sys.modules`` of a
# fresh ipykernel 7 minus ``import ipykernel.kernelapp``), imported by their roots.
PRELOAD = (
    "ipykernel.kernelapp",
    "ipykernel.ipkernel",
    "ipykernel.zmqshell",
    "ipykernel.debugger",
    "IPython.core.completerlib",
    "IPython.core.debugger",
    "IPython.core.logger",
    "IPython.core.oinspect",
    "IPython.extensions.storemagic",
    "IPython.utils.wildcard",
    "tornado.gen",
    "tornado.locks",
    "tornado.queues",
    "tornado.platform.asyncio",
    "sqlite3",
    "psutil",
    "pdb",
    "pydoc",
    "faulthandler",
    "http.server",
    "xmlrpc.server",
    "email.parser",
    "encodings.idna",
    "encodings.latin_1",
    "encodings.ascii",
    "mimetypes",
    "gzip",
    "runpy",
    "pkgutil",
    "resource",
)


# == the zygote process (runs as ``python zygote.py FD``; stdlib imports until ``_preload``) ===


def _record_env_reads() -> tuple[set[str], Any]:
    """Record the keys read through ``os.environ`` while the preload imports run."""
    read: set[str] = set()
    cls = type(os.environ)
    original = cls.__getitem__

    def getitem(self: Any, key: Any) -> Any:
        read.add(key.decode("utf-8", "surrogateescape") if isinstance(key, bytes) else key)
        return original(self, key)

    cls.__getitem__ = getitem  # type: ignore[method-assign]
    return read, original


def _preload() -> tuple[list[str], dict[str, str | None]]:
    """Import :data:`PRELOAD`; returns the variables read and the changes the imports made to
    ``os.environ`` (replayed in each kernel: debugpy sets ``PYDEVD_USE_FRAME_EVAL``, say)."""
    before = dict(os.environ)
    read, original = _record_env_reads()
    try:
        import importlib

        for name in PRELOAD:
            try:
                importlib.import_module(name)
            except Exception:  # noqa: S112 - a missing optional module just isn't preloaded
                continue
    finally:
        type(os.environ).__getitem__ = original  # type: ignore[method-assign]
    after = dict(os.environ)
    changes: dict[str, str | None] = {k: v for k, v in after.items() if before.get(k) != v}
    changes |= dict.fromkeys(before.keys() - after.keys())
    return sorted(read | changes.keys()), changes


def _threads() -> int:
    return len(os.listdir("/proc/self/task"))


class _Child:
    """What a forked child needs after it returns out of the zygote's loop."""

    def __init__(self, req: dict[str, Any]) -> None:
        self.argv: list[str] = list(req["argv"])


def _send(sock: socket.socket, msg: dict[str, Any]) -> None:
    sock.sendall((json.dumps(msg) + "\n").encode())


_HERE = os.path.dirname(os.path.abspath(__file__))


_LIMITS: Any = None  # limits.py, loaded once before the first fork (``_serve``)


def _limits_module() -> Any:
    # limits.py is stdlib-only; load it under a private name (no top-level ``limits`` module
    # appears in the kernels' ``sys.modules``).
    if _LIMITS is not None:
        return _LIMITS
    import importlib.util

    path = os.path.join(_HERE, "limits.py")
    spec = importlib.util.spec_from_file_location("_bjup_limits", path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _apply_limits(limits: dict[str, Any], report_fd: int | None) -> None:
    """Limits, then — for a sandboxed session — into its namespaces: this process stays outside
    as the relay (:func:`limits.relay_child`, never returns) and its child becomes the kernel,
    in its own process group, after writing its pid to ``report_fd``."""
    mod = _limits_module()
    mod.apply_limits(limits)
    sandbox = limits.get("sandbox")
    if isinstance(sandbox, dict):
        mod.enter_sandbox(sandbox)
        mod.relay_child(report_fd)
    sys.modules.pop("_bjup_limits", None)


def _become_kernel(
    req: dict[str, Any],
    stdin_r: int,
    zygote_pid: int,
    env_changes: dict[str, str | None],
    report_fd: int | None = None,
) -> None:
    """In the forked child: turn into what ``limits.py -- python -m ipykernel_launcher`` is."""
    os.setsid()
    for sig in (signal.SIGCHLD, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.set_wakeup_fd(-1)
    signal.pthread_sigmask(signal.SIG_SETMASK, set())
    log = os.open(req["log"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    os.dup2(stdin_r, 0)
    os.dup2(log, 1)
    os.dup2(log, 2)
    if report_fd is not None:  # keep it open across closerange: fd 3
        os.dup2(report_fd, 3)
        report_fd = 3
    os.closerange(
        4 if report_fd is not None else 3,
        os.sysconf("SC_OPEN_MAX") if os.sysconf("SC_OPEN_MAX") > 0 else 65536,
    )
    env: dict[str, str] = dict(req["env"])
    for key, value in env_changes.items():  # the endpoint checked env[key] was as ours
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    env["JPY_PARENT_PID"] = str(zygote_pid)
    os.environ.clear()
    os.environ.update(env)
    # What the interpreter and the preload computed from $HOME: recompute for this one.
    import site
    import sysconfig

    site.USER_BASE = site.USER_SITE = None
    site.getusersitepackages()
    config_vars = getattr(sysconfig, "_CONFIG_VARS", None)
    if isinstance(config_vars, dict) and "userbase" in config_vars:
        config_vars["userbase"] = site.USER_BASE
    import time

    time.tzset()
    import tempfile

    tempfile.tempdir = None
    os.chdir(req["cwd"])
    _apply_limits(req.get("limits") or {}, report_fd)
    argv: list[str] = list(req["argv"])
    import importlib.util

    spec = importlib.util.find_spec(KERNEL_MODULE)  # its path, as ``-m`` sets argv[0]
    sys.argv = [str(spec.origin if spec else KERNEL_MODULE), *argv[3:]]
    sys.orig_argv = list(argv)
    # sys.path: ``python -m`` puts the working directory first and ``ipykernel_launcher`` removes
    # it again before importing anything; the zygote dropped its own directory the same way.


def _read_kernel_pid(fd: int) -> int | None:
    """The pid a sandboxed child's relay reports (its own child: the kernel), or None at EOF.
    Called once the pipe is readable; the line is written at once, so this does not block."""
    data = b""
    try:
        while not data.endswith(b"\n"):
            chunk = os.read(fd, 64)
            if not chunk:
                return None
            data += chunk
        return int(data)
    except (OSError, ValueError):
        return None
    finally:
        os.close(fd)


def _reap(
    sock: socket.socket,
    stdin_w: dict[int, int],
    relays: dict[int, int],
    waiting: dict[int, int | None],
) -> None:
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        w = stdin_w.pop(pid, None)
        if w is not None:
            os.close(w)
        if pid in waiting:  # a relay whose kernel pid is not known yet: report it with that
            waiting[pid] = status
            continue
        pid = relays.pop(pid, pid)  # a sandboxed kernel's relay exits as the kernel did
        try:
            _send(sock, {"exit": pid, "status": os.waitstatus_to_exitcode(status)})
        except OSError:
            pass


def _wakeup_pipe() -> int:
    """A pipe SIGCHLD writes to, so that the selector wakes up to reap; returns its read end."""
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    os.set_blocking(wake_r, False)
    signal.set_wakeup_fd(wake_w, warn_on_full_buffer=False)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    return wake_r


def _drain(fd: int) -> None:
    """Read a non-blocking pipe empty."""
    while True:
        try:
            if not os.read(fd, 512):
                break
        except BlockingIOError:
            break


def _relay_reported(
    sock: socket.socket,
    sel: selectors.BaseSelector,
    key: selectors.SelectorKey,
    relays: dict[int, int],
    waiting: dict[int, int | None],
) -> None:
    """A sandboxed child's report (its kernel's pid) arrived: answer the request to start it."""
    req_id, relay = key.data
    sel.unregister(key.fileobj)
    kernel = _read_kernel_pid(int(key.fd))
    status = waiting.pop(relay, None)
    if kernel is None:  # the child failed before forking: it exits by itself
        _send(sock, {"id": req_id, "error": "could not enter the sandbox"})
        return
    relays[relay] = kernel
    _send(sock, {"id": req_id, "pid": kernel})
    if status is not None:
        _send(sock, {"exit": kernel, "status": os.waitstatus_to_exitcode(status)})
        relays.pop(relay, None)


def _kill_all(pids: list[int]) -> None:
    for pid in pids:
        try:
            os.killpg(pid, signal.SIGKILL)
        except OSError:
            pass


def _fork_kernel(
    sock: socket.socket,
    sel: selectors.BaseSelector,
    req: dict[str, Any],
    me: int,
    env_changes: dict[str, str | None],
    stdin_w: dict[int, int],
    waiting: dict[int, int | None],
) -> _Child | None:
    """Fork a kernel for one request. Returns the request only in the forked child."""
    try:
        argv = req["argv"]
        if argv[:3] != [sys.executable, "-m", KERNEL_MODULE]:
            raise ValueError(f"not an ipykernel command: {argv!r}")
        sandboxed = isinstance((req.get("limits") or {}).get("sandbox"), dict)
        report_r, report_w = os.pipe() if sandboxed else (None, None)
        stdin_r, w = os.pipe()
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
    except Exception as e:
        _send(sock, {"id": req.get("id"), "error": f"{type(e).__name__}: {e}"})
        return None
    if pid == 0:
        try:
            sel.close()
            sock.detach()  # its fd is closed below; no close() at GC time
            _become_kernel(req, stdin_r, me, env_changes, report_w)
            return _Child(req)
        except BaseException:
            import traceback

            traceback.print_exc()
            sys.stderr.flush()
            os._exit(127)
    os.close(stdin_r)
    stdin_w[pid] = w
    if report_r is not None and report_w is not None:
        # Answered when the child reports its kernel's pid (the loop goes on
        # forking meanwhile: sandboxed starts do not queue behind each other).
        os.close(report_w)
        waiting[pid] = None
        sel.register(report_r, selectors.EVENT_READ, (req.get("id"), pid))
        return None
    _send(sock, {"id": req.get("id"), "pid": pid})
    return None


def _serve(sock: socket.socket) -> _Child | None:
    """The zygote's loop. Returns only in a forked child (the request to run) or at EOF (None)."""
    global _LIMITS
    env_read, env_changes = _preload()
    # What every sandboxed start needs, loaded once here rather than after each fork.
    _LIMITS = _limits_module()
    import ctypes  # noqa: F401 - setns/prctl/capset in limits.py
    if _threads() != 1:  # never fork a process with threads
        _send(sock, {"fatal": f"the preload started threads ({_threads()})"})
        return None
    wake_r = _wakeup_pipe()
    stdin_w: dict[int, int] = {}
    relays: dict[int, int] = {}  # relay pid -> the sandboxed kernel's pid
    waiting: dict[int, int | None] = {}  # relays not reported yet -> their exit status if any
    me = os.getpid()
    _send(sock, {"hello": me, "env_read": env_read})
    sel = selectors.DefaultSelector()
    sel.register(sock, selectors.EVENT_READ)
    sel.register(wake_r, selectors.EVENT_READ)
    buf = b""
    while True:
        for key, _ in sel.select():
            if key.fileobj == wake_r:
                _drain(wake_r)
                _reap(sock, stdin_w, relays, waiting)
                continue
            if isinstance(key.data, tuple):  # a sandboxed child's report: its kernel's pid
                _relay_reported(sock, sel, key, relays, waiting)
                continue
            try:
                chunk = sock.recv(65536)
            except ConnectionError:
                chunk = b""
            if not chunk:  # the endpoint is gone: nothing of ours may outlive it
                _kill_all([*stdin_w, *relays.values()])
                return None
            buf += chunk
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                req = json.loads(line)
                child = _fork_kernel(sock, sel, req, me, env_changes, stdin_w, waiting)
                if child is not None:
                    return child


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    sock = socket.socket(fileno=int(args[0]))
    child = _serve(sock)
    if child is None:
        return 0
    from ipykernel import kernelapp

    kernelapp.launch_new_instance(argv=child.argv[3:])
    return 0


if __name__ == "__main__":
    sys.exit(main())
