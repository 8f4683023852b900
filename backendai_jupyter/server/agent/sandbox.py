"""Sessions in a bubblewrap sandbox, and the environment a session process gets.

Each session gets one ``bwrap`` process (started by :class:`SessionSandbox`) whose namespaces
every process of the session joins (:func:`.limits.enter_sandbox`: the zygote's forked kernels,
the ``limits.py`` launcher for everything else). The sandbox has

* its own PID namespace: bwrap's init is PID 1 there; killing it (destroy) makes the kernel kill
  every process of the session, double-forked daemons included; ``--die-with-parent`` plus a
  stdin pipe from the endpoint end it when the endpoint dies, however it dies;
* its own mount namespace: ``/`` read-only, ``/home`` replaced by the session directory at
  ``/home/work`` (the working directory and ``HOME``) and the storage folders at
  ``/home/work/<name>`` (or their ``mount_map`` path), a private ``/tmp`` and ``/dev/shm``, a
  private IPC namespace (System V shared memory), and the endpoint's data directory (keypair,
  other sessions, logs) and its user's home replaced by empty directories — only this
  session's runtime directories (the kernel's connection file, the services' sockets) and the
  interpreter's own directories are bound back at their own paths;
* the network of the endpoint (the kernel and the services listen on loopback for it).

Why join namespaces instead of running the kernel *as* bwrap's command: the fork server
(:mod:`.zygote`) that makes kernels start in milliseconds cannot ``exec`` bwrap without losing
its pre-imported Python; ``setns`` after the fork keeps it (``bench/local_endpoint.py``).

``serve --sandbox auto|bwrap|none``: ``auto`` probes bubblewrap once and, when it does not work
(not installed, user namespaces disabled), runs sessions unisolated and says so once at start.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import glob
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from .procfs import start_time

__all__ = [
    "ENV_ALLOW",
    "SANDBOX_MODES",
    "SandboxUnavailable",
    "SessionSandbox",
    "bwrap_argv",
    "probe_bwrap",
    "resolve_mode",
    "session_base_env",
]

log = logging.getLogger(__name__)

SANDBOX_MODES = ("auto", "bwrap", "none")
HOME = "/home/work"

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


class SandboxUnavailable(RuntimeError):
    """``--sandbox bwrap`` was asked for and bubblewrap does not work here."""


def session_base_env(environ: Mapping[str, str]) -> dict[str, str]:
    """The allow-listed part of ``environ`` (the endpoint's own environment)."""
    return {
        k: v for k, v in environ.items() if k in ENV_ALLOW or k.startswith(ENV_ALLOW_PREFIXES)
    }


def _under(path: PurePosixPath, root: PurePosixPath) -> bool:
    return path == root or root in path.parents


def bwrap_argv(
    bwrap: str,
    *,
    workdir: Path,
    runtime_dirs: Iterable[Path],
    data_dir: Path,
    mounts: Iterable[tuple[Path, str]],
    keep_paths: Iterable[str] = (),
    hide: Iterable[str] = (),
    devices: Iterable[str] = (),
    info_fd: int | None = None,
) -> list[str]:
    """The bubblewrap command line of one session sandbox (pure: paths in, argv out).

    Hidden (an empty tmpfs on top): ``/tmp``, ``/home``, the directories in ``hide`` (the
    endpoint user's home when it is not under ``/home``, e.g. ``/root``) and the data directory.
    ``keep_paths``: host directories the interpreter needs (``sys.path`` entries, the
    interpreter's prefixes) that a hidden directory would otherwise cover; bound back read-only
    (never one that holds the data directory).
    ``devices``: device nodes the session may use (the NVIDIA ones: which GPU a session uses is
    chosen by ``CUDA_VISIBLE_DEVICES``, as on the unsandboxed endpoint).
    """
    data = PurePosixPath(data_dir)
    argv = [
        bwrap, "--die-with-parent", "--unshare-pid", "--unshare-ipc", "--new-session",
        "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "--tmpfs", "/dev/shm",
    ]
    for dev in devices:
        argv += ["--dev-bind", dev, dev]
    hidden: list[PurePosixPath] = []
    for h in (PurePosixPath("/tmp"), PurePosixPath("/home"), *map(PurePosixPath, hide), data):
        if str(h) != "/" and not any(_under(h, done) for done in hidden):
            hidden.append(h)
            argv += ["--tmpfs", str(h)]
    for p in sorted(set(keep_paths)):
        pp = PurePosixPath(p)
        if any(_under(pp, h) for h in hidden) and not _under(data, pp):
            argv += ["--ro-bind", p, p]
    argv += ["--bind", str(workdir), HOME]
    for rt in runtime_dirs:
        argv += ["--bind", str(rt), str(rt)]
    for host_dir, inside in mounts:
        argv += ["--bind", str(host_dir), str(PurePosixPath(HOME) / inside.removeprefix(HOME + "/"))
                 if not inside.startswith("/") else inside]
    argv += ["--chdir", HOME]
    if info_fd is not None:
        argv += ["--info-fd", str(info_fd)]
    # The sandbox's first process: prints a line once the mounts are in place, then lives until
    # the endpoint closes its stdin (or dies).
    argv += ["--", "/bin/sh", "-c", "echo ready; read _ || true"]
    return argv


def _bwrap_path() -> str | None:
    return shutil.which("bwrap")


@functools.lru_cache(maxsize=1)
def probe_bwrap() -> str | None:
    """``None`` when bubblewrap can make a sandbox here, else why not (run once at start)."""
    exe = _bwrap_path()
    if exe is None:
        return "bubblewrap (bwrap) is not installed"
    try:
        out = subprocess.run(
            [exe, "--die-with-parent", "--unshare-pid", "--unshare-ipc", "--ro-bind", "/", "/",
             "--dev", "/dev", "--proc", "/proc", "--tmpfs", "/tmp", "--", "/bin/true"],
            capture_output=True, text=True, timeout=20, stdin=subprocess.DEVNULL,
        )
    except (OSError, subprocess.SubprocessError) as e:
        return f"bubblewrap does not run: {e}"
    if out.returncode != 0:
        return f"bubblewrap does not work here: {out.stderr.strip() or out.returncode}"
    return None


def resolve_mode(mode: str) -> tuple[bool, str | None]:
    """``(use bwrap, warning)`` for ``--sandbox MODE``; raises :class:`SandboxUnavailable`."""
    if mode == "none":
        return False, "sessions are not isolated (--sandbox none)"
    why = probe_bwrap()
    if why is None:
        return True, None
    if mode == "bwrap":
        raise SandboxUnavailable(why)
    return False, f"sessions are not isolated: {why} (see README: install bubblewrap)"



@dataclass
class SandboxInfo:
    pid: int  # host pid of the sandbox's init (PID 1 inside)
    start: str | None

    def to_limits(self, keep_caps: bool = False) -> dict[str, object]:
        return {"pid": self.pid, "start": self.start, "cwd": HOME, "keep_caps": keep_caps}


class SessionSandbox:
    """The bwrap process of one session."""

    def __init__(self, argv_for: Callable[[int], list[str]]) -> None:
        self.argv_for = argv_for
        self.proc: asyncio.subprocess.Process | None = None
        self.info: SandboxInfo | None = None

    @classmethod
    def for_session(
        cls, *, workdir: Path, runtime_dirs: list[Path], data_dir: Path,
        mounts: list[tuple[Path, str]],
    ) -> SessionSandbox:
        exe = _bwrap_path() or "bwrap"
        keep = [p for p in sys.path if p]
        keep += [sys.prefix, sys.exec_prefix, sys.base_prefix, sys.base_exec_prefix,
                 os.path.dirname(os.path.realpath(sys.executable))]
        keep = [p for p in keep if os.path.isdir(p)]
        devices = sorted(glob.glob("/dev/nvidia*"))
        return cls(lambda fd: bwrap_argv(
            exe, workdir=workdir, runtime_dirs=runtime_dirs, data_dir=data_dir, mounts=mounts,
            keep_paths=keep, hide=[str(Path.home())], devices=devices, info_fd=fd,
        ))

    async def start(self, log_path: Path) -> SandboxInfo:
        """Start bwrap; returns once its mounts are in place (about 10 ms)."""
        info_r, info_w = os.pipe()
        try:
            with open(log_path, "ab") as log:
                self.proc = await asyncio.create_subprocess_exec(
                    *self.argv_for(info_w), stdin=asyncio.subprocess.PIPE,
                    stdout=asyncio.subprocess.PIPE, stderr=log, pass_fds=(info_w,),
                    start_new_session=True,
                )
        finally:
            os.close(info_w)
        try:
            info = await asyncio.wait_for(_read_all(info_r), 20)
            assert self.proc.stdout is not None
            line = await asyncio.wait_for(self.proc.stdout.readline(), 20)
        except asyncio.TimeoutError:
            await self.stop()
            raise RuntimeError("the sandbox did not start within 20 s") from None
        if line.strip() != b"ready":
            await self.stop()
            raise RuntimeError(f"the sandbox did not start (bwrap's messages: {log_path})")
        try:
            pid = int(json.loads(info)["child-pid"])
        except (ValueError, KeyError, TypeError):
            await self.stop()
            raise RuntimeError(f"bwrap gave no child pid: {info!r}") from None
        self.info = SandboxInfo(pid, start_time(pid))
        return self.info

    def pids(self) -> set[int]:
        out = set()
        if self.proc is not None and self.proc.returncode is None:
            out.add(self.proc.pid)
        if self.info is not None and start_time(self.info.pid) == self.info.start:
            out.add(self.info.pid)
        return out

    def kill(self) -> None:
        """SIGKILL the sandbox's init: the kernel then kills everything in its PID namespace."""
        for pid in self.pids():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)

    async def stop(self) -> None:
        self.kill()
        if self.proc is not None:
            if self.proc.stdin is not None:
                self.proc.stdin.close()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self.proc.wait(), 5)


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
