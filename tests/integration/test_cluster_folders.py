"""Virtual folders against the real 26.9.6 cluster: CRUD, file ops and tus transfers."""

from __future__ import annotations

import hashlib
import os
import secrets
import tracemalloc
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from backendai_jupyter.client import APIError, Client, Finished, Output

if not os.access(os.environ.get("BAI_CLUSTER_ENV", "/tmp/backendai-cluster/user.env"), os.R_OK):
    if os.environ.get("BAI_REQUIRE_CLUSTER") != "1":
        pytest.skip("no real cluster (user.env not readable)", allow_module_level=True)

pytestmark = [pytest.mark.cluster, pytest.mark.asyncio(loop_scope="session")]

SIZE = 20 * 1024 * 1024


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for piece in iter(lambda: f.read(1 << 20), b""):
            h.update(piece)
    return h.hexdigest()


@pytest.fixture(scope="module")
def big_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("up") / "big.bin"
    with path.open("wb") as f:
        for _ in range(SIZE // (1 << 20)):
            f.write(os.urandom(1 << 20))
    return path


@pytest_asyncio.fixture(loop_scope="session")
async def folder(client: Client) -> AsyncIterator[str]:
    name = f"bjt-{secrets.token_hex(4)}"
    await client.folders.create(name)
    try:
        yield name
    finally:
        try:
            await client.folders.delete(name, forever=True)
        except APIError:
            pass


async def test_create_list_info(client: Client, folder: str) -> None:
    names = [f.name for f in await client.folders.list()]
    assert folder in names
    info = await client.folders.info(folder)
    assert info.name == folder and info.id and info.host
    hosts = await client.folders.list_hosts()
    assert info.host in hosts["allowed"]
    assert await client.folders.list_files(folder) == []


async def test_upload_download_file_ops(client: Client, folder: str, big_file: Path,
                                        tmp_path: Path) -> None:
    folders = client.folders
    await folders.mkdir(folder, "d1/d2", parents=True)
    await folders.mkdir(folder, "d1", exist_ok=True)

    seen: list[tuple[int, int]] = []
    tracemalloc.start()
    try:
        await folders.upload(folder, big_file, "d1/big.bin",
                             progress=lambda done, total: seen.append((done, total)))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < SIZE // 2, f"upload peaked at {peak} bytes of Python memory"
    assert seen[-1] == (SIZE, SIZE)
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)

    entries = {e["name"]: e for e in await folders.list_files(folder, "d1")}
    assert entries["d2"]["type"] == "directory"
    assert entries["big.bin"]["type"] == "file"
    assert entries["big.bin"]["size"] == SIZE

    got = await folders.download(folder, "d1/big.bin", tmp_path)
    assert got == tmp_path / "big.bin"
    assert _sha256(got) == _sha256(big_file)
    assert not (tmp_path / "big.bin.part").exists()

    # A stale partial download is resumed with Range and still yields the right bytes.
    resumed = tmp_path / "resumed.bin"
    with big_file.open("rb") as src:
        (tmp_path / "resumed.bin.part").write_bytes(src.read(3 * 1024 * 1024 + 17))
    await folders.download(folder, "d1/big.bin", resumed)
    assert _sha256(resumed) == _sha256(big_file)

    await folders.rename_file(folder, "d1/big.bin", "big2.bin")
    await folders.move_file(folder, "d1/big2.bin", "moved.bin")
    root = {e["name"]: e["type"] for e in await folders.list_files(folder)}
    assert root == {"d1": "directory", "moved.bin": "file"}
    await folders.delete_files(folder, ["moved.bin"])
    await folders.delete_files(folder, ["d1"], recursive=True)
    assert await folders.list_files(folder) == []


async def test_directory_round_trip(client: Client, folder: str, tmp_path: Path) -> None:
    src = tmp_path / "tree"
    (src / "a" / "b").mkdir(parents=True)
    (src / "top.txt").write_text("top\n")
    (src / "a" / "mid.txt").write_text("mid\n")
    (src / "a" / "b" / "deep.bin").write_bytes(os.urandom(1000))
    (src / "a" / "empty.txt").write_bytes(b"")
    await client.folders.upload(folder, src)
    dest = tmp_path / "back"
    dest.mkdir()
    out = await client.folders.download(folder, "tree", dest)
    for rel in ("top.txt", "a/mid.txt", "a/b/deep.bin", "a/empty.txt"):
        assert (out / rel).read_bytes() == (src / rel).read_bytes(), rel


async def test_rename_and_delete_frees_the_name(client: Client) -> None:
    name = f"bjt-{secrets.token_hex(4)}"
    await client.folders.create(name)
    await client.folders.rename(name, name + "-renamed")
    assert name + "-renamed" in [f.name for f in await client.folders.list()]
    await client.folders.delete(name + "-renamed", forever=True)
    # 24.03 may still list it for a moment, while its storage proxy deletes (delete-ongoing).
    names = [f.name for f in await client.folders.list()
             if not str(f.raw.get("status", "")).startswith("delete-")]
    assert name + "-renamed" not in names
    # The name is free again once the folder left the trash bin.
    await client.folders.create(name + "-renamed")
    await client.folders.delete(name + "-renamed", forever=True)


async def test_folder_mounted_into_a_session(
    client: Client, folder: str, image: str, tmp_path: Path
) -> None:
    src = tmp_path / "hello.txt"
    src.write_text("from the notebook\n")
    await client.folders.upload(folder, src, "hello.txt")
    sess = await client.sessions.create(image, mounts=[folder], resources={"cpu": "1"})
    try:
        code = (
            f"print(open('/home/work/{folder}/hello.txt').read().strip())\n"
            f"_ = open('/home/work/{folder}/written.txt', 'w').write('from the session')"
        )
        stdout = ""
        async for ev in client.sessions.execute(sess.id, code):
            if isinstance(ev, Output) and ev.item.kind == "stdout":
                stdout += str(ev.item.data)
            if isinstance(ev, Finished):
                assert ev.exit_code == 0
        assert stdout.strip() == "from the notebook"
    finally:
        await client.sessions.destroy(sess.id)
    # What the session wrote is in the folder afterwards.
    names = {f["name"] for f in await client.folders.list_files(folder)}
    assert {"hello.txt", "written.txt"} <= names
    out = await client.folders.download(folder, "written.txt", tmp_path / "written.txt")
    assert out.read_text() == "from the session"
