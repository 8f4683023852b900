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
SILENT_GRACE = 10.0
"""Seconds a thread a cell started keeps a collector running before it has written anything."""
HELD_MAX = 8 << 20
"""Characters of thread output held while idle; beyond, the oldest is dropped."""
SETTLE = 0.01
"""Seconds between flushing the streams and asking: the common case then needs no second flush."""
PREFIX_TAG = "\x1b]BAIF;"
PLAIN = ("stream", "status", "execute_input")
"""Message types that are no rich output (see :meth:`Pump.end_cell`)."""


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

    def __init__(self, kernel: Any, prefix: str, flush: bool) -> None:
        self.kernel = kernel
        self.prefix = prefix
        self.flushing = flush  # REST: the pump flushes; websocket: it only reports threads
        self.lock = threading.Lock()
        self.pending = threading.Event()
        self.cell: Any = None
        self.seq = 0
        self.last = 0.0
        self.stopped = False
        self.wrapped: dict[str, Any] = {}
        # Output of threads while no cell runs (the runner would drop it), until a collector
        # run (:meth:`collect`) writes it out; bounded, oldest dropped first.
        self.held: list[tuple[str, str]] = []
        self.held_size = 0
        self.held_lock = threading.Lock()
        self.system = set(threading.enumerate())  # the kernel's own threads
        self.writers: set[Any] = set()  # threads (not the kernel's) that wrote output
        self.started: dict[Any, float] = {}  # threads a cell started: until when they count
        self.before: set[Any] = set()
        self.idle = False  # the last execute_request's status was idle: no run is active
        self.rich = False  # the cell sent more than plain streams (a display, a widget's message)

    def install(self) -> None:
        k = self.kernel
        inner_send = k.session.send
        stdin = k.stdin_socket

        def send(stream: Any, msg_or_type: Any, *args: Any, **kwargs: Any) -> Any:
            if stream is not stdin:
                content = args[0] if args else kwargs.get("content")
                if msg_or_type == "status":
                    self.note_status(content, kwargs.get("parent"))
                elif msg_or_type == "stream" and self.idle and isinstance(content, dict):
                    if self.hold(content):
                        return None
                if self.cell is not None:
                    self.pending.set()
                    if not (isinstance(msg_or_type, str) and msg_or_type in PLAIN):
                        self.rich = True
            return inner_send(stream, msg_or_type, *args, **kwargs)

        for stream in (sys.stdout, sys.stderr):
            self.watch_writes(stream)

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
        thread = threading.Thread(target=self.loop, name="backendai-live", daemon=True)
        self.system.add(thread)
        thread.start()

    def watch_writes(self, stream: Any) -> None:
        """Note which threads write to ``stream`` (an instance attribute: no class changed)."""
        inner = stream.write
        system = self.system

        def write(text: Any) -> Any:
            thread = threading.current_thread()
            if thread not in system:
                self.writers.add(thread)
            return inner(text)

        self.wrapped["write " + str(id(stream))] = (stream, write, inner)
        stream.write = write

    def note_status(self, content: Any, parent: Any) -> None:
        header = parent.get("header") if isinstance(parent, dict) else None
        if isinstance(content, dict) and isinstance(header, dict):
            if header.get("msg_type") == "execute_request":
                self.idle = content.get("execution_state") == "idle"

    def hold(self, content: dict[str, Any]) -> bool:
        name, text = content.get("name"), content.get("text")
        if name not in ("stdout", "stderr") or not isinstance(text, str):
            return False
        with self.held_lock:
            self.held.append((name, text))
            self.held_size += len(text)
            while self.held_size > HELD_MAX and len(self.held) > 1:
                self.held_size -= len(self.held.pop(0)[1])
        return True

    def note_started(self) -> None:
        """At a cell's end: threads it started count for a while even before they write."""
        until = time.monotonic() + SILENT_GRACE
        for thread in threading.enumerate():
            if thread not in self.before and thread not in self.system:
                if type(thread).__name__ != "TMonitor":  # tqdm's own monitor
                    self.started.setdefault(thread, until)

    def background(self) -> bool:
        """Whether output may still come from threads while idle: one that wrote output is
        alive, one a cell started lately is alive (it may write soon), or output is held."""
        now = time.monotonic()
        self.writers = {t for t in self.writers if t.is_alive()}
        self.started = {t: u for t, u in self.started.items() if t.is_alive() and u > now}
        return bool(self.writers or self.started or self.held)

    def collect(self) -> None:
        """A hidden run while the kernel is idle: writes out held output, then lets the
        threads' output flow with this run until they have all ended or the run is interrupted
        (the proxy interrupts it as soon as it has another run to make)."""
        main = threading.current_thread()
        try:
            while True:
                with self.held_lock:
                    held, self.held, self.held_size = self.held, [], 0
                for name, text in held:
                    (sys.stdout if name == "stdout" else sys.stderr).write(text)
                self.writers.discard(main)
                if not self.background():
                    return
                time.sleep(0.05)
        except KeyboardInterrupt:
            return

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
        self.rich = False
        self.before = set(threading.enumerate())
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
            if self.cell is not None and self.flushing and self.rich and self.pending.is_set():
                # Output of a cell with rich output (an Output widget's included) that is not
                # flushed yet goes out one REST answer before the run's end: else it reaches
                # the front-end together with the execute_reply, and nbclient, which answers an
                # Output widget's output with a comm_msg on the shell socket it is polling for
                # that reply, misses the reply until its cell timeout (jupyter/nbclient#312).
                # Plain prints skip this round trip.
                self.flush(self.cell)
            self.note_started()
            if self.cell is not None and self.background():
                self.ask(self.cell, "b")  # tells the proxy to run a collector while idle
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
                if self.cell is not None and self.flushing and not self.stopped:
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
        self.ask(target, "f")

    def ask(self, target: Any, kind: str) -> None:
        self.seq += 1
        token = flush_token(self.prefix, kind, self.seq)
        try:
            self.kernel._input_request(token, *target, password=False)
        except BaseException:
            pass  # EOF, an interrupt or a broken stdin channel: the output goes out at the end


def install(flush: bool = True) -> str:
    """Start the pump on the running kernel (``flush``: over REST, flush while a cell runs);
    returns (and prints) the prompt prefix."""
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
    pump = Pump(kernel, prefix, flush)
    pump.install()
    globals()["pump"] = pump
    sys.stdout.write(prefix + "\x07\n")
    sys.stdout.flush()
    return prefix
