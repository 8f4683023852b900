"""The create-session request, checked completely before anything happens (pure).

:func:`parse_create` turns the JSON body of ``POST /session`` (any of the manager's aliases) into
a :class:`CreateParams` or raises the manager's 400 problem; only then does ``sessions.py`` look
up names, reserve resources or enqueue. A request that is refused thus leaves nothing behind.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

from .errors import Problem, invalid_api_params, schema_invalid

__all__ = ["NAME_RE", "CreateParams", "check_name", "parse_create"]

# \Z, not $: "$" also matches before a trailing newline.
NAME_RE = re.compile(r"(?=.{4,64}\Z)\w[\w.-]*\w\Z", re.ASCII)
SESSION_TYPES = ("interactive", "batch", "inference")


@dataclass(frozen=True)
class CreateParams:
    name: str | None
    image: str
    type: str
    startup_command: str | None
    bootstrap_script: str | None
    resources: dict[str, Any]
    environ: dict[str, str]
    mounts: list[str]
    mount_map: dict[str, str]
    tag: str | None
    group: str
    domain: str
    enqueue_only: bool
    reuse_if_exists: bool
    max_wait: float
    service_config: dict[str, Any] = field(default_factory=dict)


_CONFIG_KEYS = {"config", "resources", "mounts", "mount_map", "environ"}


def _invalid(key: str, why: str) -> Problem:
    """26.9.6's two shapes: a schema error for top-level fields, "Input validation error" with
    ``data.config`` for what is inside ``config``."""
    if key in _CONFIG_KEYS:
        return invalid_api_params("Input validation error", {"config": f"{key}: {why}"})
    return schema_invalid(key, why)


def _pick(d: dict[str, Any], *names: str) -> tuple[str, Any]:
    for n in names:
        if d.get(n) is not None:
            return n, d[n]
    return names[0], None


def _text(d: dict[str, Any], *names: str, default: str | None = None) -> str | None:
    key, value = _pick(d, *names)
    if value is None:
        return default
    if not isinstance(value, str):
        raise _invalid(key, "must be a string")
    if "\x00" in value:
        raise _invalid(key, "must not contain NUL characters")
    return value


def _flag(d: dict[str, Any], default: bool, *names: str) -> bool:
    key, value = _pick(d, *names)
    if value is None:
        return default
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
        return value.lower() in ("true", "1", "yes")
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    raise _invalid(key, "must be a boolean")


def _number(d: dict[str, Any], *names: str) -> float:
    key, value = _pick(d, *names)
    if value is None:
        return 0.0
    if isinstance(value, bool):
        raise _invalid(key, "must be a number")
    try:
        number = float(value) if isinstance(value, (int, float, str)) else math.nan
    except ValueError:
        number = math.nan
    if not math.isfinite(number) or number < 0:
        raise _invalid(key, "must be a non-negative number")
    return number


def _integer(d: dict[str, Any], default: int, *names: str) -> int:
    key, value = _pick(d, *names)
    if value is None:
        return default
    if isinstance(value, bool):
        raise _invalid(key, "must be an integer")
    if isinstance(value, int):
        return value
    if isinstance(value, str) and re.fullmatch(r"\s*[+-]?\d{1,9}\s*", value):
        return int(value)
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e9:
        return int(value)
    raise _invalid(key, "must be an integer")


def _str_map(value: Any, key: str, *, env: bool = False) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _invalid(key, "must be a mapping")
    out: dict[str, str] = {}
    for k, v in value.items():
        if not isinstance(v, (str, int, float)) or isinstance(v, bool):
            raise _invalid(key, f"the value of {k!r} must be a string")
        text = str(v)
        if "\x00" in k or "\x00" in text:
            raise _invalid(key, "must not contain NUL characters")
        if env and (not k or "=" in k):
            raise _invalid(key, f"invalid variable name {k!r}")
        out[k] = text
    return out


def check_name(name: Any, key: str = "name") -> str:
    """A session name as the manager takes it: 4–64 word characters, dots or dashes."""
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise _invalid(key, "invalid session name")
    return name


def parse_create(body: dict[str, Any]) -> CreateParams:
    """Every field of a create request, checked; raises a 400 :class:`Problem`."""
    config = body.get("config")
    if config is None:
        config = {}
    if not isinstance(config, dict):
        raise _invalid("config", "must be a mapping")
    name = _text(body, "name", "session_name", "sessionName", "clientSessionToken")
    if name:
        check_name(name)
    image = _text(body, "image", "lang")
    if not image:
        raise _invalid("image", "is required")
    sess_type = _text(body, "type", "sessionType", "session_type", default="interactive")
    if sess_type not in SESSION_TYPES:
        raise _invalid("type", "invalid session type")
    startup = _text(body, "startupCommand", "startup_command")
    if sess_type == "batch" and not startup:
        raise invalid_api_params("Batch sessions must have a non-empty startup command.")
    cluster_size = _integer(
        body, _integer(config, 1, "clusterSize", "cluster_size"), "clusterSize", "cluster_size"
    )
    if cluster_size != 1:
        raise invalid_api_params("The local endpoint runs single-container sessions only.")
    _text(body, "clusterMode", "cluster_mode")
    resources = config.get("resources")
    if resources is None:
        resources = {}
    if not isinstance(resources, dict):
        raise _invalid("resources", "must be a mapping")
    mounts = config.get("mounts")
    if mounts is None:
        mounts = []
    if not isinstance(mounts, list) or not all(isinstance(m, str) and m for m in mounts):
        raise _invalid("mounts", "must be a list of folder names")
    _, mount_map = _pick(config, "mount_map", "mountMap")
    return CreateParams(
        name=name or None,
        image=image,
        type=sess_type,
        startup_command=startup,
        bootstrap_script=_text(body, "bootstrap_script", "bootstrapScript"),
        resources=resources,
        environ=_str_map(config.get("environ"), "environ", env=True),
        mounts=list(mounts),
        mount_map=_str_map(mount_map, "mount_map"),
        tag=_text(body, "tag"),
        group=_text(body, "group", "groupName", "group_name", default="default") or "default",
        domain=_text(body, "domain", "domainName", "domain_name", default="default") or "default",
        enqueue_only=_flag(body, False, "enqueueOnly", "enqueue_only"),
        reuse_if_exists=_flag(body, True, "reuseIfExists", "reuse_if_exists"),
        max_wait=_number(body, "maxWaitSeconds", "max_wait_seconds"),
        service_config=config,
    )
