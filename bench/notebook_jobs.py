"""Benchmark: notebook jobs (issue #13 item 7), against a reference measured in the same run.

A ``--cases`` (12) case sweep of a 3-cell notebook whose cells each sleep ``--sleep`` (2) s,
run by ``backendai-jupyter run --param-range ... --max-parallel 4`` (a subprocess, as a user
runs it) on a private local endpoint (``python -m backendai_jupyter serve``).

(a) wall time of the sweep vs the same cases run one after another with papermill
    (``papermill.execute_notebook``) on a local ipykernel — target ratio <= 0.4;
(b) submit → first cell running, per case: from the moment a case takes its slot (the
    summary's ``submitted_at``; its kernel and session are requested then) to the first cell's
    first statement (``time.time()`` in the session; same machine, same clock); the median —
    target <= 1.5 s.

    .venv/bin/python bench/notebook_jobs.py [--cases 12] [--max-parallel 4] [--sleep 2]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import nbformat

#: Each case asks for half a core: the cells only sleep, and the local endpoint schedules by
#: the machine's cores (on a 2-core machine, cpu=1 would fit two sessions, not four).
CPU = "0.5"


def notebook(path: Path, sleep: float) -> None:
    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell("case = 0")
    params.metadata["tags"] = ["parameters"]
    nb.cells = [
        params,
        nbformat.v4.new_code_cell(f"import time\nfirst_cell_at = time.time()\ntime.sleep({sleep})"),
        nbformat.v4.new_code_cell(f"time.sleep({sleep})"),
        nbformat.v4.new_code_cell(
            f"time.sleep({sleep})\n"
            "if 'record' in globals():  # injected by backendai-jupyter run\n"
            "    record('first_cell_at', first_cell_at)"
        ),
    ]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    nbformat.write(nb, path)


def start_server(data: Path) -> tuple[subprocess.Popen[bytes], dict[str, str]]:
    from backendai_jupyter.server.local import ensure_local_endpoint
    from backendai_jupyter.server.manager.state import load_or_create_keypair

    load_or_create_keypair(data)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BACKEND_", "SORNA_"))}
    with open(data / "server.log", "ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "backendai_jupyter", "serve", "--port", "0",
             "--data-dir", str(data)], stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            url = json.loads((data / "endpoint.json").read_text())["url"]
            with urllib.request.urlopen(url + "/", timeout=2):  # noqa: S310 - loopback
                return proc, ensure_local_endpoint(data)
        except (OSError, ValueError, KeyError):
            time.sleep(0.1)
    proc.kill()
    raise SystemExit("the local endpoint did not start")


def sweep(nb: Path, out: Path, env: dict[str, str], cases: int, parallel: int) -> float:
    run_env = {k: v for k, v in os.environ.items() if not k.startswith(("BACKEND_", "SORNA_"))}
    run_env.update(env)
    t0 = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "backendai_jupyter", "run", str(nb), "--param-range",
         f"case=range:{cases}", "--max-parallel", str(parallel), "-r", f"cpu={CPU}",
         "-o", str(out), "-q"],
        env=run_env, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - t0
    if done.returncode != 0:
        raise SystemExit(f"the sweep failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    return wall


def papermill_one_by_one(nb: Path, out: Path, cases: int) -> float:
    import papermill

    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    for i in range(cases):
        papermill.execute_notebook(str(nb), str(out / f"{i}.ipynb"), parameters={"case": i},
                                   kernel_name="python3", progress_bar=False)
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cases", type=int, default=12)
    parser.add_argument("--max-parallel", type=int, default=4)
    parser.add_argument("--sleep", type=float, default=2.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-nbjobs-") as tmp:
        root = Path(tmp)
        nb = root / "sleepy.ipynb"
        notebook(nb, args.sleep)
        (root / "local").mkdir()
        server, env = start_server(root / "local")
        try:
            wall = sweep(nb, root / "runs", env, args.cases, args.max_parallel)
        finally:
            server.send_signal(signal.SIGTERM)
            server.wait(30)
        summary = json.loads((root / "runs" / "summary.json").read_text())["cases"]
        starts = [c["records"]["first_cell_at"] - c["submitted_at"] for c in summary]
        reference = papermill_one_by_one(nb, root / "papermill", args.cases)
    work = args.cases * 3 * args.sleep
    ideal = work / args.max_parallel
    print(f"{args.cases} cases x 3 cells x {args.sleep:g} s, --max-parallel {args.max_parallel}, "
          f"-r cpu={CPU} (sleep alone: {work:.0f} s serial, {ideal:.0f} s at "
          f"{args.max_parallel} wide); load average {os.getloadavg()[0]:.1f} on "
          f"{os.cpu_count()} cores")
    print(f"(a) sweep wall time        {wall:7.1f} s   backendai-jupyter run, local endpoint")
    print(f"    reference              {reference:7.1f} s   papermill, one after another, "
          "local ipykernel")
    print(f"    ratio                  {wall / reference:7.2f}     (target <= 0.4)")
    print(f"(b) submit -> first cell   median {statistics.median(starts):.2f} s, "
          f"min {min(starts):.2f} s, max {max(starts):.2f} s   (target median <= 1.5 s)")


if __name__ == "__main__":
    main()
