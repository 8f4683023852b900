"""``%backendai run``: results, live output, sessions, batch mode, sweeps and interrupts."""

from __future__ import annotations

import asyncio
import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from backendai_jupyter.client.parsing import expand_ranges
from backendai_jupyter.magics import BackendAIMagics, RunFailed, RunResult, SweepResult
from backendai_jupyter.magics.runs import RunSpec, run_sweep
from backendai_jupyter.workspace import loop as _loop

from .conftest import IMAGE, live_sessions


def test_run_code_returns_result_and_streams(bai: Any, capsys: pytest.CaptureFixture[str]) -> None:
    res = bai(f"run --rm -c 'print(6*7)' {IMAGE}")
    assert isinstance(res, RunResult)
    assert res.exit_code == 0 and res.ok
    assert res.stdout == "42\n" and res.stderr == ""
    assert res.session_id and res.duration > 0
    assert res.outputs == (("stream", {"name": "stdout", "text": "42\n"}),)
    out = capsys.readouterr()
    assert "42\n" in out.out
    assert "Execution finished (exit code 0)" in out.err
    assert "RunResult(" in repr(res) and "<table>" in res._repr_html_()


def test_cell_body_and_failure_without_raise(bai: Any, capsys: pytest.CaptureFixture[str]) -> None:
    res = bai(f"run --rm {IMAGE}", cell="import sys\nprint('e', file=sys.stderr)\n1/0\n")
    assert res.exit_code == 1
    assert res.stderr == "e\n"
    # The rich channel reports the exception as a structured error, shown like a local one.
    assert res.error is not None and res.error["ename"] == "ZeroDivisionError"
    assert res.outputs[-1][0] == "error"
    err = capsys.readouterr().err
    assert "ZeroDivisionError" in err
    # the status line starts on its own line even though the traceback did not end one
    assert "\n✗ Execution finished (exit code 1)." in err


def test_raise_flag(bai: Any) -> None:
    with pytest.raises(RunFailed) as info:
        bai(f"run --rm --raise -q -c '1/0' {IMAGE}")
    assert info.value.ename == "ZeroDivisionError"
    assert info.value.result.exit_code == 1
    assert "ZeroDivisionError: division by zero" in info.value._render_traceback_()[0]


def test_code_is_not_var_expanded(ip: Any, bai: Any) -> None:
    ip.user_ns["x"] = "LOCAL"
    res = bai(f"run --rm -q -c 'x=\"REMOTE\"; print(f\"{{x}}\", \"$x\")' {IMAGE}")
    assert res.stdout == "REMOTE $x\n"


def test_rich_output_is_displayed(bai: Any) -> None:
    code = "from IPython.display import HTML, display; display(HTML('<b>hi</b>'))"
    res = bai(f"run --rm -q {IMAGE}", cell=code)
    kinds = [m[0] for m in res.outputs]
    assert "display_data" in kinds or "stream" in kinds


def test_named_session_is_reused_then_removed(
    bai: Any, magics: BackendAIMagics, capsys: pytest.CaptureFixture[str]
) -> None:
    first = bai(f"run -t reuse-me -e GREETING=hello -r cpu=1 -r mem=256m -c 'a = 1' {IMAGE}")
    second = bai(f"run -t reuse-me -c 'import os; print(a + 1, os.environ[\"GREETING\"])' {IMAGE}")
    assert first.session_id == second.session_id
    assert second.stdout == "2 hello\n"
    assert "is reused" in capsys.readouterr().err
    assert "reuse-me" in live_sessions(magics)
    bai("rm reuse-me")
    assert "reuse-me" not in live_sessions(magics)


def test_files_upload_and_batch_mode(bai: Any, workdir: Path) -> None:
    (workdir / "main.py").write_text("print('from main')\n")
    (workdir / "other.py").write_text("import sys; print('other', sys.argv[1]); sys.exit(3)\n")
    res = bai(f"run --rm -q {IMAGE} main.py other.py")
    assert res.exit_code == 0 and "from main" in res.stdout
    res = bai(f"run --rm -q --exec 'python other.py arg' {IMAGE} other.py")
    assert res.exit_code == 3 and "other arg" in res.stdout
    res = bai(f"run --rm -q --build 'exit 2' {IMAGE} main.py")
    assert res.exit_code != 0


def test_exec_without_files(bai: Any) -> None:
    res = bai(f"run --rm -q --exec 'echo hi; echo oops >&2' {IMAGE}")
    assert res.exit_code == 0 and res.stdout == "hi\n" and "oops" in res.stderr


def test_batch_session_type(bai: Any) -> None:
    res = bai(f"run -q --type batch --exec 'echo batch-out; exit 3' {IMAGE}")
    assert res.exit_code == 1  # FAILURE: the exact code is not in the session listing
    assert res.session_id


def test_mount_with_path(bai: Any) -> None:
    bai("vfolder create mnt-data")
    try:
        res = bai(f"run --rm -q -m mnt-data:data -c "
                  f"'open(\"data/x.txt\", \"w\").write(\"kept\")' {IMAGE}")
        assert res.exit_code == 0, res.stderr
        table = bai("vfolder ls mnt-data")
        assert "x.txt" in table.column("name")
    finally:
        bai("vfolder delete mnt-data --forever")


def test_domain_group_and_enqueue_only(bai: Any, magics: BackendAIMagics) -> None:
    res = bai(f"run -q --enqueue-only -d default -g default -t queued {IMAGE}")
    assert res.exit_code is None and res.session_id
    bai("rm queued")


def test_max_wait(bai: Any) -> None:
    res = bai(f"run --rm -q --max-wait 30 -c 'print(1)' {IMAGE}")
    assert res.exit_code == 0


def test_input_is_answered_from_the_notebook(
    bai: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("builtins.input", lambda prompt="": "Ada")
    res = bai(f"run --rm -q {IMAGE}", cell="name = input('name? ')\nprint('hi', name)\n")
    assert res.stdout.endswith("hi Ada\n")


# -- sweeps ----------------------------------------------------------------------------------


def test_env_range_sweep(bai: Any, magics: BackendAIMagics) -> None:
    res = bai(f"run -e X=$A -e Y=fixed --env-range A=case:1,2,3 --max-parallel 2 {IMAGE}",
              cell="import os\nprint(os.environ['X'], os.environ['Y'])\n")
    assert isinstance(res, SweepResult) and res.ok and len(res) == 3
    assert [c.stdout for c in res.cases] == ["1 fixed\n", "2 fixed\n", "3 fixed\n"]
    assert [c.env_vars for c in res.cases] == [{"A": "1"}, {"A": "2"}, {"A": "3"}]
    table = res.table
    assert table.columns[:2] == ("case", "A")
    assert table.column("exit code") == [0, 0, 0]
    assert all(table.column("session id"))
    assert "3/3 cases succeeded" in repr(res) and "<table>" in res._repr_html_()
    assert live_sessions(magics) == []  # a sweep destroys its sessions


def test_exec_range_sweep_combinations(bai: Any) -> None:
    res = bai(f"run -q -e E=$P --env-range P=case:a,b --exec 'echo $E $N' "
              f"--exec-range N=range:1,3 --max-parallel 3 {IMAGE}")
    assert len(res) == 4 and res.ok
    assert sorted(c.stdout for c in res.cases) == ["a 1\n", "a 2\n", "b 1\n", "b 2\n"]


def test_linspace_sweep_keeps_failures_apart(bai: Any) -> None:
    res = bai(f"run -q --exec 'python -c \"import sys; sys.exit(int(float(\\\"$V\\\")))\"' "
              f"--exec-range V=linspace:0,2,3 {IMAGE}")
    assert [c.exec_vars["V"] for c in res.cases] == ["0.0", "1.0", "2.0"]
    assert [c.exit_code for c in res.cases] == [0, 1, 2]
    assert not res.ok and len(res.failed) == 2


def test_sweep_cancellation_destroys_everything(magics: BackendAIMagics) -> None:
    spec = RunSpec(image=IMAGE, code="import time; time.sleep(30)", quiet=True)
    cases = expand_ranges(["X=range:0,5"], [], env_templates={"V": "$X"})
    client = magics.client
    started: list[int] = []

    async def go() -> None:
        task = asyncio.create_task(run_sweep(client, spec, cases, lambda n: started.append(1), 2))
        while len(started) < 2:
            await asyncio.sleep(0.05)
        await asyncio.sleep(2.5)  # sessions created, code running
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    _loop.run(go())
    assert live_sessions(magics) == []


def test_keyboard_interrupt_during_sweep(
    bai: Any, magics: BackendAIMagics, capsys: pytest.CaptureFixture[str]
) -> None:
    def interrupt_later() -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and len(live_sessions(magics)) < 2:
            time.sleep(0.2)
        time.sleep(1.0)
        os.kill(os.getpid(), signal.SIGINT)

    timer = threading.Thread(target=interrupt_later)
    timer.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            bai(f"run -e V=$X --env-range X=range:0,6 --max-parallel 2 {IMAGE}",
                cell="import time\ntime.sleep(60)\n")
    finally:
        timer.join()
    assert live_sessions(magics) == []
    assert "Sweep interrupted" in capsys.readouterr().err
    last = magics.last_result
    assert isinstance(last, SweepResult) and last.cancelled


def test_keyboard_interrupt_during_run_with_rm(bai: Any, magics: BackendAIMagics) -> None:
    def interrupt_later() -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not live_sessions(magics):
            time.sleep(0.2)
        time.sleep(1.5)
        os.kill(os.getpid(), signal.SIGINT)

    timer = threading.Thread(target=interrupt_later)
    timer.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            bai(f"run --rm -q -c 'import time; time.sleep(60)' {IMAGE}")
    finally:
        timer.join()
    assert live_sessions(magics) == []


def test_run_without_image_uses_the_default(bai: Any, capsys: pytest.CaptureFixture[str]) -> None:
    # The issue's own example: no image named.
    res = bai('run --rm -r cpu=1 -c "print(1)"')
    assert isinstance(res, RunResult) and res.stdout == "1\n" and res.exit_code == 0
