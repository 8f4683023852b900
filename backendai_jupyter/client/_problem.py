"""Problem+json (RFC 7807 as Backend.AI uses it) → exception, and back. Pure functions.

Clients switch on the HTTP status first and treat ``type`` as a hint (protocol.md §10): the
manager renamed many types across releases, the status codes stayed.
"""

from __future__ import annotations

import json
from typing import Any

from ._exceptions import (
    APIError,
    AuthError,
    BadRequestError,
    ConflictError,
    NotFoundError,
    QuotaError,
    ServerError,
)

__all__ = [
    "PROBLEM_BASE",
    "error_class_for",
    "parse_error_body",
    "problem_body",
    "raise_for_problem",
]

PROBLEM_BASE = "https://api.backend.ai/probs/"

# Slugs that mean "it already exists" although the manager answers 400.
_CONFLICT_SLUGS = {"session-already-exists", "vfolder-already-exists"}

_MAX_RAW_TEXT = 200


def error_class_for(status: int, slug: str = "") -> type[APIError]:
    if slug in _CONFLICT_SLUGS or status == 409:
        return ConflictError
    if status in (401, 403):
        return AuthError
    if status == 404:
        return NotFoundError
    if status in (412, 429):
        return QuotaError
    if status >= 500:
        return ServerError
    if status == 400:
        return BadRequestError
    return APIError


def _one_line(text: str, limit: int = _MAX_RAW_TEXT) -> str:
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


def _title_from_html(text: str) -> str | None:
    lower = text.lower()
    start = lower.find("<title>")
    end = lower.find("</title>")
    if start >= 0 and end > start:
        return _one_line(text[start + 7 : end]) or None
    return None


def parse_error_body(
    status: int,
    body: bytes | str,
    *,
    reason: str = "",
    method: str = "",
    url: str = "",
) -> APIError:
    """Build the exception for an error response.

    Accepts a problem+json body, any other JSON, or plain text/HTML (a proxy's 502 page).
    """
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    payload: Any = None
    if text.strip():
        try:
            payload = json.loads(text)
        except ValueError:
            payload = None
    type_ = title = ""
    msg: str | None = None
    data: Any = None
    error_code: str | None = None
    if isinstance(payload, dict):
        type_ = str(payload.get("type") or "")
        title = str(payload.get("title") or "")
        raw_msg = payload.get("msg", payload.get("detail", payload.get("details")))
        msg = None if raw_msg is None else _one_line(str(raw_msg), 500)
        data = payload.get("data", payload.get("agent-details"))
        error_code = payload.get("error_code")
        if not title and not type_ and msg is None:
            msg = _one_line(text)
    elif text.strip():
        # Not JSON: typically an HTML error page from nginx/a load balancer in front of the manager.
        title = _title_from_html(text) or reason or "non-JSON error response"
        msg = None if _title_from_html(text) else _one_line(text)
        type_ = PROBLEM_BASE + "generic-error"
    if not title:
        title = reason or f"HTTP {status}"
    slug = type_.rstrip("/").rsplit("/", 1)[-1] if type_ else ""
    cls = error_class_for(status, slug)
    return cls(
        status,
        type=type_,
        title=title,
        msg=msg,
        data=data,
        error_code=error_code,
        method=method,
        url=url,
    )


def raise_for_problem(status: int, body: bytes | str, **kwargs: str) -> None:
    if status >= 400:
        raise parse_error_body(status, body, **kwargs)


def problem_body(slug: str, title: str, msg: str | None = None, data: Any = None) -> dict[str, Any]:
    """The JSON body the manager sends for an error (used by the local endpoint)."""
    body: dict[str, Any] = {"type": PROBLEM_BASE + slug, "title": title}
    if msg is not None:
        body["msg"] = msg
    if data is not None:
        body["data"] = data
    return body
