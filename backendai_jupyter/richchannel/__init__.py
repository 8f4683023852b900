"""The rich channel: every iopub message of the remote kernel, through a stock Backend.AI runner.

Why
---
The in-container runner of a stock Backend.AI server (protocol.md §4.3, §12) turns the remote
ipykernel's messages into console records and loses most of them on the way: only one MIME type
per output survives, markdown/LaTeX/JSON/widget views are dropped, ``update_display_data``,
``clear_output`` and comms are ignored, errors become coloured text on stderr, completion
returns ``[]``, the ``execute_reply`` (payloads, ``user_expressions``) is never forwarded, and on
26.9.6 an HTML-first output makes the agent fail the whole execute call with a 500. The one
channel the runner carries faithfully is the remote *stdout stream*; this package sends whole
Jupyter messages through it.

Layout (this package imports nothing from the rest of ``backendai_jupyter``)
----------------------------------------------------------------------------
* :mod:`.remote`: the programs that run **inside** the session (stdlib + IPython/ipykernel):
  :mod:`.remote.bootstrap` (installed once per session) and :mod:`.remote.comms` (front-end comm
  messages to the remote comm manager). Real modules, linted, type-checked and tested here;
  sent as text.
* :mod:`.calls`: what the proxy sends: :func:`bootstrap_code`, :func:`with_header` (the one
  cell header), :func:`helper_call`, :func:`dispatch_code`, :func:`comm_info_code`.
* :mod:`.frames`: what comes back: :class:`FrameDecoder`, :func:`frame_message`,
  :func:`read_ready`, :func:`remote_reply`.

API
---
``bootstrap_code() -> str``
    Run once (unheaded, hidden) in a new session; its stdout holds the ``ready`` frame.
``read_ready(stdout_text) -> (nonce, Frame) | None``
    The nonce the remote side chose (never in code, history or the user namespace) and its
    ``ready`` frame (``ipython``, ``ipykernel``, ``language_info``, ``count``). ``None``: no
    IPython remotely; plain console records then.
``with_header(code, nonce, *, count, silent, store_history, user_expressions, allow_stdin)``
    Every run on a rich session goes through it: the remote ``do_execute`` takes the flags from
    the header line and strips it, so history, ``In[n]``, ``_n`` and ``Cell In[n]`` match the
    notebook's. Hidden runs: ``silent=True, store_history=False``. ``nonce=None``: unchanged.
``FrameDecoder(nonce).feed(text) -> [str | Frame]``, ``.flush()``
    Incremental: frames split anywhere across chunks are reassembled; everything else (``\\r``
    progress bars included) passes through as text; a marker with a wrong nonce or a body that
    does not decode stays text, so printed text can never inject messages.
``frame_message(frame, execution_count) -> IopubMessage | None``
    The iopub message a ``msg`` frame carries (with metadata and binary buffers); ``None`` for
    ``ready``/``reply``/``execute_reply`` and malformed frames.
``remote_reply(frame) -> {"payload", "user_expressions"}``, ``EOF_REPLY``
    What a proxy forwards from the remote ``execute_reply``; the input answer meaning "no stdin".
``helper_call(rid, "do_complete" | "do_inspect", *args)``, ``dispatch_code(rid, messages)``,
``comm_info_code(rid, target)``
    Hidden runs answered by a ``reply`` frame / ``bai_comm_*`` messages (:data:`MARK_PARENT`,
    :data:`MARK_DONE`, :data:`MARK_INFO`).

Frames
------
Each frame is one line-free token in the remote stdout::

    ESC ] BAI ; <nonce> ; <base64 of a JSON object> BEL

The JSON object (format version :data:`BOOTSTRAP_VERSION`) is one of:

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

The remote side (on the live kernel instance only: nothing on disk, no class patched) turns every
iopub message except ``stream``/``status``/``execute_input`` into a frame, copies the
``execute_reply`` into one, reads the cell header, makes ``exit``/``quit`` only write their
payload, raises ``StdinNotImplementedError`` for :data:`EOF_REPLY`, and keeps its own frames out
of the tracebacks users see. Frames go through the same stream object as ``print()``, which
keeps their order with ordinary output; stderr written before a frame is flushed first, as
ipykernel does before a display. Frames ride with stdout's own flushes (every 0.05 s), and no
more than 1 MiB of stdout or stderr ever waits in the remote stream buffer: a longer output
leaves the kernel in 1 MiB messages that every later hop forwards while the next is made (the
agent also truncates single stdout records at 10 MiB).

Because ``error`` messages no longer reach the runner, which derives ``finished.exitCode`` from
them, a rich-channel run reports exit code 0 even when the cell failed: the ``execute_reply``
frame's ``status`` is where a failure shows.

Messages sent outside a run (by a thread after its cell finished) become frames all the same,
but a stock runner forwards a kernel's output only while a run is active. Running the bootstrap
again (a kept session found again) re-installs from the saved originals with a new nonce; a
remote kernel restart loses the patches and the proxy falls back to plain console records.
"""

from .calls import (
    BOOTSTRAP_VERSION,
    EOF_REPLY,
    HEADER_TAG,
    MARK_DONE,
    MARK_INFO,
    MARK_PARENT,
    bootstrap_code,
    comm_info_code,
    decode_comm_info,
    dispatch_code,
    encode_batch,
    helper_call,
    with_header,
)
from .frames import (
    FRAME_END,
    FRAME_START,
    Frame,
    FrameDecoder,
    IopubMessage,
    encode_frame,
    frame_message,
    frame_to_message,
    read_ready,
    remote_reply,
)

__all__ = [
    "BOOTSTRAP_VERSION",
    "EOF_REPLY",
    "FRAME_END",
    "FRAME_START",
    "HEADER_TAG",
    "MARK_DONE",
    "MARK_INFO",
    "MARK_PARENT",
    "Frame",
    "FrameDecoder",
    "IopubMessage",
    "bootstrap_code",
    "comm_info_code",
    "decode_comm_info",
    "dispatch_code",
    "encode_batch",
    "encode_frame",
    "frame_message",
    "frame_to_message",
    "helper_call",
    "read_ready",
    "remote_reply",
    "with_header",
]
