"""What a path from a client must look like before it reaches the file system (pure).

Session file routes and folder routes both check client paths here first, so that a NUL, an
unencodable character or an over-long name is a 400 with a reason rather than an ``OSError``
from deep inside a handler.
"""

from __future__ import annotations

from typing import Any

__all__ = ["MAX_NAME_BYTES", "MAX_PATH_BYTES", "path_problem"]

MAX_NAME_BYTES = 255  # NAME_MAX on Linux
MAX_PATH_BYTES = 4096  # PATH_MAX


def path_problem(path: Any) -> str | None:
    """Why ``path`` cannot name a file, or ``None`` when it can."""
    if not isinstance(path, str):
        return "a path must be a string"
    if "\x00" in path:
        return "a path must not contain NUL characters"
    try:
        raw = path.encode("utf-8")
    except UnicodeEncodeError:
        return "a path must be valid UTF-8"
    if len(raw) > MAX_PATH_BYTES:
        return f"the path is longer than {MAX_PATH_BYTES} bytes"
    if any(len(part) > MAX_NAME_BYTES for part in raw.split(b"/")):
        return f"a name in the path is longer than {MAX_NAME_BYTES} bytes"
    return None
