"""What the ``/folders`` API looks like across manager versions, shared by management and transfers.

The version gates (trash bin and ID lookup on v8.20240315+, hyphenated routes on 22.03+), the
listing normalisation (26.x ``items``, 20.03 ``files`` JSON string, bare lists) and remote path
joining are pure, so they live apart from the code that talks to the server.
"""

from __future__ import annotations

import json
import re
import stat as statmod
import uuid
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import PurePosixPath
from typing import Any

from ._exceptions import ProtocolError
from ._versioning import SINCE

__all__ = ["normalize_file_entry", "normalize_listing"]

# v8.20240315: ID-based folder lookup (``/folders/_/id``) and the trash bin.
_V_TRASH = SINCE["folder_trash_bin"]
# v8.20240915: a folder's UUID in ``/folders/{x}/...`` paths (24.03 takes the name only).
_V_ID_PATHS = SINCE["folder_id_paths"]
# v6.20220315 (22.03): hyphenated file routes, ``cloneable``, mkdir ``parents``/``exist_ok``.
_V_2203 = SINCE["folder_routes_2203"]


def _type_of(entry: Mapping[str, Any], mode: int | None) -> str:
    raw = entry.get("type")
    if isinstance(raw, str) and raw:
        kind = raw.lower()
        return {"dir": "directory", "link": "symlink", "regular": "file"}.get(kind, kind)
    if entry.get("symlink_target"):
        return "symlink"
    if mode is not None:
        if statmod.S_ISDIR(mode):
            return "directory"
        if statmod.S_ISLNK(mode):
            return "symlink"
        if statmod.S_ISREG(mode):
            return "file"
    return "file" if mode is None else "other"


def _mode_of(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        text = value.strip()
        if re.fullmatch(r"0o[0-7]+", text):
            return int(text, 8)
        if text.isdigit():
            return int(text)
    return None


def _timestamp(value: Any) -> str:
    """A float epoch or a string, as an ISO 8601 string (``""`` when unknown)."""
    if value is None or value == "":
        return ""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return datetime.fromtimestamp(float(value), tz=timezone.utc).isoformat()
    text = str(value)
    try:
        return datetime.fromtimestamp(float(text), tz=timezone.utc).isoformat()
    except ValueError:
        return text


def normalize_file_entry(entry: Mapping[str, Any]) -> dict[str, Any]:
    """One listing entry as ``{name, type, size, mode, created, modified}``.

    ``type`` is ``"file"``, ``"directory"``, ``"symlink"`` or ``"other"``; ``mode`` is the integer
    ``st_mode`` (or ``None``); timestamps are ISO 8601 strings.
    """
    mode = _mode_of(entry.get("mode"))
    size = entry.get("size", 0)
    try:
        size_int = int(size)
    except (TypeError, ValueError):
        size_int = 0
    out: dict[str, Any] = {
        "name": str(entry.get("name", entry.get("filename", ""))),
        "type": _type_of(entry, mode),
        "size": size_int,
        "mode": mode,
        "created": _timestamp(entry.get("created", entry.get("ctime"))),
        "modified": _timestamp(entry.get("modified", entry.get("mtime"))),
    }
    if entry.get("symlink_target"):
        out["symlink_target"] = entry["symlink_target"]
    return out


def normalize_listing(payload: Any) -> list[dict[str, Any]]:
    """Normalise a ``GET /folders/{name}/files`` answer.

    Accepts the 22.03+ form ``{"items": [...]}``, the 20.03 form ``{"files": "<JSON string>"}``
    (also a list there), or a bare list.
    """
    entries: Any
    if isinstance(payload, list):
        entries = payload
    elif isinstance(payload, Mapping):
        if isinstance(payload.get("items"), list):
            entries = payload["items"]
        elif "files" in payload:
            entries = payload["files"]
            if isinstance(entries, (str, bytes)):
                try:
                    entries = json.loads(entries)
                except ValueError:
                    raise ProtocolError(
                        f"folder listing: 'files' is not valid JSON: {entries[:80]!r}"
                    ) from None
        else:
            raise ProtocolError(f"folder listing: unexpected answer {str(payload)[:80]!r}")
    else:
        raise ProtocolError(f"folder listing: unexpected answer {str(payload)[:80]!r}")
    if not isinstance(entries, list):
        raise ProtocolError(f"folder listing: expected a list, got {type(entries).__name__}")
    return [normalize_file_entry(e) for e in entries if isinstance(e, Mapping)]


def _remote_join(*parts: str) -> str:
    """Join remote path pieces, dropping empty and ``.`` pieces (``""`` is the folder root)."""
    kept = [p.strip("/") for p in parts if p.strip("/") not in ("", ".")]
    return str(PurePosixPath(*kept)) if kept else ""


def _is_uuid(text: str) -> bool:
    try:
        uuid.UUID(text)
    except ValueError:
        return False
    return True
