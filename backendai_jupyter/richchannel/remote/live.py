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
ASK_BYTES = 2 << 20
"""Characters of output sent since the last request that make the pump ask at once (no
:data:`MIN_GAP`): a cell printing megabytes then comes back in REST answers of a few MB, which
the hops (runner, agent, manager, proxy) forward one while the next is collected."""
AHEAD_MAX = 8 << 20
"""Characters of output a running cell may send beyond what the proxy has received (the
answers to the pump's requests) before its next write waits for the next answer. Without it
a cell printing 50 MB in 0.3 s ends with 40 MB in the agent, sent as ONE answer after the
run's end, which the manager, the proxy and the front-end then handle one after the other,
each holding all of it. Waits only while a cell runs over REST, in the cell's own threads."""
AHEAD_WAIT = 30.0
"""Seconds a cell waits in all for answers (a manager restart takes ~15 s); then its output
flows unthrottled until the cell ends."""
PREFIX_TAG = "\x1b]BAIF;"
PLAIN = ("stream", "status", "execute_input")
"""Message types that are no rich output (see :meth:`Pump.end_cell`)."""


def flush_token(prefix: str, kind: str, seq: int) -> str:
    """The prompt of one request: ``f`` (flush: answer with it) or ``q`` (quiet: no answer)."""
    return prefix + kind + str(seq) + "\x07"


def message_type(msg_or_type: Any) -> Any:
    """The type of what ``session.send`` was given: a type name, or a whole message (what
    ipykernel's streams send)."""
    if isinstance(msg_or_type, dict):
        header = msg_or_type.get("header")
        return msg_or_type.get("msg_type") or (header or {}).get("msg_type")
    return msg_or_type


def message_content(msg_or_type: Any, args: Any, kwargs: Any) -> Any:
    if isinstance(msg_or_type, dict):
        return msg_or_type.get("content")
    return args[0] if args else kwargs.get("content")


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
        self.hurry = threading.Event()  # ASK_BYTES were sent since the last request
        # Characters of stream output a cell sent; at its last request; when that request
        # was answered (the proxy has it all). ``flow`` wakes writers waiting for an answer.
        self.sent = self.asked = self.delivered = 0
        self.flow = threading.Condition()
        self.ahead_left = 0.0  # seconds writers of this cell may still wait (AHEAD_WAIT)
        self.user_input = False  # a user's input() is being asked: no flush meanwhile
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
                kind = message_type(msg_or_type)
                content = message_content(msg_or_type, args, kwargs)
                if kind == "status":
                    self.note_status(content, kwargs.get("parent"))
                elif kind == "stream" and self.idle and isinstance(content, dict):
                    if self.hold(content):
                        return None
                if self.cell is not None:
                    if kind == "stream" and isinstance(content, dict):
                        self.note_sent(content.get("text"))
                    self.pending.set()
                    if kind not in PLAIN:
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
        """Note which threads write to ``stream`` (an instance attribute: no class changed).

        IPython >= 9 wraps ``write`` during every cell and puts back what it found at the
        cell's end, which drops a wrapper installed during a cell (this install's own run):
        so this runs again before every cell, and does nothing while this pump's wrapper is
        in the chain of wrappers (followed through ``__wrapped__``)."""
        fn = stream.write
        while fn is not None:
            if getattr(fn, "_backendai_pump", None) is self:
                return
            fn = getattr(fn, "__wrapped__", None)
        inner = stream.write
        system = self.system

        def write(text: Any) -> Any:
            thread = threading.current_thread()
            if thread not in system:
                self.writers.add(thread)
            if self.cell is not None:
                self.keep_pace()
            return inner(text)

        setattr(write, "_backendai_pump", self)  # noqa: B010 - a function attribute
        setattr(write, "__wrapped__", inner)  # noqa: B010
        self.wrapped["write " + str(id(stream))] = (stream, write, inner)
        stream.write = write

    def note_sent(self, text: Any) -> None:
        if isinstance(text, str):
            self.sent += len(text)
            if self.sent - self.asked >= ASK_BYTES and self.flushing:
                self.hurry.set()

    def keep_pace(self) -> None:
        """A cell's writer waits while its output runs :data:`AHEAD_MAX` ahead of the answers
        (never longer than :data:`AHEAD_WAIT` per cell, never after the cell, never while a
        user's ``input()`` waits: no request is made until it is answered)."""
        if not self.behind() or not self.flushing or self.user_input:
            return
        thread = threading.current_thread()
        if thread in self.system and thread is not threading.main_thread():
            return  # the kernel's own threads (I/O, stdin, this pump) never wait
        with self.flow:
            while self.cell is not None and not self.user_input and self.behind():
                if self.ahead_left <= 0:
                    return
                start = time.monotonic()
                self.flow.wait(self.ahead_left)
                self.ahead_left -= time.monotonic() - start

    def behind(self) -> bool:
        return self.sent - self.delivered > AHEAD_MAX

    def answered(self, mark: int) -> None:
        with self.flow:
            self.delivered = max(self.delivered, mark)
            self.flow.notify_all()

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
        for stream in (sys.stdout, sys.stderr):
            self.watch_writes(stream)
        self.sent = self.asked = self.delivered = 0
        self.ahead_left = AHEAD_WAIT
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
                # Plain prints skip this round trip. The proxy kernel also holds a widget
                # cell's reply back on every transport (kernel/sink.py REPLY_GAP); this flush
                # is kept as well on REST, where 24.03 stalled 2 runs in 3 without either.
                self.flush(self.cell)
            self.note_started()
            if self.cell is not None and self.background():
                self.ask(self.cell, "b")  # tells the proxy to run a collector while idle
            self.cell = None
            self.pending.clear()
        finally:
            self.lock.release()
            self.answered(self.sent)  # no writer waits past its cell

    def guarded(self, fn: Any) -> Any:
        def ask(*args: Any, **kwargs: Any) -> Any:
            self.acquire()
            self.user_input = True  # no flush until it is answered: no writer may wait
            self.answered(0)
            try:
                value = fn(*args, **kwargs)
                target = self.cell or stdin_target(self.kernel)
                while isinstance(value, str) and value.startswith(self.prefix) and target:
                    self.seq += 1
                    quiet = flush_token(self.prefix, "q", self.seq)
                    value = self.kernel._input_request(quiet, *target, password=False)
                return value
            finally:
                self.user_input = False
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
                self.hurry.wait(wait)  # megabytes waiting: ask now
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
        mark = self.asked = self.sent  # this request's answer carries what was sent so far
        self.hurry.clear()
        self.ask(target, "f")
        self.answered(mark)

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
