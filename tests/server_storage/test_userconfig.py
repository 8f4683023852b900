"""Session templates, dotfiles, bootstrap script, resource presets and check-presets."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiohttp.test_utils import TestClient

from backendai_jupyter.server.manager.errors import Problem
from backendai_jupyter.server.manager.scheduler import SCHEDULER
from backendai_jupyter.server.manager.userconfig import (
    bootstrap_script_for,
    dotfiles_for,
    get_template,
)

from .conftest import AK1, AK2

Client = TestClient[Any, Any]

TEMPLATE = {
    "api_version": "6",
    "kind": "taskTemplate",
    "metadata": {"name": "py", "tag": "t"},
    "spec": {"session_type": "interactive",
             "kernel": {"image": "python:3.13", "environ": {"A": "1"}},
             "mounts": {"data": "/home/work/data"}},
}


async def test_template_crud(client: Client) -> None:
    resp = await client.post("/template/session", json={
        "payload": yaml.safe_dump(TEMPLATE), "group_name": "default", "domain_name": "default",
        "owner_access_key": None,
    })
    assert resp.status == 200, await resp.text()
    created = await resp.json()
    assert isinstance(created, list) and len(created) == 1
    tid = created[0]["id"]
    listed = await (await client.get("/template/session")).json()
    assert [(t["id"], t["name"], t["is_owner"]) for t in listed] == [(tid, "py", True)]
    assert await (await client.get("/template/session", headers={"X-Test-AK": AK2})).json() == []

    resp = await client.get(f"/template/session/{tid}", params={"format": "yaml"})
    assert resp.content_type == "text/yaml" and yaml.safe_load(await resp.text()) == TEMPLATE
    resp = await client.get(f"/template/session/{tid}", params={"format": "json"})
    assert await resp.json() == TEMPLATE
    assert get_template(client.server.app, tid)["spec"]["kernel"]["image"] == "python:3.13"

    changed = {**TEMPLATE, "metadata": {"name": "py2"}}
    resp = await client.put(f"/template/session/{tid}", json={"payload": json.dumps(changed)})
    assert await resp.json() == {"success": True}
    assert (await (await client.get("/template/session")).json())[0]["name"] == "py2"

    for bad in ("kind: bogus", "not: [valid", json.dumps({**TEMPLATE, "spec": {}}), ""):
        resp = await client.post("/template/session", json={"payload": bad})
        assert resp.status == 400
        assert (await resp.json())["type"].endswith("invalid-api-params")

    resp = await client.delete(f"/template/session/{tid}")
    assert await resp.json() == {"success": True}
    resp = await client.get(f"/template/session/{tid}")
    assert resp.status == 404
    assert (await resp.json())["type"].endswith("task-template-not-found")
    with pytest.raises(Problem):
        get_template(client.server.app, tid)


async def test_dotfiles_and_bootstrap(client: Client, data_dir: Path) -> None:
    body = {"path": ".bashrc", "data": "alias ll='ls -l'\n", "permission": "644"}
    resp = await client.post("/user-config/dotfiles", json=body)
    assert resp.status == 200 and await resp.json() == {}
    resp = await client.post("/user-config/dotfiles", json=body)
    assert resp.status == 400 and (await resp.json())["title"] == "Dotfile already exists."
    for bad, slug in (
        ({**body, "path": ".x", "permission": "999"}, "generic-bad-request"),
        ({**body, "path": ".ssh/authorized_keys"}, "invalid-api-params"),
        ({**body, "path": ".big", "data": "x" * (64 * 1024)}, "generic-bad-request"),
    ):
        resp = await client.post("/user-config/dotfiles", json=bad)
        assert resp.status == 400
        assert (await resp.json())["type"].endswith(slug)

    listed = await (await client.get("/user-config/dotfiles")).json()
    assert listed == [{"path": ".bashrc", "permission": "644", "data": body["data"]}]
    one = await (await client.get("/user-config/dotfiles", params={"path": ".bashrc"})).json()
    assert one["perm"] == "644" and one["data"] == body["data"]
    resp = await client.get("/user-config/dotfiles", params={"path": ".nope"})
    assert resp.status == 404
    resp = await client.patch("/user-config/dotfiles", json={**body, "data": "y",
                                                              "permission": "600"})
    assert resp.status == 200
    assert dotfiles_for(client.server.app, AK1) == [
        {"path": ".bashrc", "perm": "600", "permission": "600", "data": "y"}
    ]
    assert dotfiles_for(client.server.app, AK2) == []
    resp = await client.patch("/user-config/dotfiles", json={**body, "path": ".nope"})
    assert resp.status == 404
    resp = await client.delete("/user-config/dotfiles", params={"path": ".bashrc"})
    assert await resp.json() == {"success": True}
    assert (await client.delete("/user-config/dotfiles", params={"path": ".bashrc"})).status == 404

    assert await (await client.get("/user-config/bootstrap-script")).json() == ""
    resp = await client.post("/user-config/bootstrap-script", json={"script": "echo hi\r\n"})
    assert resp.status == 200
    assert await (await client.get("/user-config/bootstrap-script")).json() == "echo hi"
    assert bootstrap_script_for(client.server.app, AK1) == "echo hi"
    assert "echo hi" in (data_dir / "userconfig.json").read_text()


async def test_presets_and_check_presets(client: Client, data_dir: Path) -> None:
    presets = (await (await client.get("/resource/presets")).json())["presets"]
    by_name = {p["name"]: p for p in presets}
    assert by_name["cpu01-small"]["resource_slots"] == {"cpu": "1", "mem": "1073741824"}
    assert by_name["cpu02-medium"]["shared_memory"] == "1073741824"

    result = await (await client.post("/resource/check-presets", json={"group": "default"})).json()
    assert result["keypair_limits"] == {"cpu": "Infinity", "mem": "Infinity"}
    assert result["keypair_using"] == {"cpu": "2", "mem": "4294967296"}
    assert result["scaling_group_remaining"] == {"cpu": "6", "mem": "12884901888"}
    assert result["scaling_groups"]["default"]["remaining"] == result["scaling_group_remaining"]
    alloc = {p["name"]: p["allocatable"] for p in result["presets"]}
    assert alloc == {"cpu01-small": True, "cpu02-medium": True, "cpu03-large": False,
                     "cuda01-small": False, "cuda02-medium": False, "cuda03-large": False}

    sched = client.server.app[SCHEDULER]
    sched.used = {"cpu": "7.5", "mem": "0"}
    result = await (await client.post("/resource/check-presets", json={})).json()
    assert result["scaling_group_remaining"]["cpu"] == "0.5"
    assert not any(p["allocatable"] for p in result["presets"])

    data_dir.mkdir(parents=True, exist_ok=True)
    (data_dir / "presets.json").write_text(json.dumps({"resource_presets": [
        {"name": "tiny", "resource_slots": {"cpu": "0.25", "mem": "268435456"}}
    ]}))
    result = await (await client.post("/resource/check-presets", json={})).json()
    assert [(p["name"], p["allocatable"]) for p in result["presets"]] == [("tiny", True)]

    assert await (await client.get("/config/resource-slots")).json() == {
        "cpu": "count", "mem": "bytes"
    }
    groups = await (await client.get("/scaling-groups", params={"group": "default"})).json()
    assert groups == {"scaling_groups": [{"name": "default"}]}
