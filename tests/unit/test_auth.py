"""Request signing: the official client's test vector and the server-side header parser."""

from datetime import datetime

import pytest

from backendai_jupyter.client._auth import (
    generate_signature,
    parse_authorization,
    sign_request,
    string_to_sign,
)

AK = "AKIAIOSFODNN7EXAMPLE"
SK = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
DATE = datetime.fromisoformat("2020-05-01T12:34:56.789012+00:00")


def test_official_vector() -> None:
    # protocol.md §1.1: computed by running the official generate_signature.
    headers = sign_request(
        method="GET",
        rel_url="/",
        date=DATE,
        host="127.0.0.1:8081",
        content_type="text/plain",
        api_version="v5.20191215",
        access_key=AK,
        secret_key=SK,
    )
    assert headers["Authorization"] == (
        "BackendAI signMethod=HMAC-SHA256, credential=AKIAIOSFODNN7EXAMPLE:"
        "2f518b4cc05cd4356b60eac7adea82da311a9d46780ab986261ab501a1a6e6c2"
    )
    assert headers["Date"] == "2020-05-01T12:34:56.789012+00:00"
    assert headers["X-BackendAI-Version"] == "v5.20191215"


def test_string_to_sign_layout() -> None:
    text = string_to_sign(
        method="post",
        rel_url="/session?x=1",
        date_header="D",
        host="h:1",
        content_type="Application/JSON",
        api_version="v9.20250722",
    )
    assert text.split(b"\n") == [
        b"POST",
        b"/session?x=1",
        b"D",
        b"host:h:1",
        b"content-type:application/json",
        b"x-backendai-version:v9.20250722",
        b"e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    ]


@pytest.mark.parametrize(
    "field,value",
    [
        ("method", "POST"),
        ("rel_url", "/x"),
        ("host", "127.0.0.1:8082"),
        ("content_type", "application/json"),
        ("api_version", "v9.20250722"),
        ("secret_key", "other"),
    ],
)
def test_every_input_changes_the_signature(field: str, value: str) -> None:
    base = dict(
        method="GET",
        rel_url="/",
        date=DATE,
        host="127.0.0.1:8081",
        content_type="text/plain",
        api_version="v5.20191215",
        secret_key=SK,
    )
    changed = {**base, field: value}
    assert generate_signature(**base) != generate_signature(**changed)  # type: ignore[arg-type]


def test_parse_roundtrip() -> None:
    header = sign_request(
        method="GET",
        rel_url="/",
        date=DATE,
        host="h",
        content_type="text/plain",
        api_version="v9.20250722",
        access_key=AK,
        secret_key=SK,
    )["Authorization"]
    hash_type, ak, sig = parse_authorization(header)
    assert (hash_type, ak, len(sig)) == ("sha256", AK, 64)


@pytest.mark.parametrize(
    "header,message",
    [
        ("garbage", "Malformed authorization header"),
        ("Bearer x=y", "Invalid authorization type name"),
        ("BackendAI signMethod", "Missing or malformed authorization parameters"),
        ("BackendAI signMethod=HMAC-SHA256", "Missing or malformed authorization parameters"),
        ("BackendAI signMethod=HMAC-SHA256, credential=AK", "Missing or malformed"),
        ("BackendAI signMethod=RSA, credential=AK:S", "Unsupported request signing method"),
        ("BackendAI signMethod=HMAC-NOPE, credential=AK:S", "Unsupported request signing method"),
    ],
)
def test_parse_errors(header: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_authorization(header)
