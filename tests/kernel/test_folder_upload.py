"""The notebook-folder upload: choosing files, slicing them, and the remote writer (run here)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from backendai_jupyter.workspace.folder_upload import (
    PIECE,
    Entry,
    Plan,
    human_size,
    pieces,
    put_code,
    scan,
    select,
    summary,
)

KB = 1024

SELECT_CASES: list[tuple[list[Entry], dict[str, int], Plan]] = [
    (
        [Entry("b.py", 10), Entry("a/logo.png", 20)],
        {},
        Plan((Entry("a/logo.png", 20), Entry("b.py", 10))),
    ),
    (
        [
            Entry(".git/config", 5),
            Entry(".env", 5),
            Entry("x/.ipynb_checkpoints/n.ipynb", 5),
            Entry("pkg/__pycache__/m.pyc", 5),
            Entry("node_modules/z.js", 5),
            Entry("ok.txt", 5),
        ],
        {},
        Plan(
            (Entry("ok.txt", 5),),
            excluded=(".env", ".git", ".ipynb_checkpoints", "__pycache__", "node_modules"),
        ),
    ),
    (
        [Entry("data.bin", 11 * KB), Entry("small.csv", 1 * KB)],
        {"max_file": 10 * KB},
        Plan((Entry("small.csv", KB),), large=("data.bin",)),
    ),
    (
        [Entry("a", 60 * KB), Entry("b", 60 * KB)],
        {"max_total": 100 * KB},
        Plan(
            (Entry("a", 60 * KB), Entry("b", 60 * KB)),
            refused="120.0 KiB in 2 files is over upload_max=100k",
        ),
    ),
    (
        [Entry(f"f{i}", 1) for i in range(4)],
        {"max_files": 3},
        Plan(
            tuple(sorted((Entry(f"f{i}", 1) for i in range(4)), key=lambda e: e.path)),
            refused="4 files is over the limit of 3",
        ),
    ),
]


@pytest.mark.parametrize(("entries", "limits", "expected"), SELECT_CASES)
def test_select(entries: list[Entry], limits: dict[str, int], expected: Plan) -> None:
    kwargs = {"max_total": 2**30, "max_file": 2**30, **limits}
    assert select(entries, **kwargs) == expected


def test_pieces_cover_every_byte_in_order_within_the_bound() -> None:
    files = [Entry("empty", 0), Entry("big", 2 * PIECE + 7), Entry("s1", 5), Entry("s2", PIECE)]
    batches = list(pieces(files))
    assert all(sum(n for _, _, n in b) <= PIECE for b in batches)
    seen: dict[str, list[tuple[int, int]]] = {}
    for batch in batches:
        for f, offset, n in batch:
            seen.setdefault(f.path, []).append((offset, n))
    for f in files:
        slices = seen[f.path]
        assert slices[0][0] == 0 and sum(n for _, n in slices) == f.size
        assert all(a + n == b for (a, n), (b, _) in zip(slices, slices[1:], strict=False))
    assert [b for b in pieces([])] == []


def test_summary_lines() -> None:
    plan = Plan(
        (Entry("a", 2 * KB), Entry("b", KB)),
        large=("x.bin", "y.bin", "z.bin", "w.bin"),
        excluded=(".git",),
    )
    assert summary(plan, 2, 1.25) == (
        "sent the notebook folder: 2 files, 3.0 KiB in 1.2 s (4 large files skipped"
        " (x.bin, y.bin, z.bin …; upload_file_max=); left out .git)"
    )
    refused = Plan((), refused="too big")
    assert summary(refused, 0, 0) == (
        "notebook folder not sent: too big; use a storage folder (mounts=)"
    )
    assert [human_size(n) for n in (0, 1023, 1536, 5 * 2**20, 3 * 2**30)] == [
        "0 B",
        "1023 B",
        "1.5 KiB",
        "5.0 MiB",
        "3.0 GiB",
    ]


def test_scan_and_the_remote_writer_round_trip(tmp_path: Path) -> None:
    src = tmp_path / "nb"
    (src / "images").mkdir(parents=True)
    (src / "images" / "logo.png").write_bytes(bytes(range(256)) * 40)
    (src / "run.sh").write_text("echo hi\n")
    (src / "run.sh").chmod(0o755)
    (src / "empty.txt").write_bytes(b"")
    (src / ".git").mkdir()
    (src / ".git" / "HEAD").write_text("ref\n")
    (src / "big.bin").write_bytes(os.urandom(13000))
    os.symlink("/etc/passwd", src / "link")
    plan = scan(src, max_total=2**20, max_file=12000)
    assert [f.path for f in plan.files] == ["empty.txt", "images/logo.png", "run.sh"]
    assert plan.large == ("big.bin",) and plan.excluded == (".git",)
    dest = tmp_path / "session"
    dest.mkdir()
    for batch in pieces(plan.files, piece=4000):  # several batches; the image spans two
        items = []
        for f, offset, n in batch:
            items.append(
                (f.path, offset == 0, f.mode, (src / f.path).read_bytes()[offset : offset + n])
            )
        out = subprocess.run(
            [sys.executable, "-c", put_code(items)], cwd=dest, capture_output=True, text=True
        )
        assert out.returncode == 0 and "bai-upload-ok" in out.stdout, out.stderr
    for f in plan.files:
        assert (dest / f.path).read_bytes() == (src / f.path).read_bytes()
    assert (dest / "run.sh").stat().st_mode & 0o777 == 0o755
    assert sorted(p.name for p in dest.iterdir()) == ["empty.txt", "images", "run.sh"]


@pytest.mark.parametrize("bad", ["/etc/x", "../x", "a/../../x"])
def test_the_remote_writer_refuses_paths_outside(tmp_path: Path, bad: str) -> None:
    out = subprocess.run(
        [sys.executable, "-c", put_code([(bad, True, 0o644, b"x")])],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert out.returncode != 0 and "refusing path" in out.stderr
    assert list(tmp_path.iterdir()) == []
