"""A pure, incremental Server-Sent-Events (``text/event-stream``) decoder and encoder.

The decoder follows the WHATWG "event stream interpretation" algorithm
(https://html.spec.whatwg.org/multipage/server-sent-events.html#event-stream-interpretation)
and does no I/O: feed it the raw bytes as they arrive, in chunks of any size, and it returns
the events completed so far.  Chunk boundaries may fall anywhere, including inside a UTF-8
sequence or between the CR and LF of a CRLF line ending.

One deliberate deviation from the spec: an event that has an ``event:`` name but no ``data:``
line is dispatched (with ``data == ""``) instead of being dropped, so that bare signals such as
``event: server_close`` are not lost.  A block with neither a name nor data is still dropped.

:func:`encode_event` produces exactly the bytes that ``aiohttp_sse`` writes, so our local
server and the real manager look the same to the decoder.
"""

from __future__ import annotations

import codecs
import json as _json
import re
from dataclasses import dataclass
from typing import Any

from ._exceptions import ParseError, ProtocolError

__all__ = ["SSEDecoder", "ServerSentEvent", "encode_event"]

# The spec's line terminators are exactly CRLF, CR and LF (not str.splitlines()'s larger set).
_LINE_END = re.compile(r"\r\n|\r|\n")
_DIGITS = re.compile(r"[0-9]+")
_BOM = "\ufeff"


@dataclass(frozen=True)
class ServerSentEvent:
    """One dispatched event.

    ``id`` is the stream's last event ID at dispatch time (it persists across events, as the
    spec's ``lastEventId`` does), or ``None`` if the stream never sent an ``id:`` field.
    ``retry`` is the reconnection time (ms) sent within this very event, if any.
    """

    event: str = "message"
    data: str = ""
    id: str | None = None
    retry: int | None = None

    def json(self) -> Any:
        """Decode ``data`` as JSON; raise :class:`ProtocolError` if it is not valid JSON."""
        try:
            return _json.loads(self.data)
        except _json.JSONDecodeError as e:
            snippet = self.data if len(self.data) <= 80 else self.data[:77] + "..."
            raise ProtocolError(
                f"SSE event {self.event!r} carries invalid JSON ({e.msg}): {snippet!r}"
            ) from None


class SSEDecoder:
    """Incremental ``text/event-stream`` decoder (see the module docstring)."""

    def __init__(self) -> None:
        # errors="replace" is what the spec mandates ("UTF-8 decode"), rather than failing the
        # whole stream on one bad byte.
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._started = False  # whether the optional leading BOM has been dealt with
        self._skip_lf = False  # the previous chunk ended in CR: a leading LF belongs to it
        self._partial: list[str] = []  # pieces of the current, not yet terminated line
        self._event = ""
        self._data: list[str] = []
        self._event_retry: int | None = None
        self._last_event_id: str | None = None
        self._retry: int | None = None

    @property
    def last_event_id(self) -> str | None:
        """The last ``id:`` value seen (persists across events); ``None`` if none was sent."""
        return self._last_event_id

    @property
    def retry(self) -> int | None:
        """The latest valid ``retry:`` value (reconnection time, in milliseconds)."""
        return self._retry

    def feed(self, chunk: bytes) -> list[ServerSentEvent]:
        """Consume ``chunk`` and return the events it completed, in stream order."""
        return self._feed_text(self._decoder.decode(chunk))

    def flush(self) -> list[ServerSentEvent]:
        """Signal the end of the stream.

        Per spec, an event that was not terminated by a blank line is discarded, so this
        always returns an empty list; it resets the per-event state (keeping
        :attr:`last_event_id` and :attr:`retry`, which a reconnection needs) so the decoder
        can be reused for the next connection.
        """
        self._decoder.reset()
        self._started = False
        self._skip_lf = False
        self._partial.clear()
        self._reset_event()
        return []

    def _feed_text(self, text: str) -> list[ServerSentEvent]:
        if not text:
            return []
        if not self._started:
            self._started = True
            if text.startswith(_BOM):
                text = text[1:]
        if self._skip_lf:
            self._skip_lf = False
            if text.startswith("\n"):
                text = text[1:]
        events: list[ServerSentEvent] = []
        pos = 0
        # Only the new text is scanned, so a long line fed in many chunks stays linear.
        for m in _LINE_END.finditer(text):
            self._partial.append(text[pos : m.start()])
            line = "".join(self._partial)
            self._partial.clear()
            pos = m.end()
            event = self._process_line(line)
            if event is not None:
                events.append(event)
        if pos < len(text):
            self._partial.append(text[pos:])
        elif text.endswith("\r"):
            # The CR was taken as a line end already; an LF opening the next chunk is its pair.
            self._skip_lf = True
        return events

    def _process_line(self, line: str) -> ServerSentEvent | None:
        if not line:
            return self._dispatch()
        if line.startswith(":"):
            return None  # a comment, e.g. aiohttp_sse's ": ping" keep-alive
        field, sep, value = line.partition(":")
        if sep and value.startswith(" "):
            value = value[1:]
        if field == "event":
            self._event = value
        elif field == "data":
            self._data.append(value)
        elif field == "id":
            if "\0" not in value:
                self._last_event_id = value
        elif field == "retry":
            if _DIGITS.fullmatch(value):
                self._retry = self._event_retry = int(value)
        # Any other field name is ignored, as the spec requires.
        return None

    def _dispatch(self) -> ServerSentEvent | None:
        if not self._data and not self._event:
            self._reset_event()
            return None
        event = ServerSentEvent(
            event=self._event or "message",
            data="\n".join(self._data),
            id=self._last_event_id,
            retry=self._event_retry,
        )
        self._reset_event()
        return event

    def _reset_event(self) -> None:
        self._event = ""
        self._data = []
        self._event_retry = None


def encode_event(
    *, event: str | None, data: str, id: str | None = None, retry: int | None = None
) -> bytes:
    """Encode one event exactly as ``aiohttp_sse.EventSourceResponse.send`` does.

    Field order is ``id``, ``event``, one ``data:`` line per line of ``data`` (split on CRLF,
    CR or LF), ``retry``, then a blank line; every line ends in CRLF.  Raises
    :class:`ParseError` for values that cannot be represented.
    """
    lines: list[str] = []
    if id is not None:
        if _LINE_END.search(id) or "\0" in id:
            raise ParseError(f"SSE id must not contain line breaks or NUL: {id!r}")
        lines.append(f"id: {id}")
    if event is not None:
        if _LINE_END.search(event):
            raise ParseError(f"SSE event name must not contain line breaks: {event!r}")
        lines.append(f"event: {event}")
    lines.extend(f"data: {chunk}" for chunk in _LINE_END.split(data))
    if retry is not None:
        if retry < 0:
            raise ParseError(f"SSE retry must not be negative: {retry!r}")
        lines.append(f"retry: {retry}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8")
