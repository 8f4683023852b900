"""The notebook-folder upload: choosing files, slicing them, and the remote writer (run here)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from backendai_jupyter.workspace.folder_upload import (
    Entry,
    Plan,
    batches,
    encode_piece,
    human_size,
    n_pieces,
    scan,
    select,
    stream_pieces,
    summary,
    writer_code,
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


BATCH_CASES: list[tuple[list[int], int, list[list[int]]]] = [
    ([], 10, []),
    ([3, 3, 3], 10, [[3, 3, 3]]),
    ([6, 5, 4], 10, [[6], [5, 4]]),
    ([25, 1], 10, [[25], [1]]),  # a file over the limit travels alone
    ([0, 0, 10, 0], 10, [[0, 0, 10, 0]]),
]


@pytest.mark.parametrize(("sizes", "limit", "expected"), BATCH_CASES)
def test_batches_keep_files_whole(sizes: list[int], limit: int, expected: list[list[int]]) -> None:
    files = [Entry(f"f{i}", n) for i, n in enumerate(sizes)]
    got = list(batches(files, limit))
    assert [[f.size for f in b] for b in got] == expected
    assert [f for b in got for f in b] == files


@pytest.mark.parametrize(("size", "expected"), [(0, 0), (1, 1), (10, 1), (11, 2), (30, 3)])
def test_n_pieces(size: int, expected: int) -> None:
    assert n_pieces(size, 10) == expected


def _write_remotely(dest: Path, src: Path, files: list[Entry], piece: int) -> str:
    """Run the writer as the session would, feeding input() as the proxy does."""
    answers = [encode_piece(p) for p in stream_pieces(src, files, piece)]
    assert len(answers) == n_pieces(sum(f.size for f in files), piece)
    out = subprocess.run(
        [sys.executable, "-c", writer_code(files)],
        cwd=dest,
        input="\n".join(answers) + "\n",
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_stream_pieces_cut_across_files(tmp_path: Path) -> None:
    for name, data in (("a", b"12345"), ("b", b""), ("c", b"678"), ("d", b"9")):
        (tmp_path / name).write_bytes(data)
    files = [Entry("a", 5), Entry("b", 0), Entry("c", 3), Entry("d", 1)]
    assert list(stream_pieces(tmp_path, files, 4)) == [b"1234", b"5678", b"9"]
    assert list(stream_pieces(tmp_path, [Entry("b", 0)], 4)) == []
    (tmp_path / "c").write_bytes(b"67")  # changed since the scan
    with pytest.raises(OSError, match="changed while"):
        list(stream_pieces(tmp_path, files, 4))


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
    for batch in batches(plan.files, 5000):  # several executions; the image spans pieces
        assert "bai-upload-ok" in _write_remotely(dest, src, batch, piece=4000)
    for f in plan.files:
        assert (dest / f.path).read_bytes() == (src / f.path).read_bytes()
    assert (dest / "run.sh").stat().st_mode & 0o777 == 0o755
    assert sorted(p.name for p in dest.iterdir()) == ["empty.txt", "images", "run.sh"]


@pytest.mark.parametrize("bad", ["/etc/x", "../x", "a/../../x"])
def test_the_remote_writer_refuses_paths_outside(tmp_path: Path, bad: str) -> None:
    out = subprocess.run(
        [sys.executable, "-c", writer_code([Entry(bad, 1)])],
        cwd=tmp_path,
        input=encode_piece(b"x") + "\n",
        capture_output=True,
        text=True,
    )
    assert out.returncode != 0 and "refusing path" in out.stderr
    assert list(tmp_path.iterdir()) == []
