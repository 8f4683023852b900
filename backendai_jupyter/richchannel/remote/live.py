"""Live output over REST: the half that runs INSIDE the remote session (stdlib + ipykernel).

Why: a stock manager answers a REST ``query``/``continue``/``input`` request only after its full
2 s flush timeout, unless the run finishes or asks for input (``waiting-input`` answers at once).
So while a cell runs, a pump thread here asks for input whenever output went out and at least
:data:`MIN_GAP` seconds passed since the last time, with a prompt that carries a nonce
(:func:`flush_token`). The client recognises it, never shows it, and answers at once with the
token; the REST answer that carried the output returns at once: ~0.2 s flushes over the
resumable REST route.

Installed after the rich channel (it wraps what the rich channel installed, on the live kernel
instance only): ``session.send`` (notices output), ``kernel.do_execute`` (a cell's start and
end: the pump only asks while a cell runs, and a cell ends only after the pump's request was
answered, so no request outlives its run), ``kernel.raw_input``/``getpass`` (one stdin request
at a time: a user's ``input()`` and the pump share one lock).

A flush answer the client had to send twice (a retry across a manager restart, when it cannot
know whether the first reached the session) stays queued in the runner and would answer the
next request; the pump ignores what it is answered, and a user's ``input()`` that gets a flush
token asks again with a *quiet* prompt, which the client does not answer: the runner then hands
over the answer the client sent for the user's prompt.

This text is executed in the private module ``_backendai_live`` (:mod:`..pump`); :func:`install`
prints the prompt prefix, which the proxy reads from the run's stdout.
"""

from __future__ import annotations

import inspect
import secrets
import sys
import threading
import time
from typing import Any

MIN_GAP = 0.15
"""Seconds between two flushes of one run: ~5 REST requests a second while a cell prints."""
SETTLE = 0.01
"""Seconds between flushing the streams and asking: the common case then needs no second flush."""
PREFIX_TAG = "\x1b]BAIF;"


def flush_token(prefix: str, kind: str, seq: int) -> str:
    """The prompt of one request: ``f`` (flush: answer with it) or ``q`` (quiet: no answer)."""
    return prefix + kind + str(seq) + "\x07"


def stdin_target(kernel: Any) -> Any:
    """(ident, parent) to address a stdin request to the current cell's front-end, or None."""
    try:
        if hasattr(kernel, "_get_shell_context_var"):  # ipykernel 7
            ident = kernel._get_shell_context_var(kernel._shell_parent_ident)
        else:  # ipykernel 6
            ident = kernel._parent_ident["shell"]
        return ident, kernel.get_parent("shell")
    except Exception:
        return None


class Pump:
    """One install: the lock, the cell being run, the pump thread."""

    def __init__(self, kernel: Any, prefix: str) -> None:
        self.kernel = kernel
        self.prefix = prefix
        self.lock = threading.Lock()
        self.pending = threading.Event()
        self.cell: Any = None
        self.seq = 0
        self.last = 0.0
        self.stopped = False
        self.wrapped: dict[str, Any] = {}

    def install(self) -> None:
        k = self.kernel
        inner_send = k.session.send
        stdin = k.stdin_socket

        def send(stream: Any, *args: Any, **kwargs: Any) -> Any:
            if self.cell is not None and stream is not stdin:
                self.pending.set()
            return inner_send(stream, *args, **kwargs)

        inner_execute = k.do_execute

        def do_execute(*args: Any, **kwargs: Any) -> Any:
            return self.run_cell(inner_execute, args, kwargs)

        self.wrapped = {
            "send": (k.session, send, inner_send),
            "do_execute": (k, do_execute, inner_execute),
            "raw_input": (k, self.guarded(k.raw_input), k.raw_input),
            "getpass": (k, self.guarded(k.getpass), k.getpass),
        }
        for name, (owner, fn, _) in self.wrapped.items():
            setattr(owner, name, fn)
        threading.Thread(target=self.loop, name="backendai-live", daemon=True).start()

    def stop(self) -> None:
        """End the thread; put back what is still ours (a rich-channel reinstall replaced the
        rest), so that a second install never wraps twice."""
        self.stopped = True
        self.pending.set()
        for name, (owner, fn, inner) in self.wrapped.items():
            if getattr(owner, name, None) is fn:
                setattr(owner, name, inner)

    def acquire(self) -> None:
        while True:  # a KeyboardInterrupt must not leave the lock (or the run) behind
            try:
                self.lock.acquire()
                return
            except KeyboardInterrupt:
                continue

    def run_cell(self, inner: Any, args: Any, kwargs: Any) -> Any:
        self.cell = stdin_target(self.kernel)
        try:
            result = inner(*args, **kwargs)
        except BaseException:
            self.end_cell()
            raise
        if not inspect.isawaitable(result):
            self.end_cell()
            return result

        async def finish() -> Any:
            try:
                return await result
            finally:
                self.end_cell()

        return finish()

    def end_cell(self) -> None:
        self.acquire()  # a request in flight is answered before the run may finish
        try:
            self.cell = None
            self.pending.clear()
        finally:
            self.lock.release()

    def guarded(self, fn: Any) -> Any:
        def ask(*args: Any, **kwargs: Any) -> Any:
            self.acquire()
            try:
                value = fn(*args, **kwargs)
                target = self.cell or stdin_target(self.kernel)
                while isinstance(value, str) and value.startswith(self.prefix) and target:
                    self.seq += 1
                    quiet = flush_token(self.prefix, "q", self.seq)
                    value = self.kernel._input_request(quiet, *target, password=False)
                return value
            finally:
                self.lock.release()

        return ask

    def loop(self) -> None:
        owed = False
        while not self.stopped:
            # The runner reads a pending stdin request before pending iopub messages, so output
            # sent just before a prompt can miss that answer: a flush that carried output is
            # followed by one more, MIN_GAP later, even if nothing new was written.
            woke = self.pending.wait(MIN_GAP if owed else None)
            if self.stopped:
                return
            wait = self.last + MIN_GAP - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            self.acquire()
            try:
                self.pending.clear()
                owed = woke and self.cell is not None
                if self.cell is not None and not self.stopped:
                    self.flush(self.cell)
            finally:
                self.lock.release()
            self.last = time.monotonic()

    def flush(self, target: Any) -> None:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:
                pass
        time.sleep(SETTLE)  # lets the runner read that output before the prompt
        self.seq += 1
        token = flush_token(self.prefix, "f", self.seq)
        try:
            self.kernel._input_request(token, *target, password=False)
        except Exception:
            pass  # EOF or a broken stdin channel: output still goes out at the end


def install() -> str:
    """Start live flushing on the running kernel; returns (and prints) the prompt prefix."""
    try:
        from IPython import get_ipython
    except ImportError:
        return ""
    shell = get_ipython()
    kernel = getattr(shell, "kernel", None)
    if kernel is None or not hasattr(kernel, "_input_request"):
        return ""
    old = globals().get("pump")
    if old is not None:
        old.stop()
    prefix = PREFIX_TAG + secrets.token_urlsafe(16) + ";"
    pump = Pump(kernel, prefix)
    pump.install()
    globals()["pump"] = pump
    sys.stdout.write(prefix + "\x07\n")
    sys.stdout.flush()
    return prefix
