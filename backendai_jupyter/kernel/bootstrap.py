"""The rich channel: every iopub message of the remote kernel, through a stock Backend.AI runner.

Why
---
The in-container runner of a stock Backend.AI server (protocol.md §4.3, §12) turns the remote
ipykernel's messages into console records and loses most of them on the way: only one MIME type
per output survives, markdown/LaTeX/JSON/widget views are dropped, ``update_display_data``,
``clear_output`` and comms are ignored, errors become coloured text on stderr, completion
returns ``[]``, the ``execute_reply`` (payloads, ``user_expressions``) is never forwarded, and on
26.9.6 an HTML-first output (``display(HTML(...))``, any pandas DataFrame) makes the agent fail
the whole execute call with a 500 and can wedge the session's run queue.

What
----
The one channel the runner carries faithfully is the *stdout stream*. So right after the session
starts, the proxy kernel runs :func:`bootstrap_code` once in the remote IPython. On the live
kernel instance only (nothing on disk, no class patched), it replaces:

* ``kernel.session.send``: every message sent to the **iopub** socket — by IPython's display
  publisher, the displayhook (``execute_result``), ipykernel's traceback hook (``error``),
  ``clear_output``, comms (ipywidgets, tqdm, ipympl: ``comm_open``/``comm_msg``/``comm_close``),
  or code calling ``kernel.session.send(kernel.iopub_socket, ...)`` itself — is written as a frame
  into the real stdout instead of being sent, so the runner never sees it. ``stream``, ``status``
  and ``execute_input`` pass through untouched (stream is how frames travel). On the shell
  socket, the ``execute_reply`` content is first written as a frame, then sent as usual (the
  runner needs it to finish the run).
* ``kernel.do_execute``: a cell may begin with a *header line* (:func:`cell_header`) that carries
  what the runner cannot: the notebook's execution count, ``silent``, ``store_history``,
  ``user_expressions`` and ``allow_stdin``. The header is stripped before IPython sees the
  cell, so history, ``In[n]``, ``_n``, ``Cell In[n]`` and line numbers match the front-end's.
  Without stdin, ipykernel itself raises ``StdinNotImplementedError``.
  (The stock runner always sends ``silent=False, store_history=True, allow_stdin=True`` and
  no ``user_expressions``: 26.9.6 ``BaseRunner.query``.)
* ``shell.ask_exit``: ``exit``/``quit`` only write the ``ask_exit`` payload; the remote kernel
  keeps running (it is the session) and the proxy acts on the payload.
* ``kernel.raw_input`` / ``kernel.getpass``: the input reply :data:`EOF_REPLY` raises
  ``StdinNotImplementedError`` (for cells sent without a header).

Because ``error`` messages no longer reach the runner, which derives ``finished.exitCode`` from
them, a rich-channel run reports exit code 0 even when the cell failed: the ``error`` and
``execute_reply`` frames are where a failure shows.

Frames
------
Each frame is one line-free token in the remote stdout::

    ESC ] BAI ; <nonce> ; <base64 of a JSON object> BEL

``nonce`` is 128 random bits chosen *by the remote bootstrap* and kept in a closure there (never
in code, history or the user namespace), so text a user prints cannot be taken for a frame. The
JSON object (format version :data:`BOOTSTRAP_VERSION`) is one of:

=================  ============================================================================
``t``              fields
=================  ============================================================================
``ready``          ``v`` (2), ``nonce``, ``ipython``, ``ipykernel`` (versions), ``language_info``
                   (the remote kernel's), ``count`` (its execution count): the bootstrap worked
``msg``            ``msg_type``, ``content``, ``metadata``, ``buffers`` (list of base64 strings):
                   one iopub message exactly as the remote kernel sent it
``execute_reply``  ``content``: the remote ``execute_reply`` (``status``, ``execution_count``,
                   ``payload``: page / set_next_input / ask_exit, ``user_expressions``, errors)
``reply``          ``id``, ``content``: the answer to a :func:`helper_call`
=================  ============================================================================

Frames go through the same stream object as ``print()``, which keeps their order with ordinary
output; stderr is flushed first, as ipykernel does before a display. Frames are written in pieces
of at most 1 MiB, each flushed, because the agent truncates single stdout records at 10 MiB; the
agent later concatenates consecutive stdout records and the websocket flushes every 0.2 s, so a
frame can reach the proxy split anywhere: :class:`backendai_jupyter.display.outputs.FrameDecoder`
reassembles them and passes all other text through unchanged (``\\r`` progress bars included);
:func:`backendai_jupyter.display.outputs.frame_message` turns a frame into an ``IopubMessage``.

Messages sent outside a run (by a thread after its cell finished, or between cells) become frames
all the same, but the runner forwards a kernel's output only while a run is active and only for
that run's request: such output is lost, exactly like ``print()`` from such a thread. A thread's
messages *during* a run arrive with that run.

Completion and inspection run as tiny hidden executions (:func:`helper_call`, sent with a
``silent`` header so they touch neither the counter nor the history) that call the remote
kernel's own ``do_complete``/``do_inspect`` and answer with a ``reply`` frame.

Running the bootstrap again (a kept session found again) re-installs from the saved originals
with a new nonce. A remote kernel restart simply loses the patches and the proxy falls back to
plain console records until the next bootstrap. Without IPython remotely the bootstrap prints
nothing, no ``ready`` frame arrives, and plain console records keep working.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Mapping
from typing import Any

__all__ = [
    "BOOTSTRAP_VERSION",
    "EOF_REPLY",
    "HEADER_TAG",
    "bootstrap_code",
    "cell_header",
    "helper_call",
    "new_nonce",
]

BOOTSTRAP_VERSION = 2
EOF_REPLY = "\x04\x04bai-no-stdin"
"""The input reply that makes the patched remote ``input()`` raise ``StdinNotImplementedError``."""
HEADER_TAG = "#\x1bbai:"
"""Start of a cell header line: ``HEADER_TAG + nonce + " " + JSON``."""

_MODULE = "_backendai_rich"

# Kept free of f-string braces; constants are substituted with str.replace.
_BOOTSTRAP = r"""
def _bai_install(eof_reply, version, tag):
    import base64, inspect, json, secrets, sys, types
    try:
        shell = get_ipython()
    except NameError:
        return
    kernel = getattr(shell, "kernel", None)
    session = getattr(kernel, "session", None)
    if session is None or not hasattr(shell, "display_pub"):
        return
    try:
        from jupyter_client.jsonutil import json_default
    except ImportError:
        json_default = repr
    from IPython.core.error import StdinNotImplementedError

    mod = sys.modules.get("_backendai_rich")
    if mod is None:
        mod = types.ModuleType("_backendai_rich")
        mod.originals = {
            "send": session.send,
            "do_execute": kernel.do_execute,
            "raw_input": kernel.raw_input,
            "getpass": kernel.getpass,
        }
        sys.modules["_backendai_rich"] = mod
    orig = mod.originals
    nonce = secrets.token_urlsafe(16)
    out, err = sys.stdout, sys.stderr
    head = "\x1b]BAI;" + nonce + ";"
    piece = 1 << 20
    send = orig["send"]
    iopub = (getattr(kernel, "iopub_socket", None), getattr(kernel, "iopub_thread", None))
    passthrough = ("stream", "status", "execute_input")

    def default(obj):
        try:
            return json_default(obj)
        except Exception:
            return repr(obj)

    unflushed = [0]
    comm_types = ("comm_open", "comm_msg", "comm_close")

    def emit(payload):
        body = base64.b64encode(json.dumps(payload, default=default).encode()).decode("ascii")
        text = head + body + "\x07"
        # A comm message (a widget update: thousands per second from a tqdm loop) rides with
        # the stream's own 0.05 s flushes; each flush is a round trip to ipykernel's I/O thread.
        # Everything else is flushed at once, stderr first, as ipykernel does before a display.
        eager = payload.get("msg_type") not in comm_types
        if eager:
            try:
                err.flush()
            except Exception:
                pass
        for i in range(0, len(text), piece):
            out.write(text[i:i + piece])
            unflushed[0] += min(piece, len(text) - i)
            # The agent cuts stdout records at 10 MiB: never let more than a piece pile up.
            if eager or unflushed[0] >= piece:
                out.flush()
                unflushed[0] = 0

    # ipykernel batches stream output for 0.2 s; a shorter interval gets the first output of
    # a cell to the notebook sooner (the runner and the websocket add their own latency).
    for stream in (out, err):
        if isinstance(getattr(stream, "flush_interval", None), float):
            stream.flush_interval = 0.05

    def b64(buf):
        return base64.b64encode(bytes(buf)).decode("ascii")

    def send_any(stream, msg_or_type, content=None, parent=None, ident=None, buffers=None,
                 track=False, header=None, metadata=None):
        if isinstance(msg_or_type, dict):
            msg_type = msg_or_type.get("msg_type") or msg_or_type["header"]["msg_type"]
        else:
            msg_type = msg_or_type
        if any(stream is s for s in iopub if s is not None) and msg_type not in passthrough:
            if isinstance(msg_or_type, dict):
                content = msg_or_type.get("content", content)
                metadata = msg_or_type.get("metadata", metadata)
                buffers = msg_or_type.get("buffers") or buffers
            emit({"t": "msg", "msg_type": msg_type, "content": content or {},
                  "metadata": metadata or {}, "buffers": [b64(b) for b in buffers or ()]})
            if isinstance(msg_or_type, dict):
                return msg_or_type
            return session.msg(msg_type, content, parent=parent, header=header,
                               metadata=metadata)
        if msg_type == "execute_reply":
            emit({"t": "execute_reply", "content": content or {}})
        return send(stream, msg_or_type, content, parent, ident, buffers, track, header,
                    metadata)

    session.send = send_any

    hdr = tag + nonce + " "
    cell = {"stdin": True}

    def align(count):
        # Make the next stored cell number ``count``: pad In/_ih with empty entries, or start
        # a new history session when the notebook's count is below what history already holds
        # (proxy restarted against a kept session, or the bootstrap's own entry).
        hm = getattr(shell, "history_manager", None)
        if hm is not None:
            if len(hm.input_hist_parsed) > count:
                hm.reset(new_session=True)
            while len(hm.input_hist_parsed) < count:
                hm.input_hist_parsed.append("")
                hm.input_hist_raw.append("")
        shell.execution_count = count

    def do_execute(code, silent, store_history=True, user_expressions=None,
                   allow_stdin=False, **kw):
        cell["stdin"] = True
        if code.startswith(hdr):
            line, _, code = code.partition("\n")
            try:
                h = json.loads(line[len(hdr):])
            except ValueError:
                h = {}
            if not isinstance(h, dict):
                h = {}
            silent = bool(h.get("silent", silent))
            store_history = bool(h.get("store_history", store_history)) and not silent
            ue = h.get("user_expressions")
            user_expressions = ue if isinstance(ue, dict) else {}
            allow_stdin = bool(h.get("allow_stdin", allow_stdin))
            cell["stdin"] = allow_stdin
            count = h.get("count")
            if isinstance(count, int) and count > 0 and store_history:
                align(count)
        return orig["do_execute"](code, silent, store_history, user_expressions, allow_stdin, **kw)

    kernel.do_execute = do_execute

    def guard(fn, what):
        def ask(*args, **kwargs):
            value = fn(*args, **kwargs)
            if value == eof_reply:
                raise StdinNotImplementedError(
                    what + " was called, but this frontend does not support input requests.")
            return value
        return ask

    def ask_exit():
        # exit/quit: the remote kernel *is* the session and must not stop; the payload tells
        # the proxy, which then behaves as a local kernel would.
        shell.payload_manager.write_payload(
            {"source": "ask_exit", "keepkernel": shell.keepkernel_on_exit})

    if getattr(shell, "payload_manager", None) is not None:
        shell.ask_exit = ask_exit

    kernel.raw_input = guard(orig["raw_input"], "raw_input")
    kernel.getpass = guard(orig["getpass"], "getpass")

    def call(rid, name, *args):
        try:
            result = getattr(kernel, name)(*args)
            if inspect.isawaitable(result):
                import asyncio, concurrent.futures
                async def wait(aw=result):
                    return await aw
                with concurrent.futures.ThreadPoolExecutor(1) as pool:
                    result = pool.submit(asyncio.run, wait()).result()
        except Exception as e:
            result = {"status": "error", "ename": type(e).__name__, "evalue": str(e),
                      "traceback": []}
        emit({"t": "reply", "id": rid, "content": result})

    mod.call = call
    import IPython
    try:
        import ipykernel
        ipk = ipykernel.__version__
    except Exception:
        ipk = ""
    emit({"t": "ready", "v": version, "nonce": nonce, "ipython": IPython.__version__,
          "ipykernel": ipk, "language_info": dict(getattr(kernel, "language_info", {}) or {}),
          "count": shell.execution_count})

_bai_install("EOF", VERSION, "TAG")
del _bai_install
"""


def new_nonce() -> str:
    """128 random bits, URL-safe (what the remote bootstrap uses; tests use it too)."""
    return secrets.token_urlsafe(16)


def bootstrap_code() -> str:
    """The code to run once in the remote IPython to install the rich channel.

    It holds no secret: the remote side picks the nonce and names it in its ``ready`` frame
    (:func:`backendai_jupyter.display.outputs.read_ready` finds it).
    """
    return (
        _BOOTSTRAP.replace('"EOF"', json.dumps(EOF_REPLY))
        .replace('"TAG"', json.dumps(HEADER_TAG))
        .replace("VERSION", str(BOOTSTRAP_VERSION))
        .strip()
        + "\n"
    )


def cell_header(
    nonce: str,
    *,
    count: int | None = None,
    silent: bool = False,
    store_history: bool = True,
    user_expressions: Mapping[str, str] | None = None,
    allow_stdin: bool = True,
) -> str:
    """The first line to put before a cell's code: what the remote ``do_execute`` should use.

    ``count`` becomes the cell's remote execution count (when it is stored in history).
    """
    if not nonce.replace("-", "").replace("_", "").isalnum():
        raise ValueError("bad nonce")
    h: dict[str, Any] = {
        "silent": silent,
        "store_history": store_history,
        "allow_stdin": allow_stdin,
        "user_expressions": dict(user_expressions or {}),
    }
    if count is not None:
        h["count"] = int(count)
    return f"{HEADER_TAG}{nonce} {json.dumps(h, ensure_ascii=True)}\n"


def helper_call(rid: str, method: str, *args: object) -> str:
    """A hidden one-line execution asking the remote kernel for ``method(*args)``.

    The answer comes back as a ``reply`` frame with the same ``rid``. Returns None remotely, so
    nothing is displayed and ``_`` is left alone. Send it after a ``silent`` :func:`cell_header`.
    """
    if method not in ("do_complete", "do_inspect"):
        raise ValueError(f"unsupported helper {method!r}")
    if not all(isinstance(a, (str, int)) and not isinstance(a, bool) for a in args):
        raise TypeError("helper arguments must be str or int")
    arglist = ", ".join(repr(a) for a in args)
    return f"__import__('sys').modules[{_MODULE!r}].call({rid!r}, {method!r}, {arglist})\n"
