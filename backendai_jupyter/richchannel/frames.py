"""Rich-channel frames: the remote stdout → frames → the iopub messages they carry. Pure.

See the package docstring for the format. :class:`FrameDecoder` splits remote stdout text into
plain text and frames (a frame may arrive split anywhere); :func:`frame_message` maps one frame to
an :class:`IopubMessage`; :func:`read_ready` finds the bootstrap's ``ready`` frame (and so the
nonce); :func:`remote_reply` reads what a proxy forwards from the remote ``execute_reply``.
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
    "encode_frame",
    "frame_message",
    "frame_to_message",
    "read_ready",
    "remote_reply",
]

FRAME_START = "\x1b]BAI;"
FRAME_END = "\x07"


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
            start = _find_marker(buf, marker, pos)
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


def _find_marker(text: str, marker: str, pos: int = 0) -> int:
    """``text.find(marker, pos)``, fast on long text without the marker's first character.

    A one-character search runs many times faster than a search for the whole marker, and
    megabytes of printed text seldom hold an ESC: the full search starts at the first one."""
    first = text.find(marker[0], pos)
    return first if first < 0 else text.find(marker, first)


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
    def short(self) -> tuple[str, dict[str, Any]]:
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


def frame_to_message(
    frame: Frame, execution_count: int | None = None
) -> tuple[str, dict[str, Any]] | None:
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


def _legacy_to_message(
    frame: Frame, execution_count: int | None
) -> tuple[str, dict[str, Any]] | None:
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
        return "error", {
            "ename": str(p.get("ename", "Error")),
            "evalue": str(p.get("evalue", "")),
            "traceback": [str(line) for line in tb] if isinstance(tb, list) else [],
        }
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
