"""Benchmark: execute latency and time to first output, our client vs the official 26.9.6 client.

Runs against the real cluster (``cluster.sh up``; reads ``/tmp/backendai-cluster/user.env`` or
``$BAI_CLUSTER_ENV``). One session is created with our client; both clients then run, in the same
process tree and against the same session:

* a trivial execute (``pass``, query → finished), ``--repeat`` times — median seconds, with
  ``--gap`` seconds of (untimed) think time between runs, as between notebook cells, for both
  clients alike;
* ``print('first', flush=True); time.sleep(3)`` — seconds until the first output arrives.

The official client runs in its own Python 3.13 venv (``$BAI_CLIENT_VENV``) through
``bench/_official_probe.py``. Ratios are ours / official (lower is better).

    .venv/bin/python bench/client_execute.py [--repeat 30] [--gap 0.3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import time
from pathlib import Path

from backendai_jupyter.client import Client, ClientConfig, Output
from backendai_jupyter.client.execution import Transport

SLEEPY = "import time\nprint('first', flush=True)\ntime.sleep(3)\nprint('second')"
HERE = Path(__file__).resolve().parent


def read_env(path: Path) -> dict[str, str]:
    pairs = (line.partition("=") for line in path.read_text().splitlines())
    return {k.strip(): v.strip() for k, sep, v in pairs if sep}


async def one_run(
    client: Client, session: str, code: str, transport: Transport
) -> tuple[float, float | None]:
    start = time.perf_counter()
    first = None
    async for ev in client.sessions.execute(session, code, transport=transport):
        if first is None and isinstance(ev, Output) and ev.item.kind == "stdout":
            first = time.perf_counter() - start
    return time.perf_counter() - start, first


def official(env: dict[str, str], session: str, repeat: int, gap: float) -> dict[str, list[float]]:
    python = Path(env["BAI_CLIENT_VENV"]) / "bin" / "python"
    proc = subprocess.run(
        [str(python), str(HERE / "_official_probe.py"), session, str(repeat), str(gap)],
        env={**os.environ, **env},
        cwd="/tmp",  # the official client reads a .env file from its working directory
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
    )
    return json.loads(proc.stdout.strip().splitlines()[-1])


async def main(repeat: int, gap: float) -> None:
    env = read_env(Path(os.environ.get("BAI_CLUSTER_ENV", "/tmp/backendai-cluster/user.env")))
    async with Client(ClientConfig.from_env(env)) as client:
        info = await client.sessions.create(env["BAI_IMAGE"], resources={"cpu": "1"})
        try:
            for _ in range(3):  # warm the session's ipykernel
                await one_run(client, info.id, "pass", "websocket")
            ours: dict[str, list[float]] = {
                k: [] for k in ("ws_pass", "rest_pass", "ws_ttfo", "rest_ttfo")
            }
            # Blocks per transport: a websocket run pre-opens the next connection in the
            # background, which must not overlap the REST measurements.
            for _ in range(repeat):
                await asyncio.sleep(gap)
                ours["ws_pass"].append((await one_run(client, info.id, "pass", "websocket"))[0])
            for _ in range(2):
                first = (await one_run(client, info.id, SLEEPY, "websocket"))[1]
                ours["ws_ttfo"].append(first or float("nan"))
            await client.sessions.warm_sockets.discard(info.id)
            for _ in range(repeat):
                await asyncio.sleep(gap)
                ours["rest_pass"].append((await one_run(client, info.id, "pass", "rest"))[0])
            for _ in range(2):
                first = (await one_run(client, info.id, SLEEPY, "rest"))[1]
                ours["rest_ttfo"].append(first or float("nan"))
            theirs = official(env, info.id, repeat, gap)
        finally:
            await client.sessions.destroy(info.id)

    med = statistics.median
    print(
        f"server: Backend.AI {client.server_version} at {client.http.endpoint}; "
        f"{repeat} runs each, {gap} s between runs"
    )
    print(f"{'measure':44} {'ours':>9} {'official':>9} {'ratio':>7}")
    rows = [
        ("trivial execute, websocket (median s)", med(ours["ws_pass"]), med(theirs["ws_pass"])),
        ("trivial execute, REST (median s)", med(ours["rest_pass"]), med(theirs["rest_pass"])),
        (
            "trivial execute, ours(auto=ws) vs official REST",
            med(ours["ws_pass"]),
            med(theirs["rest_pass"]),
        ),
        (
            "first output of print;sleep(3), websocket (s)",
            med(ours["ws_ttfo"]),
            med(theirs["ws_ttfo"]),
        ),
        (
            "first output of print;sleep(3), REST (s)",
            med(ours["rest_ttfo"]),
            med(theirs["rest_ttfo"]),
        ),
        (
            "first output, ours(auto=ws) vs official REST",
            med(ours["ws_ttfo"]),
            med(theirs["rest_ttfo"]),
        ),
    ]
    for name, a, b in rows:
        print(f"{name:44} {a:9.3f} {b:9.3f} {a / b:6.2f}x")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument("--gap", type=float, default=0.3, help="think time between runs (s)")
    args = parser.parse_args()
    asyncio.run(main(args.repeat, args.gap))
