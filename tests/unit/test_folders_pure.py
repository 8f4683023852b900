"""Pure parts of folders.py / events.py: listing normalisation, path joining, retry delays."""

from __future__ import annotations

import contextlib
import json
import stat
from collections.abc import AsyncIterator
from typing import Any

import pytest

from backendai_jupyter.client._exceptions import (
    ClientError,
    ConfigError,
    ConnectError,
    NotFoundError,
    ProtocolError,
)
from backendai_jupyter.client._folder_wire import _remote_join
from backendai_jupyter.client._sse import ServerSentEvent
from backendai_jupyter.client._versioning import Features
from backendai_jupyter.client.events import (
    MAX_RETRY_DELAY,
    Events,
    _session_matches,
    retry_delay,
)
from backendai_jupyter.client.folders import normalize_file_entry, normalize_listing
from backendai_jupyter.client.transfers import _split_mixed

# What a 26.9.6 manager answers (observed): ``items`` only, integer mode, upper-case type.
ITEMS_26 = {
    "items": [
        {
            "name": "d1",
            "type": "DIRECTORY",
            "size": 4096,
            "mode": 16893,
            "created": "2026-11-26T22:32:51.265294+00:00",
            "modified": "2026-11-26T22:32:51.265294+00:00",
        },
        {
            "name": "big.bin",
            "type": "FILE",
            "size": 20971520,
            "mode": 33188,
            "created": "2026-11-26T22:34:12.945296+00:00",
            "modified": "2026-11-26T22:34:12.941296+00:00",
        },
    ]
}

# The 20.03 form: ``files`` is a JSON *string* of stat-like records.
FILES_2003 = {
    "files": json.dumps(
        [
            {
                "filename": "d1",
                "mode": stat.S_IFDIR | 0o755,
                "size": 4096,
                "ctime": 1700000000.0,
                "mtime": 1700000001.5,
                "atime": 1700000002.0,
            },
            {
                "filename": "big.bin",
                "mode": stat.S_IFREG | 0o644,
                "size": 20971520,
                "ctime": 1700000000.0,
                "mtime": 1700000000.0,
                "atime": 1700000000.0,
            },
            {
                "filename": "ln",
                "mode": stat.S_IFLNK | 0o777,
                "size": 5,
                "ctime": 1700000000.0,
                "mtime": 1700000000.0,
                "atime": 1700000000.0,
                "symlink_target": "big.bin",
            },
        ]
    )
}


def test_items_form() -> None:
    entries = normalize_listing(ITEMS_26)
    assert [(e["name"], e["type"], e["size"], e["mode"]) for e in entries] == [
        ("d1", "directory", 4096, 16893),
        ("big.bin", "file", 20971520, 33188),
    ]
    assert entries[1]["modified"] == "2026-11-26T22:34:12.941296+00:00"


def test_legacy_files_string_form() -> None:
    entries = normalize_listing(FILES_2003)
    assert [(e["name"], e["type"]) for e in entries] == [
        ("d1", "directory"),
        ("big.bin", "file"),
        ("ln", "symlink"),
    ]
    assert entries[0]["modified"] == "2023-11-14T22:13:21.500000+00:00"
    assert entries[2]["symlink_target"] == "big.bin"
    assert set(entries[1]) >= {"name", "type", "size", "mode", "created", "modified"}


def test_both_forms_agree_on_the_common_keys() -> None:
    both = {"items": ITEMS_26["items"], "files": FILES_2003["files"]}
    assert normalize_listing(both) == normalize_listing(ITEMS_26)  # items wins
    keys = ("name", "type", "size")
    new = [tuple(e[k] for k in keys) for e in normalize_listing(ITEMS_26)]
    old = [tuple(e[k] for k in keys) for e in normalize_listing(FILES_2003)][:2]
    assert new == old


def test_files_as_a_list_and_bare_list() -> None:
    records = json.loads(FILES_2003["files"])
    assert normalize_listing({"files": records}) == normalize_listing(FILES_2003)
    assert normalize_listing(ITEMS_26["items"]) == normalize_listing(ITEMS_26)


@pytest.mark.parametrize(
    "payload",
    [{"files": "not json"}, {"unexpected": 1}, "text", {"items": "x", "files": 3}],
)
def test_malformed_listing(payload: object) -> None:
    with pytest.raises(ProtocolError):
        normalize_listing(payload)


def test_entry_edge_cases() -> None:
    e = normalize_file_entry({"name": "x", "mode": "0o100644", "size": "12"})
    assert (e["type"], e["mode"], e["size"], e["modified"]) == ("file", 0o100644, 12, "")
    assert normalize_file_entry({"name": "d", "type": "dir"})["type"] == "directory"
    assert normalize_file_entry({"name": "p", "mode": stat.S_IFIFO | 0o600})["type"] == "other"
    assert normalize_file_entry({"name": "y", "size": None})["size"] == 0


def test_remote_join() -> None:
    assert _remote_join("a", ".", "b/") == "a/b"
    assert _remote_join("", ".") == ""
    assert _remote_join("/top/", "x") == "top/x"


def test_split_mixed() -> None:
    body = (
        b"--XyZ\r\nContent-Type: application/octet-stream\r\n"
        b'Content-Disposition: attachment; filename="a.txt"\r\n\r\n'
        b"hello\r\n--XyZ\r\nContent-Type: application/octet-stream\r\n"
        b'Content-Disposition: attachment; filename="b.bin"\r\n\r\n'
        b"\x00\x01\r\n--XyZ--\r\n"
    )
    assert _split_mixed(body, 'multipart/mixed; boundary="XyZ"') == [
        ("a.txt", b"hello"),
        ("b.bin", b"\x00\x01"),
    ]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, 5.0),
        (5, 5.0),  # Backend.AI's "retry: 5" means seconds
        (0, 0.1),
        (3000, 3.0),  # spec-style milliseconds
        (10**9, MAX_RETRY_DELAY),
        (-1, 5.0),
    ],
)
def test_retry_delay(value: int | None, expected: float) -> None:
    assert retry_delay(value) == expected


def test_session_filter() -> None:
    sid = "01a219fd-75b4-71ce-bee4-4989c1ed8a53"

    def ev(data: object) -> ServerSentEvent:
        return ServerSentEvent("session_started", json.dumps(data))

    assert _session_matches(ev({"sessionId": sid}), sid)
    assert _session_matches(ev({"sessionId": sid.replace("-", "")}), sid)
    assert not _session_matches(ev({"sessionId": "other"}), sid)
    assert _session_matches(ev({"sessionName": "x"}), sid)  # no id: keep
    assert _session_matches(ServerSentEvent("x", "not json"), sid)


# -- Events reconnection, with a scripted fake transport (no server) ----------------------------


class _FakeStream:
    def __init__(self, chunks: list[bytes | Exception]) -> None:
        self._chunks = chunks
        self.status = 200

    async def iter_any(self) -> AsyncIterator[bytes]:
        for chunk in self._chunks:
            if isinstance(chunk, Exception):
                raise chunk
            yield chunk


class _FakeHTTP:
    def __init__(self, script: list[list[bytes | Exception] | Exception]) -> None:
        self.script = script
        self.calls: list[dict[str, Any]] = []

    @contextlib.asynccontextmanager
    async def stream(self, method: str, path: str, **kwargs: Any) -> AsyncIterator[_FakeStream]:
        self.calls.append({"method": method, "path": path, **kwargs})
        step = self.script.pop(0)
        if isinstance(step, Exception):
            raise step
        yield _FakeStream(step)


class _FakeClient:
    def __init__(self, http: _FakeHTTP, version: tuple[int, str] = (9, "20250722")) -> None:
        self.http = http
        self.features = Features(version)

    async def connect(self) -> None:
        return None


@pytest.fixture
def no_sleep(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    delays: list[float] = []

    async def fake_sleep(delay: float) -> None:
        delays.append(delay)

    monkeypatch.setattr("backendai_jupyter.client.events.asyncio.sleep", fake_sleep)
    return delays


def _events(fake: _FakeHTTP) -> Events:
    return Events(_FakeClient(fake))  # type: ignore[arg-type]


async def test_reconnects_with_last_event_id(no_sleep: list[float]) -> None:
    fake = _FakeHTTP(
        [
            [b"id: 7\r\nevent: bgtask_updated\r\ndata: {}\r\nretry: 2\r\n\r\n",
             ClientError("connection reset")],
            [b"event: bgtask_done\r\ndata: {}\r\n\r\n",
             b"event: server_close\r\ndata: {}\r\n\r\n", b"event: never\r\ndata: x\r\n\r\n"],
        ]
    )
    got = [e.event async for e in _events(fake).background_task("t-1")]
    assert got == ["bgtask_updated", "bgtask_done"]
    assert no_sleep == [2.0]
    assert fake.calls[0]["params"] == {"taskId": "t-1"}
    assert fake.calls[0]["sign_as"] == "application/octet-stream"
    assert fake.calls[0]["headers"] is None
    assert fake.calls[1]["headers"] == {"Last-Event-ID": "7"}


async def test_api_error_is_raised_not_retried(no_sleep: list[float]) -> None:
    fake = _FakeHTTP([NotFoundError(404, title="No such session.")])
    with pytest.raises(NotFoundError):
        async for _ in _events(fake).session(session_name="x"):
            pass
    assert len(fake.calls) == 1 and no_sleep == []


async def test_gives_up_after_max_reconnects(no_sleep: list[float]) -> None:
    fake = _FakeHTTP([ConnectError("down")] * 3)
    with pytest.raises(ClientError, match="gave up after 2 reconnects"):
        async for _ in _events(fake).session(max_reconnects=2):
            pass
    assert no_sleep == [5.0, 5.0]


async def test_session_params_and_client_side_id_filter(no_sleep: list[float]) -> None:
    sid = "01a219fd-75b4-71ce-bee4-4989c1ed8a53"
    mine = json.dumps({"sessionId": sid, "sessionName": "a"}).encode()
    other = json.dumps({"sessionId": "ffff", "sessionName": "b"}).encode()
    fake = _FakeHTTP(
        [[b"event: session_started\ndata: " + other + b"\n\n"
          b"event: session_started\ndata: " + mine + b"\n\n"
          b"event: server_close\ndata: {}\n\n"]]
    )
    got = [e.json()["sessionName"] async for e in _events(fake).session(session_id=sid)]
    assert got == ["a"]
    assert fake.calls[0]["params"] == {"scope": "*", "sessionId": sid}


async def test_v5_params(no_sleep: list[float]) -> None:
    fake = _FakeHTTP([[b"event: server_close\ndata: {}\n\n"]])
    events = Events(_FakeClient(fake, (5, "20191215")))  # type: ignore[arg-type]
    assert [e async for e in events.session(session_name="s", group="g")] == []
    assert fake.calls[0]["params"] == {"name": "s", "group": "g"}
    with pytest.raises(ConfigError):
        async for _ in events.session(session_id="abc"):
            pass
