"""``backendai-jupyter serve``: run the local endpoint in the foreground.

On first start a keypair is created (mode 0600, ``<data-dir>/keypair.json``) and the ``export``
lines — the only place the secret key is ever printed — go to stdout; later starts reuse it and
print the secret only with ``--show-keys``. ``<data-dir>/endpoint.json`` records pid/port so that
``local.py`` can find a running server. SIGINT/SIGTERM stop the server *and* every session
process (``on_shutdown`` → ``Scheduler.shutdown``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ipaddress
import json
import logging
import os
import signal
import sys
import time
from pathlib import Path

from aiohttp import web

from ..client._exceptions import BackendAIError
from ..client._versioning import parse_api_version
from .agent.procfs import start_time
from .agent.sandbox import SANDBOX_MODES, SandboxUnavailable, SessionLimits
from .manager.app import create_app
from .manager.scheduler import SCHEDULER
from .manager.state import (
    DEFAULT_API_VERSION,
    KEYPAIR_FILE,
    REGISTRY,
    ServerConfig,
    load_or_create_keypair,
)

__all__ = ["ENDPOINT_FILE", "add_arguments", "default_data_dir", "run"]

ENDPOINT_FILE = "endpoint.json"
DEFAULT_PORT = 8090


def default_data_dir() -> Path:
    """``$BACKENDAI_JUPYTER_DATA_DIR``, else ``$XDG_DATA_HOME/backendai-jupyter/local``."""
    override = os.environ.get("BACKENDAI_JUPYTER_DATA_DIR")
    if override:
        return Path(override)
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "backendai-jupyter" / "local"



def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"port must be 0-65535, got {port}")
    return port


def _api_version(text: str) -> str:
    try:
        parse_api_version(text)
    except BackendAIError:
        raise argparse.ArgumentTypeError(
            f"not an API version: {text!r} (expected e.g. v9.20250722, v6.20220615, v5.20191215)"
        ) from None
    return text.strip()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="bind address (default: loopback)")
    parser.add_argument("--port", type=_port, default=DEFAULT_PORT, help="0 picks a free port")
    parser.add_argument("--data-dir", type=Path, default=None, help="state directory")
    parser.add_argument(
        "--api-version",
        type=_api_version,
        default=DEFAULT_API_VERSION,
        help="emulate an older manager API, e.g. v6.20220615 or v5.20191215",
    )
    parser.add_argument("--idle-timeout", type=float, default=0.0, help="seconds; 0 = never")
    parser.add_argument(
        "--capacity",
        action="append",
        default=[],
        metavar="SLOT=AMOUNT",
        help="override a detected capacity, e.g. cpu=2 or mem=4g (repeatable)",
    )
    parser.add_argument("--show-keys", action="store_true", help="print the secret key again")
    parser.add_argument(
        "--sandbox",
        choices=SANDBOX_MODES,
        default="auto",
        help="run sessions as containers (bubblewrap, user and network namespaces): auto (every "
        "layer that works here, naming the missing ones; default), bwrap (bubblewrap "
        "required), strict (every layer required), none",
    )
    parser.add_argument(
        "-r",
        "--session-limit",
        action="append",
        default=[],
        metavar="SLOT=AMOUNT",
        help="what every session gets, as a cluster's resource policy says: pids=N (processes "
        "+ threads, default 1024), tmp=SIZE (/tmp and /dev/shm, default 1g), disk=SIZE "
        "(a quota for /home/work, when root; none by default); repeatable",
    )
    parser.add_argument(
        "--exit-when-idle",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="stop after SECONDS with no session and no request (0 = never; the embedded "
        "default started by the kernel and magics uses 1800)",
    )


def _exports(url: str, access_key: str, secret: str | None, keyfile: Path) -> str:
    lines = [
        f"export BACKEND_ENDPOINT={url}",
        "export BACKEND_ENDPOINT_TYPE=api",
        f"export BACKEND_ACCESS_KEY={access_key}",
    ]
    if secret is not None:
        lines.append(f"export BACKEND_SECRET_KEY={secret}")
    else:
        lines.append(f"# BACKEND_SECRET_KEY: see {keyfile} (or run with --show-keys)")
    return "\n".join(lines)


def _watch_idle(app: web.Application, seconds: float, stop: asyncio.Event) -> None:
    """Stop the server once it has had no live session and answered no request for a while.

    The embedded default is started in the background by kernels and magics; without this it
    would outlive them all. Call before the app is frozen (it adds a response hook).
    """
    last = [time.monotonic()]

    async def touch(request: web.Request, response: web.StreamResponse) -> None:
        last[0] = time.monotonic()

    async def watch(app: web.Application) -> None:
        while not stop.is_set():
            await asyncio.sleep(min(10.0, seconds / 4))
            if app[REGISTRY].live():
                last[0] = time.monotonic()
            elif time.monotonic() - last[0] >= seconds:
                print(f"# idle for {seconds:g} s: stopping", file=sys.stderr, flush=True)
                stop.set()

    tasks: list[asyncio.Future[None]] = []

    async def start(app: web.Application) -> None:
        tasks.append(asyncio.ensure_future(watch(app)))

    async def cancel(app: web.Application) -> None:
        for task in tasks:
            task.cancel()

    app.on_response_prepare.append(touch)
    app.on_startup.append(start)
    app.on_shutdown.append(cancel)


async def _serve(config: ServerConfig, show_secret: bool, exit_when_idle: float = 0.0) -> None:
    # Handlers first: a signal during startup must still run the cleanup below.
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    app = create_app(config)
    for warning in app[SCHEDULER].warnings:  # said once, at start
        print(f"WARNING: {warning}", file=sys.stderr, flush=True)
    if exit_when_idle > 0:
        _watch_idle(app, exit_when_idle, stop)
    # read_bufsize: the request body buffer (aiohttp: 64 KiB) bounds how much the socket reader
    # takes before pausing; 1 MiB saves a pause/resume per received piece on big uploads.
    runner = web.AppRunner(app, handle_signals=False, access_log=None, read_bufsize=1 << 20)
    await runner.setup()
    site = web.TCPSite(runner, config.host, config.port)
    await site.start()
    port = int(runner.addresses[0][1])
    host = config.host if ":" not in config.host else f"[{config.host}]"
    url = f"http://{host}:{port}"
    kp = config.keypair
    assert kp is not None
    keyfile = config.data_dir / KEYPAIR_FILE
    print(_exports(url, kp.access_key, kp.secret_key if show_secret else None, keyfile))
    print(f"# Backend.AI local endpoint {config.api_version} listening on {url}", flush=True)
    endpoint_file = config.data_dir / ENDPOINT_FILE
    record = {
        "pid": os.getpid(),
        "port": port,
        "host": config.host,
        "url": url,
        "start": start_time(os.getpid()),
        "started_at": time.time(),
    }
    tmp = endpoint_file.with_suffix(".tmp")
    tmp.write_text(json.dumps(record))
    tmp.replace(endpoint_file)
    try:
        await stop.wait()
    finally:
        print("# stopping: terminating all sessions", file=sys.stderr, flush=True)
        await runner.cleanup()
        with contextlib.suppress(OSError, ValueError):
            if json.loads(endpoint_file.read_text()).get("pid") == os.getpid():
                endpoint_file.unlink()


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    data_dir: Path = (args.data_dir or default_data_dir()).expanduser().resolve()
    capacity: dict[str, str] = {}
    for item in args.capacity:
        slot, sep, amount = item.partition("=")
        if not sep:
            print(f"error: --capacity expects SLOT=AMOUNT, got {item!r}", file=sys.stderr)
            return 2
        capacity[slot.strip()] = amount.strip()
    limits: dict[str, str] = {}
    for item in args.session_limit:
        slot, sep, amount = item.partition("=")
        try:
            if not sep:
                raise ValueError(f"-r expects SLOT=AMOUNT, got {item!r}")
            limits[slot.strip()] = amount.strip()
            SessionLimits.parse(limits)
        except ValueError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
    keypair, created = load_or_create_keypair(data_dir)
    if not _is_loopback(args.host):
        print(
            f"WARNING: binding to {args.host}: anyone who can reach this address and holds the "
            "keypair can run arbitrary code as this user, read and write its session files and "
            "vfolders. The API is plain HTTP (no TLS).",
            file=sys.stderr,
        )
    config = ServerConfig(
        data_dir=data_dir,
        host=args.host,
        port=args.port,
        api_version=args.api_version,
        capacity=capacity,
        idle_timeout=args.idle_timeout,
        keypair=keypair,
        sandbox=args.sandbox,
        session_limits=limits,
    )
    try:
        show = created or args.show_keys
        asyncio.run(_serve(config, show_secret=show, exit_when_idle=args.exit_when_idle))
    except OSError as e:
        print(f"error: cannot listen on {args.host}:{args.port}: {e}", file=sys.stderr)
        return 1
    except SandboxUnavailable as e:
        print(f"error: --sandbox {args.sandbox}: {e}", file=sys.stderr)
        return 2
    except ValueError as e:  # e.g. an unknown --api-version
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0
