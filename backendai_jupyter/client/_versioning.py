"""API versions and the per-version differences of the wire protocol (protocol.md §2). Pure."""

from __future__ import annotations

import re
from dataclasses import dataclass

from ._exceptions import ProtocolError

__all__ = [
    "API_VERSION",
    "MANAGER_RELEASES",
    "MIN_API_VERSION",
    "SINCE",
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


# -- the one table of per-version differences ----------------------------------------------------
# Client and server both read it: the client to speak each manager's dialect, the local endpoint
# (``backendai_jupyter.server``) to emulate it. Each entry: the first API version that has the
# feature (every later version has it too).
SINCE: dict[str, ApiVersion] = {
    # 20.09: storage-proxy transfers (request-upload + tus), clusterSize/clusterMode at the top of
    # the create body, events filtered by sessionId/scope, the date checked after Authorization,
    # 200 (not 201) from the webserver's logout, session_*/bgtask_* event names.
    "storage_proxy_transfers": (6, "20200815"),
    "cluster_fields_top_level": (6, "20200815"),
    "events_by_session_id": (6, "20200815"),
    "auth_header_before_date": (6, "20200815"),
    "logout_ok_200": (6, "20200815"),
    "events_2009": (6, "20200815"),
    # 21.09: the standard GraphQL endpoint /admin/gql ({"data", "errors"}).
    "gql_standard": (6, "20210815"),
    # 22.03: session rename, dependencies/callbacks, hyphenated folder routes.
    "session_rename": (6, "20220315"),
    "dependencies_and_callbacks": (6, "20220315"),
    "folder_routes_2203": (6, "20220315"),
    # 24.03: folder trash bin and ID-based folder lookup.
    "folder_trash_bin": (8, "20240315"),
    # 24.09: folders addressed by UUID in /folders/{x}/... paths (24.03 resolves names only:
    # an id there answers 404 "No such virtual folder").
    "folder_id_paths": (8, "20240915"),
    # 24.09: POST session download, batch timeout and priority.
    "session_download_post": (8, "20240915"),
    "batch_timeout_and_priority": (8, "20240915"),
    # 25.x/26.x: the 26.x event names and session statuses.
    "events_26": (9, "20250722"),
    "statuses_26": (9, "20250722"),
    # GraphQL accessible_scaling_groups (per-agent maximum for any user): seen on 26.9.6, absent
    # on 24.03 (asking there only fills the manager's log with errors).
    "gql_accessible_scaling_groups": (9, "20250722"),
}

#: API versions whose kernel runner never answers completion requests (VERSIONS.md item 4).
COMPLETION_NEVER_ANSWERS: frozenset[ApiVersion] = frozenset({(8, "20240315")})

#: Which manager release answered each API version (the local endpoint's ``GET /``).
MANAGER_RELEASES: dict[ApiVersion, str] = {
    (9, "20250722"): "26.9.6",
    (8, "20240915"): "24.09.0",
    (8, "20240315"): "24.03.0",
    (7, "20230615"): "23.09.0",
    (6, "20230315"): "23.03.0",
    (6, "20220615"): "22.09.0",
    (6, "20220315"): "22.03.0",
    (6, "20210815"): "21.09.0",
    (6, "20200815"): "20.09.0",
    (5, "20191215"): "20.03.0",
}

# The manager's VALID_VERSIONS: 26.9.6 lists v6.20221201 and not v6.20210815; 25.6 and older
# list v6.20210815 instead.
_VALID_26 = (
    "v4.20181215 v4.20190115 v4.20190315 v4.20190615 v5.20191215 v6.20200815 v6.20220315 "
    "v6.20220615 v6.20221201 v6.20230315 v7.20230615 v8.20240315 v8.20240915 v9.20250722"
).split()
_VALID_OLD = [v for v in _VALID_26 if v != "v6.20221201"] + ["v6.20210815"]


@dataclass(frozen=True)
class Features:
    """Route and field differences that depend on the negotiated API version (:data:`SINCE`)."""

    version: ApiVersion

    def has(self, feature: str) -> bool:
        return self.version >= SINCE[feature]

    @property
    def version_string(self) -> str:
        return format_api_version(self.version)

    @property
    def gql_path(self) -> str:
        # /admin/graphql (bare data object) is what 20.03/20.09 managers serve.
        return "/admin/gql" if self.gql_standard else "/admin/graphql"

    @property
    def gql_standard(self) -> bool:
        """True when the GraphQL endpoint answers ``{"data", "errors"}``."""
        return self.has("gql_standard")

    @property
    def storage_proxy_transfers(self) -> bool:
        """v6+ moves vfolder upload/download to the storage proxy (request-upload + tus)."""
        return self.has("storage_proxy_transfers")

    @property
    def cluster_fields_top_level(self) -> bool:
        """v6+: ``clusterSize``/``clusterMode`` at the top of the create body (v5: in config)."""
        return self.has("cluster_fields_top_level")

    @property
    def events_by_session_id(self) -> bool:
        """v6+: the session events stream filters by ``sessionId`` and ``scope``."""
        return self.has("events_by_session_id")

    @property
    def session_download_post(self) -> bool:
        """``POST /session/{id}/download`` exists from 24.09 (v8.20240915); before it is a GET."""
        return self.has("session_download_post")

    @property
    def dependencies_and_callbacks(self) -> bool:
        return self.has("dependencies_and_callbacks")

    @property
    def batch_timeout_and_priority(self) -> bool:
        return self.has("batch_timeout_and_priority")

    @property
    def session_rename(self) -> bool:
        return self.has("session_rename")

    @property
    def completion_route(self) -> bool:
        """Whether ``POST /session/{x}/complete`` answers: 24.03's runner never replies to a
        completion request, and its manager answers 500 after a 10 s agent timeout."""
        return self.version not in COMPLETION_NEVER_ANSWERS

    @property
    def manager_release(self) -> str:
        """The manager release that speaks this version (newest when unknown)."""
        return MANAGER_RELEASES.get(self.version, MANAGER_RELEASES[API_VERSION])

    @property
    def accepted_versions(self) -> frozenset[str]:
        """The version headers a manager of this version accepts (its VALID_VERSIONS)."""
        pool = _VALID_26 if self.has("events_26") else _VALID_OLD
        return frozenset(v for v in pool if parse_api_version(v) <= self.version)


def features_for(version: ApiVersion) -> Features:
    return Features(version)
