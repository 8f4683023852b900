"""Rich-channel and notebook-folder benchmarks: ``python bench/fidelity_bench.py [--cluster]``.

Each measurement runs on a plain local ipykernel (the reference, reached directly) and through
the proxy kernel, in the same run, and prints the ratio proxy / reference:

* ``updates``: 300 ``display(..., display_id=True).update(...)`` round trips in one cell (every
  message is a frame in the remote stdout);
* ``comm_mb``: 16 comm messages with a 1 MiB binary buffer each (base64 inside frames);
* ``folder``: the notebook folder (``--folder-mb`` MiB in 40 files, half text, half random)
  sent at session start with ``upload_dir=on``, against copying the same folder with
  ``shutil.copytree``. The upload's own time is read from the start-up summary line.

Without ``--cluster`` the proxy uses the local endpoint (BACKEND_ENDPOINT unset); with it, the
variables from /tmp/backendai-cluster/user.env.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from jupyter_client.manager import start_new_kernel

ROOT = Path(__file__).resolve().parents[1]

UPDATES = (
    "from IPython.display import display\n"
    "h = display('0', display_id=True)\n"
    "for i in range(300):\n"
    "    h.update(str(i))\n"
)
COMMS = (
    "from comm import create_comm\n"
    "c = create_comm(target_name='bench')\n"
    "payload = bytes(1024 * 1024)\n"
    "for i in range(16):\n"
    "    c.send({'i': i}, buffers=[payload])\n"
    "c.close()\n"
)


def _env(cluster: bool) -> None:
    os.environ["JUPYTER_PATH"] = str(ROOT / "share" / "jupyter")
    for k in ("BACKEND_ENDPOINT", "BACKEND_ACCESS_KEY", "BACKEND_SECRET_KEY", "BACKEND_UPLOAD_DIR"):
        os.environ.pop(k, None)
    if cluster:
        for line in Path("/tmp/backendai-cluster/user.env").read_text().splitlines():
            key, _, value = line.partition("=")
            if key:
                os.environ[key] = value
        os.environ["BACKEND_IMAGE"] = os.environ["BAI_IMAGE"]


def _timed(kc: Any, code: str) -> tuple[float, int]:
    count = [0]

    def hook(msg: dict[str, Any]) -> None:
        if msg["msg_type"] not in ("status", "execute_input"):
            count[0] += 1

    t0 = time.perf_counter()
    reply = kc.execute_interactive(code, timeout=600, output_hook=hook)
    assert reply["content"]["status"] == "ok", reply["content"]
    return time.perf_counter() - t0, count[0]


def _upload_seconds(folder: Path) -> float:
    os.environ["BACKEND_UPLOAD_DIR"] = "on"
    os.environ["BACKEND_UPLOAD_MAX"] = "1g"
    cwd = os.getcwd()
    os.chdir(folder)  # the kernel starts here, as jupyter_server starts it in the notebook's dir
    try:
        km, kc = start_new_kernel(kernel_name="backendai-python")
    finally:
        os.chdir(cwd)
    lines: list[str] = []

    def hook(msg: dict[str, Any]) -> None:
        if msg["msg_type"] in ("display_data", "update_display_data"):
            lines.append(str(msg["content"]["data"].get("text/plain", "")))

    try:
        reply = kc.execute_interactive(
            "import os\nprint(len(os.listdir('data')))", timeout=600, output_hook=hook
        )
        assert reply["content"]["status"] == "ok", reply["content"]
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=False)
    found = re.search(r"sent the notebook folder: 40 files, [^ ]+ [^ ]+ in ([0-9.]+) s", lines[-1])
    assert found, lines[-1]
    return float(found.group(1))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cluster", action="store_true")
    ap.add_argument("--folder-mb", type=int, default=40)
    args = ap.parse_args()
    _env(args.cluster)
    rows: dict[str, dict[str, float]] = {}
    for name in ("python3", "backendai-python"):
        km, kc = start_new_kernel(kernel_name=name)
        try:
            _timed(kc, "pass")  # the proxy's session starts here
            updates, n_updates = _timed(kc, UPDATES)
            comms, n_comms = _timed(kc, COMMS)
            assert n_updates == 301 and n_comms == 18, (n_updates, n_comms)
            rows[name] = {"updates_s": updates, "comm_mb_s": comms}
        finally:
            kc.stop_channels()
            km.shutdown_kernel(now=False)
    direct, proxy = rows["python3"], rows["backendai-python"]
    where = "cluster" if args.cluster else "local endpoint"
    print(f"proxy via {where}; reference: a local python3 ipykernel reached directly")
    for key in direct:
        ratio = proxy[key] / direct[key]
        print(
            f"{key:12} direct {direct[key]:8.3f} s   proxy {proxy[key]:8.3f} s   ratio {ratio:6.1f}"
        )

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp, "project")
        (folder / "data").mkdir(parents=True)
        per_file = args.folder_mb * 2**20 // 40
        for i in range(40):
            # half compressible text, half random bytes: zlib helps only with the first
            data = (b"row,%d\n" % i) * (per_file // 6) if i % 2 else os.urandom(per_file)
            (folder / "data" / f"f{i:02}.bin").write_bytes(data[:per_file])
        total = sum(p.stat().st_size for p in (folder / "data").iterdir())
        t0 = time.perf_counter()
        shutil.copytree(folder, Path(tmp, "copy"))
        copy_s = time.perf_counter() - t0
        os.environ["BACKEND_UPLOAD_FILE_MAX"] = str(per_file + 1)
        upload_s = _upload_seconds(folder)
    mb = total / 2**20
    print(
        f"folder       {mb:.0f} MiB: upload {upload_s:.2f} s ({mb / upload_s:.1f} MiB/s)"
        f"   copytree {copy_s:.3f} s   ratio {upload_s / copy_s:.0f}"
    )


if __name__ == "__main__":
    main()
