"""problem+json errors exactly as the manager sends them (types, titles, statuses; protocol.md §10).

Handlers raise :class:`Problem` (or one of the helpers); the app's error middleware turns it — and
any unexpected exception — into an ``application/problem+json`` response. A bug in a handler thus
becomes a 500 problem body, never a traceback page.
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from ..client._problem import problem_body

__all__ = [
    "Problem",
    "bad_request",
    "invalid_api_params",
    "json_body",
    "malformed_body",
    "not_found",
    "problem_response",
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


async def json_body(request: web.Request, *, query_if_empty: bool = False) -> dict[str, Any]:
    """The request's JSON object; without a body ``{}`` — or, as the manager's
    ``check_api_params`` does for GETs, the query string when ``query_if_empty``."""
    if not request.can_read_body:
        return dict(request.query) if query_if_empty else {}
    try:
        data = await request.json()
    except ValueError:
        raise malformed_body() from None
    if not isinstance(data, dict):
        raise invalid_api_params("Input validation error")
    return data
