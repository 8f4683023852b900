"""What session the proxy kernel asks for: image, resources, mounts, env, lifecycle switches.

Sources, later ones winning: ``BACKEND_*`` variables (a kernelspec made by
``backendai-jupyter kernel install`` bakes its choices into ``kernel.json``'s ``env``), then
``%backendai config set KEY=VALUE ...`` (the workspace's one grammar, :mod:`.config`;
applied with :meth:`SessionSettings.update`). Credentials are never part of these settings.

==========================  ===================  ===========================================
variable                    config key           meaning
==========================  ===================  ===========================================
``BACKEND_IMAGE``           ``image``            container image (default ``auto``: the
                                                 cluster's newest Python image, see
                                                 :mod:`..client.images`)
``BACKEND_RESOURCES``       ``resources``        ``cpu=4,mem=8g,cuda.shares=0.5``
``BACKEND_VFOLDER_MOUNTS``  ``mounts``           ``data,models:/mnt/models``
``BACKEND_SESSION_ENV``     ``env``              ``NAME=VALUE;NAME2=VALUE2``
``BACKEND_SESSION_START``   ``start``            ``first-cell`` (default) or ``kernel-start``
``BACKEND_KEEP_SESSION``    ``keep``             keep the session when the kernel stops and
                                                 find it again after a restart (default off)
``BACKEND_SESSION_NAME``    ``name``             an explicit session name (implies keep)
``BACKEND_RICH_OUTPUT``     ``rich``             install the rich channel (default on)
``BACKEND_SCALING_GROUP``   ``scaling_group``    resource group to schedule in
``BACKEND_UPLOAD_DIR``      ``upload_dir``       copy the notebook's folder into the new
                                                 session's working directory (default off;
                                                 see :mod:`.folder_upload`)
``BACKEND_UPLOAD_MAX``      ``upload_max``       send nothing if the folder is bigger
                                                 (default 100m)
``BACKEND_UPLOAD_FILE_MAX`` ``upload_file_max``  skip larger files (default 10m)
==========================  ===================  ===========================================
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from ..client import ConfigError, ParseError
from ..client.defaults import DEFAULT_IMAGE
from ..client.parsing import (
    format_binary_size,
    parse_binary_size,
    parse_bool,
    parse_env,
    parse_mounts,
    parse_resource_flags,
)
from ..client.shape import SessionShape

__all__ = ["DEFAULT_IMAGE", "SESSION_KEYS", "SessionSettings", "keep_name"]


SESSION_KEYS = (
    "image",
    "resources",
    "mounts",
    "env",
    "start",
    "keep",
    "name",
    "rich",
    "scaling_group",
    "upload_dir",
    "upload_max",
    "upload_file_max",
)
_KEYS = SESSION_KEYS
_SHAPE_KEYS = ("image", "resources", "mounts")  # read through SessionShape.from_env


def _split(text: str, sep: str = ",") -> list[str]:
    return [part.strip() for part in text.split(sep) if part.strip()]


@dataclass(frozen=True)
class SessionSettings:
    """The remote session a kernel wants. Frozen: :meth:`update` returns a new one."""

    image: str = ""
    """The image to run; empty: ``auto`` (the kernel session asks the server which to use)."""
    resources: Mapping[str, str] = field(default_factory=dict)
    resource_opts: Mapping[str, str] = field(default_factory=dict)
    mounts: tuple[str, ...] = ()
    mount_map: Mapping[str, str] = field(default_factory=dict)
    env: Mapping[str, str] = field(default_factory=dict)
    start: str = "first-cell"
    keep: bool = False
    name: str | None = None
    rich: bool = True
    scaling_group: str | None = None
    upload_dir: bool = False
    upload_max: int = 100 * 2**20
    upload_file_max: int = 10 * 2**20

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> SessionSettings:
        env = os.environ if env is None else env
        # The shape is the client's BACKEND_* contract (the client also mounts
        # BACKEND_VFOLDER_MOUNTS by itself; they are kept here so that the settings describe
        # the whole session).
        shape = SessionShape.from_env(env)
        pairs: dict[str, str] = {}
        for key in _KEYS:
            var = {
                "env": "BACKEND_SESSION_ENV",
                "start": "BACKEND_SESSION_START",
                "keep": "BACKEND_KEEP_SESSION",
                "name": "BACKEND_SESSION_NAME",
                "rich": "BACKEND_RICH_OUTPUT",
            }.get(key, f"BACKEND_{key.upper()}")
            if key not in _SHAPE_KEYS and env.get(var):
                pairs[key] = env[var]
        image = "" if (shape.image or "").lower() == "auto" else shape.image or ""  # "": auto
        return replace(
            cls().update(pairs), image=image, resources=shape.resources,
            resource_opts=shape.resource_opts, mounts=shape.mounts, mount_map=shape.mount_map,
        )

    @property
    def shape(self) -> SessionShape:
        """Image, resources and mounts (the client's :class:`SessionShape`)."""
        return SessionShape(self.image, self.resources, self.resource_opts, self.mounts,
                            self.mount_map)

    def update(self, pairs: Mapping[str, str] | Iterable[str]) -> SessionSettings:
        """Apply ``{key: text}`` or ``["key=text", ...]`` (the ``%backendai config`` form)."""
        if not isinstance(pairs, Mapping):
            items: dict[str, str] = {}
            for item in pairs:
                key, sep, value = item.partition("=")
                if not sep:
                    raise ConfigError(f"expected KEY=VALUE, got {item!r}")
                items[key.strip().lower().replace("-", "_")] = value.strip()
            pairs = items
        changes: dict[str, Any] = {}
        for key, text in pairs.items():
            if key == "image":
                if not text:
                    raise ConfigError("image must not be empty (image=auto: the newest Python)")
                changes["image"] = "" if text.lower() == "auto" else text
            elif key == "resources":
                spec = parse_resource_flags(_split(text))
                changes["resources"], changes["resource_opts"] = spec.resources, spec.resource_opts
            elif key == "mounts":
                names, mount_map = parse_mounts(_split(text))
                changes["mounts"], changes["mount_map"] = tuple(names), mount_map
            elif key == "env":
                changes["env"] = parse_env(_split(text, ";"))
            elif key == "start":
                if text not in ("first-cell", "kernel-start"):
                    raise ConfigError("start must be first-cell or kernel-start")
                changes["start"] = text
            elif key in ("upload_max", "upload_file_max"):
                try:
                    changes[key] = parse_binary_size(text)
                except ParseError as e:
                    raise ConfigError(f"{key}: {e}") from None
            elif key in ("keep", "rich", "upload_dir"):
                changes[key] = parse_bool(key, text, error=ConfigError)
            elif key == "name":
                if text and not re.fullmatch(r"[A-Za-z0-9][\w.-]{3,63}", text):
                    raise ConfigError(f"invalid session name {text!r} (4-64 of [A-Za-z0-9_.-])")
                changes["name"] = text or None
            elif key == "scaling_group":
                changes["scaling_group"] = text or None
            else:
                raise ConfigError(f"unknown setting {key!r}; known: {', '.join(_KEYS)}")
        return replace(self, **changes)

    def describe(self) -> dict[str, str]:
        return {
            "image": self.image or "auto",
            "resources": self.shape.resources_text,
            "mounts": self.shape.mounts_text,
            "env": ";".join(f"{k}={v}" for k, v in self.env.items()),
            "start": self.start,
            "keep": str(self.keep).lower(),
            "name": self.name or "",
            "rich": str(self.rich).lower(),
            "scaling_group": self.scaling_group or "",
            "upload_dir": str(self.upload_dir).lower(),
            "upload_max": format_binary_size(self.upload_max),
            "upload_file_max": format_binary_size(self.upload_file_max),
        }


def keep_name(key: str, owner: str) -> str:
    """A stable session name for a kept session (e.g. ``key`` = the notebook path).

    Hashed with the access key so that two users' notebooks at the same path never collide.
    """
    digest = hashlib.sha256(f"{owner}\0{key}".encode()).hexdigest()[:16]
    return f"bjk-{digest}"
