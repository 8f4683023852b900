"""Pure mapping from Backend.AI run output to Jupyter messages. No I/O, no kernel, no client.

Two kinds of input are mapped here:

* **Console records** as the stock runner sends them (protocol.md §4.3): ``stdout``/``stderr``
  text, ``media`` ``(mime, data)`` pairs (images carry a ``data:<mime>;base64,`` prefix that Jupyter
  front-ends do not expect), ``html`` strings. :func:`console_to_messages` turns one record into
  ``(msg_type, content)`` tuples.
* **Rich-channel frames**: the proxy kernel's remote bootstrap
  (``backendai_jupyter.kernel.bootstrap``) writes complete Jupyter display messages into the
  remote *stdout* as
  ``ESC ] BAI ; <nonce> ; <base64 JSON> BEL``. :class:`FrameDecoder` is an incremental parser over
  that stdout text: it extracts frames that carry the session's nonce (even when a frame is split
  across chunks) and passes everything else through as ordinary text. :func:`frame_message`
  maps one decoded frame to a full :class:`IopubMessage` (type, content, metadata, binary
  buffers); :func:`frame_to_message` is its ``(msg_type, content)`` short form.
  :func:`read_ready` finds the ``ready`` frame of the bootstrap run (which names the nonce).

The magics reuse this module, so it must stay independent of ipykernel.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "FRAME_END",
    "FRAME_START",
    "Frame",
    "FrameDecoder",
    "IopubMessage",
    "Message",
    "console_to_messages",
    "encode_frame",
    "error_content",
    "frame_message",
    "frame_to_message",
    "media_bundle",
    "parse_traceback_text",
    "read_ready",
    "remote_reply",
    "strip_ansi",
]

Message = tuple[str, dict[str, Any]]
"""``(msg_type, content)`` ready for ``session.send(iopub, msg_type, content, parent)``."""

FRAME_START = "\x1b]BAI;"
FRAME_END = "\x07"

_DATA_URI = re.compile(r"^data:(?P<mime>[\w.+-]+/[\w.+-]+)?(?:;[\w-]+=[^;,]*)*(?P<b64>;base64)?,")
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07")
_JSON_MIME = re.compile(r"^application/(.+\+)?json$")


def strip_ansi(text: str) -> str:
    """Remove ANSI colour/cursor sequences (IPython tracebacks are coloured)."""
    return _ANSI.sub("", text)


def _strip_data_uri(mime: str, data: str) -> str:
    match = _DATA_URI.match(data)
    if match is None:
        return data
    payload = data[match.end() :]
    if match.group("b64") or mime.startswith("image/") and mime != "image/svg+xml":
        return payload
    # A percent-encoded text data URI (rare): decode it to the text front-ends expect.
    from urllib.parse import unquote

    return unquote(payload)


def media_bundle(mime: str, data: Any) -> dict[str, Any]:
    """A Jupyter MIME bundle for one runner ``media`` record.

    Binary images lose their ``data:`` URI prefix (front-ends want bare base64); SVG and HTML stay
    text; a JSON MIME type keeps structured data (parsed when it arrives as text).
    """
    mime = mime.strip().lower() or "application/octet-stream"
    if isinstance(data, str):
        data = _strip_data_uri(mime, data)
        if _JSON_MIME.match(mime):
            try:
                data = json.loads(data)
            except ValueError:
                pass
    elif isinstance(data, (bytes, bytearray)):
        data = base64.b64encode(bytes(data)).decode("ascii")
    elif not _JSON_MIME.match(mime):
        data = json.dumps(data) if isinstance(data, (dict, list)) else str(data)
    bundle: dict[str, Any] = {mime: data}
    if mime != "text/plain":
        bundle["text/plain"] = f"<{mime} output>"
    return bundle


def console_to_messages(kind: str, data: Any) -> list[Message]:
    """Map one console record (``ConsoleItem.kind``, ``ConsoleItem.data``) to iopub messages.

    ======================= =====================================================
    record                  message
    ======================= =====================================================
    ``stdout``/``stderr``   ``stream`` (text kept verbatim, ``\\r`` included)
    ``log``                 ``stream`` on stderr
    ``media`` (mime, data)  ``display_data`` with :func:`media_bundle`
    ``html``                ``display_data`` ``text/html``
    ``completion``          nothing (answers, not output)
    anything else           ``stream`` stdout with its text
    ======================= =====================================================
    """
    if kind in ("stdout", "stderr"):
        text = data if isinstance(data, str) else str(data)
        return [("stream", {"name": kind, "text": text})] if text else []
    if kind == "log":
        text = data if isinstance(data, str) else json.dumps(data)
        return [
            ("stream", {"name": "stderr", "text": text if text.endswith("\n") else text + "\n"})
        ]
    if kind == "media":
        if isinstance(data, (list, tuple)) and len(data) == 2:
            mime, payload = str(data[0]), data[1]
        elif isinstance(data, Mapping):
            mime, payload = str(data.get("type", "")), data.get("data")
        else:
            mime, payload = "text/html", data
        return [
            ("display_data", {"data": media_bundle(mime, payload), "metadata": {}, "transient": {}})
        ]
    if kind == "html":
        html = data if isinstance(data, str) else str(data)
        bundle = {"text/html": html, "text/plain": "<HTML output>"}
        return [("display_data", {"data": bundle, "metadata": {}, "transient": {}})]
    if kind == "completion":
        return []
    text = data if isinstance(data, str) else json.dumps(data)
    return [("stream", {"name": "stdout", "text": text})] if text else []


def error_content(ename: str, evalue: str, traceback: list[str]) -> dict[str, Any]:
    return {"ename": ename, "evalue": evalue, "traceback": list(traceback)}


_EXC_LINE = re.compile(
    r"^(?P<ename>[A-Za-z_][\w.]*(?:Error|Exception|Interrupt|Exit|Warning|[A-Z]\w*))"
    r"(?::\s?(?P<evalue>.*))?$"
)


def parse_traceback_text(text: str) -> tuple[str, str]:
    """Find ``(ename, evalue)`` in a plain traceback printed on stderr (no rich channel).

    The stock runner forwards an IPython error as its coloured traceback text (protocol.md §12);
    the exception line is the last non-empty line that looks like ``Name: value``.
    """
    lines = [ln.rstrip() for ln in strip_ansi(text).splitlines() if ln.strip()]
    for line in reversed(lines):
        if line.startswith((" ", "\t", "File ", "Cell ", "---", "^")):
            continue
        match = _EXC_LINE.match(line)
        if match:
            return match.group("ename"), match.group("evalue") or ""
    return "RemoteError", lines[-1] if lines else "the remote code failed"


# -- the rich channel ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Frame:
    """One decoded rich-channel frame: the JSON object the remote bootstrap sent."""

    payload: dict[str, Any]

    @property
    def type(self) -> str:
        return str(self.payload.get("t", ""))


def encode_frame(nonce: str, payload: Mapping[str, Any]) -> str:
    """The wire form of one frame (what the remote bootstrap writes); used by tests and docs."""
    body = base64.b64encode(json.dumps(payload).encode()).decode("ascii")
    return f"{FRAME_START}{nonce};{body}{FRAME_END}"


class FrameDecoder:
    """Incremental splitter of remote stdout into plain text and nonce-marked frames.

    ``feed(chunk)`` returns the pieces that are complete so far, in order: ``str`` for text to show
    and :class:`Frame` for frames. A possible frame prefix at the end of a chunk is held back until
    the next chunk decides it; :meth:`flush` releases whatever is left at the end of a run. A
    marker with a wrong nonce, or a frame whose body does not decode, is passed through as text,
    so user output can never inject messages.
    """

    def __init__(self, nonce: str) -> None:
        if not nonce or not re.fullmatch(r"[0-9A-Za-z_-]+", nonce):
            raise ValueError("the nonce must be a non-empty token of [0-9A-Za-z_-]")
        self.marker = f"{FRAME_START}{nonce};"
        self._buf = ""
        self._scanned = 0  # how much of an incomplete frame at the buffer's start was searched

    def feed(self, text: str) -> list[str | Frame]:
        # One pass with a moving position: a chunk can hold thousands of frames (a widget
        # update loop), so the buffer is cut once at the end, never once per frame.
        buf = self._buf + text
        out: list[str | Frame] = []
        marker, n, pos = self.marker, len(buf), 0
        while pos < n:
            start = buf.find(marker, pos)
            if start < 0:
                tail = buf[max(pos, n - len(marker)) :]
                keep = self._partial_marker_len(tail)
                if n - keep > pos:
                    out.append(buf[pos : n - keep])
                pos = n - keep
                break
            if start > pos:
                out.append(buf[pos:start])
            # A frame still incomplete after the last chunk: search only the new text for its end.
            scan = max(start + len(marker), self._scanned if start == 0 else 0)
            end = buf.find(FRAME_END, scan)
            if end < 0:
                pos = start
                break
            frame = _decode_body(buf[start + len(marker) : end])
            out.append(frame if frame is not None else buf[start : end + 1])
            pos = end + 1
        # Set only when the buffer now starts with an incomplete frame: all of it was searched.
        self._scanned = n - pos if buf.startswith(marker, pos) else 0
        self._buf = buf[pos:]
        return _merge_text(out)

    def flush(self) -> list[str | Frame]:
        """End of the run: an unterminated frame or held-back prefix becomes plain text."""
        rest, self._buf = self._buf, ""
        return [rest] if rest else []

    @property
    def pending(self) -> int:
        """Characters held back (a frame in progress or a possible marker prefix)."""
        return len(self._buf)

    def _partial_marker_len(self, text: str) -> int:
        marker = self.marker
        for n in range(min(len(marker) - 1, len(text)), 0, -1):
            if text.endswith(marker[:n]):
                return n
        return 0


def _decode_body(body: str) -> Frame | None:
    try:
        payload = json.loads(base64.b64decode(body.encode("ascii"), validate=True))
    except (ValueError, binascii.Error, UnicodeEncodeError):
        return None
    return Frame(payload) if isinstance(payload, dict) else None


def _merge_text(parts: list[str | Frame]) -> list[str | Frame]:
    merged: list[str | Frame] = []
    for part in parts:
        if isinstance(part, str) and merged and isinstance(merged[-1], str):
            merged[-1] += part
        elif not (isinstance(part, str) and not part):
            merged.append(part)
    return merged


def _bundle(value: Any) -> dict[str, Any]:
    return dict(value) if isinstance(value, Mapping) else {}


_MSG_TYPE = re.compile(r"^[a-z][a-z_]{0,63}$")
_NOT_OUTPUT = frozenset({"status", "execute_input", "execute_reply", "input_request"})


@dataclass(frozen=True)
class IopubMessage:
    """One iopub message as the remote kernel sent it: ready for
    ``session.send(iopub, msg_type, content, parent, metadata=..., buffers=...)``."""

    msg_type: str
    content: dict[str, Any]
    metadata: dict[str, Any] = field(default_factory=dict)
    buffers: tuple[bytes, ...] = ()

    @property
    def short(self) -> Message:
        return self.msg_type, self.content


def _buffers(value: Any) -> tuple[bytes, ...] | None:
    if value is None:
        return ()
    if not isinstance(value, list):
        return None
    try:
        return tuple(base64.b64decode(str(b).encode("ascii"), validate=True) for b in value)
    except (ValueError, binascii.Error, UnicodeEncodeError):
        return None


def _generic(p: Mapping[str, Any], execution_count: int | None) -> IopubMessage | None:
    msg_type = p.get("msg_type")
    content = p.get("content")
    buffers = _buffers(p.get("buffers"))
    if (
        not isinstance(msg_type, str)
        or not _MSG_TYPE.match(msg_type)
        or msg_type in _NOT_OUTPUT
        or not isinstance(content, Mapping)
        or buffers is None
    ):
        return None
    content = dict(content)
    if msg_type == "execute_result":
        # The remote count is the notebook's once the counter is carried (bootstrap header);
        # the proxy's own count is the authority either way.
        content["execution_count"] = execution_count
    elif msg_type == "update_display_data" and not _bundle(content.get("transient")).get(
        "display_id"
    ):
        return None
    return IopubMessage(msg_type, content, _bundle(p.get("metadata")), buffers)


def frame_message(frame: Frame, execution_count: int | None = None) -> IopubMessage | None:
    """Map one rich-channel frame to the iopub message it carries; ``None`` if it carries none.

    ``t: "msg"`` frames (bootstrap v2) hold any iopub message the remote kernel sent —
    ``display_data``, ``update_display_data``, ``execute_result``, ``clear_output``, ``error``,
    ``comm_open``/``comm_msg``/``comm_close`` and whatever else a library sends — with its
    ``metadata`` and base64 ``buffers``; an ``execute_result`` gets ``execution_count``.
    Frames of bootstrap v1 are still understood (see :func:`frame_to_message`). ``ready``,
    ``reply`` (helper answers) and ``execute_reply`` carry no output: ``None``; so does a
    malformed frame (unknown type name, content not an object, buffers not base64).
    """
    if frame.type == "msg":
        return _generic(frame.payload, execution_count)
    legacy = _legacy_to_message(frame, execution_count)
    if legacy is None:
        return None
    return IopubMessage(legacy[0], legacy[1])


def frame_to_message(frame: Frame, execution_count: int | None = None) -> Message | None:
    """``(msg_type, content)`` of :func:`frame_message` (metadata and buffers left out).

    ============ =======================================================================
    frame ``t``  message
    ============ =======================================================================
    ``msg``      the message it carries (``msg_type``, ``content``)
    ``display``  (v1) ``display_data`` (or ``update_display_data`` when ``update`` is true)
    ``result``   (v1) ``execute_result`` with the *notebook's* execution count
    ``clear``    (v1) ``clear_output`` (``wait`` kept)
    ``error``    (v1) ``error`` (ename, evalue, traceback)
    ``stream``   (v1) ``stream`` (name, text)
    other        ``None`` (``ready``, ``reply``, ``execute_reply``: consumed by the kernel)
    ============ =======================================================================
    """
    msg = frame_message(frame, execution_count)
    return msg.short if msg is not None else None


def _legacy_to_message(frame: Frame, execution_count: int | None) -> Message | None:
    p = frame.payload
    kind = frame.type
    if kind == "display":
        content: dict[str, Any] = {
            "data": _bundle(p.get("data")),
            "metadata": _bundle(p.get("metadata")),
            "transient": _bundle(p.get("transient")),
        }
        msg_type = "update_display_data" if p.get("update") else "display_data"
        if msg_type == "update_display_data" and not content["transient"].get("display_id"):
            return None
        return msg_type, content
    if kind == "result":
        return "execute_result", {
            "data": _bundle(p.get("data")),
            "metadata": _bundle(p.get("metadata")),
            "execution_count": execution_count,
        }
    if kind == "clear":
        return "clear_output", {"wait": bool(p.get("wait", False))}
    if kind == "error":
        tb = p.get("traceback")
        return "error", error_content(
            str(p.get("ename", "Error")),
            str(p.get("evalue", "")),
            [str(line) for line in tb] if isinstance(tb, list) else [],
        )
    if kind == "stream":
        name = "stderr" if p.get("name") == "stderr" else "stdout"
        return "stream", {"name": name, "text": str(p.get("text", ""))}
    return None


_READY = re.compile(re.escape(FRAME_START) + r"(?P<nonce>[0-9A-Za-z_-]{16,64});")


def read_ready(text: str) -> tuple[str, Frame] | None:
    """The nonce and ``ready`` frame in the complete stdout of the bootstrap run, if any.

    The remote bootstrap chooses the nonce itself (so it never appears in code, history or the
    user namespace) and announces it in its ``ready`` frame; the frame counts only if the nonce
    it is marked with is the one it names.
    """
    for match in _READY.finditer(text):
        nonce = match.group("nonce")
        decoder = FrameDecoder(nonce)
        for part in decoder.feed(text[match.start() :]) + decoder.flush():
            if (
                isinstance(part, Frame)
                and part.type == "ready"
                and part.payload.get("nonce") == nonce
            ):
                return nonce, part
    return None


def remote_reply(frame: Frame | None) -> dict[str, Any]:
    """``payload`` and ``user_expressions`` of the remote kernel's ``execute_reply`` frame.

    Only what a proxy forwards as is: ``page``/``set_next_input``/``ask_exit``/``edit_magic``
    payloads (lists of objects with a ``source``) and the ``user_expressions`` results. The
    status, count and error fields stay the proxy's own. Without a frame: empty values.
    """
    content = _bundle(frame.payload.get("content")) if frame is not None else {}
    payload = content.get("payload")
    items = (
        [dict(item) for item in payload if isinstance(item, Mapping) and "source" in item]
        if isinstance(payload, list)
        else []
    )
    return {"payload": items, "user_expressions": _bundle(content.get("user_expressions"))}
