"""Issue 19: file operations below a session-writable directory never follow its symlinks
(``safefs.py``), including a symlink swapped in while the endpoint works."""

from __future__ import annotations

import contextlib
import io
import os
import tarfile
import threading
from pathlib import Path

import pytest

from backendai_jupyter.server.agent.safefs import (
    BeneathError,
    parts_of,
    remove_beneath,
    scandir_beneath,
    tar_beneath,
    write_beneath,
)


@pytest.mark.parametrize(
    ("rel", "parts"),
    [("a/b/c.txt", ["a", "b", "c.txt"]), (".", []), ("", []), ("./a//b/", ["a", "b"])],
)
def test_parts_of(rel: str, parts: list[str]) -> None:
    assert parts_of(rel) == parts


@pytest.mark.parametrize("rel", ["/etc/passwd", "../x", "a/../../b", "a/.."])
def test_parts_of_refuses_escapes(rel: str) -> None:
    with pytest.raises(BeneathError):
        parts_of(rel)


@pytest.fixture
def tree(tmp_path: Path) -> tuple[Path, Path, int]:
    root = tmp_path / "work"
    secret = tmp_path / "host"
    root.mkdir()
    secret.mkdir()
    (secret / "keypair.json").write_text("SECRET-KEY")
    (root / "sub").mkdir()
    (root / "sub" / "a.txt").write_text("mine")
    (root / "link").symlink_to(secret)
    (root / "sub" / "leak").symlink_to(secret / "keypair.json")
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    yield root, secret, fd
    os.close(fd)


def _members(data: bytes) -> dict[str, bytes | str]:
    out: dict[str, bytes | str] = {}
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        for m in tar.getmembers():
            if m.issym():
                out[m.name] = "-> " + m.linkname
            elif m.isfile():
                f = tar.extractfile(m)
                assert f is not None
                out[m.name] = f.read()
    return out


def test_symlinks_are_never_followed(tree: tuple[Path, Path, int]) -> None:
    root, secret, fd = tree
    assert _members(tar_beneath(fd, "sub")) == {
        "sub/a.txt": b"mine", "sub/leak": "-> " + str(secret / "keypair.json")}
    for rel in ("link", "link/keypair.json", "sub/leak"):
        with pytest.raises(OSError):
            write_beneath(fd, rel, b"x")
    with pytest.raises(BeneathError):
        tar_beneath(fd, "link/keypair.json")
    assert (secret / "keypair.json").read_text() == "SECRET-KEY"
    assert dict(scandir_beneath(fd, "sub")).keys() == {"a.txt", "leak"}
    with pytest.raises(BeneathError):
        list(scandir_beneath(fd, "link"))
    assert remove_beneath(fd, "link") and (secret / "keypair.json").exists()
    assert remove_beneath(fd, "sub", recursive=True) and (secret / "keypair.json").exists()
    assert not remove_beneath(fd, "sub")


def test_a_fifo_does_not_block_a_download(tree: tuple[Path, Path, int]) -> None:
    root, _, fd = tree
    os.mkfifo(root / "sub" / "pipe")
    assert "sub/pipe" not in _members(tar_beneath(fd, "sub"))


def test_racing_symlink_swap_never_redirects(tree: tuple[Path, Path, int]) -> None:
    """The session flips ``sub/d`` between a directory and a symlink to the host secret while
    the endpoint downloads and writes through it: the secret is never read nor written."""
    root, secret, fd = tree
    real = root / "sub" / "d"
    real.mkdir()
    (real / "keypair.json").write_text("harmless")
    stop = threading.Event()

    def flip() -> None:
        parked = root / "parked"
        while not stop.is_set():
            # The endpoint may create sub/d itself between two steps (a write makes missing
            # directories): the flipper then skips a beat instead of dying.
            with contextlib.suppress(OSError):
                os.rename(real, parked)
                os.symlink(secret, real)
                os.unlink(real)
                os.rename(parked, real)

    flipper = threading.Thread(target=flip)
    flipper.start()
    try:
        for _ in range(300):
            try:
                data = tar_beneath(fd, "sub/d/keypair.json")
            except OSError:
                continue
            assert b"SECRET-KEY" not in data
            try:
                write_beneath(fd, "sub/d/keypair.json", b"overwritten")
            except OSError:
                pass
    finally:
        stop.set()
        flipper.join()
    assert (secret / "keypair.json").read_text() == "SECRET-KEY"
