"""The rich channel's remote half: installed once into the session's own IPython kernel.

This file runs INSIDE the remote session (stdlib, IPython and ipykernel only, any Python >= 3.8:
nothing from ``backendai_jupyter`` is importable there). The proxy sends its text with
:func:`backendai_jupyter.richchannel.bootstrap_code`, which executes it in the namespace of a
private module ``_backendai_rich`` (never the user's) and calls :func:`install`. See the
package docstring for the frame format and what each replacement is for.

On the live kernel instance only (nothing on disk, no class patched) :func:`install` replaces
``session.send`` (iopub messages become frames on stdout), ``kernel.do_execute`` (the cell
header), ``kernel.raw_input``/``getpass`` (the no-stdin answer), ``shell.ask_exit`` (exit/quit
only write the payload) and ``shell.showtraceback`` (frames of this file never reach a
traceback a user sees: errors, ``%tb``, ``%debug``). The originals are kept in the module, so a
second install (a kept session found again) starts from them with a new nonce.
"""

from __future__ import annotations

import base64
import inspect
import json
import secrets
import sys
from typing import Any

PIECE = 1 << 20
"""At most this many characters of stdout/stderr wait in the kernel's stream buffer: a write
that brings it to this size flushes it, and a longer write goes out in pieces of this size.
ipykernel itself sends a stream only every flush interval, so a loop printing 50 MB would
leave the kernel as ONE 50 MB message that every later hop (agent, manager, proxy, front-end)
has to receive whole before the next can start; in pieces, the hops work at the same time and
none holds the whole output. (The agent also cuts stdout records at 10 MiB.)"""
PASSTHROUGH = ("stream", "status", "execute_input")
FILENAME = "<backendai rich channel>"
"""The file name this code is compiled under remotely: how its frames are recognised."""

originals: dict[str, Any] = globals().setdefault("originals", {})
"""The kernel's own methods, saved by the first install. This text runs again at every install,
in the same module: what an earlier install saved stays."""
unflushed: dict[int, int] = globals().setdefault("unflushed", {})
"""Characters written to each stream (by ``id``) since :func:`flush_stream` last flushed it."""


def flush_stream(stream: Any) -> None:
    unflushed[id(stream)] = 0
    try:
        stream.flush()
    except Exception:
        pass


def bound_writes(stream: Any) -> None:
    """Make ``stream.write`` keep at most :data:`PIECE` characters waiting (see there).

    An instance attribute: no class changed. IPython >= 9 wraps ``write`` during every cell
    and puts back what it found at the cell's end, which drops a wrapper installed during a
    cell; so this runs again before every cell, and does nothing while a wrapper of ours is in
    the chain of wrappers (followed through ``__wrapped__``)."""
    fn = stream.write
    while fn is not None:
        if getattr(fn, "_backendai_piece", False):
            return
        fn = getattr(fn, "__wrapped__", None)
    inner, key = stream.write, id(stream)
    unflushed.setdefault(key, 0)

    def write(text: Any) -> Any:
        if not isinstance(text, str) or len(text) + unflushed[key] < PIECE:
            unflushed[key] += len(text) if isinstance(text, str) else 0
            return inner(text)
        for i in range(0, len(text), PIECE):
            piece = text[i : i + PIECE]
            inner(piece)
            unflushed[key] += len(piece)
            if unflushed[key] >= PIECE:
                flush_stream(stream)
        return len(text)

    setattr(write, "_backendai_piece", True)  # noqa: B010 - a function attribute
    setattr(write, "__wrapped__", inner)  # noqa: B010
    stream.write = write


def install(eof_reply: str, version: int, tag: str) -> None:
    """Install the rich channel on the running kernel, then write the ``ready`` frame."""
    try:
        from IPython import get_ipython
    except ImportError:
        return
    shell = get_ipython()
    kernel: Any = getattr(shell, "kernel", None)
    session = getattr(kernel, "session", None)
    if shell is None or session is None or not hasattr(shell, "display_pub"):
        return
    for name, own in (
        ("send", session.send),
        ("do_execute", kernel.do_execute),
        ("raw_input", kernel.raw_input),
        ("getpass", kernel.getpass),
        ("showtraceback", shell.showtraceback),
    ):
        originals.setdefault(name, own)
    channel = Channel(shell, kernel, secrets.token_urlsafe(16), eof_reply, tag)
    channel.patch()
    globals()["call"] = channel.call  # what helper_call() reaches
    import IPython

    try:
        import ipykernel

        ipk = str(getattr(ipykernel, "__version__", ""))
    except Exception:
        ipk = ""
    channel.emit(
        {
            "t": "ready",
            "v": version,
            "nonce": channel.nonce,
            "ipython": IPython.__version__,
            "ipykernel": ipk,
            "language_info": dict(getattr(kernel, "language_info", {}) or {}),
            "count": shell.execution_count,
        }
    )


def _json_default() -> Any:
    try:
        from jupyter_client.jsonutil import json_default
    except ImportError:
        return repr

    def default(obj: Any) -> Any:
        try:
            return json_default(obj)
        except Exception:
            return repr(obj)

    return default


def _b64(buf: Any) -> str:
    return base64.b64encode(bytes(buf)).decode("ascii")


def without_our_frames(tb: Any) -> Any:
    """``tb`` with the entries of this file's frames unlinked (the chain is edited in place,
    so ``sys.last_traceback`` and the debugger see the same)."""
    while tb is not None and tb.tb_frame.f_code.co_filename == FILENAME:
        tb = tb.tb_next
    head = tb
    while tb is not None:
        nxt = tb.tb_next
        while nxt is not None and nxt.tb_frame.f_code.co_filename == FILENAME:
            nxt = nxt.tb_next
        tb.tb_next = nxt
        tb = nxt
    return head


class Channel:
    """One install: the nonce, the streams frames go to, and the replacements."""

    def __init__(self, shell: Any, kernel: Any, nonce: str, eof_reply: str, tag: str) -> None:
        self.shell = shell
        self.kernel = kernel
        self.session = kernel.session
        self.nonce = nonce
        self.eof_reply = eof_reply
        self.header = tag + nonce + " "
        self.head = "\x1b]BAI;" + nonce + ";"
        self.out, self.err = sys.stdout, sys.stderr
        sockets = (getattr(kernel, "iopub_socket", None), getattr(kernel, "iopub_thread", None))
        self.iopub = [s for s in sockets if s is not None]
        self.default = _json_default()

    def patch(self) -> None:
        self.session.send = self.send
        self.kernel.do_execute = self.do_execute
        self.kernel.raw_input = self.guard(originals["raw_input"], "raw_input")
        self.kernel.getpass = self.guard(originals["getpass"], "getpass")
        self.shell.showtraceback = self.showtraceback
        if getattr(self.shell, "payload_manager", None) is not None:
            self.shell.ask_exit = self.ask_exit
        # ipykernel flushes both streams before every display (``_flush_streams``: two round
        # trips to its I/O thread) to keep them in order with it. A frame goes into stdout,
        # after what was printed before it, so only stderr needs that (:meth:`emit`); without
        # this, a loop updating a display 300 times sends 300 messages of one frame each.
        display_pub: Any = getattr(self.shell, "display_pub", None)
        if callable(getattr(display_pub, "_flush_streams", None)):
            originals.setdefault("_flush_streams", display_pub._flush_streams)
            display_pub._flush_streams = self.flush_before_display
        # ipykernel batches stream output for 0.2 s; a shorter interval gets the first output
        # of a cell to the notebook sooner (the runner and the websocket add their own latency).
        streams: tuple[Any, ...] = (self.out, self.err)  # ipykernel's OutStream, usually
        for stream in streams:
            if isinstance(getattr(stream, "flush_interval", None), float):
                stream.flush_interval = 0.05
            bound_writes(stream)
            if holds_nothing(stream) is not None:
                own = originals.setdefault("flush " + str(id(stream)), stream.flush)
                stream.flush = quick_flush(stream, own)
        # ipykernel sleeps 0.5 ms before every execute_reply, for front-ends that stop reading
        # iopub at the reply and could miss the last output. This kernel's only client is the
        # session's runner, which reads iopub up to the idle status that follows a second
        # flush: here the sleep only delays every cell.
        if isinstance(getattr(self.kernel, "_execute_sleep", None), float):
            self.kernel._execute_sleep = 0.0

    # -- frames ---------------------------------------------------------------------------------

    def frame(self, payload: dict[str, Any]) -> str:
        body = json.dumps(payload, default=self.default).encode()
        return self.head + base64.b64encode(body).decode("ascii") + "\x07"

    def flush_before_display(self) -> None:
        if unflushed.get(id(self.err)):
            flush_stream(self.err)

    def emit(self, payload: dict[str, Any]) -> None:
        """Write one frame into stdout, in order with the output around it."""
        # stderr written before the frame goes out first, as ipykernel flushes the streams
        # before a display. The frame itself rides with stdout's own flushes (every 0.05 s,
        # and per :data:`PIECE`): a flush is a round trip to ipykernel's I/O thread, and a loop
        # updating a display or a widget sends thousands of frames a second.
        if unflushed.get(id(self.err)):
            flush_stream(self.err)
        self.out.write(self.frame(payload))

    def emit_reply(self, payload: dict[str, Any], parent: Any) -> None:
        """The ``execute_reply`` frame, published as the cell's stdout straight on iopub.

        ipykernel flushes both streams right before it sends its reply, so no output of the
        cell is still behind this frame; going through ``sys.stdout`` (:meth:`emit`) would
        cost two waits for ipykernel's I/O thread (a flush of each stream) on every cell, most
        of what the rich channel adds to a cell that prints nothing. On the same iopub queue,
        the frame still goes out before the ``idle`` status that ends the run."""
        topic = getattr(self.out, "topic", None)
        socket = getattr(self.kernel, "iopub_socket", None)
        text = self.frame(payload)
        if not isinstance(topic, bytes) or socket is None or len(text) > PIECE:
            self.emit(payload)  # not ipykernel's OutStream, or a frame too big for one record
            return
        originals["send"](socket, "stream", {"name": "stdout", "text": text}, parent, topic)

    def send(
        self,
        stream: Any,
        msg_or_type: Any,
        content: Any = None,
        parent: Any = None,
        ident: Any = None,
        buffers: Any = None,
        track: bool = False,
        header: Any = None,
        metadata: Any = None,
    ) -> Any:
        """``session.send``: iopub output becomes a frame; the execute_reply is copied into one."""
        if isinstance(msg_or_type, dict):
            msg_type = msg_or_type.get("msg_type") or msg_or_type["header"]["msg_type"]
        else:
            msg_type = msg_or_type
        if any(stream is s for s in self.iopub) and msg_type not in PASSTHROUGH:
            if isinstance(msg_or_type, dict):
                content = msg_or_type.get("content", content)
                metadata = msg_or_type.get("metadata", metadata)
                buffers = msg_or_type.get("buffers") or buffers
            self.emit(
                {
                    "t": "msg",
                    "msg_type": msg_type,
                    "content": content or {},
                    "metadata": metadata or {},
                    "buffers": [_b64(b) for b in buffers or ()],
                }
            )
            if isinstance(msg_or_type, dict):
                return msg_or_type
            return self.session.msg(
                msg_type, content, parent=parent, header=header, metadata=metadata
            )
        if msg_type == "execute_reply":
            self.emit_reply({"t": "execute_reply", "content": content or {}}, parent)
        return originals["send"](
            stream, msg_or_type, content, parent, ident, buffers, track, header, metadata
        )

    # -- cells ----------------------------------------------------------------------------------

    def do_execute(
        self,
        code: str,
        silent: bool,
        store_history: bool = True,
        user_expressions: Any = None,
        allow_stdin: bool = False,
        **kw: Any,
    ) -> Any:
        """``kernel.do_execute``: a cell may start with the header line (see ``with_header``)."""
        if code.startswith(self.header):
            line, _, code = code.partition("\n")
            h = read_header(line[len(self.header) :])
            silent = bool(h.get("silent", silent))
            store_history = bool(h.get("store_history", store_history)) and not silent
            ue = h.get("user_expressions")
            user_expressions = ue if isinstance(ue, dict) else {}
            allow_stdin = bool(h.get("allow_stdin", allow_stdin))
            count = h.get("count")
            if isinstance(count, int) and count > 0 and store_history:
                self.align(count)
        for stream in (self.out, self.err):
            bound_writes(stream)
        return originals["do_execute"](
            code, silent, store_history, user_expressions, allow_stdin, **kw
        )

    def align(self, count: int) -> None:
        """Make the next stored cell number ``count``: pad In/_ih with empty entries, or start
        a new history session when the notebook's count is below what history already holds
        (proxy restarted against a kept session, or the bootstrap's own entry)."""
        hm = getattr(self.shell, "history_manager", None)
        if hm is not None:
            if len(hm.input_hist_parsed) > count:
                hm.reset(new_session=True)
            while len(hm.input_hist_parsed) < count:
                hm.input_hist_parsed.append("")
                hm.input_hist_raw.append("")
        self.shell.execution_count = count

    def guard(self, fn: Any, what: str) -> Any:
        """``raw_input``/``getpass`` that raise ipykernel's error for the no-stdin answer."""
        from IPython.core.error import StdinNotImplementedError

        eof_reply = self.eof_reply

        def ask(*args: Any, **kwargs: Any) -> Any:
            value = fn(*args, **kwargs)
            if value == eof_reply:
                raise StdinNotImplementedError(
                    what + " was called, but this frontend does not support input requests."
                )
            return value

        return ask

    def ask_exit(self) -> None:
        # exit/quit: the remote kernel *is* the session and must not stop; the payload tells
        # the proxy, which then behaves as a local kernel would.
        self.shell.payload_manager.write_payload(
            {"source": "ask_exit", "keepkernel": self.shell.keepkernel_on_exit}
        )

    def showtraceback(self, exc_tuple: Any = None, *args: Any, **kwargs: Any) -> Any:
        """``shell.showtraceback`` without this file's frames (they sit between the user's
        code and ipykernel's: ``input()``, an interrupt during a display, a callback)."""
        found = exc_tuple if exc_tuple is not None else _current_or_last()
        if found is not None and found[1] is not None:
            tb = without_our_frames(found[2])
            exc_tuple = (found[0], found[1].with_traceback(tb), tb)
            if getattr(sys, "last_value", None) is found[1]:
                sys.last_traceback = tb
        return originals["showtraceback"](exc_tuple, *args, **kwargs)

    # -- helpers (completion, inspection) -------------------------------------------------------

    def call(self, rid: str, name: str, *args: Any) -> None:
        """Answer ``kernel.<name>(*args)`` with a ``reply`` frame (see ``helper_call``)."""
        try:
            result = getattr(self.kernel, name)(*args)
            if inspect.isawaitable(result):
                result = _wait(result)
        except Exception as e:
            result = {
                "status": "error",
                "ename": type(e).__name__,
                "evalue": str(e),
                "traceback": [],
            }
        self.emit({"t": "reply", "id": rid, "content": result})


def holds_nothing(stream: Any) -> bool | None:
    """Whether ipykernel's ``OutStream`` has nothing written that is not sent yet; None when
    this is not one we know (another stream, or ``echo`` on)."""
    if getattr(stream, "echo", None) is not None or not hasattr(stream, "_flush_pending"):
        return None
    buffers = getattr(stream, "_buffers", None)  # ipykernel 7: one buffer per parent
    if buffers is None:
        buffer = getattr(stream, "_buffer", None)  # ipykernel 6: one buffer
        if buffer is None or not hasattr(buffer, "tell"):
            return None
        empty = buffer.tell() == 0
    else:
        empty = not buffers
    pending = stream._flush_pending or getattr(stream, "_subprocess_flush_pending", False)
    return empty and not pending


def quick_flush(stream: Any, flush: Any) -> Any:
    """``stream.flush`` that returns at once when nothing was written since the last flush.

    ipykernel flushes both streams before every reply and again before every idle status, and
    each flush waits for its I/O thread even when there is nothing to send: four thread round
    trips on every cell, most of a trivial cell's time. Skipping the empty ones keeps the order
    of everything on iopub (a flush that is under way when this one returns sends before the
    messages queued after it); text written meanwhile by another thread goes out with its own
    flush, as it would a moment after a flush that waited."""

    def quick() -> Any:
        if holds_nothing(stream):
            return None
        return flush()

    return quick


def _current_or_last() -> tuple[Any, Any, Any] | None:
    """The exception being handled, else the last one shown (what ``%tb`` shows again)."""
    current = sys.exc_info()
    if current[1] is not None:
        return current
    last = getattr(sys, "last_value", None)
    if last is None:
        return None
    return type(last), last, getattr(sys, "last_traceback", None)


def read_header(text: str) -> dict[str, Any]:
    """The JSON object of a cell header line; empty when it is not one."""
    try:
        h = json.loads(text)
    except ValueError:
        return {}
    return h if isinstance(h, dict) else {}


def _wait(awaitable: Any) -> Any:
    # The kernel's own loop is busy running this cell: wait on a private one in a thread.
    import asyncio
    import concurrent.futures

    async def wait() -> Any:
        return await awaitable

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, wait()).result()
