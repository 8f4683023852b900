"""The embedded default: find or start a background local endpoint, return its ``BACKEND_*``.

Used by the client, the kernel and the magics when no ``BACKEND_ENDPOINT`` is configured. A
server recorded in ``endpoint.json`` is reused when its pid still belongs to it (start time
matches) and it answers ``GET /``; otherwise ``python -m backendai_jupyter serve --port 0`` is
started detached (own session, output to ``server.log``, and not our child: a one-line launcher
starts it and exits, so it belongs to init, is never a zombie of ours, and leaves no
``Popen`` to be collected while it runs). A file lock keeps two kernels starting
at the same moment from spawning two servers. The secret key is read from the 0600 keypair file
and returned, never printed or logged.
"""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from .agent.procfs import start_time
from .cli import ENDPOINT_FILE, default_data_dir
from .manager.state import KEYPAIR_FILE, load_or_create_keypair

__all__ = ["ensure_local_endpoint"]

START_TIMEOUT = 60.0
# A background server nobody uses any more (no session, no request) goes away by itself.
IDLE_EXIT_SECONDS = 1800
# Run by ``python -c`` with the server's command line as its arguments: starts it in a session
# of its own with stdout on the launcher's stderr (``server.log``), prints its pid, and exits.
_LAUNCH = (
    "import os, sys; print(os.posix_spawn(sys.argv[1], sys.argv[1:], os.environ, "
    "file_actions=[(os.POSIX_SPAWN_DUP2, 2, 1)], setsid=True), flush=True)"
)


def _running(pid: int) -> bool:
    """Whether ``pid`` still runs (a zombie does not: init may be slow to reap it, or not reap)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rpartition(")")[2].split()[0] not in ("Z", "X")
    except FileNotFoundError:
        if os.path.isdir("/proc/self"):
            return False
    except (OSError, IndexError):
        pass
    try:  # no procfs
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return True


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/", timeout=2) as resp:  # noqa: S310 - loopback
            return "version" in json.loads(resp.read())
    except (OSError, ValueError):
        return False


def _live_url(data_dir: Path) -> str | None:
    try:
        rec = json.loads((data_dir / ENDPOINT_FILE).read_text())
        pid, url = int(rec["pid"]), str(rec["url"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if start_time(pid) is None or start_time(pid) != rec.get("start"):
        return None
    return url if _answers(url) else None


def _credentials(data_dir: Path, url: str) -> dict[str, str]:
    kp = json.loads((data_dir / KEYPAIR_FILE).read_text())
    return {
        "BACKEND_ENDPOINT": url,
        "BACKEND_ENDPOINT_TYPE": "api",
        "BACKEND_ACCESS_KEY": kp["access_key"],
        "BACKEND_SECRET_KEY": kp["secret_key"],
    }


def ensure_local_endpoint(data_dir: Path | None = None) -> dict[str, str]:
    """Return ``BACKEND_ENDPOINT``/``ACCESS_KEY``/``SECRET_KEY`` of a running local endpoint,
    starting one in the background if needed. Raises ``RuntimeError`` if it does not come up."""
    data_dir = (data_dir or default_data_dir()).expanduser().resolve()
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    with open(data_dir / "start.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        url = _live_url(data_dir)
        if url is not None:
            return _credentials(data_dir, url)
        (data_dir / ENDPOINT_FILE).unlink(missing_ok=True)
        # Create the keypair here, not in the server: a server that creates it prints the
        # secret once (for a person at a terminal), and this one's output goes to server.log.
        load_or_create_keypair(data_dir)
        env = {k: v for k, v in os.environ.items() if not k.startswith("BACKEND_")}
        cmd = [
            sys.executable,
            "-m",
            "backendai_jupyter",
            "serve",
            "--port",
            "0",
            "--data-dir",
            str(data_dir),
            "--exit-when-idle",
            str(IDLE_EXIT_SECONDS),
        ]
        with open(data_dir / "server.log", "ab") as log:
            launcher = subprocess.run(
                [sys.executable, "-c", _LAUNCH, *cmd],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=log,
                env=env,
                cwd=str(data_dir),
                timeout=START_TIMEOUT,
                check=False,
            )
        try:
            pid = int(launcher.stdout)
        except ValueError:
            raise RuntimeError(
                f"the local Backend.AI endpoint could not be started (exit code "
                f"{launcher.returncode}); see {data_dir / 'server.log'}"
            ) from None
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if not _running(pid):
                raise RuntimeError(
                    f"the local Backend.AI endpoint exited; see {data_dir / 'server.log'}"
                )
            url = _live_url(data_dir)
            if url is not None:
                return _credentials(data_dir, url)
            time.sleep(0.1)
        raise RuntimeError(f"the local Backend.AI endpoint did not start; see {data_dir}")
