"""The create-session request check (pure): what is accepted, and the 400 for everything else."""

from __future__ import annotations

from typing import Any

import pytest

from backendai_jupyter.server.manager.errors import Problem
from backendai_jupyter.server.manager.session_params import check_name, parse_create
from backendai_jupyter.server.paths import path_problem

IMG = "python:3.13"


@pytest.mark.parametrize(
    "body,field,value",
    [
        ({"image": IMG}, "type", "interactive"),
        ({"image": IMG, "maxWaitSeconds": "5"}, "max_wait", 5.0),
        ({"image": IMG, "maxWaitSeconds": 2.5}, "max_wait", 2.5),
        ({"image": IMG, "clusterSize": "1"}, "image", IMG),
        ({"lang": IMG, "config": {"clusterSize": 1}}, "image", IMG),
        ({"image": IMG, "enqueueOnly": "true"}, "enqueue_only", True),
        ({"image": IMG, "reuseIfExists": False}, "reuse_if_exists", False),
        ({"image": IMG, "config": {"environ": {"A": 1}}}, "environ", {"A": "1"}),
        ({"image": IMG, "config": {"mounts": ["data"]}}, "mounts", ["data"]),
        ({"image": IMG, "config": {"mountMap": {"d": "/home/work/x"}}}, "mount_map", {"d": "/home/work/x"}),
        ({"image": IMG, "type": "batch", "startupCommand": "true"}, "startup_command", "true"),
        ({"image": IMG, "name": "my-session.1"}, "name", "my-session.1"),
        ({"image": IMG, "group": None}, "group", "default"),
    ],
)
def test_accepted(body: dict[str, Any], field: str, value: Any) -> None:
    assert getattr(parse_create(body), field) == value


@pytest.mark.parametrize(
    "body,culprit",
    [
        ({}, "image"),
        ({"image": 5}, "image"),
        ({"image": IMG, "maxWaitSeconds": "abc"}, "maxWaitSeconds"),
        ({"image": IMG, "maxWaitSeconds": -1}, "maxWaitSeconds"),
        ({"image": IMG, "maxWaitSeconds": True}, "maxWaitSeconds"),
        ({"image": IMG, "maxWaitSeconds": "nan"}, "maxWaitSeconds"),
        ({"image": IMG, "maxWaitSeconds": [1]}, "maxWaitSeconds"),
        ({"image": IMG, "clusterSize": "abc"}, "clusterSize"),
        ({"image": IMG, "clusterSize": [1]}, "clusterSize"),
        ({"image": IMG, "clusterSize": 1.5}, "clusterSize"),
        ({"image": IMG, "clusterSize": 2}, "single-container"),
        ({"image": IMG, "clusterMode": 3}, "clusterMode"),
        ({"image": IMG, "type": "batch", "startupCommand": 5}, "startupCommand"),
        ({"image": IMG, "type": "batch"}, "startup command"),
        ({"image": IMG, "type": ["batch"]}, "type"),
        ({"image": IMG, "name": "abcd\n"}, "name"),
        ({"image": IMG, "name": "ab"}, "name"),
        ({"image": IMG, "name": 1234}, "name"),
        ({"image": IMG, "name": "a" * 65}, "name"),
        ({"image": IMG, "config": "x"}, "config"),
        ({"image": IMG, "config": {"resources": [1]}}, "resources"),
        ({"image": IMG, "config": {"mounts": "data"}}, "mounts"),
        ({"image": IMG, "config": {"mounts": [1]}}, "mounts"),
        ({"image": IMG, "config": {"mounts": [""]}}, "mounts"),
        ({"image": IMG, "config": {"mount_map": ["d"]}}, "mount_map"),
        ({"image": IMG, "config": {"mount_map": {"d": {"x": 1}}}}, "mount_map"),
        ({"image": IMG, "config": {"environ": {"A": {"b": 1}}}}, "environ"),
        ({"image": IMG, "config": {"environ": {"A=B": "1"}}}, "environ"),
        ({"image": IMG, "config": {"environ": {"A": "x\x00y"}}}, "environ"),
        ({"image": IMG, "config": {"environ": ["A"]}}, "environ"),
        ({"image": IMG, "enqueueOnly": "maybe"}, "enqueueOnly"),
        ({"image": IMG, "reuseIfExists": 7}, "reuseIfExists"),
        ({"image": IMG, "tag": {"x": 1}}, "tag"),
        ({"image": IMG, "bootstrap_script": 1}, "bootstrap_script"),
        ({"image": IMG, "group": 1}, "group"),
    ],
)
def test_refused(body: dict[str, Any], culprit: str) -> None:
    with pytest.raises(Problem) as e:
        parse_create(body)
    assert e.value.status == 400
    assert culprit in f"{e.value.msg} {e.value.data}"


@pytest.mark.parametrize("name", ["abcd", "a.b-c_d", "x" * 64])
def test_names(name: str) -> None:
    assert check_name(name) == name


@pytest.mark.parametrize(
    "path,why",
    [
        ("a/b.txt", None),
        ("é/ü", None),
        ("x" * 255, None),
        (5, "string"),
        ("a\x00b", "NUL"),
        ("\ud800", "UTF-8"),
        ("x" * 256, "longer than 255"),
        ("a/" * 2100, "longer than 4096"),
    ],
)
def test_path_problem(path: Any, why: str | None) -> None:
    problem = path_problem(path)
    assert (problem is None) if why is None else (why in str(problem))
