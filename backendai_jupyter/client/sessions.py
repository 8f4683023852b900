"""Compute sessions: get-or-create, info, list, destroy, interrupt, logs, files, execute."""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import json
import secrets
from collections.abc import Callable, Coroutine, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from . import lifecycle, scheduling
from ._download_parts import extract_tar, split_multipart
from ._exceptions import (
    BackendAIError,
    BadRequestError,
    ConfigError,
    NotFoundError,
    ProtocolError,
    RequestTimeout,
)
from ._http_wrappers import multipart
from ._models import ServicePort, SessionInfo, SessionRecord
from ._session_body import add_versioned_fields, session_config
from .execution import Execution, Mode, Transport, WarmSockets
from .lifecycle import DEAD_STATUSES, LIVE_STATUSES, has_ended

if TYPE_CHECKING:
    from ._core import SchedulingClient

__all__ = ["DEAD_STATUSES", "LIVE_STATUSES", "Sessions", "new_session_name"]


DEFAULT_LIST_FIELDS = (
    "name", "id",
    "image",
    "type",
    "status",
    "status_info",
    "status_changed",
    "result",
    "created_at",
    "terminated_at",
    "occupied_slots",
)


def new_session_name() -> str:
    return f"bjup-{secrets.token_hex(5)}"


class Sessions:
    """``client.sessions``: everything under ``/session``."""

    def __init__(self, client: SchedulingClient) -> None:
        self._client = client
        self.warm_sockets = WarmSockets(client)
        self._drains: dict[str, asyncio.Task[None]] = {}
        self._flush_prefixes: dict[str, str] = {}
        self._background: set[str] = set()
        self._collectors: dict[str, asyncio.Task[None]] = {}

    def set_flush_prefix(self, session: str, prefix: str | None) -> None:
        """Name the prompt prefix of a session's live-output pump
        (``backendai_jupyter.richchannel.pump``): every run on ``session`` then answers such
        prompts itself and never shows them."""
        if prefix:
            self._flush_prefixes[session] = prefix
        else:
            self._flush_prefixes.pop(session, None)

    def flush_prefix(self, session: str) -> str | None:
        return self._flush_prefixes.get(session)

    def note_background(self, session: str) -> None:
        """A run on ``session`` ended with threads that may print while it is idle."""
        self._background.add(session)

    def take_background(self, session: str) -> bool:
        """Whether a run noted background output since the last call (and forget it)."""
        found = session in self._background
        self._background.discard(session)
        return found

    def track_collector(self, session: str, task: asyncio.Task[None]) -> None:
        """A hidden run collecting background output on ``session`` while it is idle: the next
        other run interrupts it first (:meth:`stop_collector`)."""
        self._collectors[session] = task

    def tracks_collector(self, session: str, task: asyncio.Task[Any] | None) -> bool:
        """Whether ``task`` is the session's collector still (no other run stopped it)."""
        return task is not None and self._collectors.get(session) is task

    def drop_collector(self, session: str) -> None:
        """Cancel the session's collector without waiting (the session is going away)."""
        task = self._collectors.pop(session, None)
        if task is not None:
            task.cancel()

    async def stop_collector(self, session: str) -> None:
        """End the session's collector run (if any) before another run starts: interrupt it,
        again every second until it has ended (the first may reach the session before the
        collector started there), for at most 10 s."""
        task = self._collectors.pop(session, None)
        try:
            for _ in range(10):
                if task is None or task.done():
                    return
                with contextlib.suppress(BackendAIError):
                    await self.interrupt(session)
                await asyncio.wait({task}, timeout=1.0)
        finally:  # also when the run that stops it is abandoned: no collector left untracked
            if task is not None and not task.done():
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)

    def track_drain(self, session: str, drain: Coroutine[Any, Any, None]) -> None:
        """Finish an abandoned run in the background; the session's next run waits for it."""
        previous = self._drains.get(session)
        if previous is not None and not previous.done():
            drain.close()
            return
        self._drains[session] = asyncio.ensure_future(drain)

    async def aclose(self, timeout: float = 10.0) -> None:
        """Close pre-opened sockets; give abandoned runs a moment to finish draining."""
        collectors = list(self._collectors.values())
        self._collectors.clear()
        drains = [t for t in self._drains.values() if not t.done()]
        self._drains.clear()
        for task in collectors:
            task.cancel()
        try:
            await self.warm_sockets.close()
            if drains:
                await asyncio.wait(drains, timeout=timeout)
        finally:
            # Every task ends here, also when this close is cancelled: one still running after
            # the client closed would open a new HTTP session that nobody closes.
            for task in drains:
                task.cancel()
            await asyncio.gather(*collectors, *drains, return_exceptions=True)

    async def wait_drained(self, session: str) -> None:
        task = self._drains.pop(session, None)
        if task is not None:
            # A failed drain must not fail the next run; that run reports its own errors.
            with contextlib.suppress(BackendAIError, TimeoutError, asyncio.CancelledError):
                await task

    async def probe(self, session: str, *, timeout: float = 10.0) -> bool:
        """Does the session still run code? A bounded trivial run (``pass``) over REST.

        True when it finished within ``timeout`` seconds; False when it did not start in time
        (the session's run queue is wedged, or a long run occupies it). A probe that did not
        finish is left queued: it then runs ``pass`` whenever the queue frees.
        """
        await self._client.connect()
        run_id = secrets.token_hex(16)
        body: dict[str, Any] = {"mode": "query", "code": "pass", "runId": run_id, "run_id": run_id}
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            left = deadline - loop.time()
            if left <= 0:
                return False
            try:
                data = await self._client.http.json(
                    "POST", f"/session/{session}", json=body, read_timeout=left
                )
            except RequestTimeout:
                return False
            result = data.get("result") if isinstance(data, dict) else None
            status = result.get("status") if isinstance(result, dict) else None
            if status in ("finished", "exec-timeout"):
                return True
            if status not in ("continued", "waiting-input"):
                raise ProtocolError(f"probe run: unexpected answer {str(data)[:80]!r}")
            body = {**body, "mode": "input" if status == "waiting-input" else "continue"}
            body["code"] = ""

    async def gone_reason(self, session: str) -> str | None:
        """One line saying why the session is gone, or ``None`` while it is alive."""
        try:
            info = await self.info(session)
        except NotFoundError:
            return (
                f"the session {session} has ended (the manager no longer knows it): it was "
                "terminated, or its agent or kernel died. Its variables are lost"
            )
        status = str(info.get("status", "")).upper()
        if has_ended(status):
            why = info.get("statusInfo") or info.get("status_info") or status.lower()
            return f"the session {session} has ended ({why}). Its variables are lost"
        return None

    async def create(
        self, image: str, *, name: str | None = None,
        type: Literal["interactive", "batch", "inference"] = "interactive",
        resources: Mapping[str, str | int | float] | None = None,
        resource_opts: Mapping[str, str] | None = None, mounts: Sequence[str] = (),
        mount_map: Mapping[str, str] | None = None, environ: Mapping[str, str] | None = None,
        scaling_group: str | None = None, cluster_size: int = 1,
        cluster_mode: Literal["single-node", "multi-node"] = "single-node",
        enqueue_only: bool = False, max_wait: int = 0, startup_command: str | None = None,
        bootstrap_script: str | None = None, tag: str | None = None, domain: str | None = None,
        group: str | None = None, reuse_if_exists: bool = True,
        owner_access_key: str | None = None, preopen_ports: Sequence[int] | None = None,
        starts_at: str | None = None, dependencies: Sequence[str] | None = None,
        callback_url: str | None = None, architecture: str | None = None,
        batch_timeout: int | None = None, priority: int | None = None,
        precheck: bool = True, on_wait: Callable[[str], None] | None = None,
    ) -> SessionInfo:
        """Get or create a compute session (``POST /session``).

        Blocks until the session runs unless ``enqueue_only``; ``max_wait`` (seconds, 0 = forever)
        bounds the wait, after which the answer's status is ``TIMEOUT`` and the session keeps
        queueing. ``precheck``, ``on_wait``: see :func:`.scheduling.post_session`.
        """
        await self._client.connect()
        if type == "batch" and not startup_command:
            raise ConfigError("a batch session needs a startup command")
        if max_wait < 0:
            raise ConfigError("max_wait must be >= 0 seconds")
        config = self._client.config
        name = name or new_session_name()
        body: dict[str, Any] = {
            "image": image, "name": name, "type": type, "tag": tag,
            "domain": domain or config.domain, "group": group or config.group,
            "enqueueOnly": enqueue_only, "maxWaitSeconds": max_wait,
            "reuseIfExists": reuse_if_exists, "startupCommand": startup_command,
            "bootstrap_script": bootstrap_script,
            "config": session_config(
                default_mounts=config.vfolder_mounts, mounts=mounts, mount_map=mount_map,
                environ=environ, resources=resources, resource_opts=resource_opts,
                scaling_group=scaling_group, preopen_ports=preopen_ports,
            ),
        }
        if owner_access_key:
            body["owner_access_key"] = owner_access_key
        if starts_at:
            body["starts_at"] = starts_at
        add_versioned_fields(
            body, self._client.features, cluster_size=cluster_size, cluster_mode=cluster_mode,
            dependencies=dependencies, callback_url=callback_url, architecture=architecture,
            batch_timeout=batch_timeout, priority=priority,
        )
        # The request blocks server-side until the session starts (or max_wait passes).
        read_timeout = None if max_wait == 0 or enqueue_only else max_wait + 60.0
        report = None if enqueue_only else on_wait
        data = await scheduling.post_session(self._client, body, read_timeout, precheck, report)
        if not isinstance(data, dict):
            raise ProtocolError(f"create session: unexpected answer {str(data)[:80]!r}")
        return SessionInfo.from_create(data, name)

    async def create_from_template(
        self, template_id: str, *, name: str | None = None, **overrides: Any
    ) -> SessionInfo:
        """``POST /session/_/create-from-template``; unspecified fields come from the template."""
        await self._client.connect()
        name = name or new_session_name()
        body: dict[str, Any] = {"template_id": template_id, "name": name}
        body.update({k: v for k, v in overrides.items() if v is not None})
        body.setdefault("domain", self._client.config.domain)
        body.setdefault("group", self._client.config.group)
        data = await self._client.http.json(
            "POST", "/session/_/create-from-template", json=body, read_timeout=None
        )
        return SessionInfo.from_create(data, name)

    async def info(self, session: str) -> SessionRecord:
        """``GET /session/{id}``: the session's status and details."""
        await self._client.connect()
        data = await self._client.http.json("GET", f"/session/{session}")
        return SessionRecord.from_info(data if isinstance(data, dict) else {}, session)

    async def destroy(
        self, session: str, *, forced: bool = False, recursive: bool = False
    ) -> dict[str, Any]:
        await self._client.connect()
        await self.warm_sockets.discard(session)
        params: dict[str, Any] = {}
        if forced:
            params["forced"] = "true"
        if recursive:
            params["recursive"] = "true"
        data = await self._client.http.json("DELETE", f"/session/{session}", params=params)
        return data if isinstance(data, dict) else {}

    async def destroy_quietly(
        self, session: str, *, timeout: float | None = 60.0, attempts: int = 1,
        retry_delay: float = 0.5, registering: bool = False,
    ) -> str | None:
        """Force-destroy without raising: ``None`` once it is gone, else why not (the one
        clean-up policy, :func:`.lifecycle.destroy_quietly`)."""
        return await lifecycle.destroy_quietly(
            lambda s: self.destroy(s, forced=True), session,
            outage_limit=self._client.config.outage_limit, timeout=timeout, attempts=attempts,
            retry_delay=retry_delay, registering=registering,
        )

    async def restart(self, session: str) -> None:
        await self._client.connect()
        await self._client.http.request("PATCH", f"/session/{session}", read_timeout=None)

    async def interrupt(self, session: str) -> None:
        await self._client.connect()
        await self._client.http.request("POST", f"/session/{session}/interrupt")

    async def complete(
        self, session: str, code: str, *, row: int = 0, col: int = 0, line: str = "", post: str = ""
    ) -> list[str]:
        """Server-side completion: stock runners return nothing (protocol.md §3.3)."""
        if not (await self._client.connect()).features.completion_route:
            return []  # the same empty answer, without 24.03's 10 s wait for a 500
        body = {"code": code, "options": {"row": row, "col": col, "line": line, "post": post}}
        data = await self._client.http.json("POST", f"/session/{session}/complete", json=body)
        result = data.get("result", {}) if isinstance(data, dict) else {}
        found = result.get("suggestions", result.get("completions", [])) or []
        return [str(s) for s in found] if isinstance(found, list) else []

    async def apps(self, session: str) -> builtins.list[ServicePort]:
        """The session's services (``GET /stream/session/{id}/apps``); see ``client.apps``."""
        from .apps import list_apps

        return await list_apps(self._client, session)

    async def logs(self, session: str) -> str:
        await self._client.connect()
        data = await self._client.http.json("GET", f"/session/{session}/logs")
        result = data.get("result", {}) if isinstance(data, dict) else {}
        return str(result.get("logs", "")) if isinstance(result, dict) else ""

    async def rename(self, session: str, new_name: str) -> None:
        await self._client.connect()
        # 22.x reads the query string, 26.x a JSON body: send both.
        await self._client.http.request(
            "POST", f"/session/{session}/rename", params={"name": new_name}, json={"name": new_name}
        )

    async def list(
        self,
        *,
        status: str | Sequence[str] | None = None,
        access_key: str | None = None,
        fields: Sequence[str] = DEFAULT_LIST_FIELDS,
        page_size: int = 50,
        limit: int | None = None,
    ) -> builtins.list[SessionRecord]:
        """List sessions through GraphQL ``compute_session_list``, following every page."""
        if not 1 <= page_size <= 100:
            raise ConfigError("page_size must be between 1 and 100")
        if status is None:
            status = LIVE_STATUSES
        status_text = status if isinstance(status, str) else ",".join(status)
        status_text = ",".join(s.strip().upper() for s in status_text.split(",") if s.strip())
        query = (
            "query($limit:Int!, $offset:Int!, $status:String, $access_key:String) {"
            " compute_session_list(limit:$limit, offset:$offset, status:$status,"
            " access_key:$access_key) { items { " + " ".join(fields) + " } total_count } }"
        )
        items: builtins.list[dict[str, Any]] = []
        offset = 0
        while True:
            size = page_size if limit is None else min(page_size, limit - len(items))
            if size <= 0:
                break
            variables = {
                "limit": size,
                "offset": offset,
                "status": status_text,
                "access_key": access_key,
            }
            data = await self._gql_statuses(query, variables)
            page = (data or {}).get("compute_session_list") or {}
            batch = page.get("items") or []
            items.extend(batch)
            offset += len(batch)
            if not batch or offset >= int(page.get("total_count") or 0):
                break
        return [SessionRecord.from_list(d) for d in items if isinstance(d, dict)]

    async def _gql_statuses(self, query: str, variables: dict[str, Any]) -> Any:
        """Run a listing query, dropping status names this server does not know.

        The set of session statuses changed between releases (``RESIZING`` is gone in 26.x,
        ``PREPARED`` is new); the server rejects the whole query for one unknown name.
        """
        while True:
            try:
                return await self._client.gql(query, variables)
            except BadRequestError as e:
                statuses = str(variables.get("status") or "").split(",")
                unknown = [s for s in statuses if s and f"'{s}'" in (e.msg or "")]
                if not unknown or len(unknown) == len(statuses):
                    raise
                variables = {
                    **variables,
                    "status": ",".join(s for s in statuses if s not in unknown),
                }

    def execute(
        self,
        session: str,
        code: str,
        *,
        mode: Mode = "query",
        options: dict[str, Any] | None = None,
        transport: Transport = "auto",
        outage_limit: float | None = None,
        collector: bool = False,
    ) -> Execution:
        """Start running ``code``; iterate the returned :class:`Execution` for its events.

        ``outage_limit``: seconds to keep retrying while the manager is unreachable (default
        ``ClientConfig.outage_limit``).
        """
        return Execution(
            self._client,
            session,
            code,
            mode=mode,
            options=options,
            transport=transport,
            outage_limit=outage_limit,
            collector=collector,
        )

    # -- files inside the session (/home/work) ---------------------------------------------------

    async def upload(
        self, session: str, files: Iterable[Path | str], *, basedir: Path | str | None = None
    ) -> None:
        """Upload local files into the session's ``/home/work`` (each part < 1 MiB upstream)."""
        await self._client.connect()
        base = Path(basedir) if basedir is not None else Path.cwd()
        parts: builtins.list[tuple[str, str, bytes]] = []
        for item in files:
            path = Path(item)
            if not path.is_file():
                raise ConfigError(f"not a file: {path}")
            try:
                rel = path.resolve().relative_to(base.resolve()).as_posix()
            except ValueError:
                rel = path.name
            parts.append(("src", rel, path.read_bytes()))
        if not parts:
            return
        await self._client.http.request(
            "POST", f"/session/{session}/upload", data=multipart(parts)
        )

    async def download(
        self, session: str, files: Sequence[str], dest: Path | str = "."
    ) -> builtins.list[Path]:
        """Download files from the session; the server sends one tar archive per path."""
        await self._client.connect()
        dest_dir = Path(dest)
        dest_dir.mkdir(parents=True, exist_ok=True)
        path = f"/session/{session}/download"
        if self._client.features.session_download_post:
            resp = await self._client.http.request(
                "POST", path, params=[("files", f) for f in files]
            )
        else:
            resp = await self._client.http.request("GET", path, json={"files": list(files)})
        written: builtins.list[Path] = []
        for part in split_multipart(resp.body, resp.headers.get("Content-Type", "")):
            written.extend(extract_tar(part, dest_dir))
        return written

    async def list_files(self, session: str, path: str = ".") -> builtins.list[dict[str, Any]]:
        await self._client.connect()
        data = await self._client.http.json("GET", f"/session/{session}/files", json={"path": path})
        files = data.get("files", []) if isinstance(data, dict) else []
        if isinstance(files, str):
            files = json.loads(files)
        return [f for f in files if isinstance(f, dict)]
