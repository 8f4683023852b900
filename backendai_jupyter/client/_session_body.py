"""The body of ``POST /session`` (pure): the session's ``config`` and the fields that only
some API versions take (see :class:`~._versioning.Features`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ._versioning import Features
from .parsing import parse_mounts

__all__ = ["add_versioned_fields", "session_config"]


def session_config(
    *,
    default_mounts: Sequence[str],
    mounts: Sequence[str],
    mount_map: Mapping[str, str] | None,
    environ: Mapping[str, str] | None,
    resources: Mapping[str, str | int | float] | None,
    resource_opts: Mapping[str, str] | None,
    scaling_group: str | None,
    preopen_ports: Sequence[int] | None,
) -> dict[str, Any]:
    """The ``config`` object; ``default_mounts`` (``BACKEND_VFOLDER_MOUNTS``) are added, and
    may name a path too (``data,models:/mnt/models``, as ``-m`` does)."""
    default_names, default_map = parse_mounts(default_mounts)
    merged_map = {**default_map, **(mount_map or {})}
    config: dict[str, Any] = {
        "mounts": list(dict.fromkeys([*mounts, *default_names])),
        "environ": dict(environ or {}),
        "resources": {k: str(v) for k, v in (resources or {}).items()},
    }
    if merged_map:
        config["mount_map"] = merged_map
    if resource_opts:
        config["resource_opts"] = dict(resource_opts)
    if scaling_group:
        config["scalingGroup"] = scaling_group
    if preopen_ports:
        config["preopen_ports"] = [int(p) for p in preopen_ports]
    return config


def add_versioned_fields(
    body: dict[str, Any],
    features: Features,
    *,
    cluster_size: int,
    cluster_mode: str,
    dependencies: Sequence[str] | None,
    callback_url: str | None,
    architecture: str | None,
    batch_timeout: int | None,
    priority: int | None,
) -> None:
    """Put the fields whose place or presence depends on the API version into ``body``."""
    if features.cluster_fields_top_level:
        body["clusterSize"] = cluster_size
        body["clusterMode"] = cluster_mode
    else:
        body["config"]["clusterSize"] = cluster_size
    if features.dependencies_and_callbacks:
        if dependencies:
            body["dependencies"] = list(dependencies)
        if callback_url:
            body["callback_url"] = callback_url
        if architecture:
            body["architecture"] = architecture
    if features.batch_timeout_and_priority:
        if batch_timeout is not None:
            body["batch_timeout"] = batch_timeout
        if priority is not None:
            body["priority"] = priority
