"""API versions and the per-version differences of the wire protocol (protocol.md §2). Pure."""

from __future__ import annotations

import re
from dataclasses import dataclass

from ._exceptions import ProtocolError

__all__ = [
    "API_VERSION",
    "MIN_API_VERSION",
    "ApiVersion",
    "Features",
    "features_for",
    "negotiate",
    "parse_api_version",
]

ApiVersion = tuple[int, str]

_VERSION_RE = re.compile(r"^v(\d+)\.(\d{8})$")

#: The newest API version this client speaks (Backend.AI 25.x/26.x managers).
API_VERSION: ApiVersion = (9, "20250722")
#: The oldest one it supports (Backend.AI 20.03/20.09 managers).
MIN_API_VERSION: ApiVersion = (5, "20191215")

KNOWN_VERSIONS: tuple[ApiVersion, ...] = (
    (5, "20191215"),
    (6, "20200815"),
    (6, "20210815"),
    (6, "20220315"),
    (6, "20220615"),
    (6, "20230315"),
    (7, "20230615"),
    (8, "20240315"),
    (8, "20240915"),
    (9, "20250722"),
)


def parse_api_version(text: str) -> ApiVersion:
    m = _VERSION_RE.match(text.strip())
    if m is None:
        raise ProtocolError(f"malformed API version string from server: {text!r}")
    return int(m.group(1)), m.group(2)


def format_api_version(version: ApiVersion) -> str:
    return f"v{version[0]}.{version[1]}"


def negotiate(server: ApiVersion, client: ApiVersion = API_VERSION) -> ApiVersion:
    """The version both sides speak: the older of the two.

    The manager only accepts versions from its own list, so a server that is older than us gets
    its own version string back verbatim (it is certainly in its list).
    """
    return min(server, client)


@dataclass(frozen=True)
class Features:
    """Route and field differences that depend on the negotiated API version."""

    version: ApiVersion

    @property
    def version_string(self) -> str:
        return format_api_version(self.version)

    @property
    def gql_path(self) -> str:
        # v6.20210815 introduced the standard GraphQL endpoint; /admin/graphql (bare data object)
        # is what 20.03/20.09 managers serve.
        return "/admin/gql" if self.version >= (6, "20210815") else "/admin/graphql"

    @property
    def gql_standard(self) -> bool:
        """True when the GraphQL endpoint answers ``{"data", "errors"}``."""
        return self.version >= (6, "20210815")

    @property
    def storage_proxy_transfers(self) -> bool:
        """v6+ moves vfolder upload/download to the storage proxy (request-upload + tus)."""
        return self.version >= (6, "20200815")

    @property
    def cluster_fields_top_level(self) -> bool:
        """v6+: ``clusterSize``/``clusterMode`` at the top of the create body (v5: in config)."""
        return self.version >= (6, "20200815")

    @property
    def events_by_session_id(self) -> bool:
        """v6+: the session events stream filters by ``sessionId`` and ``scope``."""
        return self.version >= (6, "20200815")

    @property
    def session_download_post(self) -> bool:
        """``POST /session/{id}/download`` exists from 24.09 (v8.20240915); before it is a GET."""
        return self.version >= (8, "20240915")

    @property
    def dependencies_and_callbacks(self) -> bool:
        return self.version >= (6, "20220315")

    @property
    def batch_timeout_and_priority(self) -> bool:
        return self.version >= (8, "20240915")

    @property
    def session_rename(self) -> bool:
        return self.version >= (6, "20220315")


def features_for(version: ApiVersion) -> Features:
    return Features(version)
