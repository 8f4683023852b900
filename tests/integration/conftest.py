"""Fixtures for the real-cluster tier: a Backend.AI 26.9.6 started by ``cluster.sh up``.

The cluster's ``user.env`` (``BAI_CLUSTER_ENV``, default ``/tmp/backendai-cluster/user.env``)
provides the endpoint, the test user's keypair, project and image. Without it these tests skip —
unless ``BAI_REQUIRE_CLUSTER=1`` (set by ``.ci/run``), where a missing cluster is a failure.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from backendai_jupyter.client import Client, ClientConfig, Execution


def read_env_file(path: Path) -> dict[str, str]:
    values: dict[str, str] = {}
    for line in path.read_text().splitlines():
        key, sep, value = line.partition("=")
        if sep and key.strip() and not key.lstrip().startswith("#"):
            values[key.strip()] = value.strip()
    return values


@pytest.fixture(scope="session")
def cluster_env() -> dict[str, str]:
    path = Path(os.environ.get("BAI_CLUSTER_ENV", "/tmp/backendai-cluster/user.env"))
    if not path.is_file():
        if os.environ.get("BAI_REQUIRE_CLUSTER") == "1":
            pytest.fail(f"the real cluster is required but {path} does not exist")
        pytest.skip(f"no real cluster ({path} missing; run cluster.sh up)")
    return read_env_file(path)


@pytest.fixture(scope="session")
def cluster_config(cluster_env: dict[str, str]) -> ClientConfig:
    return ClientConfig.from_env(cluster_env)


@pytest.fixture(scope="session")
def image(cluster_env: dict[str, str]) -> str:
    return cluster_env["BAI_IMAGE"]


@pytest_asyncio.fixture(scope="session")
async def client(cluster_config: ClientConfig) -> AsyncIterator[Client]:
    async with Client(cluster_config) as c:
        yield c


def c_execute(client: Client, session: str, code: str) -> Execution:
    return client.sessions.execute(session, code)


@pytest_asyncio.fixture(scope="session")
async def shared_session(client: Client, image: str) -> AsyncIterator[str]:
    """One interactive session reused by the tests that only execute code (creation takes ~11 s)."""
    info = await client.sessions.create(image, resources={"cpu": "1", "mem": "1g"})
    assert info.status == "RUNNING", info
    # The first cell of a fresh ipykernel pays for imports; warm it up so timing tests measure
    # streaming, not kernel start-up.
    async for _ in c_execute(client, info.id, "import time"):
        pass
    try:
        yield info.id
    finally:
        await client.sessions.destroy(info.id)
