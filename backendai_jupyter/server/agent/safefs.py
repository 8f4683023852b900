"""File operations below a directory a session can write to, immune to its symlinks.

A session's working directory and its storage folders are written by the session's code while
the endpoint works on them for the user (upload, download, list, delete). Resolving a path and
then opening it (check-then-open) lets the session swap a component for a symlink in between
and redirect the endpoint to a host file. Here every path is walked one component at a time
from a directory descriptor, each step with ``O_NOFOLLOW`` (``openat``-style): a symlink
anywhere on the way is refused (``ELOOP``/``ENOTDIR``), whatever the session does meanwhile.
Special files are never opened for reading (a FIFO would block the endpoint): ``O_NONBLOCK``
and a type check on the opened descriptor.
"""

from __future__ import annotations

import contextlib
import errno
import io
import os
import stat
import tarfile
from collections.abc import Iterator
from pathlib import PurePosixPath

__all__ = [
    "BeneathError",
    "open_dir_beneath",
    "open_file_beneath",
    "parts_of",
    "remove_beneath",
    "scandir_beneath",
    "tar_beneath",
    "write_beneath",
]

_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class BeneathError(OSError):
    """A path that does not stay below its root (``..``, a symlink on the way)."""


def parts_of(rel: str | PurePosixPath) -> list[str]:
    """The components of a relative path; ``..`` and absolute paths are refused (pure)."""
    p = PurePosixPath(rel)
    if p.is_absolute():
        raise BeneathError(errno.EINVAL, "an absolute path")
    parts = [x for x in p.parts if x not in ("", ".")]
    if ".." in parts:
        raise BeneathError(errno.EINVAL, "a path with '..'")
    return parts


def _step(dirfd: int, name: str, *, create: bool = False, owner: tuple[int, int] | None = None
          ) -> int:
    if create:
        try:
            os.mkdir(name, 0o755, dir_fd=dirfd)
        except FileExistsError:
            pass
        else:
            if owner is not None:
                os.chown(name, *owner, dir_fd=dirfd, follow_symlinks=False)
    try:
        return os.open(name, _DIR, dir_fd=dirfd)
    except OSError as e:
        if e.errno in (errno.ELOOP, errno.ENOTDIR):
            raise BeneathError(e.errno, "not a directory (or a symlink)") from None
        raise


def open_dir_beneath(root: int, parts: list[str], *, create: bool = False,
                     owner: tuple[int, int] | None = None) -> int:
    """A descriptor of the directory ``root``/``parts`` (made when ``create``)."""
    fd = os.dup(root)
    try:
        for name in parts:
            nxt = _step(fd, name, create=create, owner=owner)
            os.close(fd)
            fd = nxt
    except BaseException:
        os.close(fd)
        raise
    return fd


def open_file_beneath(root: int, parts: list[str], flags: int = os.O_RDONLY, mode: int = 0o644,
                      *, create_dirs: bool = False, owner: tuple[int, int] | None = None) -> int:
    """``open`` of ``root``/``parts`` with no symlink followed, the last component included."""
    if not parts:
        return os.open(".", _DIR, dir_fd=root)
    parent = open_dir_beneath(root, parts[:-1], create=create_dirs, owner=owner)
    try:
        try:
            fd = os.open(parts[-1], flags | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK, mode,
                         dir_fd=parent)
        except OSError as e:
            if e.errno == errno.ELOOP:
                raise BeneathError(e.errno, "a symlink") from None
            raise
        if owner is not None and flags & os.O_CREAT:
            with contextlib.suppress(OSError):
                os.fchown(fd, *owner)
        return fd
    finally:
        os.close(parent)


def write_beneath(root: int, rel: str, content: bytes, owner: tuple[int, int] | None = None,
                  *, mode: int = 0o644) -> None:
    """Create or replace the regular file ``root``/``rel`` (directories made on the way)."""
    fd = open_file_beneath(root, parts_of(rel), os.O_WRONLY | os.O_CREAT, mode,
                           create_dirs=True, owner=owner)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise BeneathError(errno.EINVAL, "not a regular file")
        os.fchmod(fd, mode)
        os.ftruncate(fd, 0)
        view = memoryview(content)
        while view:
            view = view[os.write(fd, view):]
    finally:
        os.close(fd)


def scandir_beneath(root: int, rel: str) -> Iterator[tuple[str, os.stat_result]]:
    """``(name, lstat)`` of each entry of the directory ``root``/``rel``."""
    fd = open_dir_beneath(root, parts_of(rel))
    try:
        names = os.listdir(fd)
        for name in sorted(names):
            with contextlib.suppress(FileNotFoundError):
                yield name, os.stat(name, dir_fd=fd, follow_symlinks=False)
    finally:
        os.close(fd)


def _tar_info(name: str, st: os.stat_result) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.mode, info.mtime = stat.S_IMODE(st.st_mode), int(st.st_mtime)
    info.uid, info.gid = st.st_uid, st.st_gid
    return info


def _add_entry(tar: tarfile.TarFile, dirfd: int, name: str, arcname: str) -> int | None:
    """Add one entry of ``dirfd``; returns a descriptor to descend into for a directory."""
    st = os.stat(name, dir_fd=dirfd, follow_symlinks=False)
    info = _tar_info(arcname, st)
    if stat.S_ISLNK(st.st_mode):
        info.type, info.linkname = tarfile.SYMTYPE, os.readlink(name, dir_fd=dirfd)
        tar.addfile(info)
        return None
    if stat.S_ISDIR(st.st_mode):
        fd = os.open(name, _DIR, dir_fd=dirfd)
        info.type = tarfile.DIRTYPE
        tar.addfile(info)
        return fd
    if not stat.S_ISREG(st.st_mode):
        return None  # FIFOs, sockets, devices: nothing to send
    fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=dirfd)
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(f.fileno())
        if not stat.S_ISREG(st.st_mode):  # swapped since the lstat
            return None
        info = _tar_info(arcname, st)
        info.size = st.st_size
        tar.addfile(info, _Exactly(f, st.st_size))
    return None


class _Exactly(io.RawIOBase):
    """``size`` bytes of ``f``: zeros past its end if it shrank while being read (tar needs
    the size it announced)."""

    def __init__(self, f: io.BufferedReader, size: int) -> None:
        self.f, self.left = f, size

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        n = self.left if n < 0 else min(n, self.left)
        data = self.f.read(n) or b""
        data += b"\0" * (n - len(data))
        self.left -= n
        return data


def tar_beneath(root: int, rel: str) -> bytes:
    """A tar archive of ``root``/``rel`` (a file or a whole directory), named by its last
    component, symlinks stored as symlinks and never followed."""
    parts = parts_of(rel)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        top: int | None
        if not parts:
            top = os.dup(root)
            tar.addfile(_dir_info(".", top))
        else:
            parent = open_dir_beneath(root, parts[:-1])
            try:
                top = _add_entry(tar, parent, parts[-1], parts[-1])
            finally:
                os.close(parent)
        if top is not None:
            _tar_tree(tar, top, parts[-1] if parts else ".")
    return buf.getvalue()


def _dir_info(name: str, fd: int) -> tarfile.TarInfo:
    info = _tar_info(name, os.fstat(fd))
    info.type = tarfile.DIRTYPE
    return info


def _tar_tree(tar: tarfile.TarFile, top: int, arcname: str) -> None:
    todo = [(top, arcname)]
    while todo:
        fd, name = todo.pop()
        try:
            for child in sorted(os.listdir(fd)):
                with contextlib.suppress(FileNotFoundError):
                    sub = _add_entry(tar, fd, child, f"{name}/{child}")
                    if sub is not None:
                        todo.append((sub, f"{name}/{child}"))
        finally:
            os.close(fd)


def remove_beneath(root: int, rel: str, *, recursive: bool = False) -> bool:
    """Remove ``root``/``rel`` (a symlink is removed, never followed); False if missing."""
    parts = parts_of(rel)
    if not parts:
        raise BeneathError(errno.EINVAL, "the root itself")
    try:
        parent = open_dir_beneath(root, parts[:-1])
    except FileNotFoundError:
        return False
    try:
        try:
            st = os.stat(parts[-1], dir_fd=parent, follow_symlinks=False)
        except FileNotFoundError:
            return False
        if not stat.S_ISDIR(st.st_mode):
            os.unlink(parts[-1], dir_fd=parent)
            return True
        if recursive:
            fd = os.open(parts[-1], _DIR, dir_fd=parent)
            try:
                _empty_dir(fd)
            finally:
                os.close(fd)
        os.rmdir(parts[-1], dir_fd=parent)
        return True
    finally:
        os.close(parent)


def _empty_dir(fd: int) -> None:
    for name in os.listdir(fd):
        try:
            st = os.stat(name, dir_fd=fd, follow_symlinks=False)
        except FileNotFoundError:
            continue
        if stat.S_ISDIR(st.st_mode):
            sub = os.open(name, _DIR, dir_fd=fd)
            try:
                _empty_dir(sub)
            finally:
                os.close(sub)
            os.rmdir(name, dir_fd=fd)
        else:
            os.unlink(name, dir_fd=fd)
