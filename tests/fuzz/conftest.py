"""The fuzz suite's endpoint: a local endpoint on its own event loop in a background thread, so
that Hypothesis (synchronous) can drive it with real HTTP and websocket requests.

The endpoint has room for exactly one session (``cpu: 1``), which the harness starts: fuzzed
session routes have a live target, and every session the fuzzer manages to create stays PENDING
(no processes). The number of requests sent is reported at the end of the run.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import threading
from collections.abc import Coroutine, Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import pytest
from aiohttp import web
from hypothesis.configuration import set_hypothesis_home_dir

from backendai_jupyter.client import Client, ClientConfig, parse_endpoints
from backendai_jupyter.server import ServerConfig, create_app
from backendai_jupyter.server.manager.state import DEFAULT_API_VERSION, KEYPAIRS

# Hypothesis keeps caches in ./.hypothesis by default; the working directory must stay untouched.
set_hypothesis_home_dir(Path(tempfile.gettempdir()) / "backendai-jupyter-hypothesis")

T = TypeVar("T")
IMAGE = "cr.backend.ai/stable/python:3.13-ubuntu24.04"


@dataclass
class Fuzzed:
    """The running endpoint and what the fuzzer knows about it."""

    loop: asyncio.AbstractEventLoop
    url: str
    host: str
    access_key: str
    secret_key: str
    data_dir: Path
    http: aiohttp.ClientSession
    session_name: str = ""
    folder_name: str = "fuzz-folder"
    folder_id: str = ""
    api_version: str = DEFAULT_API_VERSION
    requests: int = 0
    unsigned: int = 0
    #: The working directory's entries before the run (nothing may appear there).
    cwd_entries: set[str] = field(default_factory=set)

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 60.0) -> T:
        fut: Future[T] = asyncio.run_coroutine_threadsafe(coro, self.loop)
        return fut.result(timeout)


COUNTS: dict[str, int] = {"requests": 0}


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if COUNTS["requests"]:
        terminalreporter.write_line(f"fuzz: {COUNTS['requests']} requests sent to the endpoint")


def _endpoint(root: Path, api_version: str, with_session: bool) -> Iterator[Fuzzed]:
    cwd_entries = set(os.listdir(Path.cwd()))
    data_dir = root / "data"
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="fuzz-endpoint", daemon=True)
    thread.start()

    async def start() -> tuple[web.AppRunner, Fuzzed]:
        config = ServerConfig(
            data_dir=data_dir, capacity={"cpu": "1", "mem": "4g"}, api_version=api_version
        )
        app = create_app(config)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        kp = next(iter(app[KEYPAIRS].values()))
        url = f"http://127.0.0.1:{port}"
        f = Fuzzed(
            loop,
            url,
            f"127.0.0.1:{port}",
            kp.access_key,
            kp.secret_key,
            data_dir,
            aiohttp.ClientSession(),
            api_version=api_version,
        )
        client = Client(
            ClientConfig(
                endpoints=parse_endpoints(url), access_key=kp.access_key, secret_key=kp.secret_key
            )
        )
        try:
            if with_session:
                info = await client.sessions.create(IMAGE, resources={"cpu": "1", "mem": "1g"})
                assert info.status == "RUNNING", info
                f.session_name = info.name
            folder = await client.folders.create(f.folder_name)
            f.folder_id = folder.id
        finally:
            await client.close()
        return runner, f

    runner, fz = asyncio.run_coroutine_threadsafe(start(), loop).result(120)
    fz.cwd_entries = cwd_entries
    try:
        yield fz
    finally:
        COUNTS["requests"] += fz.requests

        async def stop() -> None:
            await fz.http.close()
            await runner.cleanup()

        asyncio.run_coroutine_threadsafe(stop(), loop).result(60)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fuzzed]:
    """The newest API version, with one running session and one folder."""
    yield from _endpoint(tmp_path_factory.mktemp("fuzz"), DEFAULT_API_VERSION, True)


@pytest.fixture(scope="module")
def fuzzed_v5(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fuzzed]:
    """A 20.03 (v5) emulation for the routes only that version has (one folder, no session)."""
    yield from _endpoint(tmp_path_factory.mktemp("fuzz-v5"), "v5.20191215", False)
