"""Suite-wide: collect garbage at the end of every test module.

An unclosed resource that is only reachable through a reference cycle (an aiohttp session held
by a workspace that a fixture forgot to close) warns when the garbage collector finds it, and
with warnings as errors that fails whichever test is running then: on the real 24.03 cluster a
GPU fixture that skipped before closing its workspace failed the setup of the next module's
test. Collecting here makes it fail the last test of the module that left it, every time.
Left out: the browser tier (not run where this was introduced).
"""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest


@pytest.fixture(autouse=True, scope="module")
def _collect_garbage_per_module(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    if request.node.get_closest_marker("e2e") is None:
        gc.collect()
