"""Help and usage errors: every bad line is a one-line UsageError, help never raises."""

from __future__ import annotations

from typing import Any

import pytest
from IPython.core.error import UsageError

from backendai_jupyter.magics import help_transformer
from backendai_jupyter.magics.grammar import build_parser

from .conftest import IMAGE

BAD_LINES = [
    ("", None),  # no command → help, not an error (checked separately)
    ("bogus", "invalid choice: 'bogus'"),
    ("ps --bogus", "%backendai ps: unrecognized arguments: --bogus"),
    ("vfolder ls f --bogus", "%backendai vfolder ls: unrecognized arguments: --bogus"),
    ("run", "nothing to run: give -c CODE"),
    ("run python", "nothing to run"),
    ("run -r cpu=x python -c 1", "invalid resource 'cpu=x'"),
    ("run -r mem python -c 1", "expected KEY=VALUE"),
    ("run -r cpu=1 -r cpu=2 python -c 1", "given more than once"),
    ("run -e 1X=2 python -c 1", "not a valid name"),
    ("run -e NOEQUALS python -c 1", "expected NAME=VALUE"),
    ("run -m bad/name python -c 1", "invalid mount"),
    ("run -m f: python -c 1", "mount path after the folder name is empty"),
    ("run --env-range X=foo:1 -e A=$X python -c 1", "expected case:"),
    ("run --env-range X=range:1,2,0 -e A=$X python -c 1", "the step must not be zero"),
    ("run --env-range X=linspace:1,2 -e A=$X python -c 1", "linspace: takes START,STOP,NUM"),
    ("run --env-range X=case:1 python -c 1", "$X is not used"),
    ("run --env-range X=case:1 --env-range X=case:2 -e A=$X python -c 1", "defined more than once"),
    ("run --exec-range X=case:1 python -c 1", "--exec-range needs --exec"),
    ("run --exec 'echo $X' --exec-range X=range:0,2000 python", "more than 1000"),
    ("run --exec 'echo' -c 1 python", "cannot be combined"),
    ("run --type batch python -c 1", "--type batch needs --exec"),
    ("run --type bogus python -c 1", "invalid choice: 'bogus'"),
    ("run --max-parallel 0 --exec 'echo $X' --exec-range X=case:1 python", "--max-parallel must be at least 1"),
    ("run --max-parallel x python -c 1", "invalid int value: 'x'"),
    ("run --max-wait -1 python -c 1", "--max-wait must be >= 0"),
    ("run --cluster-size 0 python -c 1", "--cluster-size must be at least 1"),
    ("run python missing-file.py", "no such local file: missing-file.py"),
    ("run -c 'unbalanced python", "cannot split the line"),
    ("start --type batch python", "--type batch needs --startup-command"),
    ("ps --running --dead", "not allowed with argument"),
    ("ps --id-only --detail", "not allowed with argument"),
    ("ps -f 'a b'", "-f expects comma-separated field names"),
    ("ps -f ,", "-f expects comma-separated field names"),
    ("rm", "the following arguments are required: SESSION"),
    ("events", "the following arguments are required: session"),
    ("events s --max-events x", "invalid int value"),
    ("logs", "the following arguments are required: session"),
    ("upload s", "the following arguments are required: FILE"),
    ("download s", "the following arguments are required: FILE"),
    ("vfolder", "the following arguments are required: COMMAND"),
    ("vfolder bogus", "invalid choice: 'bogus'"),
    ("vfolder create", "the following arguments are required: name"),
    ("vfolder create f --permission xx", "invalid choice: 'xx'"),
    ("vfolder rename f", "the following arguments are required: new_name"),
    ("vfolder upload f", "the following arguments are required: PATH"),
    ("vfolder mv f a", "the following arguments are required: dst"),
    ("vfolder invite f a@b -p xx", "invalid choice: 'xx'"),
    ("sesstpl", "the following arguments are required: COMMAND"),
    ("sesstpl create", "no template"),
    ("sesstpl create -f /nonexistent/t.yaml", "cannot read /nonexistent/t.yaml"),
    ("sesstpl get", "the following arguments are required: template_id"),
    ("sesstpl get x --format xml", "invalid choice: 'xml'"),
    ("start-template", "the following arguments are required: template_id"),
    ("dotfile create .x", "no content"),
    ("dotfile create .x --data a -p 999", "--permission must be 3 octal digits"),
    ("dotfile bogus", "invalid choice: 'bogus'"),
    ("app", "SESSION and SERVICE are required"),
    ("app s svc -b notaport", "invalid --bind 'notaport'"),
    ("app s svc -b 70000", "invalid --bind '70000'"),
    ("app --stop 1234", "no proxy on port 1234"),
    ("app --list --stop all", "not allowed with argument"),
    ("config bogus", "invalid choice: 'bogus'"),
    ("config set foo=1", "unknown key 'foo'"),
    ("config set endpoint", "expected KEY=VALUE"),
    ("config set endpoint=ftp://x", "malformed endpoint URL"),
    ("config set endpoint_type=bogus", "must be 'api' or 'session'"),
    ("logout", "not in session mode"),
]


@pytest.mark.parametrize(("line", "expected"), [b for b in BAD_LINES if b[1]])
def test_bad_line_is_one_line_usage_error(bai: Any, line: str, expected: str) -> None:
    with pytest.raises(UsageError) as info:
        bai(line)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith("%backendai")
    assert expected in message


def test_cell_and_code_together_is_usage_error(bai: Any) -> None:
    with pytest.raises(UsageError, match="either with -c or as the cell body"):
        bai(f"run -c 1 {IMAGE}", cell="print(2)")


def test_sesstpl_payload_twice_is_usage_error(bai: Any, tmp_path: Any) -> None:
    path = tmp_path / "t.yaml"
    path.write_text("x: 1\n")
    with pytest.raises(UsageError, match="give the template once"):
        bai(f"sesstpl create -f {path}", cell="x: 2\n")


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("", "usage: %backendai [-h] COMMAND"),
        ("--help", "usage: %backendai [-h] COMMAND"),
        ("help", "usage: %backendai [-h] COMMAND"),
        ("help run", "usage: %backendai run"),
        ("run --help", "--env-range VAR=EXPR"),
        ("run?", "usage: %backendai run"),
        ("vfolder ls --help", "usage: %backendai vfolder ls"),
        ("vfolder?", "usage: %backendai vfolder"),
        ("sesstpl create -h", "usage: %backendai sesstpl create"),
        ("config set --help", "KEY=VALUE"),
    ],
)
def test_help(bai: Any, capsys: pytest.CaptureFixture[str], line: str, expected: str) -> None:
    assert bai(line) is None
    assert expected in capsys.readouterr().out


@pytest.mark.parametrize(
    ("cell", "expected"),
    [
        ("%backendai run?", "usage: %backendai run"),
        ("%backendai vfolder ls?", "usage: %backendai vfolder ls"),
        ("%backendai run??", "usage: %backendai run"),
        ("%%backendai run?\nprint(1)\n", "usage: %backendai run"),
        ("%backendai?", "usage: %backendai [-h] COMMAND"),
    ],
)
def test_question_mark_help(ip: Any, capsys: pytest.CaptureFixture[str], cell: str,
                            expected: str) -> None:
    result = ip.run_cell(cell)
    assert result.success, result.error_in_exec
    assert expected in capsys.readouterr().out


def test_help_transformer_leaves_code_alone() -> None:
    lines = ["%backendai run -c 'x?'\n", "x = 1?\n", "%%backendai run?\n", "%backendai ps?\n"]
    assert help_transformer(lines) == [
        "%backendai run -c 'x?'\n", "x = 1?\n", "%%backendai run?\n", "%backendai ps --help\n"
    ]


def test_every_command_has_help() -> None:
    text = build_parser().format_help()
    for cmd in ("run", "start", "ps", "rm", "events", "logs", "upload", "download", "vfolder",
                "sesstpl", "start-template", "dotfile", "app", "config", "login", "logout"):
        assert cmd in text


def test_load_ext_is_idempotent(ip: Any) -> None:
    before = ip.magics_manager.registry["BackendAIMagics"]
    ip.run_line_magic("load_ext", "backendai_jupyter")
    ip.run_line_magic("reload_ext", "backendai_jupyter")
    assert ip.magics_manager.registry["BackendAIMagics"] is before
    assert ip.input_transformers_cleanup.count(help_transformer) == 1
