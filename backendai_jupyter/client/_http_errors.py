"""Translation of aiohttp/asyncio transport failures into the package's exception tree.

Part of the client's I/O seam (with :mod:`._http` and :mod:`._http_wrappers`): every aiohttp call
runs inside :func:`translate_errors`, so no aiohttp exception reaches callers.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator

import aiohttp
from yarl import URL

from ._exceptions import (
    BackendAIError,
    ClientError,
    ConnectError,
    ProtocolError,
    RequestTimeout,
)
from ._problem import error_class_for

__all__ = ["translate_errors"]


@contextlib.contextmanager
def translate_errors(method: str, url: URL) -> Iterator[None]:
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
    except aiohttp.ClientPayloadError as e:
        # A body cut short (the server went away mid-response) is a lost connection, which
        # callers may retry, not a malformed answer.
        raise ClientError(f"{method} {url.path}: the response was cut short: {e}") from None
    except aiohttp.ContentTypeError as e:
        raise ProtocolError(f"{method} {url.path}: malformed response: {e}") from None
    except aiohttp.InvalidURL:
        raise ConnectError(f"invalid URL: {url}") from None
    except aiohttp.ClientError as e:
        raise ClientError(f"{method} {url.path}: {type(e).__name__}: {e}") from None
    except OSError as e:
        raise ClientError(f"{method} {url.path}: {e.strerror or e}") from None
