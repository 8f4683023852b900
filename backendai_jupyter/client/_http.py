"""The single I/O seam of the client: every byte to or from the server passes through here.

Responsibilities: build URLs (``/func/`` prefix in session mode), sign requests (keypair mode),
fail over between endpoints on connection errors, apply timeouts, turn error responses into
:class:`~._exceptions.APIError` subclasses, and translate every aiohttp exception into the package's
own tree. **No aiohttp exception leaves the seam** (this module, :mod:`._http_errors` and
:mod:`._http_wrappers`): streaming responses and websockets are wrapped so that their iteration
is translated too.
"""

from __future__ import annotations

import contextlib
import json as jsonlib
import ssl
from collections.abc import AsyncIterator, Callable, Mapping
from datetime import datetime, timezone
from typing import Any, BinaryIO, Literal

import aiohttp
import aiohttp.abc
import aiohttp.payload
from yarl import URL

from .._version import __version__
from ._auth import sign_request
from ._config import ClientConfig
from ._exceptions import (
    ConnectError,
)
from ._http_errors import translate_errors as _translate
from ._http_wrappers import FileRangePayload, Response, StreamResponse, WebSocket, WSMessage
from ._problem import parse_error_body
from ._versioning import API_VERSION, format_api_version

__all__ = ["HTTPTransport", "Response", "StreamResponse", "WebSocket", "WSMessage", "user_agent"]

Params = Mapping[str, Any] | list[tuple[str, Any]] | None

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
        self.api_version: str = config.api_version or format_api_version(API_VERSION)

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
        payload = FileRangePayload(fobj, offset, length, on_sent, content_type)
        return await self.raw(method, url, headers=headers, data=payload, read_timeout=read_timeout)

    async def probe_version(self) -> Any:
        """The unsigned ``GET /`` (``/func/`` in session mode) every official client starts with."""

        async def attempt(endpoint: URL) -> Any:
            url = self.build_url("", None, endpoint)
            return (await self.raw("GET", url, read_timeout=self.config.connection_timeout)).json()

        return await self._with_failover("GET", attempt)
