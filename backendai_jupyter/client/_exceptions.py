"""The one exception tree of backendai-jupyter.

::

    BackendAIError                      everything this package raises on purpose
    ├── ConfigError                     bad configuration or bad user input (flags, URLs, keys)
    │   ├── ParseError                  a malformed resource flag, range expression, ...
    │   ├── ResourceRefused             a resource request the cluster can never give
    │   └── LocalEndpointError          the embedded local endpoint (the fallback) did not start
    ├── APIError                        the server answered with a non-2xx status
    │   ├── BadRequestError             400 (validation, clock skew, malformed auth header)
    │   ├── AuthError                   401 / 403
    │   ├── NotFoundError               404
    │   ├── ConflictError               409 (and 400 session-already-exists style conflicts)
    │   ├── QuotaError                  412 / 429 (quota, precondition, rate limit)
    │   └── ServerError                 5xx
    ├── ClientError                     the server could not be talked to
    │   ├── ConnectError                unreachable endpoint (after every fail-over endpoint), TLS
    │   ├── RequestTimeout              a connect or read timeout
    │   └── ProtocolError               the server said something we cannot understand
    ├── SessionError                    a compute session ended or failed while we used it
    │   ├── SessionGone                 the proxy kernel's session died remotely (variables lost)
    │   └── SessionWedged               the session runs no more code (its run queue is stuck)
    └── RemoteError                     user code failed inside the session (carries the traceback)

Every message is one line and never contains a secret key.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

from ._reasons import plain_reason

__all__ = [
    "APIError",
    "AuthError",
    "BackendAIError",
    "BadRequestError",
    "ClientError",
    "ConfigError",
    "ConflictError",
    "ConnectError",
    "NotFoundError",
    "ParseError",
    "ProtocolError",
    "QuotaError",
    "RemoteError",
    "RequestTimeout",
    "LocalEndpointError",
    "ResourceRefused",
    "ServerError",
    "SessionError",
    "SessionGone",
    "SessionWedged",
]


class BackendAIError(Exception):
    """Base class of every error raised by backendai-jupyter."""


class ConfigError(BackendAIError):
    """Invalid configuration or user input, detected before anything is sent."""


class ParseError(ConfigError, ValueError):
    """A malformed flag or expression (resource flag, range expression, ...)."""


class ResourceRefused(ConfigError):
    """A request larger than any agent, above a limit, or for a slot the cluster lacks: the
    session would wait forever (and block the queue behind it), so it is not created."""

    def __init__(
        self, message: str, *, slot: str, asked: Any = None, possible: Any = None
    ) -> None:
        super().__init__(message)
        self.slot = slot
        self.asked = asked
        self.possible = possible


class LocalEndpointError(ConfigError):
    """No endpoint is configured and the embedded local endpoint (the fallback) did not start."""


class APIError(BackendAIError):
    """The server answered with an error status and (usually) a problem+json body.

    Attributes mirror RFC 7807 as Backend.AI uses it: ``type``, ``title``, ``msg``, ``data``,
    and ``error_code`` on 26.x managers.
    """

    def __init__(
        self,
        status: int,
        *,
        type: str = "",
        title: str = "",
        msg: str | None = None,
        data: Any = None,
        error_code: str | None = None,
        method: str = "",
        url: str = "",
    ) -> None:
        self.status = status
        self.type = type
        self.title = title
        self.msg = msg
        self.data = data
        self.error_code = error_code
        self.method = method
        self.url = url
        super().__init__(str(self))

    @property
    def status_code(self) -> HTTPStatus | int:
        try:
            return HTTPStatus(self.status)
        except ValueError:
            return self.status

    @property
    def slug(self) -> str:
        """The last segment of the problem type, e.g. ``auth-failed``."""
        return self.type.rstrip("/").rsplit("/", 1)[-1] if self.type else ""

    def __str__(self) -> str:
        head = f"[{self.status}]"
        if self.method and self.url:
            head += f" {self.method} {self.url}:"
        text = self.title or "error"
        if self.msg and self.msg != self.title:
            text += f" ({self.msg})"
        if self.slug and self.slug not in text:
            text += f" [{self.slug}]"
        return " ".join(f"{head} {text}".split())

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(status={self.status}, type={self.type!r}, title={self.title!r})"
        )


class BadRequestError(APIError):
    """HTTP 400: invalid parameters, unsupported API version, clock skew, malformed auth."""


class AuthError(APIError):
    """HTTP 401/403: unknown access key, signature mismatch, insufficient privilege."""


class NotFoundError(APIError):
    """HTTP 404: no such session, folder, template, route ..."""


class ConflictError(APIError):
    """HTTP 409, or a 400 that names an existing object (session-already-exists, ...)."""


class QuotaError(APIError):
    """HTTP 412/429: a quota, precondition or rate limit was hit."""


class ServerError(APIError):
    """HTTP 5xx, including a non-JSON 502 from a proxy in front of the manager."""


class ClientError(BackendAIError):
    """The request did not get an answer from the server."""


class ConnectError(ClientError):
    """No endpoint could be reached (every fail-over endpoint was tried), or TLS failed."""


class RequestTimeout(ClientError):
    """A connect or read timeout expired."""


class ProtocolError(ClientError):
    """The server's answer could not be understood (bad JSON, unexpected frame, ...)."""


class SessionError(BackendAIError):
    """A compute session is gone or failed (terminated, cancelled, errored, timed out)."""

    def __init__(self, message: str, *, session: str | None = None, status: str | None = None):
        self.session = session
        self.status = status
        super().__init__(message)


class SessionGone(SessionError):
    """The kernel's session died remotely (idle timeout, OOM, an administrator, ...)."""

    def __init__(self, name: str, reason: str | None) -> None:
        self.name = name
        self.reason = reason
        why = f" ({plain_reason(reason)})" if reason else ""
        super().__init__(
            f"The Backend.AI session {name!r} has ended{why}. Its variables are lost; "
            "run the cell again to start a new session.",
            session=name,
        )


class SessionWedged(SessionError):
    """The session is alive but its run queue is stuck: no further code will run in it.

    Raised after a bounded probe (a trivial run that did not start in time). The message says
    what is lost (the session's in-memory state) and the way out (a new session).
    """


class RemoteError(BackendAIError):
    """User code raised inside the compute session.

    ``_render_traceback_`` lets IPython show the remote traceback instead of ours.
    """

    def __init__(self, ename: str, evalue: str, traceback: list[str] | None = None):
        self.ename = ename
        self.evalue = evalue
        self.traceback = list(traceback or [])
        super().__init__(f"{ename}: {evalue}" if evalue else ename)

    def _render_traceback_(self) -> list[str]:
        return self.traceback or [str(self)]
