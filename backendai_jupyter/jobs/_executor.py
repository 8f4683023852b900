"""The in-session notebook executor of detached jobs (uploaded with the job; run by the batch
session's startup command as ``python3 _executor.py CASE_DIR``).

Self-contained on purpose: it needs only the standard library and ``jupyter_client`` with
``ipykernel``, which any Backend.AI Python image with a kernel runner has, so nothing is
installed in the image (nbformat, nbclient and papermill are not needed there: the notebook
arrives already parameterized). It reads ``CASE_DIR/input.ipynb``, runs its code cells in order
on a local ipykernel (cwd: the session's work directory), stops at the first failing cell as
papermill does, and writes next to the input:

* ``output.ipynb`` — the executed notebook, rewritten after every cell;
* ``status.json`` — ``{"state": "running", "cell": k, "cells": n, "started": t}`` while it runs;
* ``result.json`` — ``{"status": "ok"|"failed"|"error"|"cancelled", "started", "finished",
  "duration", "records", "error"}`` at the end.

Exit status 0 when every cell ran, else 1 (the batch session's result is then FAILURE).
"""

from __future__ import annotations

import json
import os
import queue
import signal
import sys
import time
from collections.abc import Callable
from typing import Any

RECORD_MIME = "application/vnd.backendai.record+json"  # = backendai_jupyter.jobs.RECORD_MIME
_POLL = 1.0  # seconds between kernel liveness checks while a cell runs


class Cancelled(Exception):
    pass


class CellOutputs:
    """Jupyter iopub messages of one cell → nbformat v4 outputs (streams merged, displays
    updated by id, clear_output honoured)."""

    def __init__(self, displays: dict[str, list[dict[str, Any]]]) -> None:
        self.outputs: list[dict[str, Any]] = []
        self.execution_count: int | None = None
        self._displays = displays  # display_id → outputs showing it (across cells)
        self._clear_pending = False

    def _add(self, out: dict[str, Any]) -> None:
        if self._clear_pending:
            self.outputs.clear()
            self._clear_pending = False
        self.outputs.append(out)

    def feed(self, msg: dict[str, Any]) -> None:
        kind = msg["msg_type"]
        content = msg["content"]
        if kind == "execute_input":
            self.execution_count = content.get("execution_count")
        elif kind == "stream":
            last = self.outputs[-1] if self.outputs and not self._clear_pending else None
            if last and last["output_type"] == "stream" and last["name"] == content["name"]:
                last["text"] += content["text"]
            else:
                self._add({"output_type": "stream", "name": content["name"],
                           "text": content["text"]})
        elif kind in ("display_data", "execute_result"):
            out: dict[str, Any] = {"output_type": kind, "data": content.get("data", {}),
                                   "metadata": content.get("metadata", {})}
            if kind == "execute_result":
                out["execution_count"] = content.get("execution_count")
            self._add(out)
            display_id = (content.get("transient") or {}).get("display_id")
            if display_id:
                self._displays.setdefault(display_id, []).append(out)
        elif kind == "update_display_data":
            display_id = (content.get("transient") or {}).get("display_id")
            for out in self._displays.get(display_id or "", []):
                out["data"] = content.get("data", {})
                out["metadata"] = content.get("metadata", {})
        elif kind == "error":
            self._add({"output_type": "error", "ename": content.get("ename", ""),
                       "evalue": content.get("evalue", ""),
                       "traceback": content.get("traceback", [])})
        elif kind == "clear_output":
            if content.get("wait"):
                self._clear_pending = True
            else:
                self.outputs.clear()


def _write_json(path: str, data: Any) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(data, f, indent=1)
    os.replace(tmp, path)


def read_records(cells: list[dict[str, Any]]) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for cell in cells:
        for out in cell.get("outputs", []):
            item = (out.get("data") or {}).get(RECORD_MIME)
            if isinstance(item, dict) and isinstance(item.get("name"), str):
                found[item["name"]] = item.get("value")
    return found


def run_cell(kc: Any, km: Any, source: str, sink: CellOutputs, timeout: float | None) -> str:
    """Execute one cell; return the reply status (``ok``/``error``/``aborted``)."""
    msg_id = kc.execute(source, store_history=True, allow_stdin=False, stop_on_error=True)
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        if deadline is not None and time.monotonic() > deadline:
            km.interrupt_kernel()
            raise TimeoutError(f"the cell ran longer than {timeout:g} s")
        try:
            msg = kc.get_iopub_msg(timeout=_POLL)
        except queue.Empty:
            if not km.is_alive():
                raise RuntimeError("the kernel died") from None
            continue
        if msg.get("parent_header", {}).get("msg_id") != msg_id:
            continue
        if msg["msg_type"] == "status" and msg["content"].get("execution_state") == "idle":
            break
        sink.feed(msg)
    while True:
        reply = kc.get_shell_msg(timeout=60)
        if reply.get("parent_header", {}).get("msg_id") == msg_id:
            content = reply["content"]
            if sink.execution_count is None:
                sink.execution_count = content.get("execution_count")
            return str(content.get("status", "error"))


def start_kernel(cwd: str, sockets: str) -> tuple[Any, Any]:
    """A local ipykernel over IPC sockets: TCP ports picked here could be taken by another
    session's kernel before ours binds them (then it dies without a word)."""
    from jupyter_client.manager import KernelManager

    km = KernelManager(kernel_name="python3", transport="ipc", ip=os.path.join(sockets, "k"))
    km.start_kernel(cwd=cwd)
    kc = km.client()
    kc.start_channels()
    deadline = time.monotonic() + 120
    while True:
        try:
            kc.wait_for_ready(timeout=5)
            return km, kc
        except RuntimeError:
            if not km.is_alive():
                raise RuntimeError("the kernel died while starting") from None
            if time.monotonic() > deadline:
                raise


def _read_case(case_dir: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The case's notebook and its options (``{}`` when it has no ``options.json``)."""
    with open(os.path.join(case_dir, "input.ipynb")) as f:
        nb = json.load(f)
    try:
        with open(os.path.join(case_dir, "options.json")) as f:
            options = json.load(f)
    except FileNotFoundError:
        options = {}
    return nb, options


def _run_cells(
    kc: Any,
    km: Any,
    nb: dict[str, Any],
    code: list[dict[str, Any]],
    options: dict[str, Any],
    out_path: str,
    progress: Callable[[int], None],
) -> str | None:
    """Run the code cells in order, saving the notebook after each; stop at the first one that
    fails and return its one-line error (``None`` when every cell ran)."""
    displays: dict[str, list[dict[str, Any]]] = {}
    for k, cell in enumerate(code):
        progress(k + 1)
        sink = CellOutputs(displays)
        source = cell["source"]
        try:
            status = run_cell(kc, km, "".join(source) if isinstance(source, list) else source,
                              sink, options.get("cell_timeout"))
        finally:
            cell["outputs"], cell["execution_count"] = sink.outputs, sink.execution_count
            _write_json(out_path, nb)
        if status != "ok":
            err = next((o for o in sink.outputs if o["output_type"] == "error"), None)
            index = nb["cells"].index(cell)
            what = f"{err['ename']}: {err['evalue']}" if err else status
            return f"cell {index}: {what}"
    return None


def _stop_kernel(km: Any, kc: Any, sockets: str) -> None:
    """Close the channels, kill the kernel (if it started) and remove its socket directory."""
    if kc is not None:
        kc.stop_channels()
    if km is not None:
        try:
            km.shutdown_kernel(now=True)
        except Exception:  # already gone
            pass
    import shutil

    shutil.rmtree(sockets, ignore_errors=True)


def execute(case_dir: str, *, now: Callable[[], float] = time.time) -> int:
    import tempfile

    nb, options = _read_case(case_dir)
    out_path = os.path.join(case_dir, "output.ipynb")
    code = [c for c in nb["cells"] if c.get("cell_type") == "code"]
    for cell in code:
        cell["outputs"], cell["execution_count"] = [], None
    started = now()
    result: dict[str, Any] = {"status": "error", "started": started, "error": None}

    def progress(k: int) -> None:
        _write_json(os.path.join(case_dir, "status.json"),
                    {"state": "running", "cell": k, "cells": len(code), "started": started,
                     "updated": now()})

    def on_term(signum: int, frame: Any) -> None:
        raise Cancelled()

    signal.signal(signal.SIGTERM, on_term)
    km = kc = None
    sockets = tempfile.mkdtemp(prefix="bjob-")
    try:
        progress(0)
        km, kc = start_kernel(os.environ.get("HOME") or os.getcwd(), sockets)
        error = _run_cells(kc, km, nb, code, options, out_path, progress)
        if error is not None:
            result["error"] = error
        result["status"] = "ok" if error is None else "failed"
    except Cancelled:
        result.update(status="cancelled", error="cancelled")
    except Exception as e:  # kernel start failure, dead kernel, timeout: the case's error
        result["error"] = f"{type(e).__name__}: {e}"
    finally:
        _write_json(out_path, nb)
        _stop_kernel(km, kc, sockets)
        finished = now()
        result.update(finished=finished, duration=finished - started,
                      records=read_records(nb["cells"]))
        _write_json(os.path.join(case_dir, "result.json"), result)
        _write_json(os.path.join(case_dir, "status.json"),
                    {"state": "done", "cell": len(code), "cells": len(code), "started": started,
                     "updated": finished})
    return 0 if result["status"] == "ok" else 1

if __name__ == "__main__":
    if len(sys.argv) != 2:
        print("usage: python3 _executor.py CASE_DIR", file=sys.stderr)
        sys.exit(2)
    sys.exit(execute(sys.argv[1]))
