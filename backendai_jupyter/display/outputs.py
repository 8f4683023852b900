"""Pure mapping from Backend.AI run output to Jupyter messages. No I/O, no kernel, no client.

Two kinds of input are mapped here:

* **Console records** as the stock runner sends them (protocol.md §4.3): ``stdout``/``stderr``
  text, ``media`` ``(mime, data)`` pairs (images carry a ``data:<mime>;base64,`` prefix that Jupyter
  front-ends do not expect), ``html`` strings. :func:`console_to_messages` turns one record into
  ``(msg_type, content)`` tuples.
* Plain tracebacks on stderr (no rich channel): :func:`parse_traceback_text`.

Rich-channel frames (whole Jupyter messages in the remote stdout) are :mod:`..richchannel`'s.

The magics reuse this module, so it must stay independent of ipykernel.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Mapping
from typing import Any

__all__ = [
    "Message",
    "console_to_messages",
    "error_content",
    "media_bundle",
    "parse_traceback_text",
    "strip_ansi",
]

Message = tuple[str, dict[str, Any]]
"""``(msg_type, content)`` ready for ``session.send(iopub, msg_type, content, parent)``."""

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
