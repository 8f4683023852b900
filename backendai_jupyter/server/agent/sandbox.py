"""Sessions as containers: a bubblewrap sandbox with their own user, network, PIDs and files.

Each session gets one ``bwrap`` process (started by :class:`SessionSandbox`) whose namespaces
every process of the session joins (:func:`.limits.enter_sandbox`: the zygote's forked kernels,
the ``limits.py`` launcher for everything else). The layers, and what each protects against:

* **user** — the session is uid/gid 1000 ``work`` (home ``/home/work``), as in Backend.AI's
  images, mapped to an unprivileged host id: the endpoint's own uid, or — when the endpoint is
  root — :data:`ROOT_MODE_HOST_ID` (what a rootless container runtime maps uid 1000 to), with no
  host root inside. Nothing in the session holds a capability on the host (``no_new_privs``,
  empty bounding set). When the endpoint is root, bwrap makes the other namespaces and
  ``sandbox_init.py`` the user namespace, so they stay owned by the host's: the session cannot
  mount, unmount or reconfigure its network even in its own user namespace;
* **PID** — its own PID namespace: killing the sandbox's init (destroy) makes the kernel kill
  every process of the session, double-forked daemons included; ``--die-with-parent`` plus the
  control socket end it when the endpoint dies, however it dies;
* **mount** — ``/`` read-only, ``/home`` an empty read-only tmpfs with the session directory at
  ``/home/work`` and the session's runtime directory (kernel connection file, sshd
  configuration, host key) read-only at ``/home/config`` — paths that name nothing of the host;
  the storage folders at ``/home/work/<name>`` (or their ``mount_map`` path); a private,
  size-limited ``/tmp`` and ``/dev/shm``; ``/run`` hidden (host daemons' sockets); the
  endpoint's data directory and its user's home hidden; a generated ``/etc/passwd``/``group``
  naming ``work``;
* **IPC** — its own System V IPC;
* **network** — its own network namespace (``netns.py``): the host's loopback (the endpoint,
  other sessions' services) is unreachable, the outside is reached through slirp4netns, and the
  endpoint reaches the session's ports through sockets made inside it.

What it does not protect against: the kernel's own bugs (a shared kernel, not a VM); the
machine's other network services (slirp4netns connects out as the endpoint's host, so a
service listening on a non-loopback address of the host is reachable); reading what the
read-only ``/`` shows to any unprivileged user of the machine.

Why join namespaces instead of running the kernel *as* bwrap's command: the fork server
(:mod:`.zygote`) that makes kernels start in milliseconds cannot ``exec`` bwrap without losing
its pre-imported Python; ``setns`` after the fork keeps it (``bench/local_endpoint.py``).

``serve --sandbox auto|bwrap|strict|none``: ``auto`` probes each layer once and runs sessions
with what works, naming what is missing in one warning (and in ``GET /``'s diagnostics);
``bwrap`` requires bubblewrap; ``strict`` requires every layer and refuses to start without.
"""

from __future__ import annotations

import asyncio
import contextlib
import glob
import json
import logging
import os
import shutil
import signal
import socket
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from .layers import (
    DEFAULT_TMP_SIZE,
    SANDBOX_MODES,
    SESSION_ID,
    Isolation,
    SandboxUnavailable,
    SessionLimits,
    probe_bwrap,
    resolve_mode,
)
from .netns import SlirpNet, SocketFactory
from .procfs import start_time

__all__ = [
    "CONFIG_DIR",
    "ENV_ALLOW",
    "HOME",
    "SANDBOX_MODES",
    "Isolation",
    "SandboxUnavailable",
    "SessionSandbox",
    "SessionLimits",
    "bwrap_argv",
    "give_to_session",
    "host_ids",
    "passwd_with_work",
    "probe_bwrap",
    "resolve_mode",
    "session_base_env",
]

log = logging.getLogger(__name__)

HOME = "/home/work"
#: The session's runtime directory inside the sandbox (read-only): ``kernel.json``, ``ssh/``.
CONFIG_DIR = "/home/config"
#: The host uid/gid of ``work`` when the endpoint runs as root (uid 1000 of a rootless
#: container whose subordinate range starts at 100000).
ROOT_MODE_HOST_ID = 101000
_INIT = str(Path(__file__).with_name("sandbox_init.py"))

#: What a session inherits from the endpoint's environment: locale, paths, proxies and CA
#: bundles, GPU libraries. Nothing else (no credentials, no Jupyter/IDE variables).
ENV_ALLOW = frozenset({
    "PATH", "LANG", "LANGUAGE", "TZ", "TERM", "USER", "LOGNAME", "SHELL",
    "PYTHONPATH", "PYTHONHOME", "PYTHONIOENCODING", "PYTHONUTF8", "VIRTUAL_ENV", "CONDA_PREFIX",
    "LD_LIBRARY_PATH", "CUDA_HOME", "CUDA_PATH",
    "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy",
    "SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE", "PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL",
})
ENV_ALLOW_PREFIXES = ("LC_", "NVIDIA_")


def session_base_env(environ: Mapping[str, str]) -> dict[str, str]:
    """The allow-listed part of ``environ`` (the endpoint's own environment)."""
    return {
        k: v for k, v in environ.items() if k in ENV_ALLOW or k.startswith(ENV_ALLOW_PREFIXES)
    }


def host_ids() -> tuple[int, int]:
    """The host uid/gid the session's ``work`` user maps to."""
    if os.geteuid() == 0:
        return ROOT_MODE_HOST_ID, ROOT_MODE_HOST_ID
    return os.getuid(), os.getgid()


def passwd_with_work(text: str, *, group: bool = False) -> str:
    """``/etc/passwd`` (or ``group``) with uid/gid 1000 named ``work`` (pure)."""
    keep = []
    for line in text.splitlines():
        fields = line.split(":")
        if len(fields) > 2 and (fields[0] == "work" or fields[2] == str(SESSION_ID)):
            continue
        keep.append(line)
    keep.append(f"work:x:{SESSION_ID}:" if group
                else f"work:x:{SESSION_ID}:{SESSION_ID}:work:{HOME}:/bin/bash")
    return "\n".join(keep) + "\n"


def give_to_session(workdir: Path) -> None:
    """Make a fresh session directory (and what the endpoint wrote into it) the session's
    ``work`` user's, when the endpoint is root. Never follows a symlink."""
    uid, gid = host_ids()
    for _, dirs, files, dirfd in os.fwalk(workdir):
        os.chown(dirfd, uid, gid)
        for name in [*dirs, *files]:
            with contextlib.suppress(FileNotFoundError):
                os.chown(name, uid, gid, dir_fd=dirfd, follow_symlinks=False)


def _under(path: PurePosixPath, root: PurePosixPath) -> bool:
    return path == root or root in path.parents


def _hidden_and_kept(data: PurePosixPath, hide: Iterable[str], keep_paths: Iterable[str],
                     tmp_size: int) -> list[str]:
    """The empty tmpfs over what the session must not see, and the interpreter's directories
    bound back read-only inside them (part of :func:`bwrap_argv`)."""
    argv: list[str] = []
    hidden: list[PurePosixPath] = []
    for h in (PurePosixPath("/tmp"), PurePosixPath("/home"), PurePosixPath("/run"),
              *map(PurePosixPath, hide), data):
        if str(h) != "/" and not any(_under(h, done) for done in hidden):
            hidden.append(h)
            if h == PurePosixPath("/tmp"):
                argv += ["--perms", "1777", "--size", str(tmp_size)]
            argv += ["--tmpfs", str(h)]
    made: set[PurePosixPath] = set()
    for p in sorted(set(keep_paths)):
        pp = PurePosixPath(p)
        top = next((h for h in hidden if _under(pp, h)), None)
        if top is not None and not _under(data, pp):
            # The mount point's parents in the tmpfs: traversable by the session's user
            # (bwrap would make them 0700, its own user's).
            for parent in reversed(pp.parents):
                if top in parent.parents and parent not in made:
                    made.add(parent)
                    argv += ["--perms", "0755", "--dir", str(parent)]
            argv += ["--ro-bind", p, p]
    return argv


def bwrap_argv(
    bwrap: str,
    *,
    workdir: Path,
    config_dir: Path,
    data_dir: Path,
    mounts: Iterable[tuple[Path, str]],
    keep_paths: Iterable[str] = (),
    hide: Iterable[str] = (),
    devices: Iterable[str] = (),
    user: str | None = None,
    net: bool = False,
    host_id: tuple[int, int] = (ROOT_MODE_HOST_ID, ROOT_MODE_HOST_ID),
    data_fds: Mapping[str, int] | None = None,
    tmp_size: int = DEFAULT_TMP_SIZE,
    sockets_dir: Path | None = None,
    info_fd: int | None = None,
    python: str = sys.executable,
) -> list[str]:
    """The bubblewrap command line of one session sandbox (pure: paths in, argv out).

    ``user``: ``"map"`` (root endpoint: ``sandbox_init`` makes the user namespace with
    ``host_id``), ``"unshare"`` (bwrap makes it) or None (no user namespace).
    Hidden (an empty tmpfs on top): ``/tmp``, ``/home``, ``/run``, the directories in ``hide``
    (the endpoint user's home when it is not under ``/home``, e.g. ``/root``) and the data
    directory. ``keep_paths``: host directories the interpreter needs that a hidden directory
    would otherwise cover; bound back read-only (never one that holds the data directory).
    ``data_fds``: in-session file → descriptor of its content (``/etc/passwd``...).
    """
    data = PurePosixPath(data_dir)
    argv = [bwrap, "--die-with-parent", "--unshare-pid", "--unshare-ipc", "--new-session"]
    if user == "unshare":
        argv += ["--unshare-user", "--uid", str(SESSION_ID), "--gid", str(SESSION_ID)]
    elif user == "map":
        argv += ["--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID"]
    if net:
        argv.append("--unshare-net")
    argv += ["--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc",
             "--perms", "1777", "--size", str(tmp_size), "--tmpfs", "/dev/shm"]
    for dev in devices:
        argv += ["--dev-bind", dev, dev]
    argv += _hidden_and_kept(data, hide, keep_paths, tmp_size)
    for inside, fd in sorted((data_fds or {}).items()):
        argv += ["--perms", "0644", "--ro-bind-data", str(fd), inside]
    argv += ["--bind", str(workdir), HOME, "--ro-bind", str(config_dir), CONFIG_DIR]
    if sockets_dir is not None:
        argv += ["--bind", str(sockets_dir), f"{CONFIG_DIR}/sockets"]
    for host_dir, inside in mounts:
        argv += ["--bind", str(host_dir), str(PurePosixPath(HOME) / inside.removeprefix(HOME + "/"))
                 if not inside.startswith("/") else inside]
    argv += ["--remount-ro", "/home", "--chdir", HOME]
    if info_fd is not None:
        argv += ["--info-fd", str(info_fd)]
    argv += ["--", python, "-I", "-S", _INIT]
    if user == "map":
        argv += ["--map", f"{host_id[0]}:{host_id[1]}"]
    return argv


def _bwrap_path() -> str | None:
    return shutil.which("bwrap")


@dataclass
class SandboxInfo:
    pid: int  # host pid of ``sandbox_init`` in the session: the namespaces to join
    start: str | None
    init: int | None = None  # host pid of the sandbox's PID 1
    init_start: str | None = None
    ids: tuple[int, int] | None = None  # (uid, gid) inside, when there is a user namespace

    def to_limits(self) -> dict[str, object]:
        out: dict[str, object] = {"pid": self.pid, "start": self.start, "cwd": HOME}
        if self.ids is not None:
            out["ids"] = list(self.ids)
        return out


@dataclass
class SessionSandbox:
    """The bwrap process of one session, its network and its control socket."""

    argv_for: object  # Callable[[int, dict[str, int]], list[str]]
    isolation: Isolation
    data: dict[str, bytes] = field(default_factory=dict)
    proc: asyncio.subprocess.Process | None = None
    info: SandboxInfo | None = None
    factory: SocketFactory | None = None
    slirp: SlirpNet | None = None
    #: The session's network namespace (``/proc/PID/ns/net`` of ``sandbox_init``, opened once
    #: at start: a later pid could be anyone's), when it has one.
    netns: int = -1

    @classmethod
    def for_session(
        cls, *, workdir: Path, config_dir: Path, data_dir: Path, mounts: list[tuple[Path, str]],
        isolation: Isolation, sockets_dir: Path | None = None,
        tmp_size: int = DEFAULT_TMP_SIZE,
    ) -> SessionSandbox:
        exe = _bwrap_path() or "bwrap"
        keep = [p for p in sys.path if p]
        keep += [sys.prefix, sys.exec_prefix, sys.base_prefix, sys.base_exec_prefix,
                 os.path.dirname(os.path.realpath(sys.executable))]
        keep = [p for p in keep if os.path.isdir(p)]
        devices = sorted(glob.glob("/dev/nvidia*"))
        user = None
        if isolation.userns:
            user = "map" if os.geteuid() == 0 else "unshare"
        data = _session_files(user is not None, isolation.net)

        def argv_for(info_fd: int, fds: dict[str, int]) -> list[str]:
            return bwrap_argv(
                exe, workdir=workdir, config_dir=config_dir, data_dir=data_dir, mounts=mounts,
                keep_paths=keep, hide=[str(Path.home())], devices=devices, user=user,
                net=isolation.net, host_id=host_ids(), data_fds=fds, tmp_size=tmp_size,
                sockets_dir=sockets_dir, info_fd=info_fd,
            )

        return cls(argv_for, isolation, data)

    async def start(self, log_path: Path) -> SandboxInfo:
        """Start bwrap (and the session's network); returns once the session can be joined."""
        ours, theirs = socket.socketpair()
        info_r, info_w = os.pipe()
        fds = {name: _memfd(content) for name, content in self.data.items()}
        try:
            with open(log_path, "ab") as log:
                argv = self.argv_for(info_w, fds)  # type: ignore[operator]
                self.proc = await asyncio.create_subprocess_exec(
                    *argv, stdin=theirs.fileno(), stdout=log, stderr=log,
                    pass_fds=(info_w, *fds.values()), start_new_session=True,
                    # bwrap makes the mount points' parents with 0755 & ~umask: traversable
                    # by the session's user whatever the endpoint's umask.
                    umask=0o022,
                )
        finally:
            for fd in (info_w, *fds.values()):
                os.close(fd)
            theirs.close()
        self.factory = SocketFactory(ours)
        try:
            raw = await asyncio.wait_for(_read_all(info_r), 20)
            pid, uid, gid = await asyncio.wait_for(self.factory.ready(), 20)
            init = int(json.loads(raw)["child-pid"])
        except (asyncio.TimeoutError, RuntimeError, OSError, ValueError, KeyError, TypeError):
            await self.stop()
            raise RuntimeError("the sandbox did not start (bwrap's messages are in the "
                               "session's log)") from None
        if self.isolation.userns and (uid, gid) != host_ids():
            await self.stop()
            raise RuntimeError("the sandbox runs as an unexpected user")
        self.info = SandboxInfo(pid, start_time(pid), init, start_time(init),
                                (SESSION_ID, SESSION_ID) if self.isolation.userns else None)
        if self.isolation.net:
            try:
                self.netns = os.open(f"/proc/{pid}/ns/net", os.O_RDONLY | os.O_CLOEXEC)
                if start_time(pid) != self.info.start:
                    raise OSError("the sandbox's process is gone")
            except OSError:
                await self.stop()
                raise RuntimeError("the session's network did not start") from None
            with open(log_path, "ab") as log:
                try:
                    self.slirp = await SlirpNet.attach(pid, log.fileno())
                except (OSError, RuntimeError) as e:
                    await self.stop()
                    raise RuntimeError(f"the session's network did not start: {e}") from None
        return self.info

    def owner(self) -> tuple[int, int] | None:
        """The host uid/gid of the session's ``work`` user (None: no user namespace)."""
        return host_ids() if self.isolation.userns else None

    def pids(self) -> set[int]:
        out = set()
        if self.proc is not None and self.proc.returncode is None:
            out.add(self.proc.pid)
        if self.info is not None:
            for pid, start in ((self.info.init, self.info.init_start),
                               (self.info.pid, self.info.start)):
                if pid is not None and start_time(pid) == start:
                    out.add(pid)
        if self.slirp is not None:
            out |= self.slirp.pids()
        return out

    def kill(self) -> None:
        """SIGKILL the sandbox's init: the kernel then kills everything in its PID namespace."""
        for pid in self.pids():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)

    async def stop(self) -> None:
        self.kill()
        if self.factory is not None:
            self.factory.close()
        if self.netns >= 0:
            os.close(self.netns)
            self.netns = -1
        if self.slirp is not None:
            await self.slirp.stop()
        if self.proc is not None:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self.proc.wait(), 5)


def _session_files(user: bool, net: bool) -> dict[str, bytes]:
    """Files the sandbox shows instead of the host's: ``work`` in passwd/group, slirp4netns's
    DNS forwarder in resolv.conf (the host's may name an address of its own loopback)."""
    out: dict[str, bytes] = {}
    if user:
        for name, group in (("/etc/passwd", False), ("/etc/group", True)):
            try:
                text = Path(name).read_text()
            except OSError:
                text = ""
            out[name] = passwd_with_work(text, group=group).encode()
    if net and os.path.exists("/etc/resolv.conf"):
        out["/etc/resolv.conf"] = b"nameserver 10.0.2.3\n"
    return out


def _memfd(content: bytes) -> int:
    fd = os.memfd_create("bjup-sandbox-file")
    os.write(fd, content)
    os.lseek(fd, 0, os.SEEK_SET)
    return fd


async def _read_all(fd: int) -> bytes:
    """Everything bwrap writes on its info pipe (on the loop: no thread per sandbox start)."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    transport, _ = await loop.connect_read_pipe(
        lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(fd, "rb", buffering=0)
    )
    try:
        return await reader.read()
    finally:
        transport.close()
