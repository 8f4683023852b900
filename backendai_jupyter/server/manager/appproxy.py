"""The app proxy routes (protocol.md §8, 26.9.6 ``api/rest/stream/handler.py`` + ``wsproxy.py``).

* ``GET /stream/session/{id}/apps`` — the session's service ports in the manager's shape.
* ``GET /stream/session/{id}/tcpproxy?app=A[&port=N][&arguments=JSON][&envs=JSON]`` (and
  ``/httpproxy``, the same handler): starts the service if needed, then relays raw TCP bytes as
  binary websocket frames both ways (the service socket is a client :class:`TcpPipe`: its reads
  go out as frames uncopied, reading pauses while the websocket lags; no permessage-deflate;
  ``autoping`` off and explicit pongs, as the manager's ``TCPProxy``). Unknown app → 404
  (``No such app service.``), a port the app does not open → 400, start failure → 500,
  connection refused after the upgrade → close code 1013.
* ``GET /stream/session/{id}/pty`` — a shell in a pseudo-terminal in the session's working
  directory; client frames ``{"type": "stdin", "chars": b64}``, ``{"type": "resize", "rows",
  "cols"}``, ``{"type": "ping"}``, ``{"type": "restart"}``; server frames ``{"type": "out",
  "data": b64}`` (text frames, as protocol.md §8.1; 26.9.6 sends the same JSON as binary).
* ``POST /session/{id}/start-service`` ``{"app", "port"?, "arguments"?, "envs"?}`` — starts the
  service. There is no wsproxy/AppProxy coordinator on one machine and services listen on
  private Unix sockets (``services.py``), so the answer names this endpoint, whose
  ``tcpproxy`` route is the only way in: ``{"token": "", "wsproxy_addr": "http://127.0.0.1:P",
  "url": ".../stream/session/ID/tcpproxy?app=A"}``.
* A ``tcpproxy`` request that is not a websocket upgrade answers 400 and starts nothing.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import fcntl
import json
import logging
import os
import shutil
import signal
import struct
import termios
import time
from typing import Any

from aiohttp import WSCloseCode, WSMsgType, web

from ...client._local_transfer import LOCAL_CONNECT_HEADER
from ...client.apps import TcpPipe
from ..agent.limits import launcher_argv
from ..agent.services import ServiceDef, service_ports, session_services
from .appconnect import connect_offer
from .auth import ACCESS_KEY
from .errors import Problem, decode_json, invalid_api_params, read_json
from .state import REGISTRY, ComputeSession

__all__ = ["apps", "pty", "start_service", "tcpproxy"]

log = logging.getLogger(__name__)


def _session(request: web.Request) -> ComputeSession:
    return request.app[REGISTRY].get(request.match_info["session_name"], request[ACCESS_KEY])


def _app_not_found(sess: ComputeSession, app_name: str) -> web.Response:
    # 26.9.6 AppNotFound(ObjectNotFound): error_code "backendai_read_not-found".
    body = {
        "type": "https://api.backend.ai/probs/object-not-found",
        "title": "No such app service.",
        "error_code": "backendai_read_not-found",
        "msg": f"{sess.name}:{app_name}",
    }
    return web.Response(
        status=404, text=json.dumps(body), content_type="application/problem+json"
    )


def _json_param(raw: str | None, name: str) -> Any:
    if raw is None or raw == "":
        return None
    try:
        return decode_json(raw)
    except ValueError:
        raise invalid_api_params(f"{name} must be a JSON string") from None


def _port_param(raw: Any) -> int | None:
    if raw is None or raw == "":
        return None
    try:
        return int(raw)
    except (TypeError, ValueError):
        raise invalid_api_params("Input validation error", {"port": "must be an integer"}) from None


def _resolve(
    sess: ComputeSession, app: web.Application, app_name: str, port: int | None
) -> ServiceDef | None:
    sdef = session_services(app, sess).find(app_name)
    if sdef is not None and port is not None and port != sdef.port:
        raise invalid_api_params(f"Service {app_name} does not open the port number {port}.")
    return sdef


async def apps(request: web.Request) -> web.Response:
    sess = _session(request)
    resp = web.json_response(service_ports(request.app, sess))
    offer = connect_offer(request, sess)  # loopback clients: the same-machine path
    if offer is not None:
        resp.headers[LOCAL_CONNECT_HEADER] = offer
    return resp


async def tcpproxy(request: web.Request) -> web.StreamResponse:
    sess = _session(request)
    app_name = request.query.get("app", "")
    if not app_name:
        raise invalid_api_params("Input validation error", {"app": "is required"})
    port = _port_param(request.query.get("port"))
    arguments = _json_param(request.query.get("arguments"), "arguments")
    envs = _json_param(request.query.get("envs"), "envs")
    sdef = _resolve(sess, request.app, app_name, port) if sess.status == "RUNNING" else None
    if sdef is None:
        return _app_not_found(sess, app_name)
    # compress=False: app traffic is mostly compressed already and deflate would cost more CPU
    # than the whole relay (the official client does not ask for it either).
    ws = web.WebSocketResponse(autoping=False, max_msg_size=0, compress=False)
    if not ws.can_prepare(request).ok:
        # Only an (authenticated) websocket upgrade starts a service: not a plain GET.
        raise invalid_api_params("This route is a websocket: send an Upgrade request.")
    services = session_services(request.app, sess)
    address = await services.ensure(sdef, arguments, envs)
    sess.last_used = time.monotonic()
    await ws.prepare(request)
    loop = asyncio.get_running_loop()
    try:
        # How the endpoint reaches the service (inside the session's network): services.py.
        sock = await services.connect(address)
        _, pipe = await loop.create_connection(TcpPipe, sock=sock)
    except ConnectionRefusedError:
        await ws.close(code=WSCloseCode.TRY_AGAIN_LATER)
        return ws
    except OSError:
        await ws.close(code=WSCloseCode.INTERNAL_ERROR)
        return ws
    await relay(ws, pipe)
    return ws


async def relay(ws: web.WebSocketResponse, pipe: TcpPipe) -> None:
    """Bytes ↔ binary frames until either side closes (``wsproxy.TCPProxy.proxy``)."""

    async def downstream() -> None:
        try:
            while chunk := await pipe.read():
                await ws.send_bytes(chunk)  # waits while the websocket is above its high water
        except (RuntimeError, ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            with contextlib.suppress(Exception):
                await ws.close(code=WSCloseCode.GOING_AWAY)

    down = asyncio.create_task(downstream())
    try:
        async for msg in ws:
            if msg.type in (WSMsgType.BINARY, WSMsgType.TEXT):
                data = msg.data if isinstance(msg.data, bytes) else str(msg.data).encode()
                try:
                    pipe.write(data)
                    await pipe.drain()  # the next frame is read once the service keeps up
                except (RuntimeError, ConnectionError):
                    break
            elif msg.type == WSMsgType.PING:
                await ws.pong(msg.data)
            elif msg.type == WSMsgType.ERROR:
                break
    except (asyncio.CancelledError, ConnectionResetError):
        pass
    finally:
        try:
            pipe.write_eof()
            # Let the service's remaining answer reach the client, briefly.
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.shield(down), 5.0)
        finally:  # also when aiohttp cancels the handler (the client's connection went away)
            down.cancel()
            if pipe.transport is not None:
                pipe.transport.close()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await down
        with contextlib.suppress(Exception):
            await pipe.close()


async def start_service(request: web.Request) -> web.Response:
    sess = _session(request)
    body = await read_json(request) if request.can_read_body else {}
    if not isinstance(body, dict) or not body.get("app"):
        raise invalid_api_params("Input validation error", {"app": "is required"})
    app_name = str(body["app"])
    port = _port_param(body.get("port"))
    arguments = body.get("arguments")
    envs = body.get("envs")
    arguments = _json_param(arguments, "arguments") if isinstance(arguments, str) else arguments
    envs = _json_param(envs, "envs") if isinstance(envs, str) else envs
    sdef = _resolve(sess, request.app, app_name, port) if sess.status == "RUNNING" else None
    if sdef is None:
        return _app_not_found(sess, app_name)
    await session_services(request.app, sess).ensure(sdef, arguments, envs)
    # No direct address: services listen on private sockets, reachable only through this
    # endpoint's authenticated app proxy (``/stream/session/{id}/tcpproxy?app=...``).
    base = str(request.url.origin())
    url = f"{base}/stream/session/{sess.id}/tcpproxy?app={app_name}"
    return web.json_response({"token": "", "wsproxy_addr": base, "url": url})


# -- the terminal ---------------------------------------------------------------------------

#: TIOCSWINSZ takes unsigned shorts; real terminals stay far below this.
MAX_DIMENSION = 10000


def _dimension(value: Any) -> int:
    """A terminal size from a client frame; a bad one is an ignored frame (``ValueError``)."""
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise ValueError(f"bad terminal size {value!r}")
    number = int(value)
    if not 1 <= number <= MAX_DIMENSION:
        raise ValueError(f"terminal size out of range: {number}")
    return number



class _Pty:
    """``/bin/bash`` (or ``sh``) in a pseudo-terminal, a child of the session."""

    def __init__(self, sess: ComputeSession) -> None:
        self.sess = sess
        self.master = -1
        self.proc: asyncio.subprocess.Process | None = None
        self.output: asyncio.Queue[bytes] = asyncio.Queue(maxsize=64)

    async def spawn(self) -> None:
        master, slave = os.openpty()
        shell = shutil.which("bash") or "/bin/sh"
        argv = [shell, "-i"]
        proc = self.sess.process
        setsid = shutil.which("setsid")
        # A new session whose controlling terminal is the pty (job control works); in the
        # sandbox the launcher's relay does that itself.
        if setsid and (proc is None or "sandbox" not in proc.limits):
            argv = [setsid, "-c", *argv]
        env = dict(proc.env) if proc is not None else dict(os.environ)
        if proc is not None:
            from ..agent.limits import ENV_VAR

            env[ENV_VAR] = json.dumps(proc.limits)
        env["TERM"] = "xterm-256color"
        try:
            self.proc = await asyncio.create_subprocess_exec(
                *launcher_argv(argv), cwd=str(self.sess.workdir), env=env,
                stdin=slave, stdout=slave, stderr=slave,
            )
        finally:
            os.close(slave)
        if proc is not None:
            proc.adopt(self.proc)  # dies with the session
        self.master = master
        os.set_blocking(master, False)
        asyncio.get_running_loop().add_reader(master, self._readable)

    def _readable(self) -> None:
        try:
            data = os.read(self.master, 65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            asyncio.get_running_loop().remove_reader(self.master)
        try:
            self.output.put_nowait(data)
        except asyncio.QueueFull:  # the client is slow: stop reading until it catches up
            loop = asyncio.get_running_loop()
            loop.remove_reader(self.master)
            asyncio.ensure_future(self._put_later(data))

    async def _put_later(self, data: bytes) -> None:
        await self.output.put(data)
        if data and self.master >= 0:
            asyncio.get_running_loop().add_reader(self.master, self._readable)

    async def write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            try:
                n = os.write(self.master, view)
            except BlockingIOError:
                await asyncio.sleep(0.01)
                continue
            view = view[n:]

    def resize(self, rows: int, cols: int) -> None:
        fcntl.ioctl(self.master, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))

    async def close(self) -> None:
        if self.master >= 0:
            asyncio.get_running_loop().remove_reader(self.master)
            os.close(self.master)
            self.master = -1
        proc = self.proc
        if proc is not None and proc.returncode is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGHUP)
            try:
                await asyncio.wait_for(proc.wait(), 2)
            except asyncio.TimeoutError:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(proc.pid, signal.SIGKILL)
                await proc.wait()
        if proc is not None and self.sess.process is not None:
            self.sess.process.children.discard(proc)


async def pty(request: web.Request) -> web.StreamResponse:
    sess = _session(request)
    if sess.status != "RUNNING":
        raise Problem(409, "invalid-session-state", "Invalid session state.", sess.status)
    ws = web.WebSocketResponse(heartbeat=None)
    await ws.prepare(request)
    term = _Pty(sess)
    await term.spawn()

    async def pump() -> None:
        while True:
            data = await term.output.get()
            if not data:
                break
            await ws.send_str(
                json.dumps({"type": "out", "data": base64.b64encode(data).decode("ascii")})
            )
        await ws.close()

    out_task = asyncio.create_task(pump())
    try:
        async for msg in ws:
            if msg.type != WSMsgType.TEXT and msg.type != WSMsgType.BINARY:
                continue
            try:
                frame = decode_json(msg.data)
                kind = frame.get("type")
                if kind == "stdin":
                    await term.write(base64.b64decode(frame["chars"]))
                elif kind == "resize":
                    term.resize(_dimension(frame["rows"]), _dimension(frame["cols"]))
                elif kind == "restart":
                    out_task.cancel()
                    await term.close()
                    term = _Pty(sess)
                    await term.spawn()
                    out_task = asyncio.create_task(pump())
                # "ping": nothing to answer (the manager runs %ping in the kernel)
            except (ValueError, KeyError, TypeError, AttributeError, OSError) as e:
                log.debug("pty: bad frame %r: %s", msg.data, e)
    except (asyncio.CancelledError, ConnectionResetError):
        pass
    finally:
        out_task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await out_task
        await term.close()
    return ws
