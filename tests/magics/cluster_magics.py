"""The magics on a real cluster, for the ``cluster`` tests' module fixtures: one workspace from a
cluster's ``user.env``, closed on every path: also when the cluster lacks what the tests need
and they skip (24.03 has no GPU slots), else its client's aiohttp session is left to the garbage
collector, which fails whichever later test it happens to run in."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from IPython.testing.globalipapp import get_ipython

from backendai_jupyter.magics import BackendAIMagics
from backendai_jupyter.workspace import Workspace


def read_user_env(path: Path) -> dict[str, str]:
    """``cluster.sh``'s ``user.env``, with its image as the sessions' (``BACKEND_IMAGE``)."""
    env: dict[str, str] = {}
    for line in path.read_text().splitlines():
        key, sep, value = line.partition("=")
        if sep and key.strip():
            env[key.strip()] = value.strip()
    env["BACKEND_IMAGE"] = env["BAI_IMAGE"]
    return env


@contextlib.contextmanager
def cluster_magics(env_file: Path, *, needs_slot: str | None = None) -> Iterator[BackendAIMagics]:
    """Magics on the cluster of ``env_file``; skips when it advertises no ``needs_slot``."""
    workspace = Workspace(env=read_user_env(env_file))
    try:
        magics = BackendAIMagics(get_ipython(), workspace=workspace)
        if needs_slot is not None:
            slots = workspace.run(magics.client.resources.resource_slots())
            if needs_slot not in slots:
                pytest.skip(f"the cluster advertises no {needs_slot} (start it with BAI_MOCK_GPUS=2)")
        yield magics
    finally:
        workspace.run(workspace.aclose())
