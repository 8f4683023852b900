"""Property-based fuzzing of every route of the local endpoint (issue 11, deliverable 6).

For every row of the route table (``server/manager/routes.py``) Hypothesis sends malformed and random
JSON bodies, raw bytes, headers, path segments and query parameters, signed with the endpoint's
keypair (so the handlers are reached) or not; the websocket routes also get random frames.
Properties, for every answer:

* never a 5xx;
* a 4xx with a body is ``application/problem+json`` (the one documented exception: the
  webserver's failed login, ``{"authenticated": false, ...}``, which is its real shape);
* an answer within 5 s (streaming routes: their headers);
* afterwards ``GET /`` still answers, and nothing was written outside the data directory.

Bounded: ``FUZZ_EXAMPLES`` examples per route (default 12; ~1,500 requests, about a minute).
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from yarl import URL

from backendai_jupyter.client._auth import sign_request
from backendai_jupyter.client._versioning import API_VERSION, MIN_API_VERSION, features_for
from backendai_jupyter.server.manager.auth import ANON_LIMIT
from backendai_jupyter.server.manager.routes import ROUTES, Route

from .conftest import Fuzzed

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "12"))
ANSWER_WITHIN = 5.0
FEATURES = features_for(API_VERSION)
LIVE = [r for r in ROUTES if r.exists(FEATURES)]
V5_ONLY = [r for r in ROUTES if r.exists(features_for(MIN_API_VERSION)) and not r.exists(FEATURES)]
WEBSOCKETS = {"execute", "pty"}
# Routes that would end or restart the one session every other route needs, or hand it to a
# real service (jupyter_server start-up is slow and not what is fuzzed here): fuzzed with
# random names only.
KEEP_SESSION = {
    ("DELETE", "/session/{session_name}"),
    ("PATCH", "/session/{session_name}"),
    ("POST", "/session/{session_name}/rename"),
    ("POST", "/session/{session_name}/start-service"),
}
CREATES = {"/session", "/session/_/create", "/session/_/create-from-template"}

FIELDS = (
    "image name type mode code run_id runId options config resources environ mounts mount_map "
    "clusterSize maxWaitSeconds enqueueOnly startupCommand path size files file target_path "
    "new_name src dst recursive query variables echo username password app port arguments envs "
    "template_id id permission emails inv_id host usage_mode cloneable group dst_dir archive "
    "data rows cols chars exec build clean bootstrap_script tag reuseIfExists parents exist_ok"
).split()
QUERY_KEYS = (
    "token dst_dir path file files archive app port arguments envs name id sessionName "
    "sessionId task_id taskId group_id echo scope"
).split()

text = st.text(max_size=40)
weird_text = st.one_of(
    text,
    st.sampled_from(["", ".", "..", "../..", "/etc/passwd", "a\x00b", "x" * 300, "é", "\u202e"]),
    st.text(alphabet=st.characters(codec="utf-8"), min_size=250, max_size=300),
)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    weird_text,
)
json_values = st.recursive(
    scalars,
    lambda kids: st.lists(kids, max_size=4) | st.dictionaries(text, kids, max_size=4),
    max_leaves=12,
)
known_bodies = st.fixed_dictionaries({}, optional={k: json_values for k in FIELDS})
bodies = st.one_of(
    st.none(),
    known_bodies.map(lambda d: json.dumps(d).encode()),
    json_values.map(lambda v: json.dumps(v).encode()),
    st.binary(max_size=64),
    st.integers(60, 3000).map(lambda n: b"[" * n + b"]" * n),
    st.integers(60, 3000).map(lambda n: b'{"a":' * n + b"1" + b"}" * n),
)
header_values = st.text(
    alphabet=st.characters(min_codepoint=32, max_codepoint=255, exclude_characters="\x7f"),
    max_size=40,
)
extra_headers = st.dictionaries(
    st.sampled_from(
        [
            "Range",
            "Upload-Offset",
            "Content-Type",
            "Tus-Resumable",
            "If-Range",
            "Upload-Length",
            "X-BackendAI-Version",
            "X-BackendAI-Domain",
            "Origin",
            "Cookie",
            "Accept-Encoding",
        ]
    ),
    st.one_of(
        header_values,
        st.sampled_from(
            [
                "bytes=-0",
                "bytes=0-",
                "bytes=5-2",
                "bytes=-",
                "0",
                "-1",
                "99999999999999999999",
                "v5.20191215",
                "v1.20000101",
                "application/json",
                "multipart/form-data; boundary=x",
            ]
        ),
    ),
    max_size=3,
)
queries = st.dictionaries(st.one_of(st.sampled_from(QUERY_KEYS), text), weird_text, max_size=3)
signing = st.sampled_from(["signed", "signed", "signed", "unsigned", "bad-signature"])


def _segment(fz: Fuzzed, route: Route, name: str, real: bool, junk: str) -> str:
    if real and (route.method, route.path) not in KEEP_SESSION:
        value = {
            "session_name": fz.session_name,
            "name": fz.folder_name,
            "folder_id": fz.folder_id,
        }.get(name, junk)
    else:
        value = junk
    return quote(value, safe="") or "_"


def _path(fz: Fuzzed, route: Route, real: bool, junk: str, tail: str) -> str:
    path = route.path.replace("{tail:.*}", quote(tail, safe="/"))
    for name in ("session_name", "name", "folder_id", "inv_id", "template_id"):
        path = path.replace("{" + name + "}", _segment(fz, route, name, real, junk))
    return path


def _headers(fz: Fuzzed, method: str, rel: str, how: str, extra: dict[str, str]) -> dict[str, str]:
    ctype = extra.get("Content-Type", "application/json")
    headers = {"Content-Type": ctype}
    if how != "unsigned":
        signed = sign_request(
            method=method,
            rel_url=rel,
            date=datetime.now(timezone.utc),
            host=fz.host,
            content_type=ctype.split(";")[0].strip().lower() or "application/octet-stream",
            api_version=fz.api_version,
            access_key=fz.access_key,
            secret_key=fz.secret_key if how == "signed" else "not-the-secret",
        )
        headers.update(signed)
    headers.update({k: v for k, v in extra.items() if k != "Content-Type"})
    return headers


def _check(fz: Fuzzed, route: Route, status: int, ctype: str, body: bytes, what: str) -> None:
    assert status < 500, f"{what}: {status} {body[:300]!r}"
    if 400 <= status < 500 and body:
        login_failure = route.path == "/server/login" and status == 401
        assert login_failure or ctype == "application/problem+json", (
            f"{what}: {status} {ctype} {body[:200]!r}"
        )


async def _http(
    fz: Fuzzed, route: Route, method: str, rel: str, headers: dict[str, str], body: bytes | None
) -> tuple[int, str, bytes]:
    url = URL(fz.url + rel, encoded=True)
    async with fz.http.request(
        method, url, headers=headers, data=body, allow_redirects=False
    ) as resp:
        if resp.content_type == "text/event-stream":
            return resp.status, resp.content_type, b""
        return resp.status, resp.content_type, await resp.read()


def _rel(path: str, query: dict[str, str]) -> str:
    if not query:
        return path
    return (
        path + "?" + "&".join(f"{quote(k, safe='')}={quote(v, safe='')}" for k, v in query.items())
    )


def _send(fz: Fuzzed, route: Route, data: st.DataObject) -> None:
    method = (
        route.method
        if route.method != "*"
        else data.draw(st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH"]))
    )
    real = data.draw(st.booleans())
    path = _path(fz, route, real, data.draw(weird_text), data.draw(weird_text))
    rel = _rel(path, data.draw(queries))
    body = data.draw(bodies)
    if route.path in CREATES and body is not None:
        try:  # never block on a session start: the endpoint is full, it would wait forever
            parsed = json.loads(body)
        except (ValueError, RecursionError):
            parsed = None
        if isinstance(parsed, dict):
            body = json.dumps({**parsed, "enqueueOnly": True}).encode()
    how = data.draw(signing)
    headers = _headers(fz, method, rel, how, data.draw(extra_headers))
    fz.requests += 1
    fz.unsigned += how == "unsigned"
    try:
        status, ctype, answer = fz.run(
            asyncio.wait_for(_http(fz, route, method, rel, headers, body), ANSWER_WITHIN)
        )
    except (asyncio.TimeoutError, TimeoutError):
        pytest.fail(f"{method} {rel}: no answer within {ANSWER_WITHIN} s")
    except aiohttp.ClientError as e:
        pytest.fail(f"{method} {rel}: the connection failed: {e!r}")
    _check(fz, route, status, ctype, answer, f"{method} {rel}")


@pytest.mark.parametrize("route", LIVE, ids=lambda r: f"{r.method} {r.path}")
def test_route(fuzzed: Fuzzed, route: Route) -> None:
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        derandomize=False,
        suppress_health_check=list(HealthCheck),
    )
    @given(data=st.data())
    def fuzz(data: st.DataObject) -> None:
        _send(fuzzed, route, data)

    fuzz()


@pytest.mark.parametrize("route", V5_ONLY, ids=lambda r: f"v5 {r.method} {r.path}")
def test_route_only_in_v5(fuzzed_v5: Fuzzed, route: Route) -> None:
    test_route(fuzzed_v5, route)


# -- websocket frames ---------------------------------------------------------------------------

frames = st.one_of(
    json_values.map(json.dumps),
    st.binary(max_size=64),
    st.fixed_dictionaries(
        {"type": st.sampled_from(["stdin", "resize", "ping", "restart", "bogus"])},
        optional={
            "rows": scalars,
            "cols": scalars,
            # never a newline: the terminal must not run fuzzed text as commands
            "chars": st.binary(max_size=32).map(
                lambda b: base64.b64encode(b.replace(b"\n", b"").replace(b"\r", b"")).decode()
            )
            | weird_text,
        },
    ).map(json.dumps),
    st.fixed_dictionaries(
        {},
        optional={
            "mode": st.sampled_from(["query", "batch", "complete", None, 5]),
            "code": st.sampled_from(["print(1)", "1+", "", None, 7])
            | text.filter(lambda s: "input" not in s),
            "options": json_values,
        },
    ).map(json.dumps),
)


async def _ws(fz: Fuzzed, path: str, sent: list[Any]) -> int:
    headers = _headers(fz, "GET", path, "signed", {"Content-Type": "application/octet-stream"})
    headers.pop("Content-Type")
    try:
        ws = await fz.http.ws_connect(URL(fz.url + path, encoded=True), headers=headers)
    except aiohttp.WSServerHandshakeError as e:
        return e.status
    try:
        for frame in sent:
            if ws.closed:
                break
            if isinstance(frame, bytes):
                await ws.send_bytes(frame)
            else:
                await ws.send_str(frame)
            fz.requests += 1
        await ws.close()
    finally:
        await ws.close()
    return 101


@pytest.mark.parametrize("kind", sorted(WEBSOCKETS))
def test_websocket_frames(fuzzed: Fuzzed, kind: str) -> None:
    path = f"/stream/session/{fuzzed.session_name}/{kind}"

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(sent=st.lists(frames, max_size=5))
    def fuzz(sent: list[Any]) -> None:
        fuzzed.requests += 1
        try:
            status = fuzzed.run(asyncio.wait_for(_ws(fuzzed, path, sent), ANSWER_WITHIN * 2))
        except (asyncio.TimeoutError, TimeoutError):
            pytest.fail(f"{path}: websocket exchange did not finish within {ANSWER_WITHIN * 2} s")
        assert status < 500

    fuzz()


# -- afterwards ---------------------------------------------------------------------------------


def _files_outside(root: Path, data_dir: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if not p.is_relative_to(data_dir)}


def test_zz_endpoint_still_answers_and_wrote_only_its_data_dir(fuzzed: Fuzzed) -> None:
    async def probe() -> tuple[int, str]:
        async with fuzzed.http.get(fuzzed.url + "/") as resp:
            return resp.status, await resp.text()

    status, body = fuzzed.run(asyncio.wait_for(probe(), ANSWER_WITHIN))
    # A long run may use up the anonymous window (1000 per address), as it should then.
    used_up = fuzzed.unsigned >= ANON_LIMIT and status == 429 and "rate-limit-exceeded" in body
    assert status == 200 or used_up, body
    assert _files_outside(fuzzed.data_dir.parent, fuzzed.data_dir) == set()
    assert set(os.listdir(Path.cwd())) == fuzzed.cwd_entries
    assert fuzzed.requests > 0
