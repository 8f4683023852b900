"""A disk quota for a session's ``/home/work``: a loop-mounted file system of its own.

Why a loop-mounted ext4 image (when the endpoint is root) rather than the alternatives:

* a size-limited tmpfs would hold the session's files in memory (charged to its memory
  cgroup): a dataset in ``/home/work`` would cost RAM and end the session at its memory limit;
* project quotas need a file system mounted with them (XFS, ext4 ``prjquota``) under the data
  directory, which the endpoint cannot count on;
* an image is a sparse file on the data directory's disk (only what is written takes space),
  ``df`` in the session shows its size, going over it is ``ENOSPC`` in that session only, and
  the files stay on the host (the files API works on the mounted directory as before). Making
  one costs ~40 ms (``mkfs.ext4`` without journal, lazy inode tables).

Without root (no loop mounts) ``/home/work`` has no quota, and the endpoint says so at start.
The image stays next to the session's directory after the session ends (as the directory
itself did); the mount does not.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import shutil
from pathlib import Path

__all__ = ["HomeImage", "probe_home_quota", "unmount_home"]

_MNT_DETACH = 2


def probe_home_quota() -> str | None:
    """``None`` when sessions' ``/home/work`` can get a quota here, else why not."""
    if os.geteuid() != 0:
        return "no disk quota for /home/work (needs root for loop mounts)"
    missing = [t for t in ("mkfs.ext4", "mount") if shutil.which(t) is None]
    if missing or not os.path.exists("/dev/loop-control"):
        return "no disk quota for /home/work (no loop devices or " + ", ".join(missing or
                                                                            ["losetup"]) + ")"
    return None


class HomeImage:
    """The image behind one session's ``/home/work``."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.image = workdir.parent / f"{workdir.name}.home.img"

    async def mount(self, size: int, owner: tuple[int, int]) -> None:
        """Make (if new) and mount the image of ``size`` bytes on the session's directory,
        its root owned by ``owner``. Raises ``RuntimeError`` with the tool's message."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        if not self.image.exists():
            # A sparse copy of one empty file system made once (mkfs per session costs a
            # process and ~10 ms of CPU each, which 16 concurrent starts feel).
            template = await _template(self.workdir.parent, size, owner)
            await asyncio.to_thread(_sparse_copy, template, self.image)
        await _run("mount", "-o", "loop,nosuid,nodev", str(self.image), str(self.workdir))
        # ext4's lost+found: not the session's business
        with contextlib.suppress(OSError):
            (self.workdir / "lost+found").rmdir()

    def unmount(self) -> None:
        unmount_home(self.workdir)


def unmount_home(workdir: Path) -> None:
    """Detach the image mounted on ``workdir`` (the loop device goes with its last user)."""
    if os.path.ismount(workdir):
        ctypes.CDLL(None, use_errno=True).umount2(str(workdir).encode(), _MNT_DETACH)


_TEMPLATES: dict[Path, asyncio.Future[None]] = {}


async def _template(where: Path, size: int, owner: tuple[int, int]) -> Path:
    """The empty image of ``size`` bytes with its root owned by ``owner`` (made once)."""
    path = where / f".home-{size}-{owner[0]}-{owner[1]}.img"
    made = _TEMPLATES.get(path)
    if made is None or (made.done() and made.exception() is not None):
        made = _TEMPLATES[path] = asyncio.ensure_future(_mkfs(path, size, owner))
    await asyncio.shield(made)
    return path


async def _mkfs(path: Path, size: int, owner: tuple[int, int]) -> None:
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        f.truncate(size)
    try:
        await _run("mkfs.ext4", "-q", "-F", "-m", "0", "-O", "^has_journal",
                   "-E", f"root_owner={owner[0]}:{owner[1]},lazy_itable_init=1", str(tmp))
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def _sparse_copy(src: Path, dst: Path) -> None:
    """Copy ``src`` to a new ``dst`` (mode 0600), its holes kept as holes."""
    with open(src, "rb") as s, open(os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600),
                                    "wb") as d:
        size = os.fstat(s.fileno()).st_size
        d.truncate(size)
        offset = 0
        while offset < size:
            try:
                start = os.lseek(s.fileno(), offset, os.SEEK_DATA)
            except OSError:  # ENXIO: no data past offset
                break
            end = os.lseek(s.fileno(), start, os.SEEK_HOLE)
            while start < end:
                n = os.copy_file_range(s.fileno(), d.fileno(), end - start, start, start)
                if n <= 0:
                    raise OSError(f"short copy of the home template at {start}")
                start += n
            offset = end


async def _run(*argv: str) -> None:
    proc = await asyncio.create_subprocess_exec(
        *argv, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await proc.communicate()
    if proc.returncode:
        raise RuntimeError(f"{argv[0]} failed: {out.decode(errors='replace').strip()[-300:]}")
