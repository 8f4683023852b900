"""problem+json bodies (and what proxies send instead) → exception classes and one-line messages."""

import pytest

from backendai_jupyter.client._exceptions import (
    APIError,
    AuthError,
    BadRequestError,
    ConflictError,
    NotFoundError,
    QuotaError,
    ServerError,
)
from backendai_jupyter.client._problem import parse_error_body, problem_body

AUTH_FAILED = (
    b'{"type": "https://api.backend.ai/probs/auth-failed", '
    b'"title": "Credential/signature mismatch.", "msg": "Unauthorized access"}'
)


@pytest.mark.parametrize(
    "status,body,cls,slug,text",
    [
        (401, AUTH_FAILED, AuthError, "auth-failed", "Credential/signature mismatch."),
        (
            403,
            b'{"type": "https://api.backend.ai/probs/insufficient-privilege", "title": "No"}',
            AuthError,
            "insufficient-privilege",
            "No",
        ),
        (
            400,
            b'{"type": "https://api.backend.ai/probs/invalid-auth-params",'
            b' "title": "Missing or invalid authorization parameters",'
            b' "msg": "Date/time sync error"}',
            BadRequestError,
            "invalid-auth-params",
            "Date/time sync error",
        ),
        (
            404,
            b'{"type": "https://api.backend.ai/probs/session-not-found",'
            b' "title": "No such session."}',
            NotFoundError,
            "session-not-found",
            "No such",
        ),
        (
            400,
            b'{"type": "https://api.backend.ai/probs/session-already-exists",'
            b' "title": "exists", "data": {"existingSessionId": "x"}}',
            ConflictError,
            "session-already-exists",
            "exists",
        ),
        (
            412,
            b'{"type": "https://api.backend.ai/probs/quota-exceeded", "title": "Quota"}',
            QuotaError,
            "quota-exceeded",
            "Quota",
        ),
        (
            429,
            b'{"type": "https://api.backend.ai/probs/rate-limit-exceeded", "title": "Slow"}',
            QuotaError,
            "rate-limit-exceeded",
            "Slow",
        ),
        (
            500,
            b'{"type": "https://api.backend.ai/probs/internal-server-error",'
            b' "title": "Something went wrong", "error_code": "backendai_generic_internal-error"}',
            ServerError,
            "internal-server-error",
            "Something went wrong",
        ),
        (
            502,
            b"<html><head><title>502 Bad Gateway</title></head><body><h1>502</h1>\n</body></html>",
            ServerError,
            "generic-error",
            "502 Bad Gateway",
        ),
        (
            503,
            b"upstream connect error\nor disconnect",
            ServerError,
            "generic-error",
            "upstream connect error or disconnect",
        ),
        (418, b"", APIError, "", "I'm a teapot"),
        (400, b'{"error": "weird"}', BadRequestError, "", "weird"),
    ],
)
def test_mapping(status: int, body: bytes, cls: type, slug: str, text: str) -> None:
    reason = "I'm a teapot" if status == 418 else ""
    err = parse_error_body(status, body, reason=reason, method="GET", url="/x")
    assert type(err) is cls
    assert err.status == status
    assert err.slug == slug
    message = str(err)
    assert text in message
    assert "\n" not in message
    assert message.startswith(f"[{status}] GET /x:")


def test_fields_kept() -> None:
    err = parse_error_body(
        500,
        b'{"type": "https://api.backend.ai/probs/x", "title": "T", "msg": "M",'
        b' "data": {"a": 1}, "error_code": "E"}',
    )
    assert (err.title, err.msg, err.data, err.error_code) == ("T", "M", {"a": 1}, "E")


def test_problem_body_roundtrip() -> None:
    import json

    body = json.dumps(problem_body("session-not-found", "No such session.", msg="m"))
    err = parse_error_body(404, body)
    assert isinstance(err, NotFoundError) and err.msg == "m"
