"""``doctor`` against the embedded local endpoint: healthy, wrong keys, skewed clock."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

from backendai_jupyter.doctor import exit_status, run_checks


async def test_local_endpoint(local: Any) -> None:
    checks = await run_checks(local.client().config)
    found = {c.name: c for c in checks}
    assert exit_status(checks) == 0, [c.line() for c in checks]
    assert "-local, API v" in found["endpoint"].detail
    assert found["sandbox"].name == "sandbox"
    # The local endpoint lists no images: the kernel's default runs (any name runs here).
    assert "lists no images" in found["images"].detail


async def test_local_wrong_keys_and_skew(local: Any) -> None:
    wrong = await run_checks(local.client(secret_key="y" * 40).config)
    assert not {c.name: c for c in wrong}["keys"].ok and exit_status(wrong) == 1

    def skewed() -> datetime:
        return datetime.now(timezone.utc) - timedelta(minutes=30)

    late = {c.name: c for c in await run_checks(local.client().config, clock=skewed)}
    assert not late["clock"].ok and late["keys"].fix == "fix the clock first (above)"
