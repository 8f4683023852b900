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
  across chunks) and passes everything else through as ordinary text. :func:`frame_to_message`
  maps one decoded frame to a message.

The magics reuse this module, so it must stay independent of ipykernel.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = [
    "FRAME_END",
    "FRAME_START",
    "Frame",
    "FrameDecoder",
    "Message",
    "console_to_messages",
    "encode_frame",
    "error_content",
    "frame_to_message",
    "media_bundle",
    "parse_traceback_text",
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

    def feed(self, text: str) -> list[str | Frame]:
        self._buf += text
        out: list[str | Frame] = []
        marker = self.marker
        while self._buf:
            start = self._buf.find(marker)
            if start < 0:
                keep = self._partial_marker_len(self._buf)
                emit = self._buf[: len(self._buf) - keep]
                self._buf = self._buf[len(self._buf) - keep :]
                if emit:
                    out.append(emit)
                break
            if start:
                out.append(self._buf[:start])
                self._buf = self._buf[start:]
            end = self._buf.find(FRAME_END, len(marker))
            if end < 0:
                break  # the frame continues in a later chunk
            body = self._buf[len(marker) : end]
            raw = self._buf[: end + 1]
            self._buf = self._buf[end + 1 :]
            frame = _decode_body(body)
            out.append(frame if frame is not None else raw)
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


def frame_to_message(frame: Frame, execution_count: int | None = None) -> Message | None:
    """Map one rich-channel frame to an iopub message; ``None`` for frames that are not output.

    ============ =======================================================================
    frame ``t``  message
    ============ =======================================================================
    ``display``  ``display_data`` (or ``update_display_data`` when ``update`` is true)
    ``result``   ``execute_result`` with the *notebook's* execution count
    ``clear``    ``clear_output`` (``wait`` kept)
    ``error``    ``error`` (ename, evalue, traceback)
    ``stream``   ``stream`` (name, text): output the bootstrap had to re-route
    other        ``None`` (``ready``, ``reply``: consumed by the kernel itself)
    ============ =======================================================================
    """
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
