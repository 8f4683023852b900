"""The rich channel: full Jupyter display messages through a stock Backend.AI runner.

Why
---
The in-container runner of a stock Backend.AI server (protocol.md §4.3, §12) turns the remote
ipykernel's messages into console records and loses most of them on the way: only one MIME type
per output survives, markdown/LaTeX/JSON/widget views are dropped, ``update_display_data`` and
``clear_output`` are ignored, errors become coloured text on stderr, completion returns ``[]``, and
on 26.9.6 an HTML-first output (``display(HTML(...))``, any pandas DataFrame) makes the agent fail
the whole execute call with a 500 and can wedge the session's run queue.

What
----
The one channel the runner carries faithfully is the *stdout stream*. So right after the session
starts, the proxy kernel runs :func:`bootstrap_code` once in the remote IPython. It replaces, on
the live shell instance only:

* ``shell.display_pub.publish`` / ``.clear_output`` (every ``display()``, matplotlib's inline
  figures, ``display_id`` updates, ``clear_output``),
* ``shell.displayhook.write_format_data`` (the ``Out[n]`` value, i.e. ``execute_result``; the
  hook then has no data left to send),
* ``shell._showtraceback`` (IPython's documented hook "to put the traceback on a different place,
  like a side channel": structured ``ename``/``evalue``/``traceback`` for every error, syntax
  errors included; this is broader than ``set_custom_exc``, which misses syntax errors),
* ``kernel.raw_input`` / ``kernel.getpass``, so that the proxy can answer an input request with
  a clear ``EOFError`` when the front-end set ``allow_stdin=False``.

Each replacement writes the complete message as one *frame* into the real stdout::

    ESC ] BAI ; <nonce> ; <base64 of JSON> BEL

``nonce`` is 128 random bits chosen by the proxy per session and kept in a closure in the remote
process (never in the user namespace), so text a user prints cannot be taken for a frame. Frames
go through the same stream object as ``print()``, which keeps their order with ordinary output;
stderr is flushed first, as ipykernel does before a display. Frames are written in pieces of at
most 1 MiB, each flushed, because the agent truncates single stdout records at 10 MiB; the agent
later concatenates consecutive stdout records and the websocket flushes every 0.2 s, so a frame
can reach the proxy split anywhere: :class:`backendai_jupyter.display.outputs.FrameDecoder` is an
incremental parser that reassembles them and passes all other text through unchanged (``\\r``
progress bars included).

Completion and inspection run as tiny hidden executions (:func:`helper_call`) that call the
remote kernel's own ``do_complete``/``do_inspect`` and answer with a ``reply`` frame.

Nothing is installed on disk; a remote kernel restart simply loses the patches and the proxy falls
back to plain console records until the next bootstrap. Without IPython remotely the bootstrap
prints nothing, no ``ready`` frame arrives, and plain console records keep working.
"""

from __future__ import annotations

import json
import secrets

__all__ = ["BOOTSTRAP_VERSION", "EOF_REPLY", "bootstrap_code", "helper_call", "new_nonce"]

BOOTSTRAP_VERSION = 1
EOF_REPLY = "\x04\x04bai-no-stdin"
"""The input reply that makes the patched remote ``input()`` raise a descriptive EOFError."""

_MODULE = "_backendai_rich"

# Kept small and free of f-string braces: the nonce is substituted with str.replace.
_BOOTSTRAP = r"""
def _bai_install(nonce, eof_reply):
    import base64, inspect, json, sys, types
    try:
        shell = get_ipython()
    except NameError:
        return
    if shell is None or not hasattr(shell, "display_pub"):
        return
    out, err = sys.stdout, sys.stderr
    head = "\x1b]BAI;" + nonce + ";"
    piece = 1 << 20

    def emit(payload):
        body = base64.b64encode(json.dumps(payload, default=repr).encode()).decode("ascii")
        text = head + body + "\x07"
        try:
            err.flush()
        except Exception:
            pass
        for i in range(0, len(text), piece):
            out.write(text[i:i + piece])
            out.flush()

    # ipykernel batches stream output for 0.2 s; a shorter interval gets the first output of
    # a cell to the notebook sooner (the runner and the websocket add their own latency).
    for stream in (out, err):
        if isinstance(getattr(stream, "flush_interval", None), float):
            stream.flush_interval = 0.05

    pub = shell.display_pub

    def publish(data, metadata=None, source=None, *, transient=None, update=False, **kw):
        emit({"t": "display", "data": data, "metadata": metadata or {},
              "transient": transient or {}, "update": bool(update)})

    def clear_output(wait=False):
        emit({"t": "clear", "wait": bool(wait)})

    pub.publish = publish
    pub.clear_output = clear_output

    hook = shell.displayhook

    def write_format_data(format_dict, md_dict=None):
        # The hook's own finish step then finds no data and sends nothing.
        emit({"t": "result", "data": format_dict, "metadata": md_dict or {}})

    hook.write_format_data = write_format_data

    def showtraceback(etype, evalue, stb):
        try:
            out.flush()
        except Exception:
            pass
        shell._last_traceback = stb
        emit({"t": "error", "ename": getattr(etype, "__name__", str(etype)),
              "evalue": str(evalue), "traceback": list(stb or [])})

    shell._showtraceback = showtraceback

    kernel = getattr(shell, "kernel", None)

    def guard(fn, what):
        def ask(*args, **kwargs):
            value = fn(*args, **kwargs)
            if value == eof_reply:
                raise EOFError(what + " is not available: the front-end that ran this cell "
                               "does not accept input (allow_stdin is false)")
            return value
        return ask

    if kernel is not None:
        kernel.raw_input = guard(kernel.raw_input, "input()")
        kernel.getpass = guard(kernel.getpass, "getpass()")

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

    mod = types.ModuleType("_backendai_rich")
    mod.call = call
    sys.modules["_backendai_rich"] = mod
    import IPython
    emit({"t": "ready", "v": VERSION, "ipython": IPython.__version__})

_bai_install("NONCE", "EOF")
del _bai_install
"""


def new_nonce() -> str:
    """128 random bits, URL-safe; one per remote session."""
    return secrets.token_urlsafe(16)


def bootstrap_code(nonce: str) -> str:
    """The code to run once in a fresh remote IPython to install the rich channel."""
    if not nonce.replace("-", "").replace("_", "").isalnum():
        raise ValueError("bad nonce")
    return (
        _BOOTSTRAP.replace('"NONCE"', json.dumps(nonce))
        .replace('"EOF"', json.dumps(EOF_REPLY))
        .replace("VERSION", str(BOOTSTRAP_VERSION))
        .strip()
        + "\n"
    )


def helper_call(rid: str, method: str, *args: object) -> str:
    """A hidden one-line execution asking the remote kernel for ``method(*args)``.

    The answer comes back as a ``reply`` frame with the same ``rid``. Returns None remotely, so
    nothing is displayed and ``_`` is left alone.
    """
    if method not in ("do_complete", "do_inspect"):
        raise ValueError(f"unsupported helper {method!r}")
    if not all(isinstance(a, (str, int)) and not isinstance(a, bool) for a in args):
        raise TypeError("helper arguments must be str or int")
    arglist = ", ".join(repr(a) for a in args)
    return f"__import__('sys').modules[{_MODULE!r}].call({rid!r}, {method!r}, {arglist})\n"
