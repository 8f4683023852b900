"""Small resources: resource presets and slots (``client.resources``), session templates
(``client.templates``) and dotfiles / bootstrap script (``client.dotfiles``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from ._exceptions import ProtocolError

if TYPE_CHECKING:
    from ._core import ClientCore
    from ._http import HTTPTransport

__all__ = ["Dotfiles", "Resources", "Templates"]

_List = list  # ``list`` is shadowed by the ``list`` methods inside the class bodies


class _Resource:
    def __init__(self, client: ClientCore) -> None:
        self._client = client

    @property
    def _http(self) -> HTTPTransport:
        return self._client.http

    async def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        await self._client.connect()
        return await self._http.json(method, path, **kwargs)


class Resources(_Resource):
    """``client.resources``: presets, resource slots, scaling groups."""

    async def presets(self, scaling_group: str | None = None) -> _List[dict[str, Any]]:
        """``[{"name", "resource_slots": {slot: str}, "shared_memory"}, ...]``."""
        data = await self._json(
            "GET", "/resource/presets", params={"scaling_group": scaling_group}
        )
        presets = data.get("presets") if isinstance(data, dict) else None
        if not isinstance(presets, _List):
            raise ProtocolError(f"/resource/presets: unexpected answer {str(data)[:80]!r}")
        return [p for p in presets if isinstance(p, dict)]

    async def check_presets(
        self, scaling_group: str | None = None, group: str | None = None
    ) -> dict[str, Any]:
        """Limits, usage and per-preset ``allocatable`` for a project (default: the config's).

        Slot values are strings; ``"Infinity"`` means unlimited, ``"NaN"`` hidden.
        """
        body: dict[str, Any] = {"group": group or self._client.config.group}
        if scaling_group is not None:
            body["scaling_group"] = scaling_group
        data = await self._json("POST", "/resource/check-presets", json=body)
        if not isinstance(data, dict):
            raise ProtocolError(f"/resource/check-presets: unexpected answer {str(data)[:80]!r}")
        return data

    async def resource_slots(self) -> dict[str, str]:
        """Known slot names and their units, e.g. ``{"cpu": "count", "mem": "bytes"}``."""
        data = await self._json("GET", "/config/resource-slots")
        if not isinstance(data, dict):
            raise ProtocolError(f"/config/resource-slots: unexpected answer {str(data)[:80]!r}")
        return {str(k): str(v) for k, v in data.items()}

    async def scaling_groups(self, group: str | None = None) -> _List[str]:
        """Names of the scaling (resource) groups a project may use (default: the config's)."""
        data = await self._json(
            "GET", "/scaling-groups", params={"group": group or self._client.config.group}
        )
        groups = data.get("scaling_groups") if isinstance(data, dict) else None
        if not isinstance(groups, _List):
            raise ProtocolError(f"/scaling-groups: unexpected answer {str(data)[:80]!r}")
        return [str(g["name"]) for g in groups if isinstance(g, dict) and "name" in g]


class Templates(_Resource):
    """``client.templates``: session templates under ``/template/session``.

    The payload is passed through as text (YAML or JSON). 26.x managers expect a list of
    ``{"template": {...task template...}, "name"?}`` items (a JSON list, or one YAML document per
    item); 20.03 managers expect the task template itself.
    """

    async def create(
        self,
        payload: str,
        *,
        group: str | None = None,
        domain: str | None = None,
        type: Literal["task", "cluster"] = "task",
        owner_access_key: str | None = None,
    ) -> _List[str]:
        """Store template(s); return the new template id(s)."""
        body: dict[str, Any] = {
            "payload": payload,
            "group_name": group or self._client.config.group,
            "domain_name": domain or self._client.config.domain,
            "type": type,
        }
        if owner_access_key is not None:
            body["owner_access_key"] = owner_access_key
        data = await self._json("POST", "/template/session", json=body)
        items = data if isinstance(data, _List) else [data]
        ids = [str(i["id"]) for i in items if isinstance(i, dict) and "id" in i]
        if not ids:
            raise ProtocolError(f"/template/session: no id in {str(data)[:80]!r}")
        return ids

    async def list(self, all: bool = False) -> _List[dict[str, Any]]:
        data = await self._json("GET", "/template/session", params={"all": all})
        if not isinstance(data, _List):
            raise ProtocolError(f"/template/session: unexpected answer {str(data)[:80]!r}")
        return [d for d in data if isinstance(d, dict)]

    async def get(self, template_id: str, format: Literal["yaml", "json"] = "yaml") -> str:
        """The template as YAML or JSON text."""
        await self._client.connect()
        resp = await self._http.request(
            "GET", f"/template/session/{template_id}", params={"format": format}
        )
        return resp.text()

    async def update(
        self,
        template_id: str,
        payload: str,
        *,
        group: str | None = None,
        domain: str | None = None,
    ) -> None:
        # 26.x defaults the project to "default" when none is sent, so send the config's.
        body: dict[str, Any] = {
            "payload": payload,
            "group_name": group or self._client.config.group,
            "domain_name": domain or self._client.config.domain,
        }
        await self._json("PUT", f"/template/session/{template_id}", json=body)

    async def delete(self, template_id: str) -> None:
        await self._json("DELETE", f"/template/session/{template_id}")


class Dotfiles(_Resource):
    """``client.dotfiles``: per-user dotfiles and bootstrap script (``/user-config``)."""

    async def create(self, path: str, data: str, permission: str = "644") -> None:
        await self._json(
            "POST",
            "/user-config/dotfiles",
            json={"path": path, "data": data, "permission": permission},
        )

    async def list(self) -> _List[dict[str, Any]]:
        """``[{"path", "permission", "data"}, ...]``."""
        data = await self._json("GET", "/user-config/dotfiles")
        if not isinstance(data, _List):
            raise ProtocolError(f"/user-config/dotfiles: unexpected answer {str(data)[:80]!r}")
        return [d for d in data if isinstance(d, dict)]

    async def get(self, path: str) -> dict[str, Any]:
        data = await self._json("GET", "/user-config/dotfiles", params={"path": path})
        if isinstance(data, str):  # some managers answer the bare content
            return {"path": path, "data": data}
        if not isinstance(data, dict):
            raise ProtocolError(f"/user-config/dotfiles: unexpected answer {str(data)[:80]!r}")
        if "permission" not in data and "perm" in data:  # 26.x answers "perm" here
            data = {**data, "permission": data["perm"]}
        return data

    async def update(self, path: str, data: str, permission: str = "644") -> None:
        await self._json(
            "PATCH",
            "/user-config/dotfiles",
            json={"path": path, "data": data, "permission": permission},
        )

    async def delete(self, path: str) -> None:
        await self._json("DELETE", "/user-config/dotfiles", params={"path": path})

    async def get_bootstrap_script(self) -> str:
        data = await self._json("GET", "/user-config/bootstrap-script")
        return data if isinstance(data, str) else ("" if data is None else str(data))

    async def update_bootstrap_script(self, script: str) -> None:
        await self._json("POST", "/user-config/bootstrap-script", json={"script": script})
