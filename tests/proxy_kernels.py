"""How tests start proxy kernels: the kernelspec comes from this checkout's share/, state goes to
a temp dir, and the endpoint (local or the real cluster) is chosen by environment variables the
kernel inherits.

Why a module of its own: the kernel tests (``tests/kernel``) and the workspace tests
(``tests/workspace``) both start proxy kernels; each folder's conftest imports what it needs from
here (pytest puts ``tests/`` on ``sys.path`` for these packages), so there is one copy.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

SHARE = str(Path(__file__).resolve().parents[1] / "share" / "jupyter")
# Which cluster: BAI_CLUSTER_ENV names its user.env (scripts/test.sh sets it per server version).
CLUSTER_ENV = Path(os.environ.get("BAI_CLUSTER_ENV", "/tmp/backendai-cluster/user.env"))

os.environ["JUPYTER_PATH"] = os.pathsep.join(
    p for p in (SHARE, os.environ.get("JUPYTER_PATH", "")) if p
)
os.environ.setdefault("BACKENDAI_JUPYTER_STATE_DIR", tempfile.mkdtemp(prefix="bai-kernel-state-"))

#: What jupyter_client's and nbclient's sync wrappers leave to the garbage collector (their
#: private event loops, zmq sockets and contexts): the only ResourceWarnings the kernel tests
#: ignore, so that an unclosed aiohttp session or socket of ours still fails the test.
THIRD_PARTY_LEFTOVERS = r"unclosed (event loop|socket <zmq|context <zmq)"
ignore_third_party_leftovers = pytest.mark.filterwarnings(
    f"ignore:{THIRD_PARTY_LEFTOVERS}:ResourceWarning"
)


def cluster_env() -> dict[str, str]:
    env: dict[str, str] = {}
    for line in CLUSTER_ENV.read_text().splitlines():
        key, sep, value = line.strip().partition("=")
        if sep and key and not key.startswith("#"):
            env[key] = value
    return env


@contextmanager
def kernel_env(values: dict[str, str | None]) -> Iterator[None]:
    """Set (or unset, for None) variables that kernels started inside inherit."""
    saved = {k: os.environ.get(k) for k in values}
    try:
        for k, v in values.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


LOCAL = {"BACKEND_ENDPOINT": None, "BACKEND_ACCESS_KEY": None, "BACKEND_SECRET_KEY": None}


@pytest.fixture
def local_endpoint() -> Iterator[None]:
    with kernel_env(LOCAL):
        yield


def cluster_values() -> dict[str, str | None]:
    env = cluster_env()
    keys = (
        "BACKEND_ENDPOINT",
        "BACKEND_ACCESS_KEY",
        "BACKEND_SECRET_KEY",
        "BACKEND_DOMAIN",
        "BACKEND_GROUP",
        "BACKEND_ENDPOINT_TYPE",
    )
    values: dict[str, str | None] = {k: env.get(k) for k in keys}
    values["BACKEND_IMAGE"] = env.get("BAI_IMAGE")
    return values


@pytest.fixture(autouse=True)
def _collect_client_leftovers(request: pytest.FixtureRequest) -> Iterator[None]:
    """jupyter_client's and nbclient's sync wrappers leave event loops and zmq sockets for the
    garbage collector; collect them here, inside the test that made them, instead of letting
    the ResourceWarning fire in whichever test happens to run next."""
    yield
    if request.module.__name__.rsplit(".", 1)[-1] in (
        "test_notebooks",
        "test_cluster",
        "test_bootstrap",
        "test_protocol",
        "test_fidelity",
        "test_cell_path",
    ):
        import gc
        import warnings

        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", THIRD_PARTY_LEFTOVERS, ResourceWarning)
            gc.collect()
