"""Backend.AI HMAC request signing — pure functions, byte-identical to the official client.

The string to sign (protocol.md §1.1)::

    METHOD\\nREL_URL\\nDATE\\nhost:HOST\\ncontent-type:CTYPE\\nx-backendai-version:VERSION\\nBODYHASH

``BODYHASH`` is the hash of *empty* bytes: since API v4.20181215 the body is never signed.
The key is an HMAC chain over the date (``%Y%m%d``) and the host. The local endpoint
verifies with the same functions, so client and server cannot drift apart.
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import datetime

__all__ = [
    "SIGN_METHOD_PREFIX",
    "authorization_header",
    "generate_signature",
    "parse_authorization",
    "sign_request",
    "signing_key",
    "string_to_sign",
]

SIGN_METHOD_PREFIX = "HMAC-"


def string_to_sign(
    *,
    method: str,
    rel_url: str,
    date_header: str,
    host: str,
    content_type: str,
    api_version: str,
    hash_type: str = "sha256",
    version_header_name: str = "x-backendai-version",
) -> bytes:
    """The exact bytes the HMAC covers."""
    body_hash = hashlib.new(hash_type, b"").hexdigest()
    return "\n".join(
        [
            method.upper(),
            rel_url,
            date_header,
            f"host:{host}",
            f"content-type:{content_type.lower()}",
            f"{version_header_name}:{api_version}",
            body_hash,
        ]
    ).encode()


def signing_key(secret_key: str, date: datetime, host: str, hash_type: str = "sha256") -> bytes:
    """Derive the per-day, per-host signing key."""
    k1 = hmac.new(secret_key.encode(), date.strftime("%Y%m%d").encode(), hash_type).digest()
    return hmac.new(k1, host.encode(), hash_type).digest()


def generate_signature(
    *,
    method: str,
    rel_url: str,
    date: datetime,
    date_header: str | None = None,
    host: str,
    content_type: str,
    api_version: str,
    secret_key: str,
    hash_type: str = "sha256",
) -> str:
    """Return the hex signature of one request.

    ``date_header`` is the raw header text (defaults to ``date.isoformat()``, as the official client
    sends it); ``date`` supplies the day for the key derivation.
    """
    to_sign = string_to_sign(
        method=method,
        rel_url=rel_url,
        date_header=date_header if date_header is not None else date.isoformat(),
        host=host,
        content_type=content_type,
        api_version=api_version,
        hash_type=hash_type,
    )
    key = signing_key(secret_key, date, host, hash_type)
    return hmac.new(key, to_sign, hash_type).hexdigest()


def authorization_header(access_key: str, signature: str, hash_type: str = "sha256") -> str:
    return (
        f"BackendAI signMethod={SIGN_METHOD_PREFIX}{hash_type.upper()}, "
        f"credential={access_key}:{signature}"
    )


def sign_request(
    *,
    method: str,
    rel_url: str,
    date: datetime,
    host: str,
    content_type: str,
    api_version: str,
    access_key: str,
    secret_key: str,
    hash_type: str = "sha256",
) -> dict[str, str]:
    """Return the ``Date``, ``X-BackendAI-Version`` and ``Authorization`` headers for a request."""
    date_header = date.isoformat()
    signature = generate_signature(
        method=method,
        rel_url=rel_url,
        date=date,
        date_header=date_header,
        host=host,
        content_type=content_type,
        api_version=api_version,
        secret_key=secret_key,
        hash_type=hash_type,
    )
    return {
        "Date": date_header,
        "X-BackendAI-Version": api_version,
        "Authorization": authorization_header(access_key, signature, hash_type),
    }


def parse_authorization(header: str) -> tuple[str, str, str]:
    """Split an ``Authorization`` header into ``(hash_type, access_key, signature)``.

    Raises ``ValueError`` with the manager's wording when the header is malformed.
    """
    try:
        auth_type, params_text = header.split(" ", 1)
    except ValueError:
        raise ValueError("Malformed authorization header") from None
    if auth_type not in ("BackendAI", "Sorna"):
        raise ValueError("Invalid authorization type name")
    params: dict[str, str] = {}
    for part in params_text.split(","):
        key, sep, value = part.strip().partition("=")
        if not sep:
            raise ValueError("Missing or malformed authorization parameters")
        params[key] = value
    credential = params.get("credential", "")
    sign_method = params.get("signMethod", "")
    access_key, sep, signature = credential.partition(":")
    if not sep or not access_key or not signature or not sign_method:
        raise ValueError("Missing or malformed authorization parameters")
    if not sign_method.upper().startswith(SIGN_METHOD_PREFIX):
        raise ValueError("Unsupported request signing method (hash type)")
    hash_type = sign_method[len(SIGN_METHOD_PREFIX) :].lower()
    # SHAKE digests have no fixed length, so HMAC cannot use them.
    if hash_type not in hashlib.algorithms_guaranteed or hash_type.startswith("shake"):
        raise ValueError("Unsupported request signing method (hash type)")
    return hash_type, access_key, signature
