"""What the transport hands out: read responses, streaming responses, websockets, and the
``sendfile`` request body. Part of the client's I/O seam: every aiohttp call in here runs inside
:func:`._http_errors.translate_errors`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json as jsonlib
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from typing import IO, Any, BinaryIO, Literal

import aiohttp
import aiohttp.abc
import aiohttp.payload
import orjson
from yarl import URL

from ._exceptions import ClientError, ProtocolError
from ._http_errors import translate_errors as _translate

__all__ = [
    "FileRangePayload",
    "Response",
    "StreamResponse",
    "WSMessage",
    "WebSocket",
    "multipart",
]

_SENDFILE_PIECE = 8 * 1024 * 1024  # bytes per sendfile() call (progress granularity)
_READ_PIECE = 1024 * 1024  # bytes per file read where sendfile is not available (TLS)


class Response:
    """A fully read response."""

    def __init__(self, status: int, headers: Mapping[str, str], body: bytes, url: URL) -> None:
        self.status = status
        self.headers = headers
        self.body = body
        self.url = url

    def json(self) -> Any:
        if not self.body:
            return None
        try:
            # orjson: an execute answer can carry tens of MB of output.
            return orjson.loads(self.body)
        except ValueError:  # orjson.JSONDecodeError is a ValueError
            raise ProtocolError(f"{self.url.path}: expected JSON, got {self.body[:80]!r}") from None

    def text(self) -> str:
        return self.body.decode("utf-8", "replace")


class StreamResponse:
    """A response whose body is consumed incrementally (SSE, downloads)."""

    def __init__(self, resp: aiohttp.ClientResponse, method: str) -> None:
        self._resp = resp
        self._method = method
        self.status = resp.status
        self.headers: Mapping[str, str] = resp.headers
        self.url = resp.url

    async def iter_chunks(self, size: int = 256 * 1024) -> AsyncIterator[bytes]:
        with _translate(self._method, self.url):
            async for chunk in self._resp.content.iter_chunked(size):
                yield chunk

    async def iter_any(self) -> AsyncIterator[bytes]:
        """Yield whatever arrived, as soon as it arrived (for SSE)."""
        with _translate(self._method, self.url):
            async for chunk in self._resp.content.iter_any():
                yield chunk

    async def iter_received(self) -> AsyncIterator[bytes]:
        """Yield the body in the pieces it arrived in (no re-joining or splitting: downloads)."""
        with _translate(self._method, self.url):
            async for chunk, _ in self._resp.content.iter_chunks():
                yield chunk

    async def read(self) -> bytes:
        with _translate(self._method, self.url):
            return await self._resp.read()


class FileRangePayload(aiohttp.payload.Payload):
    """``length`` bytes of an open file from ``offset`` as a request body.

    On a plain TCP connection the bytes go with ``sendfile(2)`` (no copy through Python, no
    thread hop); elsewhere (TLS, other event loops) they are read in 1 MiB pieces in a worker
    thread. ``on_sent(n)`` is called with the running count of body bytes handed to the kernel.
    """

    def __init__(
        self,
        fobj: BinaryIO,
        offset: int,
        length: int,
        on_sent: Callable[[int], None] | None,
        content_type: str,
    ) -> None:
        super().__init__(fobj, size=length, content_type=content_type)
        self._fobj = fobj
        self._offset = offset
        self._length = length
        self._on_sent = on_sent

    def decode(self, encoding: str = "utf-8", errors: str = "strict") -> str:
        raise TypeError("a file body is not text")

    async def write(self, writer: aiohttp.abc.AbstractStreamWriter) -> None:
        await self.write_with_length(writer, None)

    async def write_with_length(
        self, writer: aiohttp.abc.AbstractStreamWriter, content_length: int | None
    ) -> None:
        count = self._length if content_length is None else min(self._length, content_length)
        sent = 0
        transport = getattr(writer, "transport", None)
        plain = not getattr(writer, "chunked", False) and getattr(writer, "_compress", None) is None
        if transport is not None and plain and count:
            loop = asyncio.get_running_loop()
            await writer.write(b"")  # aiohttp holds the request head back: send it first
            await writer.drain()
            try:
                while sent < count:
                    n = await loop.sendfile(
                        transport,
                        self._fobj,
                        self._offset + sent,
                        min(_SENDFILE_PIECE, count - sent),
                        fallback=False,
                    )
                    if n <= 0:
                        raise ClientError("the file shrank while it was being sent")
                    sent += n
                    if self._on_sent is not None:
                        self._on_sent(sent)
            except (asyncio.SendfileNotAvailableError, NotImplementedError):
                if sent:
                    raise
        await self._write_read(writer, sent, count)

    async def _write_read(
        self, writer: aiohttp.abc.AbstractStreamWriter, sent: int, count: int
    ) -> None:
        def read(at: int, n: int) -> bytes:
            self._fobj.seek(at)
            return self._fobj.read(n)

        while sent < count:
            chunk = await asyncio.to_thread(
                read, self._offset + sent, min(_READ_PIECE, count - sent)
            )
            if not chunk:
                raise ClientError("the file shrank while it was being sent")
            await writer.write(chunk)
            sent += len(chunk)
            if self._on_sent is not None:
                self._on_sent(sent)


WSKind = Literal["text", "binary", "closed"]


class WSMessage:
    __slots__ = ("kind", "data", "close_code")

    def __init__(self, kind: WSKind, data: str | bytes = b"", close_code: int | None = None):
        self.kind = kind
        self.data = data
        self.close_code = close_code

    def json(self) -> Any:
        try:
            return orjson.loads(self.data)
        except ValueError:  # orjson.JSONDecodeError is a ValueError
            raise ProtocolError(
                f"websocket: expected a JSON frame, got {self.data!r:.80}"
            ) from None


class WebSocket:
    """A client websocket with translated errors."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse[Any], url: URL) -> None:
        self._ws = ws
        self.url = url

    @property
    def closed(self) -> bool:
        return self._ws.closed

    @property
    def close_code(self) -> int | None:
        return self._ws.close_code

    async def send_str(self, data: str) -> None:
        with _translate("WS", self.url):
            await self._ws.send_str(data)

    async def send_json(self, data: Any) -> None:
        await self.send_str(jsonlib.dumps(data))

    async def send_bytes(self, data: bytes) -> None:
        with _translate("WS", self.url):
            await self._ws.send_bytes(data)

    async def receive(self, timeout: float | None = None) -> WSMessage:
        """The next message; :class:`RequestTimeout` when none came within ``timeout`` s.

        The deadline is ours, not aiohttp's: aiohttp restarts its receive timeout at every
        ping and pong it answers itself, so a silent stream with a heartbeat never times out.
        """
        with _translate("WS", self.url):
            msg = await asyncio.wait_for(self._ws.receive(), timeout)
        if msg.type == aiohttp.WSMsgType.TEXT:
            return WSMessage("text", msg.data)
        if msg.type == aiohttp.WSMsgType.BINARY:
            return WSMessage("binary", msg.data)
        if msg.type == aiohttp.WSMsgType.ERROR:
            raise ClientError(f"websocket {self.url.path}: {self._ws.exception()}")
        return WSMessage("closed", b"", self._ws.close_code)

    async def close(self, code: int = 1000) -> None:
        with contextlib.suppress(Exception), _translate("WS", self.url):
            await self._ws.close(code=code)


def multipart(
    parts: Iterable[tuple[str, str, bytes | IO[bytes]]],
) -> aiohttp.FormData:
    """A ``multipart/form-data`` body of ``(field, filename, bytes or open file)`` parts.

    Pass it as ``data=`` to :meth:`HTTPTransport.request`; the signature then covers the bare
    media type and aiohttp writes the boundary (protocol.md §1.1).
    """
    form = aiohttp.FormData()
    for field, filename, content in parts:
        form.add_field(field, content, filename=filename, content_type="application/octet-stream")
    return form
