"""problem+json errors exactly as the manager sends them (types, titles, statuses; protocol.md §10).

Handlers raise :class:`Problem` (or one of the helpers); the app's error middleware turns it — and
any unexpected exception — into an ``application/problem+json`` response. A bug in a handler thus
becomes a 500 problem body, never a traceback page.
"""

from __future__ import annotations

import json
import re
from typing import Any

from aiohttp import web

from ...client._problem import problem_body

__all__ = [
    "Problem",
    "bad_request",
    "decode_json",
    "invalid_api_params",
    "json_body",
    "malformed_body",
    "not_found",
    "problem_response",
    "read_json",
    "schema_invalid",
]


class Problem(Exception):
    """An error answer: status, problem type slug, title, optional msg and data."""

    def __init__(
        self, status: int, slug: str, title: str, msg: str | None = None, data: Any = None
    ) -> None:
        self.status = status
        self.slug = slug
        self.title = title
        self.msg = msg
        self.data = data
        super().__init__(f"[{status}] {title}" + (f" ({msg})" if msg else ""))


def problem_response(problem: Problem) -> web.Response:
    return web.Response(
        status=problem.status,
        body=json.dumps(problem_body(problem.slug, problem.title, problem.msg, problem.data)),
        content_type="application/problem+json",
    )


def bad_request(msg: str | None = None) -> Problem:
    return Problem(400, "generic-bad-request", "Bad request", msg)


def invalid_api_params(msg: str, data: Any = None) -> Problem:
    return Problem(400, "invalid-api-params", "Missing or invalid API parameters.", msg, data)


#: 26.9.6's title for a request body that fails its schema (pydantic) check.
SCHEMA_TITLE = "Invalid or Missing API Parameters."


def schema_invalid(field: str, why: str) -> Problem:
    """What 26.9.6 answers when a top-level field of a request body has the wrong type."""
    msg = f"Schema validation failed. ({field}: {why})"
    return Problem(400, "generic-bad-request", SCHEMA_TITLE, msg)


def not_found(what: str, msg: str | None = None) -> Problem:
    """``what``: ``session``, ``vfolder``, ``task-template``, ``app`` ... → ``<what>-not-found``."""
    titles = {
        "session": "No such session.",
        "vfolder": "Virtual folder not found.",
        "task-template": "Task template not found.",
        "app": "No such app.",
        "generic": "Unknown URL path.",
    }
    return Problem(404, f"{what}-not-found", titles.get(what, f"No such {what}."), msg)


def malformed_body() -> Problem:
    """What the manager answers to a body that is not JSON."""
    return Problem(400, "generic-bad-request", "Malformed request body.", "Malformed body")


#: Deeper JSON than this is refused before it is decoded: nothing the API takes nests deeper, and
#: Python's decoder (and every later ``json.dumps``) would otherwise hit the recursion limit.
MAX_JSON_DEPTH = 64


_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
_BRACKETS = re.compile(r"[\[\]{}]")


def _too_deep(raw: str | bytes) -> bool:
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
    if text.count("[") + text.count("{") <= MAX_JSON_DEPTH:
        return False
    depth = 0
    for m in _BRACKETS.finditer(_STRING.sub("", text)):
        depth += 1 if m.group() in "[{" else -1
        if depth > MAX_JSON_DEPTH:
            return True
    return False


def decode_json(raw: str | bytes) -> Any:
    """``json.loads`` that raises ``ValueError`` for everything a client can send wrong: bad
    syntax, bad UTF-8, and nesting deeper than :data:`MAX_JSON_DEPTH`."""
    if _too_deep(raw):
        raise ValueError(f"JSON nested deeper than {MAX_JSON_DEPTH} levels")
    try:
        return json.loads(raw)
    except RecursionError:  # pragma: no cover - the depth check comes first
        raise ValueError("JSON nested too deeply") from None


async def read_json(request: web.Request) -> Any:
    """The request body decoded as JSON; the manager's "Malformed body" problem otherwise."""
    try:
        return decode_json(await request.read())
    except ValueError:
        raise malformed_body() from None


async def json_body(request: web.Request, *, query_if_empty: bool = False) -> dict[str, Any]:
    """The request's JSON object; without a body ``{}`` — or, as the manager's
    ``check_api_params`` does for GETs, the query string when ``query_if_empty``."""
    if not request.can_read_body:
        return dict(request.query) if query_if_empty else {}
    data = await read_json(request)
    if not isinstance(data, dict):
        raise invalid_api_params("Input validation error")
    return data
