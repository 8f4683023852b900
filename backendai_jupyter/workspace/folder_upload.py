"""The notebook's folder, copied into the session's working directory when the session starts.

Opt-in (``upload_dir`` setting, see :mod:`.settings`): notebooks with relative paths
(``Image(filename='images/logo.png')``, ``import helpers`` from the notebook's folder,
``FileLink('other.ipynb')``) then run as they are. The folder is the proxy kernel's working
directory: jupyter_server starts a kernel in its notebook's directory.

How the files travel
--------------------
Through the execution channel itself: a few hidden executions (sent with a ``silent`` cell
header when the rich channel is up, so history and the counter stay untouched), each running a
small writer that reads the files' bytes with ``input()`` — zlib-compressed, base64-encoded
pieces of at most :data:`PIECE` bytes, answered by the proxy like any input request — and
writes them relative to the remote working directory. Data sent as ``input()`` answers is
neither tokenized, compiled nor stored in history, unlike data inside the code. This works on
every server: the in-session upload route (``POST /session/{id}/upload``) is capped at 1 MiB per
file (protocol.md §5) and is a stub on the 26.9.6 harness, and storage folders need a mount
decided before the session exists. For data sets and anything big, a storage folder
(``mounts=`` setting, ``%backendai vfolder upload``) is the right tool: it persists, and it
does not pass every byte through the run queue.

Bounds: hidden files and folders (``.git``, ``.env``, ``.ipynb_checkpoints``, ...) and caches
(``__pycache__``, ``node_modules``, virtual environments) are never sent; a file larger than
``upload_file_max`` is skipped and named in the summary; if what remains exceeds
``upload_max`` (or :data:`MAX_FILES` files) nothing is sent and the summary says why. Symbolic
links are not followed.

:func:`select`, :func:`batches` and :func:`writer_code` are pure (table-tested); :func:`scan`
reads the directory tree; :func:`upload` sends a :class:`Plan` and returns the one-line summary.
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
    "BATCH",
    "EXCLUDED_NAMES",
    "MAX_FILES",
    "PIECE",
    "Entry",
    "Plan",
    "batches",
    "encode_piece",
    "human_size",
    "n_pieces",
    "scan",
    "stream_pieces",
    "select",
    "summary",
    "upload",
    "writer_code",
]

PIECE = 2 * 2**20
"""Raw bytes per ``input()`` answer: each costs a round trip through the manager (~0.15 s on
26.9.6); its base64 (at most 2.7 MiB) stays under the websocket message limits (aiohttp's 4 MiB
default, 16 MiB on 26.x managers)."""
BATCH = 16 * 2**20
"""Bytes per hidden execution (whole files)."""
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


def n_pieces(size: int, piece: int = PIECE) -> int:
    """How many ``input()`` answers carry a batch of ``size`` bytes (none when empty)."""
    return -(-size // piece)


def batches(files: Iterable[Entry], limit: int = BATCH) -> Iterator[list[Entry]]:
    """Whole files grouped into executions of at most ``limit`` bytes (a bigger file alone).

    Several executions instead of one keep what an interrupt or a failure can cut short small.
    """
    batch: list[Entry] = []
    size = 0
    for f in files:
        if batch and size + f.size > limit:
            yield batch
            batch, size = [], 0
        batch.append(f)
        size += f.size
    if batch:
        yield batch


# The batch's files are one byte stream, cut into pieces regardless of file boundaries: a
# folder of many small files costs a few round trips, not one per file.
_WRITER = r"""
def _bai_get(items, ok):
    import base64, os, zlib
    buf, pos = b"", 0
    for rel, mode, size in items:
        parts = rel.split("/")
        if rel.startswith("/") or ".." in parts:
            raise ValueError("refusing path " + rel)
        if len(parts) > 1:
            os.makedirs(os.path.join(*parts[:-1]), exist_ok=True)
        with open(rel, "wb") as f:
            left = size
            while left:
                if pos == len(buf):
                    buf, pos = zlib.decompress(base64.b64decode(input())), 0
                n = min(left, len(buf) - pos)
                f.write(buf[pos:pos + n])
                pos += n
                left -= n
        os.chmod(rel, mode)
    print(ok, len(items))
"""


def writer_code(files: list[Entry]) -> str:
    """Remote code that reads ``files``' bytes as one stream of ``input()`` pieces and writes
    them (see :func:`stream_pieces`)."""
    items = [(f.path, f.mode, f.size) for f in files]
    return f"{_WRITER.strip()}\n_bai_get({items!r}, {_OK!r})\ndel _bai_get\n"


def encode_piece(data: bytes) -> str:
    """One ``input()`` answer: the bytes compressed and base64-encoded (one line, ASCII)."""
    return base64.b64encode(zlib.compress(data, 6)).decode("ascii")


def stream_pieces(root: Path, files: list[Entry], piece: int = PIECE) -> Iterator[bytes]:
    """The files' bytes, concatenated in order, in pieces of ``piece`` bytes (the last shorter).

    A file that changed size since the scan raises ``OSError``: the remote writer counts on
    the sizes it was given.
    """
    buf = bytearray()
    for f in files:
        with open(root / f.path, "rb") as fh:
            data = fh.read(f.size + 1)
        if len(data) != f.size:
            raise OSError(f"{f.path} changed while the folder was being sent")
        buf += data
        while len(buf) >= piece:
            yield bytes(buf[:piece])
            del buf[:piece]
    if buf:
        yield bytes(buf)


def summary(plan: Plan, sent: int, seconds: float) -> str:
    """One line: what was sent, and what was left out."""
    if plan.refused:
        head = f"notebook folder not sent: {plan.refused}; use a storage folder (mounts=)"
    else:
        size = human_size(plan.total)
        head = f"sent the notebook folder: {sent} files, {size} in {seconds:.1f} s"
    notes = []
    if plan.large:
        shown = ", ".join(plan.large[:3]) + (" …" if len(plan.large) > 3 else "")
        notes.append(f"{len(plan.large)} large files skipped ({shown}; upload_file_max=)")
    if plan.excluded:
        notes.append("left out " + ", ".join(plan.excluded[:6]))
    return head + (f" ({'; '.join(notes)})" if notes else "")


Answers = Callable[[], Awaitable[str | None]]
"""Gives the next ``input()`` answer; ``None`` when there is none left."""
RunWithInput = Callable[[str, Answers], Awaitable[str]]
"""Runs code in the session unseen, answering its ``input()`` calls; returns its text output."""


class _Feeder:
    """Answers one batch's ``input()`` calls with its pieces, in order, and shows progress."""

    def __init__(
        self, root: Path, batch: list[Entry], progress: Callable[[str], None], total: int, done: int
    ) -> None:
        self.pieces = stream_pieces(root, batch)
        self.progress = progress
        self.total = total
        self.done = done
        self.shown = 0.0
        self.left = sum(f.size for f in batch)
        self.failed: OSError | None = None

    async def __call__(self) -> str | None:
        try:
            data = await asyncio.to_thread(next, self.pieces, None)
        except OSError as e:
            # An answer the writer cannot decode ends the remote run cleanly (a runner left
            # waiting for input would hold the session's run queue); the error is raised after.
            self.failed = e
            return ""
        if data is None:
            return None
        self.done += len(data)
        self.left -= len(data)
        if time.monotonic() - self.shown > 0.25:
            self.shown = time.monotonic()
            self.progress(
                "Backend.AI: sending the notebook folder "
                f"{human_size(self.done)} of {human_size(self.total)} …"
            )
        return await asyncio.to_thread(encode_piece, data)

    @property
    def finished(self) -> bool:
        return self.left == 0


async def upload(
    root: Path, plan: Plan, run: RunWithInput, progress: Callable[[str], None]
) -> str:
    """Send ``plan``'s files; return the summary. Raises ``OSError``/``RuntimeError``."""
    t0 = time.monotonic()
    if plan.refused:
        return summary(plan, 0, 0.0)
    done = 0
    for batch in batches(plan.files):
        feeder = _Feeder(root, batch, progress, plan.total, done)
        out = await run(writer_code(batch), feeder)
        if feeder.failed is not None:
            raise feeder.failed
        if _OK not in out or not feeder.finished:
            tail = out.strip().splitlines()[-1:] or ["no answer"]
            raise RuntimeError(f"the session did not store the files: {tail[0][:200]}")
        done = feeder.done
    return summary(plan, len(plan.files), time.monotonic() - t0)
