"""The rich channel's package: the remote programs' rules, the cell header, traceback pruning.

The programs' behaviour inside a real ipykernel is tests/kernel/test_bootstrap.py's and
test_comms.py's; here what can be checked without a kernel.
"""

from __future__ import annotations

import ast
import json
import sys
from pathlib import Path
from typing import Any

import pytest

from backendai_jupyter import richchannel
from backendai_jupyter.richchannel import (
    HEADER_TAG,
    Frame,
    FrameDecoder,
    bootstrap_code,
    encode_frame,
    with_header,
)
from backendai_jupyter.richchannel.calls import MODULE, program
from backendai_jupyter.richchannel.frames import _find_marker
from backendai_jupyter.richchannel.remote import bootstrap as remote_bootstrap

REMOTE = Path(richchannel.__file__).parent / "remote"
PROGRAMS = ["bootstrap", "comms", "live"]
#: What a remote session has besides the standard library.
REMOTE_PACKAGES = {"IPython", "ipykernel", "jupyter_client", "comm"}


def _imports(tree: ast.AST) -> list[tuple[str, bool]]:
    """(top-level package, imported at module level) of every import in ``tree``."""
    found: list[tuple[str, bool]] = []
    top = {id(n) for n in getattr(tree, "body", [])}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(a.name.split(".")[0], id(node) in top) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, "remote programs cannot import relatively"
            found.append(((node.module or "").split(".")[0], id(node) in top))
    return found


@pytest.mark.parametrize("name", PROGRAMS)
def test_remote_programs_need_only_what_a_session_has(name: str) -> None:
    tree = ast.parse(program(name), feature_version=(3, 8))  # remote Pythons can be old
    for package, at_top in _imports(tree):
        if package == "__future__":
            continue
        if package in REMOTE_PACKAGES:
            assert not at_top, f"{name}: import {package} inside the function that needs it"
        else:
            assert package in sys.stdlib_module_names, f"{name}: {package} is not in a session"


def test_remote_programs_share_one_module_without_clashes() -> None:
    # Both run in the same remote module (_backendai_rich): their own names must not collide.
    def defined(name: str) -> set[str]:
        names: set[str] = set()
        for node in ast.parse(program(name)).body:
            if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
                names.add(node.name)
            elif isinstance(node, (ast.Assign, ast.AnnAssign)):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                names |= {t.id for t in targets if isinstance(t, ast.Name)}
        return names

    assert defined("bootstrap") & defined("comms") == set()


def test_program_text_is_the_package_file() -> None:
    for name in PROGRAMS:
        assert program(name) == (REMOTE / f"{name}.py").read_text(encoding="utf-8")


def test_bootstrap_without_ipython_does_nothing(capsys: pytest.CaptureFixture[str]) -> None:
    # A session whose Python is not IPython (or a plain runner): no output, no names left.
    namespace: dict[str, Any] = {}
    try:
        exec(bootstrap_code(), namespace)
        assert set(namespace) == {"__builtins__"}
        assert "install" in vars(sys.modules[MODULE])
    finally:
        sys.modules.pop(MODULE, None)
    assert capsys.readouterr() == ("", "")


NONCE = "n0nce_TEST-123"


@pytest.mark.parametrize(
    ("flags", "header"),
    [
        ({}, {"silent": False, "store_history": True, "allow_stdin": True,
              "user_expressions": {}}),
        ({"count": 7, "user_expressions": {"a": "1"}}, {"silent": False, "store_history": True,
                                                      "allow_stdin": True,
                                                      "user_expressions": {"a": "1"},
                                                      "count": 7}),
        ({"silent": True, "store_history": False, "allow_stdin": False},
         {"silent": True, "store_history": False, "allow_stdin": False, "user_expressions": {}}),
    ],
)
def test_with_header(flags: dict[str, Any], header: dict[str, Any]) -> None:
    text = with_header("x = 1\n", NONCE, **flags)
    line, _, code = text.partition("\n")
    assert code == "x = 1\n"
    assert line.startswith(HEADER_TAG + NONCE + " ")
    assert json.loads(line.split(" ", 1)[1]) == header
    # what the remote side reads back
    assert remote_bootstrap.read_header(line.split(" ", 1)[1]) == header


@pytest.mark.parametrize("text", ["", "not json", "[1]", "3"])
def test_a_bad_header_reads_as_none(text: str) -> None:
    assert remote_bootstrap.read_header(text) == {}


def test_without_rich_channel_the_code_is_unchanged() -> None:
    assert with_header("print(1)", None, count=3) == "print(1)"
    with pytest.raises(ValueError):
        with_header("1", "bad nonce!")


def _traceback_through_our_frames() -> Any:
    # user code → one of our frames (compiled as the remote programs are) → a library's raise
    ours = compile(
        "def relay(fn):\n    return fn()\n", remote_bootstrap.FILENAME, "exec"
    )
    namespace: dict[str, Any] = {}
    exec(ours, namespace)

    def library() -> None:
        raise ValueError("from the library")

    def user_code() -> None:
        namespace["relay"](library)

    try:
        user_code()
    except ValueError as e:
        return e.__traceback__
    raise AssertionError("no exception")


def _names(tb: Any) -> list[str]:
    names = []
    while tb is not None:
        names.append(tb.tb_frame.f_code.co_name)
        tb = tb.tb_next
    return names


def test_our_frames_leave_the_traceback() -> None:
    tb = _traceback_through_our_frames()
    assert _names(tb)[-3:] == ["user_code", "relay", "library"]
    pruned = remote_bootstrap.without_our_frames(tb)
    assert _names(pruned)[-2:] == ["user_code", "library"]
    assert remote_bootstrap.without_our_frames(None) is None


MARK = "\x1b]BAI;n0;"


@pytest.mark.parametrize(
    ("text", "pos", "want"),
    [
        ("plain text only", 0, -1),
        ("\x1b[31mred\x1b[0m and no marker", 0, -1),
        (f"abc{MARK}x", 0, 3),
        (f"\x1b[31mred\x1b[0m{MARK}x", 0, 12),
        (f"{MARK}a{MARK}b", 1, len(MARK) + 1),
        (f"{MARK}", len(MARK), -1),
        ("\x1b]BAI;n0", 0, -1),  # a marker prefix is not a marker
    ],
)
def test_find_marker_is_str_find(text: str, pos: int, want: int) -> None:
    assert _find_marker(text, MARK, pos) == want == text.find(MARK, pos)


def test_decoder_finds_frames_between_ansi_escapes() -> None:
    frame = encode_frame("n0", {"t": "ready"})
    text = f"\x1b[1mbold\x1b[0m{frame}after\x1b[0m"
    decoder = FrameDecoder("n0")
    parts = decoder.feed(text) + decoder.flush()
    assert parts[0] == "\x1b[1mbold\x1b[0m" and parts[2] == "after\x1b[0m"
    assert isinstance(parts[1], Frame) and parts[1].type == "ready"


class _Stream:
    """A stream that records what reaches it: ``(write, text)`` and ``(flush, None)``."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str | None]] = []

    def write(self, text: str) -> int:
        self.calls.append(("write", text))
        return len(text)

    def flush(self) -> None:
        self.calls.append(("flush", None))


PIECE = remote_bootstrap.PIECE


@pytest.mark.parametrize(
    ("writes", "want"),
    [
        # small writes wait in the buffer (the kernel's own timer sends them)
        ([10, 20], [("write", 10), ("write", 20)]),
        # the write that brings the buffer to a piece flushes it
        ([PIECE - 1, 1, 5], [("write", PIECE - 1), ("write", 1), ("flush", 0), ("write", 5)]),
        # a long write goes out in flushed pieces; the rest waits
        (
            [2 * PIECE + 3],
            [("write", PIECE), ("flush", 0), ("write", PIECE), ("flush", 0), ("write", 3)],
        ),
    ],
)
def test_remote_writes_wait_at_most_a_piece(writes: list[int], want: list[Any]) -> None:
    stream = _Stream()
    remote_bootstrap.bound_writes(stream)
    for n in writes:
        assert stream.write("y" * n) == n
    got = [(kind, len(text or "")) for kind, text in stream.calls]
    assert got == want
    assert "".join(text or "" for _, text in stream.calls) == "y" * sum(writes)


def test_remote_write_bound_is_installed_once_per_chain() -> None:
    """Again before every cell: nothing while a wrapper of ours is in the chain (seen through
    ``__wrapped__``); once more when a wrapper without it (IPython's tee) put back the original."""
    stream = _Stream()
    own = stream.write
    remote_bootstrap.bound_writes(stream)
    ours = stream.write
    remote_bootstrap.bound_writes(stream)
    assert stream.write is ours

    def foreign(text: str) -> int:
        return ours(text)

    foreign.__wrapped__ = ours  # type: ignore[attr-defined]
    stream.write = foreign  # type: ignore[method-assign]
    remote_bootstrap.bound_writes(stream)
    assert stream.write is foreign
    stream.write = own  # type: ignore[method-assign]
    remote_bootstrap.bound_writes(stream)
    assert stream.write is not own and stream.write.__wrapped__ == own  # type: ignore[attr-defined]
