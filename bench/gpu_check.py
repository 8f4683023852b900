"""GPU check (issue 11 item 9): run the local endpoint and show, from inside sessions, that a
``cuda.device=1`` and a ``cuda.shares=0.5`` session see the GPU they were given, and that an
over-request is refused.

Inside each session it asks the CUDA driver (``libcuda`` through ctypes: ``cuInit``,
``cuDeviceGetCount``, ``cuDeviceGetName``, ``cuDeviceGetUuid``) and ``nvidia-smi -L``; outside,
``nvidia-smi`` says which physical GPU has which UUID, so the two can be compared. Without a GPU
(no ``nvidia-smi``, or it lists none) it says so and exits 0. Exit 1 when a check fails.

    .venv/bin/python bench/gpu_check.py [--sandbox auto|bwrap|none]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from backendai_jupyter.client import (
    BackendAIError,
    Client,
    ClientConfig,
    Finished,
    Output,
    parse_endpoints,
)

IMAGE = "cr.backend.ai/stable/python:3.13-ubuntu24.04"

# Runs inside a session: what this process can see of the GPUs.
PROBE = r'''
import ctypes, json, os, shutil, subprocess
out = {"CUDA_VISIBLE_DEVICES": os.environ.get("CUDA_VISIBLE_DEVICES"), "cuda": None,
       "nvidia_smi": None}
try:
    cuda = ctypes.CDLL("libcuda.so.1")
    rc = cuda.cuInit(0)
    n = ctypes.c_int(0)
    rc = rc or cuda.cuDeviceGetCount(ctypes.byref(n))
    devices = []
    for i in range(n.value if rc == 0 else 0):
        dev = ctypes.c_int(0)
        cuda.cuDeviceGet(ctypes.byref(dev), i)
        name = ctypes.create_string_buffer(256)
        cuda.cuDeviceGetName(name, 256, dev)
        uuid = (ctypes.c_ubyte * 16)()
        cuda.cuDeviceGetUuid(uuid, dev)
        h = bytes(uuid).hex()
        devices.append({"name": name.value.decode(),
                        "uuid": f"GPU-{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"})
    out["cuda"] = {"rc": rc, "count": n.value, "devices": devices}
except OSError as e:
    out["cuda"] = {"error": str(e)}
if shutil.which("nvidia-smi"):
    r = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True)
    out["nvidia_smi"] = (r.stdout + r.stderr).strip()
print(json.dumps(out))
'''


def host_gpus() -> list[dict[str, str]]:
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return []
    try:
        text = subprocess.run([exe, "--query-gpu=index,uuid,name", "--format=csv,noheader"],
                              capture_output=True, text=True, timeout=30, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    rows = [[c.strip() for c in line.split(",")] for line in text.splitlines() if line.strip()]
    return [{"index": r[0], "uuid": r[1], "name": r[2]} for r in rows if len(r) >= 3]


async def probe(client: Client, resources: dict[str, str]) -> dict[str, Any]:
    info = await client.sessions.create(IMAGE, resources={"cpu": "1", "mem": "1g", **resources})
    try:
        text = ""
        async for ev in client.sessions.execute(info.id, PROBE):
            if isinstance(ev, Output):
                text += ev.item.data
            elif isinstance(ev, Finished) and ev.exit_code != 0:
                raise RuntimeError(f"the probe failed: {text}")
        result: dict[str, Any] = json.loads(text.strip().splitlines()[-1])
        return result
    finally:
        await client.sessions.destroy(info.id)


def check(gpus: list[dict[str, str]], label: str, seen: dict[str, Any]) -> list[str]:
    """Problems with what one session saw (empty: it saw exactly the GPU it was given)."""
    problems = []
    visible = seen.get("CUDA_VISIBLE_DEVICES") or ""
    given = [g for g in gpus if g["index"] in visible.split(",")]
    if len(given) != 1:
        problems.append(f"{label}: CUDA_VISIBLE_DEVICES={visible!r} does not name one GPU")
    cuda = seen.get("cuda") or {}
    if cuda.get("count") != 1:
        problems.append(f"{label}: the CUDA driver sees {cuda.get('count')} devices, not 1 "
                        f"({cuda})")
    elif given and cuda["devices"][0]["uuid"] != given[0]["uuid"]:
        problems.append(f"{label}: CUDA device {cuda['devices'][0]['uuid']} is not the given "
                        f"GPU {given[0]['uuid']}")
    return problems


async def run(args: argparse.Namespace) -> int:
    gpus = host_gpus()
    if not gpus:
        print("no GPU on this machine (nvidia-smi is missing or lists no GPU): nothing to check")
        return 0
    print("# host GPUs: " + "; ".join(f"{g['index']}: {g['name']} {g['uuid']}" for g in gpus))
    base = Path(tempfile.mkdtemp(prefix="bjup-gpu-"))
    cmd = [sys.executable, "-m", "backendai_jupyter", "serve", "--port", "0", "--data-dir",
           str(base / "data"), "--sandbox", args.sandbox]
    out, err = (base / "serve.out").open("wb"), (base / "serve.err").open("wb")
    proc = subprocess.Popen(cmd, stdout=out, stderr=err, stdin=subprocess.DEVNULL)
    problems: list[str] = []
    try:
        deadline = time.monotonic() + 60
        while "listening on" not in (text := (base / "serve.out").read_text()):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError((base / "serve.err").read_text()[-2000:])
            await asyncio.sleep(0.05)
        env = dict(re.findall(r"^export (BACKEND_\w+)=(.*)$", text, re.M))
        config = ClientConfig(endpoints=parse_endpoints(env["BACKEND_ENDPOINT"]),
                              access_key=env["BACKEND_ACCESS_KEY"],
                              secret_key=env["BACKEND_SECRET_KEY"])
        async with Client(config) as client:
            for label, res in (("cuda.device=1", {"cuda.device": "1"}),
                               ("cuda.shares=0.5", {"cuda.shares": "0.5"})):
                seen = await probe(client, res)
                print(f"{label:16} CUDA_VISIBLE_DEVICES={seen['CUDA_VISIBLE_DEVICES']} "
                      f"cuda={json.dumps(seen['cuda'])}")
                if seen.get("nvidia_smi"):
                    print(f"{'':16} nvidia-smi -L: {seen['nvidia_smi']}")
                problems += check(gpus, label, seen)
            over = {"cuda.device": str(len(gpus) + 1)}
            try:
                await client.sessions.create(IMAGE, resources={"cpu": "1", "mem": "1g", **over})
                problems.append(f"an over-request ({over}) was accepted")
            except BackendAIError as e:
                ok = "400" in str(e)
                print(f"over-request {over}: refused ({e})")
                if not ok:
                    problems.append(f"the over-request failed without a 400: {e}")
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        out.close()
        err.close()
        shutil.rmtree(base, ignore_errors=True)
    for p in problems:
        print(f"FAIL: {p}")
    print("GPU check: " + ("passed" if not problems else f"{len(problems)} problem(s)"))
    return 1 if problems else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sandbox", choices=["auto", "bwrap", "none"], default="auto")
    sys.exit(asyncio.run(run(parser.parse_args())))


if __name__ == "__main__":
    main()
