"""The single I/O seam of the client: every byte to or from the server passes through here.

Responsibilities: build URLs (``/func/`` prefix in session mode), sign requests (keypair mode),
fail over between endpoints on connection errors, apply timeouts, turn error responses into
:class:`~._exceptions.APIError` subclasses, and translate every aiohttp exception into the package's
own tree. **No aiohttp exception leaves this module**: streaming responses and websockets are
wrapped so that their iteration is translated too.
"""

from __future__ import annotations

import asyncio
import contextlib
import json as jsonlib
import ssl
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from datetime import datetime, timezone
from typing import Any, BinaryIO, Literal

import aiohttp
import aiohttp.abc
import aiohttp.payload
from yarl import URL

from .. import __version__
from ._auth import sign_request
from ._config import ClientConfig
from ._exceptions import (
    BackendAIError,
    ClientError,
    ConnectError,
    ProtocolError,
    RequestTimeout,
)
from ._problem import error_class_for, parse_error_body

__all__ = ["HTTPTransport", "Response", "StreamResponse", "WebSocket", "WSMessage", "user_agent"]

Params = Mapping[str, Any] | list[tuple[str, Any]] | None

_SENDFILE_PIECE = 8 * 1024 * 1024  # bytes per sendfile() call (progress granularity)
_READ_PIECE = 1024 * 1024  # bytes per file read where sendfile is not available (TLS)
_STREAM_BUFSIZE = 1024 * 1024  # response buffer for downloads (aiohttp: 64 KiB)


def user_agent() -> str:
    return f"Backend.AI Client for Python {__version__} (backendai-jupyter)"


def _host_of(url: URL) -> str:
    # The official client signs the endpoint's raw authority (host[:port]) and the manager
    # verifies against the Host header, so we send exactly that Host header ourselves: aiohttp
    # would drop an explicit default port and break the signature.
    return url.raw_authority


def _jsonable_params(params: Params) -> list[tuple[str, str]]:
    if params is None:
        return []
    items = params.items() if isinstance(params, Mapping) else params
    out: list[tuple[str, str]] = []
    for key, value in items:
        if value is None:
            continue
        if isinstance(value, bool):
            value = "true" if value else "false"
        out.append((key, str(value)))
    return out


@contextlib.contextmanager
def _translate(method: str, url: URL) -> Iterator[None]:
    """Map aiohttp/asyncio transport failures to our exception tree."""
    where = f"{url.scheme}://{url.raw_authority}"
    try:
        yield
    except BackendAIError:
        raise
    except aiohttp.ClientConnectorCertificateError as e:
        raise ConnectError(
            f"TLS certificate verification failed for {where} ({e.certificate_error}); "
            "set BACKEND_SKIP_SSLCERT_VALIDATION=true only if you trust this server"
        ) from None
    except aiohttp.ClientSSLError as e:
        raise ConnectError(f"TLS error talking to {where}: {e}") from None
    except aiohttp.ClientConnectorError as e:
        reason = e.strerror or str(e.os_error) or type(e.os_error).__name__
        raise ConnectError(f"cannot connect to {where}: {reason}") from None
    except aiohttp.ServerTimeoutError:
        raise RequestTimeout(f"{method} {url.path}: timed out waiting for {where}") from None
    except asyncio.TimeoutError:
        raise RequestTimeout(f"{method} {url.path}: timed out waiting for {where}") from None
    except aiohttp.ServerDisconnectedError:
        raise ClientError(f"{method} {url.path}: {where} closed the connection") from None
    except aiohttp.WSServerHandshakeError as e:
        raise error_class_for(e.status)(
            e.status, title=e.message or "websocket handshake failed", method=method, url=url.path
        ) from None
    except (aiohttp.ClientPayloadError, aiohttp.ContentTypeError) as e:
        raise ProtocolError(f"{method} {url.path}: malformed response: {e}") from None
    except aiohttp.InvalidURL:
        raise ConnectError(f"invalid URL: {url}") from None
    except aiohttp.ClientError as e:
        raise ClientError(f"{method} {url.path}: {type(e).__name__}: {e}") from None
    except OSError as e:
        raise ClientError(f"{method} {url.path}: {e.strerror or e}") from None


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
            return jsonlib.loads(self.body)
        except ValueError:
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


class _FileRangePayload(aiohttp.payload.Payload):
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
            return jsonlib.loads(self.data)
        except ValueError:
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
        with _translate("WS", self.url):
            msg = await self._ws.receive(timeout=timeout)
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


class HTTPTransport:
    """Owns (or borrows) one ``aiohttp.ClientSession`` and sends signed requests."""

    def __init__(
        self,
        config: ClientConfig,
        *,
        session: aiohttp.ClientSession | None = None,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.config = config
        # Injectable for tests (clock-skew behaviour); the signature date is always UTC.
        self._clock = clock or (lambda: datetime.now(timezone.utc))
        self._own_session = session is None
        self._session = session
        self._endpoint_index = 0
        self.api_version: str = config.api_version or "v9.20250722"

    # -- plumbing -------------------------------------------------------------------------------

    @property
    def endpoint(self) -> URL:
        return self.config.endpoints[self._endpoint_index]

    def _ssl(self) -> ssl.SSLContext | bool:
        return False if self.config.skip_ssl_verify else True

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._own_session = True
            self._session = aiohttp.ClientSession(
                cookie_jar=aiohttp.CookieJar(unsafe=True),
                connector=aiohttp.TCPConnector(ssl=self._ssl(), limit=64),
                timeout=aiohttp.ClientTimeout(
                    sock_connect=self.config.connection_timeout,
                    sock_read=self.config.read_timeout,
                ),
            )
        return self._session

    @property
    def cookie_jar(self) -> aiohttp.abc.AbstractCookieJar:
        return self._get_session().cookie_jar

    async def close(self) -> None:
        if self._session is not None and self._own_session and not self._session.closed:
            await self._session.close()
        self._session = None

    def build_url(self, path: str, params: Params = None, endpoint: URL | None = None) -> URL:
        base = endpoint or self.endpoint
        rel = path.lstrip("/")
        if self.config.endpoint_type == "session" and not rel.startswith("server"):
            rel = "func/" + rel
        url = base.with_path(base.path.rstrip("/") + "/" + rel)
        query = _jsonable_params(params)
        return url.with_query(query) if query else url

    def _headers(
        self,
        method: str,
        url: URL,
        content_type: str,
        *,
        send_content_type: bool,
        extra: Mapping[str, str] | None,
    ) -> dict[str, str]:
        headers = {
            "User-Agent": user_agent(),
            "X-BackendAI-Domain": self.config.domain,
            "X-BackendAI-Version": self.api_version,
            "Host": _host_of(url),
        }
        if send_content_type:
            headers["Content-Type"] = content_type
        if self.config.endpoint_type == "api":
            headers.update(
                sign_request(
                    method=method,
                    rel_url=str(url.relative()),
                    date=self._clock(),
                    host=_host_of(url),
                    content_type=content_type,
                    api_version=self.api_version,
                    access_key=self.config.access_key,
                    secret_key=self.config.secret_key,
                    hash_type=self.config.hash_type,
                )
            )
        else:
            headers["Date"] = self._clock().isoformat()
        if extra:
            headers.update(extra)
        return headers

    def _timeout(self, read_timeout: float | None | Literal["default"]) -> aiohttp.ClientTimeout:
        return aiohttp.ClientTimeout(
            sock_connect=self.config.connection_timeout,
            sock_read=self.config.read_timeout if read_timeout == "default" else read_timeout,
        )

    def _body(
        self, json: Any, data: bytes | str | aiohttp.FormData | None, content_type: str | None
    ) -> tuple[Any, str, bool]:
        """Return (payload, content type to sign, whether to send a Content-Type header)."""
        if isinstance(data, aiohttp.FormData):
            # aiohttp writes the boundary itself; the signature covers the bare media type.
            return data, "multipart/form-data", False
        if json is not None:
            return jsonlib.dumps(json).encode(), "application/json", True
        if isinstance(data, str):
            return data.encode(), content_type or "text/plain", True
        if isinstance(data, bytes):
            return data, content_type or "application/octet-stream", True
        return None, content_type or "text/plain", True

    async def _with_failover(self, method: str, attempt: Any) -> Any:
        """Run ``attempt(endpoint)``; on a connection failure rotate to the next endpoint."""
        errors: list[str] = []
        count = len(self.config.endpoints)
        for offset in range(count):
            index = (self._endpoint_index + offset) % count
            try:
                result = await attempt(self.config.endpoints[index])
            except ConnectError as e:
                errors.append(str(e))
                continue
            self._endpoint_index = index
            return result
        if count == 1:
            raise ConnectError(errors[0])
        raise ConnectError(f"none of the {count} endpoints answered: " + "; ".join(errors))

    # -- requests ------------------------------------------------------------------------------

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: Params = None,
        json: Any = None,
        data: bytes | str | aiohttp.FormData | None = None,
        content_type: str | None = None,
        headers: Mapping[str, str] | None = None,
        read_timeout: float | None | Literal["default"] = "default",
        ok_statuses: tuple[int, ...] = (),
    ) -> Response:
        """Send one request, read the whole body, raise :class:`APIError` for 4xx/5xx."""
        payload, ctype, send_ctype = self._body(json, data, content_type)

        async def attempt(endpoint: URL) -> Response:
            url = self.build_url(path, params, endpoint)
            hdrs = self._headers(method, url, ctype, send_content_type=send_ctype, extra=headers)
            with _translate(method, url):
                async with self._get_session().request(
                    method,
                    url,
                    data=payload,
                    headers=hdrs,
                    timeout=self._timeout(read_timeout),
                    allow_redirects=False,
                ) as resp:
                    body = await resp.read()
                    result = Response(resp.status, resp.headers, body, url)
            if result.status >= 400 and result.status not in ok_statuses:
                raise parse_error_body(
                    result.status, body, reason=resp.reason or "", method=method, url=url.path
                )
            return result

        response: Response = await self._with_failover(method, attempt)
        return response

    async def json(self, method: str, path: str, **kwargs: Any) -> Any:
        return (await self.request(method, path, **kwargs)).json()

    @contextlib.asynccontextmanager
    async def stream(
        self,
        method: str,
        path: str,
        *,
        params: Params = None,
        json: Any = None,
        headers: Mapping[str, str] | None = None,
        sign_as: str | None = None,
        url: URL | None = None,
        signed: bool = True,
    ) -> AsyncIterator[StreamResponse]:
        """Open a streaming response (SSE, large downloads). Errors are raised before yielding.

        ``url`` sends to an absolute URL (the storage proxy) without signing.
        """
        payload, ctype, send_ctype = self._body(json, None, None)
        if sign_as is not None:
            # SSE is signed as application/octet-stream with no Content-Type header (§1.1).
            ctype, send_ctype = sign_as, False

        async def attempt(endpoint: URL) -> tuple[aiohttp.ClientResponse, URL]:
            target = url if url is not None else self.build_url(path, params, endpoint)
            if url is not None or not signed:
                hdrs = {"User-Agent": user_agent(), **(headers or {})}
            else:
                hdrs = self._headers(
                    method, target, ctype, send_content_type=send_ctype, extra=headers
                )
            with _translate(method, target):
                resp = await self._get_session().request(
                    method,
                    target,
                    data=payload,
                    headers=hdrs,
                    timeout=self._timeout(None),
                    read_bufsize=_STREAM_BUFSIZE,
                )
            return resp, target

        resp, target = await self._with_failover(method, attempt)
        try:
            if resp.status >= 400:
                with _translate(method, target):
                    body = await resp.read()
                raise parse_error_body(
                    resp.status, body, reason=resp.reason or "", method=method, url=target.path
                )
            yield StreamResponse(resp, method)
        finally:
            resp.release()

    async def ws_connect(
        self, path: str, *, params: Params = None, heartbeat: float | None = 30.0
    ) -> WebSocket:
        """Open a signed websocket (signed as ``application/octet-stream``, no Content-Type)."""

        async def attempt(endpoint: URL) -> WebSocket:
            url = self.build_url(path, params, endpoint)
            hdrs = self._headers(
                "GET", url, "application/octet-stream", send_content_type=False, extra=None
            )
            with _translate("GET", url):
                ws = await self._get_session().ws_connect(
                    url,
                    headers=hdrs,
                    heartbeat=heartbeat,
                    autoping=True,
                    max_msg_size=0,
                    timeout=aiohttp.ClientWSTimeout(ws_close=5.0),
                )
            return WebSocket(ws, url)

        websocket: WebSocket = await self._with_failover("GET", attempt)
        return websocket

    async def raw(
        self,
        method: str,
        url: URL,
        *,
        headers: Mapping[str, str] | None = None,
        data: Any = None,
        read_timeout: float | None = None,
    ) -> Response:
        """An unsigned request to an absolute URL (storage-proxy tus/download, version probe)."""
        hdrs = {"User-Agent": user_agent(), **(headers or {})}
        with _translate(method, url):
            async with self._get_session().request(
                method, url, headers=hdrs, data=data, timeout=self._timeout(read_timeout)
            ) as resp:
                body = await resp.read()
                result = Response(resp.status, resp.headers, body, url)
        if result.status >= 400:
            raise parse_error_body(
                result.status, body, reason=resp.reason or "", method=method, url=url.path
            )
        return result

    async def send_file(
        self,
        method: str,
        url: URL,
        fobj: BinaryIO,
        *,
        offset: int,
        length: int,
        headers: Mapping[str, str] | None = None,
        content_type: str = "application/octet-stream",
        on_sent: Callable[[int], None] | None = None,
        read_timeout: float | None = None,
    ) -> Response:
        """An unsigned request to an absolute URL whose body is ``length`` bytes of ``fobj``
        from ``offset`` (tus ``PATCH``), sent with ``sendfile(2)`` where the connection allows.

        Memory stays bounded whatever ``length`` is; ``on_sent(n)`` reports the bytes sent.
        """
        payload = _FileRangePayload(fobj, offset, length, on_sent, content_type)
        return await self.raw(method, url, headers=headers, data=payload, read_timeout=read_timeout)

    async def probe_version(self) -> Any:
        """The unsigned ``GET /`` (``/func/`` in session mode) every official client starts with."""

        async def attempt(endpoint: URL) -> Any:
            url = self.build_url("", None, endpoint)
            return (await self.raw("GET", url, read_timeout=self.config.connection_timeout)).json()

        return await self._with_failover("GET", attempt)
