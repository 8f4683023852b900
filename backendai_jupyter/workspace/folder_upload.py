"""The notebook's folder, copied into the session's working directory when the session starts.

Opt-in (``upload_dir`` setting, see :mod:`.settings`): notebooks with relative paths
(``Image(filename='images/logo.png')``, ``import helpers`` from the notebook's folder,
``FileLink('other.ipynb')``) then run as they are. The folder is the proxy kernel's working
directory: jupyter_server starts a kernel in its notebook's directory.

How the files travel
--------------------
Through the execution channel itself: hidden executions (sent with a ``silent`` cell header
when the rich channel is up, so history and the counter stay untouched) that carry
zlib-compressed, base64-encoded pieces of at most :data:`PIECE` bytes and write them relative
to the remote working directory. This works on every server: the in-session upload route
(``POST /session/{id}/upload``) is capped at 1 MiB per file (protocol.md §5) and is a stub on
the 26.9.6 harness, and storage folders need a mount decided before the session exists. For
data sets and anything big, a storage folder (``mounts=`` setting, ``%backendai vfolder
upload``) is the right tool: it persists, and it does not pass every byte through the run
queue.

Bounds: hidden files and folders (``.git``, ``.env``, ``.ipynb_checkpoints``, ...) and caches
(``__pycache__``, ``node_modules``, virtual environments) are never sent; a file larger than
``upload_file_max`` is skipped and named in the summary; if what remains exceeds
``upload_max`` (or :data:`MAX_FILES` files) nothing is sent and the summary says why. Symbolic
links are not followed.

:func:`select` and :func:`pieces` are pure (table-tested); :func:`scan` reads the directory
tree; :func:`upload` sends a :class:`Plan` and returns the one-line summary.
"""

from __future__ import annotations

import asyncio
import base64
import os
import stat
import time
import zlib
from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from ..client.parsing import format_binary_size

__all__ = [
    "EXCLUDED_NAMES",
    "MAX_FILES",
    "PIECE",
    "Entry",
    "Plan",
    "pieces",
    "put_code",
    "scan",
    "select",
    "human_size",
    "summary",
    "upload",
]

PIECE = 512 * 1024
"""Raw bytes per hidden execution (well under the servers' request and websocket limits)."""
MAX_FILES = 5000
EXCLUDED_NAMES = frozenset(
    {"__pycache__", "node_modules", "venv", "env", "site-packages", "dist", "build"}
)
"""Folder names skipped besides every hidden (dot) name: caches and environments."""
_OK = "bai-upload-ok"


@dataclass(frozen=True)
class Entry:
    """One file found under the folder: its POSIX path relative to the folder, size, mode."""

    path: str
    size: int
    mode: int = 0o644


@dataclass(frozen=True)
class Plan:
    """What to send, and what was left out (for the summary)."""

    files: tuple[Entry, ...]
    large: tuple[str, ...] = ()
    excluded: tuple[str, ...] = ()
    refused: str | None = None
    """Why nothing is sent at all (too big / too many files); ``None`` when sending."""

    @property
    def total(self) -> int:
        return sum(f.size for f in self.files)


def human_size(n: int) -> str:
    """``1536`` → ``"1.5 KiB"``: for progress lines and summaries."""
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


def _excluded_part(path: str) -> str | None:
    for part in PurePosixPath(path).parts:
        if part.startswith(".") or part in EXCLUDED_NAMES:
            return part
    return None


def select(
    entries: Iterable[Entry], *, max_total: int, max_file: int, max_files: int = MAX_FILES
) -> Plan:
    """Choose the files to send. Pure: ``entries`` are all regular files under the folder."""
    files: list[Entry] = []
    large: list[str] = []
    excluded: set[str] = set()
    for e in sorted(entries, key=lambda e: e.path):
        part = _excluded_part(e.path)
        if part is not None:
            excluded.add(part)
        elif e.size > max_file:
            large.append(e.path)
        else:
            files.append(e)
    refused = None
    total = sum(f.size for f in files)
    if total > max_total:
        refused = (
            f"{human_size(total)} in {len(files)} files is over upload_max="
            f"{format_binary_size(max_total)}"
        )
    elif len(files) > max_files:
        refused = f"{len(files)} files is over the limit of {max_files}"
    return Plan(tuple(files), tuple(large), tuple(sorted(excluded)), refused)


def scan(root: Path, *, max_total: int, max_file: int) -> Plan:
    """Walk ``root`` (links not followed, hidden/cache folders not entered) and :func:`select`."""
    entries: list[Entry] = []
    skipped: list[Entry] = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        rel_dir = Path(dirpath).relative_to(root)
        keep = []
        for d in dirnames:
            rel = (rel_dir / d).as_posix()
            if _excluded_part(rel) is not None:
                skipped.append(Entry(rel, 0))  # named in the summary, never entered
            else:
                keep.append(d)
        dirnames[:] = keep
        for name in filenames:
            full = Path(dirpath, name)
            try:
                st = full.lstat()
            except OSError:
                continue
            if stat.S_ISREG(st.st_mode):
                entries.append(Entry((rel_dir / name).as_posix(), st.st_size, st.st_mode & 0o777))
    return select(entries + skipped, max_total=max_total, max_file=max_file)


Piece = tuple[Entry, int, int]
"""(file, offset, length): one slice of a file."""


def pieces(files: Iterable[Entry], piece: int = PIECE) -> Iterator[list[Piece]]:
    """Group files into batches of at most ``piece`` raw bytes; big files span batches.

    Every file appears at least once (an empty file as one zero-length slice), slices of one
    file are in order, and a batch never holds more than ``piece`` bytes.
    """
    batch: list[Piece] = []
    room = piece
    for f in files:
        offset = 0
        while True:
            if room == 0:
                yield batch
                batch, room = [], piece
            n = min(room, f.size - offset)
            batch.append((f, offset, n))
            room -= n
            offset += n
            if offset >= f.size:
                break
    if batch:
        yield batch


_PUT = r"""
def _bai_put(items, ok):
    import base64, os, zlib
    for rel, first, mode, blob in items:
        parts = rel.split("/")
        if rel.startswith("/") or ".." in parts:
            raise ValueError("refusing path " + rel)
        if len(parts) > 1:
            os.makedirs(os.path.join(*parts[:-1]), exist_ok=True)
        with open(rel, "wb" if first else "ab") as f:
            f.write(zlib.decompress(base64.b64decode(blob)))
        if first:
            os.chmod(rel, mode)
    print(ok, len(items))
"""


def put_code(items: list[tuple[str, bool, int, bytes]]) -> str:
    """Remote code writing ``(path, first piece?, mode, data)`` items relative to its cwd."""
    encoded = [
        (path, first, mode, base64.b64encode(zlib.compress(data, 6)).decode("ascii"))
        for path, first, mode, data in items
    ]
    return f"{_PUT.strip()}\n_bai_put({encoded!r}, {_OK!r})\ndel _bai_put\n"


def _read(root: Path, batch: list[Piece]) -> list[tuple[str, bool, int, bytes]]:
    items = []
    for f, offset, n in batch:
        with open(root / f.path, "rb") as fh:
            fh.seek(offset)
            items.append((f.path, offset == 0, f.mode, fh.read(n)))
    return items


def summary(plan: Plan, sent: int, seconds: float) -> str:
    """One line: what was sent, and what was left out."""
    if plan.refused:
        head = f"notebook folder not sent: {plan.refused}; use a storage folder (mounts=)"
    else:
        head = (
            f"sent the notebook folder: {sent} files, {human_size(plan.total)}"
            f" in {seconds:.1f} s"
        )
    notes = []
    if plan.large:
        shown = ", ".join(plan.large[:3]) + (" …" if len(plan.large) > 3 else "")
        notes.append(f"{len(plan.large)} large files skipped ({shown}; upload_file_max=)")
    if plan.excluded:
        notes.append("left out " + ", ".join(plan.excluded[:6]))
    return head + (f" ({'; '.join(notes)})" if notes else "")


RunHidden = Callable[[str], Awaitable[str]]
"""Runs code in the session unseen and returns its text output."""


async def upload(
    root: Path, plan: Plan, run_hidden: RunHidden, progress: Callable[[str], None]
) -> str:
    """Send ``plan``'s files; return the summary. Raises ``OSError``/``RuntimeError``."""
    t0 = time.monotonic()
    if plan.refused:
        return summary(plan, 0, 0.0)
    done = 0
    total = plan.total
    for batch in pieces(plan.files):
        items = await asyncio.to_thread(_read, root, batch)
        out = await run_hidden(put_code(items))
        if _OK not in out:
            tail = out.strip().splitlines()[-1:] or ["no answer"]
            raise RuntimeError(f"the session did not store the files: {tail[0][:200]}")
        done += sum(n for _, _, n in batch)
        progress(
            f"Backend.AI: sending the notebook folder {human_size(done)} of {human_size(total)} …"
        )
    return summary(plan, len(plan.files), time.monotonic() - t0)
