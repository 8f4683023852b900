"""``backendai-jupyter doctor``: the verdicts (pure), by tables."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime
from typing import Any

import pytest

from backendai_jupyter.client import AuthError, ConnectError, ServerError
from backendai_jupyter.client.images import ImageInfo
from backendai_jupyter.doctor import (
    Check,
    endpoint_check,
    exit_status,
    format_report,
    images_check,
    kernelspec_check,
    keys_check,
    presets_check,
    project_check,
    sandbox_check,
    skew_check,
    unreachable_check,
    vfolder_check,
)

NOW = datetime(2026, 12, 5, 12, 0, 0, tzinfo=timezone.utc)


def date_header(offset_s: float) -> str:
    return format_datetime(NOW + timedelta(seconds=offset_s), usegmt=True)


@pytest.mark.parametrize(("server_offset", "ok", "blocking", "skewed", "words"), [
    (0, True, True, False, "within 1 s"),
    (-30, True, True, False, "within 30 s"),
    (-120, False, False, False, "120 s ahead of the server"),
    (16 * 60, False, True, True, "960 s behind the server; signatures fail beyond 15 min"),
    (-20 * 60, False, True, True, "1200 s ahead"),
])
def test_skew(server_offset: float, ok: bool, blocking: bool, skewed: bool, words: str) -> None:
    check, bad = skew_check(NOW, date_header(server_offset))
    assert (check.ok, check.blocking, bad) == (ok, blocking, skewed)
    assert words in check.detail
    assert ok or "synchronise this machine's clock" in check.fix


@pytest.mark.parametrize("header", [None, "", "yesterday-ish"])
def test_skew_without_a_readable_date_is_not_compared(header: str | None) -> None:
    check, bad = skew_check(NOW, header)
    assert check.ok and not bad and "not compared" in check.detail


@pytest.mark.parametrize(("info", "ok", "words"), [
    ({"version": "v8.20240315", "manager": "24.03.11"}, True,
     "answers: Backend.AI 24.03.11, API v8.20240315"),
    ({"version": "v9.20250722", "manager": "26.9.6"}, True, "Backend.AI 26.9.6, API v9.20250722"),
    ({"version": "v9.20250722"}, True, "Backend.AI unknown release"),
    ({"hello": "world"}, False, "not as a Backend.AI manager"),
    ("<html>", False, "not as a Backend.AI manager"),
])
def test_endpoint(info: Any, ok: bool, words: str) -> None:
    check = endpoint_check("http://m:8081", info)
    assert check.ok is ok and words in check.detail


def test_unreachable_blocks_with_a_fix() -> None:
    check = unreachable_check("http://m:1", ConnectError("cannot connect to m:1: refused"))
    assert not check.ok and check.blocking and "BACKEND_ENDPOINT" in check.fix
    assert check.line().startswith("✗ endpoint: http://m:1 does not answer (cannot connect")


@pytest.mark.parametrize(("error", "skewed", "ok", "fix"), [
    (None, False, True, ""),
    (AuthError(401, title="Unauthorized access", msg="signature mismatch"), False, False,
     "BACKEND_SECRET_KEY"),
    (AuthError(401, title="Unauthorized access"), True, False, "fix the clock first"),
    (ServerError(500, title="boom"), False, False, "BACKEND_ACCESS_KEY"),
])
def test_keys(error: BaseException | None, skewed: bool, ok: bool, fix: str) -> None:
    check = keys_check("AKIA1", error, skewed)
    assert check.ok is ok and fix in check.fix
    assert "secret" not in check.line().lower() or "BACKEND_SECRET_KEY" in check.line()


USER_24 = {"email": "t@x", "domain_name": "default", "groups": [{"name": "default"}]}
USER_26 = {"email": "t@x", "domain_name": "default", "groups": [{"name": "tester"}]}


@pytest.mark.parametrize(("domain", "group", "user", "ok", "words"), [
    ("default", "default", USER_24, True, "project default"),
    ("default", "tester", USER_26, True, "project tester"),
    # 26.9.6: a user who left BACKEND_GROUP at "default" is told the personal project's name
    ("default", "default", USER_26, False, "'default' is not one of t@x's (tester)"),
    ("other", "default", USER_24, False, "BACKEND_DOMAIN=other but t@x is in default"),
    ("default", "default", {"email": "t@x", "domain_name": "default", "groups": []}, False,
     "belongs to no project"),
    ("default", "", {"email": "t@x", "domain_name": "default"}, True, "does not list projects"),
])
def test_project(domain: str, group: str, user: dict[str, Any], ok: bool, words: str) -> None:
    check = project_check(domain, group, user)
    assert check.ok is ok and words in check.detail
    if not ok:
        assert check.fix


PY312 = ImageInfo("cr.backend.ai/stable/python:3.12-ubuntu22.04", (3, 12), False, True)
PY313 = ImageInfo("cr.backend.ai/stable/python:3.13-ubuntu24.04", (3, 13), False, True)


@pytest.mark.parametrize(("images", "named", "ok", "words"), [
    ([PY312], "", True, "auto picks cr.backend.ai/stable/python:3.12-ubuntu22.04"),
    ([PY312, PY313], PY312.ref, True, "(BACKEND_IMAGE) is one of 2"),
    ([PY312], PY313.ref, False, f"does not exist here; closest: {PY312.ref}"),
    ([ImageInfo("r/r-base:4.3", None, False, False)], "", False, "no Python image among 1"),
    # 26.9.6's test user: no registry associated with the project, so no image listed
    ([], "", False, "lists no images to this user (not checked); sessions will ask for cr."),
    ([], "my/python:3.11", False, "sessions will ask for my/python:3.11"),
])
def test_images(images: list[ImageInfo], named: str, ok: bool, words: str) -> None:
    check = images_check(images, named, {})
    assert check.ok is ok and words in check.detail
    assert ok or check.blocking is bool(images)  # an empty list proves nothing: a warning


def test_presets() -> None:
    assert presets_check([{"name": "small"}, {"name": "big"}]).detail == "2: small, big"
    empty = presets_check([])
    assert not empty.ok and not empty.blocking


ALL = ["create-vfolder", "upload-file", "download-file", "mount-in-session"]


@pytest.mark.parametrize(("hosts", "policy", "ok", "words"), [
    ({"default": "local:volume1", "allowed": ["local:volume1"]},
     {"allowed_vfolder_hosts": json.dumps({"local:volume1": ALL})}, True,
     "hosts local:volume1 (mount, upload, download); default local:volume1"),
    ({"allowed": ["nfs"]}, {"allowed_vfolder_hosts": {"nfs": ["download-file"]}}, False,
     "nfs (missing mount-in-session, upload-file)"),
    ({"allowed": ["nfs"]}, None, True, "hosts nfs"),
    ({"allowed": []}, None, False, "no vfolder host allowed"),
])
def test_vfolders(hosts: dict[str, Any], policy: Any, ok: bool, words: str) -> None:
    check = vfolder_check(hosts, policy)
    assert check.ok is ok and words in check.detail
    assert ok or not check.blocking  # storage folders are not needed for a first cell


@pytest.mark.parametrize(("argv0", "exists", "ok", "words"), [
    ("python", False, True, "runs Jupyter's own Python"),
    ("/opt/venv/bin/python", True, True, "runs /opt/venv/bin/python"),
    ("/gone/bin/python", False, False, "which is gone"),
])
def test_kernelspec(argv0: str, exists: bool, ok: bool, words: str) -> None:
    specs = {"backendai-python": {"resource_dir": "/k", "spec": {"argv": [argv0, "-m", "x"]}}}
    check = kernelspec_check(specs, lambda _p: exists)
    assert check.ok is ok and words in check.detail


def test_kernelspec_missing() -> None:
    check = kernelspec_check({}, lambda _p: True)
    assert not check.ok and check.blocking and "backendai-jupyter kernel install" in check.fix


@pytest.mark.parametrize(("info", "expected"), [
    ({"version": "v8.20240315", "manager": "24.03.11"}, None),
    ({"version": "v9.20250722", "manager": "26.9.6-local"},
     "local endpoint (its GET / reports no sandbox layers)"),
    ({"manager": "26.9.6-local", "sandbox": {"bwrap": True, "seccomp": False}},
     "on: bwrap; off: seccomp"),
    ({"manager": "26.9.6-local", "layers": ["bwrap", "cgroups"]}, "layers: bwrap, cgroups"),
])
def test_sandbox(info: dict[str, Any], expected: str | None) -> None:
    check = sandbox_check(info)
    assert (check.detail if check else None) == expected


def test_report_and_exit_status() -> None:
    good = Check("a", True, "fine")
    warning = Check("b", False, "drifts", "sync", blocking=False)
    bad = Check("c", False, "broken", "repair")
    assert exit_status([good, warning]) == 0 and exit_status([good, bad]) == 1
    text = format_report([good, warning, bad])
    assert text.splitlines() == ["✓ a: fine", "! b: drifts — fix: sync",
                                 "✗ c: broken — fix: repair", "→ a first cell will fail"]
