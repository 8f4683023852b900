"""``backendai-jupyter doctor`` against the real cluster under test (26.9.6 or 24.03, whichever
``BAI_CLUSTER_ENV`` names): a healthy set-up, wrong keys, a skewed clock (injected into the
signing), an unreachable endpoint, and the command's exit status."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import replace
from datetime import datetime, timedelta, timezone

import pytest

from backendai_jupyter.client import Client, ClientConfig, parse_endpoints
from backendai_jupyter.client.images import list_images
from backendai_jupyter.doctor import exit_status, run_checks

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(120)]


def by_name(checks: list) -> dict:  # type: ignore[type-arg]
    return {c.name: c for c in checks}


async def test_healthy(cluster_config: ClientConfig, cluster_env: dict[str, str]) -> None:
    async with Client(cluster_config) as probe:
        release = probe.server_version
    checks = await run_checks(cluster_config, image=cluster_env["BAI_IMAGE"])
    found = by_name(checks)
    assert [c.line() for c in checks if not c.ok and c.name != "images"] == []
    assert exit_status(checks) == 0
    assert f"Backend.AI {release}, API v" in found["endpoint"].detail
    assert f"project {cluster_env['BACKEND_GROUP']}" in found["project"].detail
    async with Client(cluster_config) as probe:
        listed = await list_images(probe)
    if listed:  # 24.03
        assert found["images"].ok and "(BACKEND_IMAGE) is one of" in found["images"].detail
    else:  # 26.9.6: no registry is associated with the test user's project
        assert "lists no images to this user" in found["images"].detail
        assert not found["images"].blocking
    assert cluster_env["BAI_VFOLDER_HOST"] in found["vfolders"].detail
    assert set(found) >= {"clock", "keys", "presets", "kernelspec"} and "sandbox" not in found


async def test_auto_image_is_the_clusters(cluster_config: ClientConfig,
                                          cluster_env: dict[str, str]) -> None:
    found = by_name(await run_checks(cluster_config))
    # 24.03 lists the image and auto picks it; 26.9.6 lists none to the user and the default
    # (the same image here) is asked for.
    assert cluster_env["BAI_IMAGE"] in found["images"].detail


async def test_unknown_image_names_the_closest(cluster_config: ClientConfig,
                                               cluster_env: dict[str, str]) -> None:
    checks = await run_checks(cluster_config, image="cr.backend.ai/stable/python:3.99-nosuch")
    images = by_name(checks)["images"]
    async with Client(cluster_config) as probe:
        if not await list_images(probe):
            pytest.skip("26.9.6 lists this user no images (no registry associated with its "
                        "project): nothing to compare a name with")
    assert not images.ok and f"closest: {cluster_env['BAI_IMAGE']}" in images.detail
    assert exit_status(checks) == 1


async def test_wrong_secret_key(cluster_config: ClientConfig) -> None:
    checks = await run_checks(replace(cluster_config, secret_key="x" * 40))
    keys = by_name(checks)["keys"]
    assert not keys.ok and keys.blocking and "BACKEND_SECRET_KEY" in keys.fix
    assert "x" * 40 not in "\n".join(c.line() for c in checks)
    assert exit_status(checks) == 1


async def test_wrong_group(cluster_config: ClientConfig, cluster_env: dict[str, str]) -> None:
    checks = await run_checks(replace(cluster_config, group="no-such-project"))
    project = by_name(checks)["project"]
    assert not project.ok and project.fix == f"BACKEND_GROUP={cluster_env['BACKEND_GROUP']}"


@pytest.mark.parametrize("minutes", [20, -20])
async def test_skewed_clock(cluster_config: ClientConfig, minutes: int) -> None:
    def skewed() -> datetime:
        return datetime.now(timezone.utc) + timedelta(minutes=minutes)

    checks = await run_checks(cluster_config, clock=skewed)
    found = by_name(checks)
    assert not found["clock"].ok and "signatures fail beyond 15 min" in found["clock"].detail
    # The manager refuses the signature: the keys line points at the clock, not the keys.
    assert not found["keys"].ok and found["keys"].fix == "fix the clock first (above)"
    assert exit_status(checks) == 1


async def test_unreachable(cluster_config: ClientConfig) -> None:
    config = replace(cluster_config, endpoints=parse_endpoints("http://127.0.0.1:9"),
                     connection_timeout=5.0)
    checks = await run_checks(config)
    assert [c.name for c in checks] == ["endpoint", "kernelspec"]
    assert not checks[0].ok and "does not answer" in checks[0].detail
    assert exit_status(checks) == 1


def test_command_exit_status(cluster_env: dict[str, str]) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BACKEND_")}
    env.update({k: v for k, v in cluster_env.items() if k.startswith("BACKEND_")})
    ok = subprocess.run([sys.executable, "-m", "backendai_jupyter", "doctor"], env=env,
                        capture_output=True, text=True, timeout=90)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert ok.stdout.strip().endswith("→ a first cell should run")
    assert cluster_env["BACKEND_SECRET_KEY"] not in ok.stdout + ok.stderr
    env["BACKEND_ACCESS_KEY"] = "AKIANOSUCHKEY0000000"
    bad = subprocess.run([sys.executable, "-m", "backendai_jupyter", "doctor"], env=env,
                         capture_output=True, text=True, timeout=90)
    assert bad.returncode == 1 and "✗ keys: AKIANOSUCHKEY0000000 refused" in bad.stdout
