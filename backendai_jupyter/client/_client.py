"""The :class:`Client`: one object per manager connection, an async context manager.

::

    async with Client.from_env() as client:
        sess = await client.sessions.create("python:3.13", resources={"cpu": "1"})
        async for event in client.sessions.execute(sess.id, "print(42)"):
            ...

Resources hang off the client (``client.sessions``, ``client.folders``, ``client.events``, ...) and
share the one :class:`~._http.HTTPTransport`.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from types import TracebackType
from typing import Any

import aiohttp

from ._config import ClientConfig
from ._exceptions import APIError, AuthError, BadRequestError, ConfigError, ProtocolError
from ._http import HTTPTransport
from ._versioning import (
    API_VERSION,
    MIN_API_VERSION,
    Features,
    format_api_version,
    negotiate,
    parse_api_version,
)
from .events import Events
from .folders import Folders
from .misc import Dotfiles, Resources, Templates
from .sessions import Sessions

__all__ = ["Client"]


class Client:
    """An asyncio client for the Backend.AI manager API (20.09 … 26.x).

    Pass a :class:`ClientConfig` (or build one with :meth:`from_env`). An existing
    ``aiohttp.ClientSession`` may be injected; it is then not closed by :meth:`close`.
    """

    def __init__(
        self,
        config: ClientConfig,
        *,
        session: aiohttp.ClientSession | None = None,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.config = config
        self.http = HTTPTransport(config, session=session, clock=clock)
        self.server_info: dict[str, Any] = {}
        self.features = Features(API_VERSION)
        self._negotiated = False
        self.sessions = Sessions(self)
        self.folders = Folders(self)
        self.events = Events(self)
        self.resources = Resources(self)
        self.templates = Templates(self)
        self.dotfiles = Dotfiles(self)

    @classmethod
    def from_env(cls, **overrides: Any) -> Client:
        """A client for ``BACKEND_*`` (keyword arguments win over them).

        Raises :class:`ConfigError` when no endpoint is configured (the fallback to the
        embedded local endpoint is :func:`backendai_jupyter.workspace.load_config`'s).
        """
        return cls(ClientConfig.from_env(**overrides))

    def __repr__(self) -> str:
        return (
            f"<Client endpoint={self.http.endpoint} type={self.config.endpoint_type} "
            f"access_key={self.config.access_key or '-'} api={self.http.api_version}>"
        )

    async def __aenter__(self) -> Client:
        try:
            await self.connect()
        except BaseException:
            # __aexit__ does not run when __aenter__ fails: close the HTTP session here.
            await self.close()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def connect(self) -> Client:
        """Negotiate the API version (the official clients' unsigned ``GET /``)."""
        if self._negotiated:
            return self
        if self.config.api_version:
            version = parse_api_version(self.config.api_version)
        else:
            info = await self.http.probe_version()
            if not isinstance(info, dict) or "version" not in info:
                raise ProtocolError(
                    f"{self.http.endpoint} does not look like a Backend.AI manager "
                    f"(GET / answered {str(info)[:80]!r})"
                )
            self.server_info = info
            version = negotiate(parse_api_version(str(info["version"])))
            if version < MIN_API_VERSION:
                raise ConfigError(
                    f"server API {info['version']} is older than the oldest supported "
                    f"({format_api_version(MIN_API_VERSION)}, Backend.AI 20.03)"
                )
        self.features = Features(version)
        self.http.api_version = format_api_version(version)
        self._negotiated = True
        return self

    async def close(self) -> None:
        try:
            await self.sessions.aclose()
        finally:
            # Also when the wait for abandoned runs is cancelled (a caller's timeout, Ctrl-C):
            # else the aiohttp session is left to the garbage collector.
            await self.http.close()

    @property
    def server_version(self) -> str | None:
        """The manager's release (e.g. ``"26.9.6"``), when it said."""
        value = self.server_info.get("manager")
        return str(value) if value else None

    # -- shared helpers -------------------------------------------------------------------------

    async def gql(self, query: str, variables: dict[str, Any] | None = None) -> Any:
        """Run a GraphQL query; return the ``data`` object, raise on ``errors``."""
        await self.connect()
        body = {"query": query, "variables": variables or {}}
        result = await self.http.json("POST", self.features.gql_path, json=body)
        if not self.features.gql_standard:
            return result  # /admin/graphql answers the bare data object
        if not isinstance(result, dict):
            raise ProtocolError(f"GraphQL: unexpected answer {str(result)[:80]!r}")
        errors = result.get("errors")
        if errors:
            first = errors[0] if isinstance(errors, list) and errors else errors
            message = first.get("message", str(first)) if isinstance(first, dict) else str(first)
            raise BadRequestError(
                400,
                type="https://api.backend.ai/probs/graphql-error",
                title="GraphQL error",
                msg=str(message),
                data=errors,
                method="POST",
                url=self.features.gql_path,
            )
        return result.get("data")

    # -- session mode (a webserver in front of the manager) ---------------------------------------

    async def login(self, username: str, password: str) -> dict[str, Any]:
        """``POST /server/login``; the webserver's session cookie is kept in the cookie jar.

        Raises :class:`AuthError` (one line, with the server's reason) for wrong credentials —
        older webservers answer them with HTTP 200 and ``authenticated: false``.
        """
        if self.config.endpoint_type != "session":
            raise ConfigError("login needs BACKEND_ENDPOINT_TYPE=session (a webserver endpoint)")
        await self.connect()
        answer = await self.http.json(
            "POST",
            "/server/login",
            json={"username": username, "password": password},
            ok_statuses=(401,),
        )
        if isinstance(answer, dict) and answer.get("authenticated"):
            data = answer.get("data")
            return data if isinstance(data, dict) else {}
        data = answer.get("data") if isinstance(answer, dict) else None
        reason = None
        if isinstance(data, dict):
            reason = data.get("details") or data.get("title")
        raise AuthError(
            401,
            type=str(data.get("type", "")) if isinstance(data, dict) else "",
            title="login failed",
            msg=str(reason or "wrong username or password"),
            method="POST",
            url="/server/login",
        )

    async def logout(self) -> None:
        """``POST /server/logout`` and forget the session cookie (even if the server failed)."""
        try:
            await self.connect()
            await self.http.request("POST", "/server/logout")
        finally:
            self.http.cookie_jar.clear()

    async def login_check(self) -> bool:
        answer = await self.http.json("POST", "/server/login-check")
        return bool(isinstance(answer, dict) and answer.get("authenticated"))

    async def check_auth(self) -> None:
        """Make one signed request; raises :class:`AuthError` for bad credentials."""
        await self.connect()
        await self.http.request("GET", "/auth", params={"echo": "ping"})

    async def whoami(self) -> dict[str, Any]:
        await self.connect()
        data = await self.gql("query { user { email username role domain_name } }")
        user = data.get("user") if isinstance(data, dict) else None
        if not isinstance(user, dict):
            raise APIError(500, title="cannot read the current user")
        return user
