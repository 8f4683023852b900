"""Every route of the local endpoint, in one table.

Each row says who may call the route (:class:`Access`) and, through the shared version table
(:data:`~backendai_jupyter.client._versioning.SINCE`), which emulated API versions have it.
``create_app`` registers the rows that hold for its version; the authentication and rate-limit
middleware (``auth.py``) reads the access kind of the matched route (``access.py``); the fuzz suite
walks the same table.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass

from aiohttp import web

from ...client._versioning import Features
from ..storage import crud, files, sharing, storage_proxy, v5
from ..storage.storage_proxy import STORAGE_PREFIX
from . import appproxy, auth, events, execute, front, gql
from . import session_routes as sessions
from .access import Access, remember_access
from .userconfig import dotfiles, resources, templates

__all__ = ["ROUTES", "Access", "Route", "register_routes"]

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    handler: Handler
    access: Access = Access.SIGNED
    #: A ``SINCE`` feature the emulated version must have / must not have for the route to exist.
    since: str | None = None
    until: str | None = None
    group: str = "core"

    def exists(self, features: Features) -> bool:
        if self.since is not None and not features.has(self.since):
            return False
        return self.until is None or not features.has(self.until)


def _rows(group: str, access: Access, *rows: tuple[str, str, Handler]) -> list[Route]:
    return [Route(m, p, h, access, group=group) for m, p, h in rows]


_S, _A, _W, _P = Access.SIGNED, Access.ANONYMOUS, Access.WEBSERVER, Access.STORAGE
_SESSION = "/session/{session_name}"
_FOLDER = "/folders/{name}"

ROUTES: tuple[Route, ...] = (
    Route("GET", "/", front.hello, _A),
    *_rows(
        "core",
        _S,
        ("GET", "/auth", auth.auth_test),
        ("POST", "/auth", auth.auth_test),
        ("GET", "/auth/test", auth.auth_test),
        ("POST", "/auth/test", auth.auth_test),
    ),
    *_rows(
        "core",
        _W,
        ("POST", "/server/login", auth.login),
        ("POST", "/server/logout", auth.logout),
        ("POST", "/server/login-check", auth.login_check),
    ),
    # -- sessions ---------------------------------------------------------------------------------
    *_rows(
        "core",
        _S,
        ("POST", "/session", sessions.create),
        ("POST", "/session/_/create", sessions.create),
        ("POST", "/session/_/create-from-template", sessions.create_from_template),
        ("GET", "/session/_/match", sessions.match),
        ("GET", _SESSION, sessions.info),
        ("DELETE", _SESSION, sessions.destroy),
        ("PATCH", _SESSION, sessions.restart),
        ("POST", f"{_SESSION}/interrupt", sessions.interrupt),
        ("GET", f"{_SESSION}/logs", sessions.logs),
        ("GET", f"{_SESSION}/status-history", sessions.status_history),
        ("POST", f"{_SESSION}/upload", sessions.upload),
        ("GET", f"{_SESSION}/download_single", sessions.download_single),
        ("POST", f"{_SESSION}/download_single", sessions.download_single),
        ("GET", f"{_SESSION}/files", sessions.list_files),
        ("POST", _SESSION, execute.execute),
        ("POST", f"{_SESSION}/complete", execute.complete),
        ("GET", f"/stream{_SESSION}/execute", execute.stream_execute),
        ("GET", "/events/session", events.session_events),
        ("GET", "/events/background-task", events.bgtask_events),
        ("POST", "/admin/graphql", gql.gql_handler),
        ("GET", f"/stream{_SESSION}/apps", appproxy.apps),
        ("GET", f"/stream{_SESSION}/tcpproxy", appproxy.tcpproxy),
        ("GET", f"/stream{_SESSION}/httpproxy", appproxy.tcpproxy),
        ("GET", f"/stream{_SESSION}/pty", appproxy.pty),
        ("POST", f"{_SESSION}/start-service", appproxy.start_service),
    ),
    Route("POST", f"{_SESSION}/rename", sessions.rename, since="session_rename"),
    Route("GET", f"{_SESSION}/download", sessions.download, until="session_download_post"),
    Route("POST", f"{_SESSION}/download", sessions.download, since="session_download_post"),
    Route("POST", "/admin/gql", gql.gql_handler, since="gql_standard"),
    # -- virtual folders --------------------------------------------------------------------------
    *_rows(
        "folders",
        _S,
        ("GET", "/folders/_/hosts", crud.list_hosts),
        ("GET", "/folders/_/all_hosts", crud.list_all_hosts),
        ("GET", "/folders/_/all-hosts", crud.list_all_hosts),
        ("GET", "/folders/_/allowed_types", crud.allowed_types),
        ("GET", "/folders/_/allowed-types", crud.allowed_types),
        ("GET", "/folders/_/id", crud.get_id),
        ("GET", "/folders/invitations/list", sharing.list_invitations),
        ("GET", "/folders/invitations/list_sent", sharing.list_sent),
        ("GET", "/folders/invitations/list-sent", sharing.list_sent),
        ("POST", "/folders/invitations/accept", sharing.accept_invitation),
        ("POST", "/folders/invitations/delete", sharing.delete_invitation),
        ("DELETE", "/folders/invitations/delete", sharing.delete_invitation),
        ("POST", "/folders/invitations/update/{inv_id}", sharing.update_invitation),
        ("POST", "/folders/purge", crud.purge),
        ("POST", "/folders/restore-from-trash-bin", crud.restore),
        ("POST", "/folders/delete-from-trash-bin", crud.delete_from_trash),
        ("POST", "/folders", crud.create),
        ("GET", "/folders", crud.list_folders),
        ("DELETE", "/folders", crud.delete_by_id),
        ("GET", _FOLDER, crud.get_info),
        ("DELETE", _FOLDER, crud.delete_by_name),
        ("DELETE", "/folders/{folder_id}/force", crud.force_delete),
        ("POST", f"{_FOLDER}/rename", crud.rename_folder),
        ("POST", f"{_FOLDER}/update-options", crud.update_options),
        ("POST", f"{_FOLDER}/mkdir", files.mkdir),
        ("GET", f"{_FOLDER}/files", files.list_files),
        ("POST", f"{_FOLDER}/rename-file", files.rename_file),
        ("POST", f"{_FOLDER}/rename_file", files.rename_file),
        ("POST", f"{_FOLDER}/move-file", files.move_file),
        ("POST", f"{_FOLDER}/delete-files", files.delete_files),
        ("DELETE", f"{_FOLDER}/delete-files", files.delete_files),
        ("DELETE", f"{_FOLDER}/delete_files", files.delete_files),
        ("POST", f"{_FOLDER}/invite", sharing.invite),
        ("POST", f"{_FOLDER}/leave", sharing.leave),
        ("POST", f"{_FOLDER}/share", sharing.share),
        ("POST", f"{_FOLDER}/unshare", sharing.unshare),
        ("DELETE", f"{_FOLDER}/unshare", sharing.unshare),
    ),
    # 20.03 transfers on the manager; from 20.09 through the storage proxy.
    *(
        Route(m, p, h, until="storage_proxy_transfers", group="folders")
        for m, p, h in (
            ("POST", f"{_FOLDER}/upload", v5.upload_v5),
            ("GET", f"{_FOLDER}/download", v5.download_v5),
            ("GET", f"{_FOLDER}/download_single", v5.download_single),
        )
    ),
    *(
        Route(m, p, h, since="storage_proxy_transfers", group="folders")
        for m, p, h in (
            ("POST", f"{_FOLDER}/request-upload", storage_proxy.request_upload),
            ("POST", f"{_FOLDER}/request-download", storage_proxy.request_download),
        )
    ),
    *_rows(
        "folders",
        _P,
        ("OPTIONS", f"{STORAGE_PREFIX}/upload", storage_proxy.tus_options),
        ("HEAD", f"{STORAGE_PREFIX}/upload", storage_proxy.tus_head),
        ("PATCH", f"{STORAGE_PREFIX}/upload", storage_proxy.tus_patch),
        ("DELETE", f"{STORAGE_PREFIX}/upload", storage_proxy.tus_delete),
        ("GET", f"{STORAGE_PREFIX}/download", storage_proxy.download),
        ("HEAD", f"{STORAGE_PREFIX}/download", storage_proxy.download),
    ),
    # -- user configuration -----------------------------------------------------------------------
    *_rows(
        "userconfig",
        _S,
        ("POST", "/template/session", templates.create_template),
        ("GET", "/template/session", templates.list_templates),
        ("GET", "/template/session/{template_id}", templates.get_template_handler),
        ("PUT", "/template/session/{template_id}", templates.update_template),
        ("DELETE", "/template/session/{template_id}", templates.delete_template),
        ("POST", "/user-config/dotfiles", dotfiles.create_dotfile),
        ("GET", "/user-config/dotfiles", dotfiles.list_dotfiles),
        ("PATCH", "/user-config/dotfiles", dotfiles.update_dotfile),
        ("DELETE", "/user-config/dotfiles", dotfiles.delete_dotfile),
        ("POST", "/user-config/bootstrap-script", dotfiles.set_bootstrap),
        ("GET", "/user-config/bootstrap-script", dotfiles.get_bootstrap),
        ("GET", "/resource/presets", resources.list_presets),
        ("POST", "/resource/check-presets", resources.check_presets),
        ("GET", "/config/resource-slots", resources.resource_slots),
        ("GET", "/config/resource-slots/details", resources.resource_slot_details),
        ("GET", "/config/vfolder-types", resources.vfolder_types),
        ("GET", "/scaling-groups", resources.scaling_groups),
    ),
    # Last: the webserver's proxy matches every path under /func.
    Route("*", "/func/{tail:.*}", front.func_proxy, _W),
)

def register_routes(
    app: web.Application, features: Features, groups: Iterable[str] | None = None
) -> None:
    """Add every row that exists in the emulated version (optionally only some groups)."""
    wanted = None if groups is None else set(groups)
    for row in ROUTES:
        if (wanted is None or row.group in wanted) and row.exists(features):
            route = app.router.add_route(row.method, row.path, row.handler)
            remember_access(app, route, row.access)
