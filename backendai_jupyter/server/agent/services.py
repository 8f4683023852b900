"""A session's service ports (protocol.md §8): what it advertises and the processes behind them.

The manager's agent gives every session the intrinsic ``sshd`` (tcp 2200) and ``ttyd`` (http 7681)
ports, the image's labelled apps (``jupyter``, ``jupyterlab`` …) and one ``preopen`` entry per
``config.preopen_ports`` item. A session with a network of its own (``netns.py``) is like a
container: each service listens on its container port on the session's own loopback, and the
endpoint reaches it only through a socket made inside the session (:meth:`SessionServices.connect`)
for its authenticated app proxy (``manager/appproxy.py``). Without one, each service listens on
a free host-loopback port or a Unix socket, and the proxy maps ``(app, container port)`` to it.
A service is advertised only when this machine can run it:

* ``jupyter`` / ``jupyterlab``: ``python -m jupyter_server`` / ``python -m jupyterlab`` from the
  server's environment; without a network of its own, on a **Unix socket** (mode 0600 in a
  0700 directory, at ``/home/config/sockets`` in the sandbox; connected without following a
  symlink the session could put there). Either way only the endpoint reaches it, so the only
  way in is the authenticated app proxy. Origin and host checks stay on; it needs no token of
  its own, and its XSRF check is off so that API clients behind the proxy work as with the
  manager's apps;
* ``ttyd``: the ``ttyd`` binary (a web terminal), the same way; the
  ``/stream/session/{id}/pty`` websocket (``appproxy.py``) is the terminal that needs nothing;
* ``sshd``: OpenSSH's ``sshd`` running as the session's ``work`` user (key only, its own host
  key, no root login, no capability), with the per-session key pair ``id_container`` (+
  ``.pub``) copied into ``/home/work`` as a real session has it; its configuration and keys
  are in the session's runtime directory, which the session sees read-only at
  ``/home/config/ssh`` and cannot redirect;
* ``preopen`` ports: nothing is started; the session's own program listens on that port number.

Services start lazily (first proxied connection, or ``start-service``), inside the session: its
working directory, environment and resource limits (through the ``limits`` launcher), and they are
registered as the session's child processes, so destroying the session kills them. Their logs
are next to the session's directory, never inside anything the session can write.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import importlib.util
import json
import os
import shutil
import socket
import stat
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from ...client._local_transfer import connect_unix
from ..manager.errors import Problem, invalid_api_params
from ..manager.state import ComputeSession
from .limits import ENV_VAR, launcher_argv
from .netns import connect_in_session
from .safefs import BeneathError, remove_beneath, write_beneath
from .sandbox import CONFIG_DIR, HOME

__all__ = [
    "SERVICES",
    "Address",
    "ServiceDef",
    "ServiceManager",
    "register_session",
    "service_ports",
]

READY_TIMEOUT = 90.0
RESERVED_PORTS = (2000, 2001)


@dataclass(frozen=True)
class ServiceDef:
    name: str
    protocol: str  # "http" | "tcp" | "preopen"
    port: int  # the "container port" clients name
    url_template: str | None = None
    allowed_arguments: tuple[str, ...] | None = None
    allowed_envs: tuple[str, ...] | None = None

    def to_json(self) -> dict[str, Any]:
        """The manager's ``/apps`` item (``StreamAppItem``, None fields left out)."""
        item: dict[str, Any] = {"name": self.name, "protocol": self.protocol, "ports": [self.port]}
        if self.url_template is not None:
            item["url_template"] = self.url_template
        if self.allowed_arguments is not None:
            item["allowed_arguments"] = list(self.allowed_arguments)
        if self.allowed_envs is not None:
            item["allowed_envs"] = list(self.allowed_envs)
        return item


def _importable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def sshd_path() -> str | None:
    for cand in (shutil.which("sshd"), "/usr/sbin/sshd"):
        if cand and os.access(cand, os.X_OK):
            return cand
    return None


def builtin_services() -> list[ServiceDef]:
    """The services this machine can provide (checked once per session)."""
    defs: list[ServiceDef] = []
    if sshd_path() and shutil.which("ssh-keygen"):
        defs.append(ServiceDef("sshd", "tcp", 2200))
    if shutil.which("ttyd"):
        defs.append(ServiceDef("ttyd", "http", 7681))
    if _importable("jupyter_server"):
        defs.append(ServiceDef("jupyter", "http", 8081))
    if _importable("jupyterlab"):
        defs.append(ServiceDef("jupyterlab", "http", 8090))
    return defs


#: Where a service listens: a loopback TCP port or a Unix socket path.
Address = int | str


@dataclass
class _Running:
    address: Address
    proc: asyncio.subprocess.Process | None  # None: preopen (the user's program listens)


@dataclass
class SessionServices:
    sess: ComputeSession
    defs: list[ServiceDef]
    running: dict[str, _Running] = field(default_factory=dict)
    locks: dict[str, asyncio.Lock] = field(default_factory=dict)

    def find(self, name: str) -> ServiceDef | None:
        return next((d for d in self.defs if d.name == name), None)

    async def ensure(
        self, sdef: ServiceDef, arguments: Any = None, envs: Any = None
    ) -> Address:
        """Start ``sdef`` unless it runs; return where it listens (port or socket path)."""
        if sdef.protocol == "preopen":
            return sdef.port
        lock = self.locks.setdefault(sdef.name, asyncio.Lock())
        async with lock:
            cur = self.running.get(sdef.name)
            if cur is not None and cur.proc is not None and cur.proc.returncode is None:
                return cur.address
            return await self._start(sdef, arguments, envs)

    def _env(self, envs: Any) -> dict[str, str]:
        proc = self.sess.process
        env = dict(proc.env) if proc is not None else {}
        if proc is not None:
            env[ENV_VAR] = json.dumps(proc.limits)
        if isinstance(envs, dict):
            env.update({str(k): str(v) for k, v in envs.items()})
        return env

    def _logs(self) -> Path:
        """The services' logs: next to the session's directory, never visible in it."""
        path = self.sess.workdir.parent / (self.sess.workdir.name + ".services")
        path.mkdir(exist_ok=True, mode=0o700)
        return path

    def _sandboxed(self) -> bool:
        proc = self.sess.process
        return proc is not None and "sandbox" in proc.limits

    def _own_network(self) -> bool:
        proc = self.sess.process
        return (proc is not None and proc.sandbox is not None
                and proc.sandbox.isolation.net and proc.sandbox.factory is not None)

    def _home(self) -> str:
        return HOME if self._sandboxed() else str(self.sess.workdir)

    def _socket(self, name: str) -> str | None:
        proc = self.sess.process
        if proc is None or proc.service_dir is None:
            return None
        return str(proc.service_dir / f"{name}.sock")

    def _inside(self, host_socket: str) -> str:
        """Where the service sees its socket (the sockets directory's fixed sandbox path)."""
        if not self._sandboxed():
            return host_socket
        return f"{CONFIG_DIR}/sockets/{os.path.basename(host_socket)}"

    async def connect(self, address: Address) -> socket.socket:
        """A connected socket to the service at ``address`` (one the proxy pumps bytes over).

        A port is one of the session's loopback — its own network namespace, reached through a
        socket made inside it (``netns.py``) — or the host's. A Unix socket is opened once
        with ``O_PATH | O_NOFOLLOW`` and connected through ``/proc/self/fd``: the inode that
        was checked, even if the session swaps the name for a symlink meanwhile."""
        if isinstance(address, int):
            proc = self.sess.process
            factory = proc.sandbox.factory if self._own_network() and proc and proc.sandbox \
                else None
            return await connect_in_session(factory, address)
        return await connect_unix_nofollow(address)

    async def _start(self, sdef: ServiceDef, arguments: Any, envs: Any) -> Address:
        if self.sess.process is None or self.sess.status != "RUNNING":
            raise Problem(
                500, "app-service-start-failed", "Failed to launch the app service",
                data=f"session {self.sess.name} is {self.sess.status}",
            )
        address: Address
        if self._own_network():  # the session's own loopback: the service's own port
            address = sdef.port
        else:
            address = _free_port()
            if sdef.name != "sshd":  # sshd authenticates by key and speaks TCP
                address = self._socket(sdef.name) or address
        if isinstance(address, str):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(address)
        argv = await self._argv(sdef, address, arguments)
        log = open(self._logs() / f"{sdef.name}.log", "ab")  # noqa: SIM115 - child's
        try:
            proc = await asyncio.create_subprocess_exec(
                *launcher_argv(argv),
                cwd=str(self.sess.workdir),
                env=self._env(envs),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,
            )
        finally:
            log.close()
        self.sess.process.adopt(proc)  # destroy kills it with the session
        try:
            await self._wait_listening(proc, address, READY_TIMEOUT)
        except Exception as e:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, 9)
            tail = (self._logs() / f"{sdef.name}.log").read_text(errors="replace")[-1500:]
            raise Problem(
                500, "app-service-start-failed", "Failed to launch the app service",
                data=f"{sdef.name}: {e}\n{tail}",
            ) from None
        self.running[sdef.name] = _Running(address, proc)
        return address

    async def _argv(self, sdef: ServiceDef, address: Address, arguments: Any) -> list[str]:
        extra: list[str] = []
        if isinstance(arguments, dict):
            for k, v in arguments.items():
                if v is None:
                    extra.append(str(k))
                elif isinstance(v, list):
                    extra += [str(k), *map(str, v)]
                else:
                    extra += [str(k), str(v)]
        if sdef.name in ("jupyter", "jupyterlab"):
            module = "jupyterlab" if sdef.name == "jupyterlab" else "jupyter_server"
            listen = (
                [f"--ServerApp.sock={self._inside(address)}", "--ServerApp.sock_mode=0600"]
                if isinstance(address, str)
                else ["--ip=127.0.0.1", f"--port={address}", "--port-retries=0"]
            )
            return [
                sys.executable, "-m", module, "--no-browser", *listen,
                f"--ServerApp.root_dir={self._home()}",
                "--IdentityProvider.token=",
                "--PasswordIdentityProvider.password_required=False",
                "--ServerApp.password=",
                "--ServerApp.disable_check_xsrf=True",
                "--ServerApp.allow_root=True",
                *extra,
            ]
        if sdef.name == "ttyd":
            where = ["-i", self._inside(address)] if isinstance(address, str) else [
                "-i", "127.0.0.1", "-p", str(address)]
            return [shutil.which("ttyd") or "ttyd", *where,
                    "-W", *extra, os.environ.get("SHELL", "/bin/bash")]
        if sdef.name == "sshd" and isinstance(address, int):
            proc = self.sess.process
            if proc is not None and proc.sandbox is not None and proc.sandbox.owner() is None:
                raise Problem(500, "app-service-start-failed", "Failed to launch the app service",
                              data="sshd runs only as the session's own user (no user "
                                   "namespaces here)")
            return await self._sshd_argv(address)
        raise Problem(500, "app-service-start-failed", "Failed to launch the app service",
                      data=f"unknown service {sdef.name}")

    async def _sshd_argv(self, port: int) -> list[str]:
        """sshd as the session's ``work`` user: key only, its own host key, no root login.
        Its files are in the session's runtime directory, which only the endpoint writes
        (read-only at ``/home/config/ssh`` in the sandbox)."""
        proc = self.sess.process
        assert proc is not None
        ssh = proc.runtime_dir / "ssh"
        ssh.mkdir(parents=True, exist_ok=True, mode=0o755)
        inside = f"{CONFIG_DIR}/ssh" if self._sandboxed() else str(ssh)
        owner = proc.sandbox.owner() if proc.sandbox is not None else None
        keygen = shutil.which("ssh-keygen") or "ssh-keygen"
        host_key = ssh / "host_ed25519_key"
        if not host_key.exists():
            await _run([keygen, "-q", "-t", "ed25519", "-N", "", "-f", str(host_key)])
        ensure_id_container(ssh)
        # The user's copy of the key pair, in /home/work as a real session has it: written
        # without following whatever the session put there.
        for name, mode in (("id_container", 0o600), ("id_container.pub", 0o644)):
            give_file(self.sess.workdir, name, (ssh / name).read_bytes(), mode, owner)
        auth = ssh / "authorized_keys"
        auth.write_text((ssh / "id_container.pub").read_text())
        for path, mode in ((host_key, 0o600), (auth, 0o644)):
            path.chmod(mode)
            if owner is not None:
                os.chown(path, *owner)
        conf = ssh / "sshd_config"
        conf.write_text(
            f"Port {port}\nListenAddress 127.0.0.1\nHostKey {inside}/{host_key.name}\n"
            f"AuthorizedKeysFile {inside}/authorized_keys\nPidFile none\n"
            "PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\n"
            "StrictModes no\nPermitRootLogin no\nPubkeyAuthentication yes\n"
            f"SetEnv HOME={self._home()}\n"
            "Subsystem sftp internal-sftp\n"
        )
        return [sshd_path() or "sshd", "-D", "-e", "-f", f"{inside}/sshd_config"]

    async def _wait_listening(
        self, proc: asyncio.subprocess.Process, address: Address, timeout: float
    ) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while loop.time() < deadline:
            if proc.returncode is not None:
                raise RuntimeError(f"exited with status {proc.returncode}")
            try:
                sock = await self.connect(address)
            except OSError:
                await asyncio.sleep(0.1)
                continue
            sock.close()
            return
        raise TimeoutError(f"not listening after {timeout:.0f} s")


def give_file(workdir: Path, name: str, data: bytes, mode: int,
              owner: tuple[int, int] | None) -> None:
    """Write ``workdir/name`` for the session, following no symlink (``safefs``)."""
    root = os.open(workdir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        try:
            write_beneath(root, name, data, owner, mode=mode)
        except BeneathError:  # the session put a symlink there: replace it (never follow it)
            remove_beneath(root, name)
            write_beneath(root, name, data, owner, mode=mode)
    except OSError as e:
        raise Problem(500, "app-service-start-failed", "Failed to launch the app service",
                      data=f"cannot write /home/work/{name}: {e.strerror}") from None
    finally:
        os.close(root)


def ensure_id_container(ssh_dir: Path) -> None:
    """The session's SSH key pair, ``id_container`` (RSA 2048, as the seed doc says), made in
    the endpoint's own runtime directory."""
    key = ssh_dir / "id_container"
    if key.exists():
        return
    keygen = shutil.which("ssh-keygen")
    if keygen is None:
        return
    import subprocess

    subprocess.run(
        [keygen, "-q", "-t", "rsa", "-b", "2048", "-N", "", "-m", "PEM", "-C", "work@session",
         "-f", str(key)],
        check=True, stdin=subprocess.DEVNULL, capture_output=True,
    )


async def _run(argv: list[str]) -> None:
    proc = await asyncio.create_subprocess_exec(
        *argv, stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )
    _, err = await proc.communicate()
    if proc.returncode:
        raise RuntimeError(f"{argv[0]} failed: {err.decode(errors='replace')}")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def connect_unix_nofollow(path: str) -> socket.socket:
    """Connect to the Unix socket at ``path`` without following a symlink at its last
    component (``O_PATH | O_NOFOLLOW``, then ``/proc/self/fd``)."""
    fd = os.open(path, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        if not stat.S_ISSOCK(os.fstat(fd).st_mode):
            raise ConnectionRefusedError(errno.ECONNREFUSED, "not a socket")
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.setblocking(False)
        try:  # not loop.sock_connect: a full backlog would give an unconnected socket
            await connect_unix(sock, f"/proc/self/fd/{fd}")
        except BaseException:
            sock.close()
            raise
        return sock
    finally:
        os.close(fd)


class ServiceManager:
    """Per-session :class:`SessionServices`, keyed by session id."""

    def __init__(self) -> None:
        self.sessions: dict[str, SessionServices] = {}
        self.preopen: dict[str, list[int]] = {}

    def of(self, sess: ComputeSession) -> SessionServices:
        svc = self.sessions.get(sess.id)
        if svc is None:
            defs = builtin_services() if sess.type != "batch" else []
            defs += [ServiceDef(str(p), "preopen", p) for p in self.preopen.get(sess.id, [])]
            svc = self.sessions[sess.id] = SessionServices(sess, defs)
        # Forget dead sessions' entries (their processes died with them).
        for sid in [k for k, v in self.sessions.items() if not v.sess.alive]:
            self.sessions.pop(sid, None)
            self.preopen.pop(sid, None)
        return svc


SERVICES: web.AppKey[ServiceManager] = web.AppKey("bjup_services", ServiceManager)


def _manager(app: web.Application) -> ServiceManager:
    if SERVICES not in app:
        app[SERVICES] = ServiceManager()
    return app[SERVICES]


def register_session(app: web.Application, sess: ComputeSession, config: dict[str, Any]) -> None:
    """Hook for ``POST /session``: validate and remember ``config.preopen_ports``."""
    raw = config.get("preopen_ports", config.get("preopenPorts")) or []
    if not isinstance(raw, list):
        raise invalid_api_params("Input validation error", {"preopen_ports": "must be a list"})
    ports: list[int] = []
    intrinsic = {d.port: d.name for d in builtin_services()}
    for p in raw:
        try:
            port = int(p)
        except (TypeError, ValueError):
            raise invalid_api_params(
                "Input validation error", {"preopen_ports": f"invalid port {p!r}"}
            ) from None
        if not 1024 <= port <= 65535:
            raise invalid_api_params(
                "Input validation error", {"preopen_ports": "ports must be in 1024..65535"}
            )
        if port in RESERVED_PORTS:
            raise invalid_api_params("Port 2000 and 2001 are reserved for internal use")
        if port in intrinsic:
            raise invalid_api_params(
                f"Port {port} overlaps with built-in service {intrinsic[port]}"
            )
        if port not in ports:
            ports.append(port)
    if ports:
        _manager(app).preopen[sess.id] = ports


def service_ports(app: web.Application, sess: ComputeSession) -> list[dict[str, Any]]:
    """``servicePorts`` of create/info answers and the ``/apps`` list (empty until RUNNING)."""
    if sess.status != "RUNNING" and sess.status != "RESTARTING":
        return []
    return [d.to_json() for d in _manager(app).of(sess).defs]


def session_services(app: web.Application, sess: ComputeSession) -> SessionServices:
    return _manager(app).of(sess)
