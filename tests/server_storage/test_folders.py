"""Folder CRUD, file operations, path confinement, invitations and mount paths."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from backendai_jupyter.server.manager.errors import Problem
from backendai_jupyter.server.storage import FOLDER_STORE, mount_paths

from .conftest import AK2, make_app

Client = TestClient[Any, Any]
PROBLEM = "https://api.backend.ai/probs/"


async def create(client: Client, name: str, **kw: Any) -> dict[str, Any]:
    resp = await client.post("/folders", json={"name": name, "host": None, **kw})
    assert resp.status == 201, await resp.text()
    return dict(await resp.json())


async def problem(resp: Any, status: int) -> dict[str, Any]:
    assert resp.status == status, await resp.text()
    assert resp.content_type == "application/problem+json"
    return dict(await resp.json())


def folder_dir(client: Client, name: str) -> Path:
    store = client.server.app[FOLDER_STORE]
    f = next(f for f in store.folders.values() if f.name == name)
    return store.folder_dir(f)


async def test_create_list_info_rename_delete(client: Client, data_dir: Path) -> None:
    item = await create(client, "data")
    assert item["name"] == "data" and item["host"] == "local:default"
    assert len(item["id"]) == 32 and item["is_owner"] is True and item["permission"] == "rw"
    resp = await client.post("/folders", json={"name": "data"})
    body = await problem(resp, 400)
    assert body["type"] == PROBLEM + "vfolder-already-exists"
    for bad in ("", "a/b", "..", "_x"):
        await problem(await client.post("/folders", json={"name": bad}), 400)
    body = await problem(await client.post("/folders", json={"name": "y", "host": "x:y"}), 400)
    assert body["type"].endswith("storage-permission-not-allowed")

    hosts = await (await client.get("/folders/_/hosts")).json()
    assert hosts["default"] == "local:default" and hosts["allowed"] == ["local:default"]
    listing = await (await client.get("/folders", json={"all": False})).json()
    assert [f["name"] for f in listing] == ["data"]
    ident = await (await client.get("/folders/_/id", json={"name": "data"})).json()
    assert ident["id"].replace("-", "") == item["id"]
    info = await (await client.get(f"/folders/{ident['id']}")).json()
    assert info["name"] == "data" and info["numFiles"] == 0 and info["status"] == "ready"
    body = await problem(await client.get("/folders/nope"), 404)
    assert body["title"] == "No such virtual folder."

    # another keypair sees nothing of it
    other = await (await client.get("/folders", headers={"X-Test-AK": AK2})).json()
    assert other == []
    await problem(await client.get("/folders/data", headers={"X-Test-AK": AK2}), 404)

    resp = await client.post("/folders/data/rename", json={"new_name": "data2"})
    assert resp.status == 200 and await resp.json() == {"msg": ""}
    await create(client, "other")
    body = await problem(await client.post("/folders/other/rename", json={"new_name": "data2"}), 400)
    assert body["type"].endswith("vfolder-invalid-parameter")

    # persisted: a new app over the same data dir sees the folders
    assert json.loads((data_dir / "vfolders.json").read_text())["folders"]
    store = make_app(data_dir)[FOLDER_STORE]
    store.load()
    assert sorted(f.name for f in store.folders.values()) == ["data2", "other"]

    # delete = trash (name stays taken), then delete-from-trash-bin frees it
    resp = await client.delete("/folders", json={"id": ident["id"]})
    assert resp.status == 204
    names = [f["name"] for f in await (await client.get("/folders")).json()]
    assert names == ["other"]
    await problem(await client.post("/folders", json={"name": "data2"}), 400)
    resp = await client.post("/folders/restore-from-trash-bin", json={"id": ident["id"]})
    assert resp.status == 204
    assert (await client.delete("/folders/data2")).status == 204
    path = folder_dir(client, "data2")
    assert path.is_dir()
    resp = await client.post("/folders/delete-from-trash-bin", json={"id": ident["id"]})
    assert resp.status == 204
    assert not path.exists()
    await create(client, "data2")


async def test_file_operations(client: Client) -> None:
    await create(client, "f")
    root = folder_dir(client, "f")
    resp = await client.post("/folders/f/mkdir", json={"path": "a/b/c", "parents": False})
    await problem(resp, 400)
    resp = await client.post("/folders/f/mkdir", json={"path": "a/b/c", "parents": True})
    assert resp.status == 200
    assert (root / "a/b/c").is_dir()
    await problem(await client.post("/folders/f/mkdir", json={"path": "a"}), 400)
    resp = await client.post("/folders/f/mkdir", json={"path": "a", "exist_ok": True})
    assert resp.status == 200
    resp = await client.post(
        "/folders/f/mkdir", json={"path": ["a", "d"], "parents": True, "exist_ok": False}
    )
    results = (await resp.json())["results"]
    assert [s["item"] for s in results["success"]] == ["d"]
    assert [s["item"] for s in results["failed"]] == ["a"]

    (root / "top.txt").write_text("top")
    (root / "a/b/deep.txt").write_text("deep")
    listing = await (await client.get("/folders/f/files", params={"path": ""})).json()
    names = {i["name"]: i for i in listing["items"]}
    assert set(names) == {"a", "d", "top.txt"}
    assert names["a"]["type"] == "DIRECTORY" and names["top.txt"]["size"] == 3
    legacy = json.loads(listing["files"])
    assert {e["filename"] for e in legacy} == {"a", "d", "top.txt"}
    nested = await (await client.get("/folders/f/files", params={"path": "a/b"})).json()
    assert {i["name"] for i in nested["items"]} == {"c", "deep.txt"}
    await problem(await client.get("/folders/f/files", params={"path": "missing"}), 400)

    for route in ("rename-file", "rename_file"):
        src, dst = ("a/b/deep.txt", "x.txt") if route == "rename-file" else ("a/b/x.txt", "y.txt")
        resp = await client.post(f"/folders/f/{route}", json={"target_path": src, "new_name": dst})
        assert resp.status == 200 and await resp.json() == {"msg": ""}
    assert (root / "a/b/y.txt").read_text() == "deep"
    await problem(
        await client.post("/folders/f/rename-file", json={"target_path": "top.txt",
                                                          "new_name": "../z"}), 400
    )
    resp = await client.post("/folders/f/move-file", json={"src": "a/b/y.txt", "dst": "d"})
    assert resp.status == 200 and (root / "d/y.txt").exists()
    resp = await client.post("/folders/f/move-file", json={"src": "top.txt", "dst": "d/n/t.txt"})
    assert resp.status == 200 and (root / "d/n/t.txt").read_text() == "top"

    await problem(
        await client.delete("/folders/f/delete-files", json={"files": ["d"], "recursive": False}),
        400,
    )
    resp = await client.delete("/folders/f/delete_files", json={"files": ["d/y.txt"]})
    assert resp.status == 200 and not (root / "d/y.txt").exists()
    resp = await client.post("/folders/f/delete-files", json={"files": ["d"], "recursive": True})
    assert resp.status == 200 and not (root / "d").exists()
    resp = await client.delete("/folders/f/delete-files", json={"files": ["gone"]})
    assert resp.status == 200  # missing files are not an error (26.9.6)
    info = await (await client.get("/folders/f")).json()
    assert info["numFiles"] == 3  # a, a/b, a/b/c


@pytest.mark.parametrize("path", ["../x", "a/../../x", "/etc/passwd", "/", "..", "esc/x"])
async def test_path_escapes_are_rejected(client: Client, tmp_path: Path, path: str) -> None:
    await create(client, "f")
    root = folder_dir(client, "f")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "x").write_text("secret")
    os.symlink(outside, root / "esc")
    cases = [
        client.get("/folders/f/files", params={"path": path}),
        client.post("/folders/f/mkdir", json={"path": path + "/new", "parents": True}),
        client.post("/folders/f/request-upload", json={"path": path, "size": 3}),
        client.post("/folders/f/request-download", json={"path": path}),
        client.post("/folders/f/move-file", json={"src": "esc", "dst": path + "/m"}),
        client.delete("/folders/f/delete-files", json={"files": [path + "/x"],
                                                       "recursive": True}),
    ]
    for call in cases:
        body = await problem(await call, 400)
        assert body["type"].endswith("vfolder-operation-failed")
    assert (outside / "x").read_text() == "secret"
    assert sorted(p.name for p in outside.iterdir()) == ["x"]
    # the link itself may be listed and removed (unlinking does not touch the target)
    resp = await client.delete("/folders/f/delete-files", json={"files": ["esc"]})
    assert resp.status == 200 and (outside / "x").exists()


async def test_invitations(client: Client) -> None:
    await create(client, "shared")
    resp = await client.post("/folders/shared/invite", json={"perm": "ro",
                                                            "user_ids": ["two@localhost"]})
    assert resp.status == 201 and (await resp.json()) == {"invited_ids": ["two@localhost"]}
    sent = (await (await client.get("/folders/invitations/list_sent")).json())["invitations"]
    assert len(sent) == 1 and sent[0]["vfolder_name"] == "shared"
    two = {"X-Test-AK": AK2}
    invs = (await (await client.get("/folders/invitations/list", headers=two)).json())
    inv = invs["invitations"][0]
    assert inv["inviter"] == "one@localhost" and inv["perm"] == "ro"
    resp = await client.post("/folders/invitations/accept", json={"inv_id": inv["id"]},
                             headers=two)
    assert resp.status == 200
    listed = await (await client.get("/folders", headers=two)).json()
    assert [(f["name"], f["is_owner"], f["permission"]) for f in listed] == [
        ("shared", False, "ro")
    ]
    resp = await client.post("/folders/shared/mkdir", json={"path": "x"}, headers=two)
    await problem(resp, 403)  # read-only share
    resp = await client.post("/folders/shared/leave", json={}, headers=two)
    assert resp.status == 200
    assert await (await client.get("/folders", headers=two)).json() == []
    await problem(await client.delete("/folders/invitations/delete",
                                      json={"inv_id": inv["id"]}), 404)


async def test_mount_paths(client: Client) -> None:
    a = await create(client, "alpha")
    await create(client, "beta")
    app = client.server.app
    mounts = mount_paths(app, ["alpha", "beta"], {"beta": "data/b"})
    assert mounts == [
        (folder_dir(client, "alpha"), "/home/work/alpha"),
        (folder_dir(client, "beta"), "/home/work/data/b"),
    ]
    assert mount_paths(app, [a["id"]], {a["id"]: "/mnt/x"})[0][1] == "/mnt/x"
    with pytest.raises(Problem) as info:
        mount_paths(app, ["nope"], {})
    assert info.value.status == 404 and info.value.slug == "vfolder-not-found"
    with pytest.raises(Problem):
        mount_paths(app, ["alpha"], {"alpha": "../../etc"})
    with pytest.raises(Problem) as info:
        mount_paths(app, ["alpha"], {}, access_key=AK2)
    assert info.value.status == 404
