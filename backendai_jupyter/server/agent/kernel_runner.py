"""A session's processes: one ipykernel (query mode) and ``/bin/sh`` steps (batch mode).

This plays the part of Backend.AI's in-container *kernel runner* (protocol.md §4.3, and the
26.9.6 runner's ``output_hook``/``stdin_hook``): Jupyter messages become runner records
``(type, data)`` — ``stdout``, ``stderr``, ``media``, ``html``, ``waiting-input``, ``finished``,
``build-finished``, ``clean-finished`` — pushed into the run's queue; ``execute.py`` then batches
them into console items exactly as the agent does.

One deliberate difference: the stock runner sends HTML as a raw ``media`` record which the agent
cannot decode (execute answers 500); here it becomes a ``["html", "<...>"]`` record.

Every process is started in its own process group through :mod:`.limits`, inside the session's
sandbox (:mod:`.sandbox`) and memory cgroup (:mod:`.cgroups`) when there are; ``stop`` kills each
group, any descendant that left it (``/proc`` scan), the sandbox's PID namespace and whatever is
left in the cgroup, so nothing survives, double-forked daemons included.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import sys
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import zmq.asyncio
from jupyter_client.kernelspec import KernelSpec
from jupyter_client.manager import AsyncKernelManager

from . import netns_zmq
from .cgroups import MemoryCgroup
from .diskquota import HomeImage
from .kernel_messages import next_message
from .limits import ENV_VAR, launcher_argv
from .netns import PortRelay
from .procfs import is_alive
from .runs import Record, Run, text_pieces
from .sandbox import CONFIG_DIR, SessionSandbox, host_ids
from .zygote import Zygote, ZygoteProvisioner

__all__ = ["Run", "SessionProcess", "descendants", "kill_tree"]

KERNEL_CHANNELS = ("shell", "iopub", "stdin", "control", "hb")
#: Where a sandboxed session's kernel keeps its IPython history: the sandbox's own tmpfs, which
#: lives as long as the session (across kernel restarts). In ``~/.ipython`` of the home, every
#: cell's commit was an ``fsync`` (0.7 ms here) that the next cell waited for.
HISTORY_FILE = "/tmp/.ipython_history.sqlite"


def descendants(pids: set[int]) -> set[int]:
    """All live descendants of ``pids`` (``/proc`` scan; no psutil needed)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path("/proc", entry, "stat").read_text()
        except OSError:
            continue
        # The command name may contain spaces/parens: fields start after the last ')'.
        fields = stat[stat.rfind(")") + 2 :].split()
        children.setdefault(int(fields[1]), []).append(int(entry))
    found: set[int] = set()
    todo = list(pids)
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def kill_tree(pids: set[int], sig: int = signal.SIGKILL) -> None:
    """Signal the process groups of ``pids`` and every descendant process."""
    everyone = pids | descendants(pids)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, sig)
    for pid in everyone:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)


class _LocalKernelManager(AsyncKernelManager):
    """An ``AsyncKernelManager`` whose kernelspec is built here (argv wrapped by ``limits``)."""

    def __init__(self, spec: KernelSpec, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._bjup_spec = spec

    @property
    def kernel_spec(self) -> KernelSpec:
        return self._bjup_spec


def display_record(data: dict[str, Any]) -> Record | None:
    """The runner's choice for ``execute_result``/``display_data``: if several MIME types, drop
    ``text/plain`` and take the first remaining one. Unknown types are dropped (as upstream)."""
    if not data:
        return None
    data = dict(data)
    if len(data) > 1:
        data.pop("text/plain", None)
    mime, value = next(iter(data.items()))
    if mime == "text/plain":
        return ("stdout", value)
    if mime == "text/html":
        return ("html", value)
    if mime in ("image/png", "image/jpeg"):
        return ("media", [mime, f"data:{mime};base64,{str(value).strip()}"])
    if mime == "image/svg+xml":
        return ("media", [mime, value])
    return None


class SessionProcess:
    """The processes of one session, started in its working directory with its env/limits."""

    def __init__(
        self,
        workdir: Path,
        env: dict[str, str],
        limits: dict[str, Any],
        log: Path,
        zygote: Zygote | None = None,
        *,
        sandbox: SessionSandbox | None = None,
        cgroup: MemoryCgroup | None = None,
        service_dir: Path | None = None,
        runtime_dir: Path | None = None,
        pids_cgroup: MemoryCgroup | None = None,
    ):
        self.workdir = workdir
        self.sandbox = sandbox
        self.cgroup = cgroup
        self.pids_cgroup = pids_cgroup
        #: A short directory for the services' Unix sockets (``services.py``), when the session
        #: has no network of its own to listen in.
        self.service_dir = service_dir
        #: Host-side: the kernel's connection file and sshd's files (read-only in the sandbox).
        self.runtime_dir = runtime_dir or workdir.parent / (workdir.name + ".runtime")
        #: The ZMQ context of the kernel's channels when it connects in the session's own
        #: network (``netns_zmq.py``); else the client's own context, and ``relay``.
        self.context: zmq.asyncio.Context | None = None
        #: Host-loopback ports relayed to the kernel's ports in the session's network.
        self.relay: PortRelay | None = None
        #: The file system of ``/home/work`` when it has a quota (``diskquota.py``).
        self.home_image: HomeImage | None = None
        self.zygote = zygote
        self.env = env
        self.limits = limits
        self.log_path = log
        self.km: Any = None
        self.kc: Any = None
        self.children: set[asyncio.subprocess.Process] = set()
        #: Called after every process start (the crash records note its pid).
        self.on_spawn: Callable[[], None] | None = None
        self._batch_proc: asyncio.subprocess.Process | None = None
        self._reviving: asyncio.Task[None] | None = None
        #: The run being executed (the OOM watcher lets it deliver its last words first).
        self.current_run: Run | None = None

    def adopt(self, proc: asyncio.subprocess.Process) -> None:
        """A process started for this session (a service, the terminal): it dies with it."""
        self.children.add(proc)
        self._spawned()

    def _spawned(self) -> None:
        if self.on_spawn is not None:
            with contextlib.suppress(OSError):
                self.on_spawn()

    def oom_killed(self) -> bool:
        """Whether the kernel's OOM killer ended a process of this session (cgroup only)."""
        return self.cgroup is not None and self.cgroup.oom_kills() > 0

    def memory_limit_words(self) -> str:
        mem = self.limits.get("mem")
        return f" of {int(mem) // 2**20} MiB" if isinstance(mem, int) else ""

    def _full_env(self) -> dict[str, str]:
        env = dict(self.env)
        env[ENV_VAR] = json.dumps(self.limits)
        return env

    # -- the ipykernel ---------------------------------------------------------------------------

    async def start_kernel(self) -> None:
        conn = "{connection_file}"
        history: list[str] = []
        if self.sandbox is not None:  # where the session sees it (names nothing of the host)
            conn = f"{CONFIG_DIR}/kernel.json"
            history = [f"--HistoryManager.hist_file={HISTORY_FILE}"]
        spec = KernelSpec(
            # The provisioner forks the kernel in the zygote or adds the launcher itself.
            argv=[sys.executable, "-m", "ipykernel_launcher", "-f", conn, *history],
            display_name="Python 3 (Backend.AI local)",
            language="python",
            interrupt_mode="signal",
        )
        self.runtime_dir.mkdir(exist_ok=True, mode=0o755)
        self.km = _LocalKernelManager(
            spec, connection_file=str(self.runtime_dir / "kernel.json"))
        self.km.kernel_id = str(uuid.uuid4())
        prov = ZygoteProvisioner(kernel_id=self.km.kernel_id, kernel_spec=spec, parent=self.km)
        prov.zygote, prov.log_path = self.zygote, str(self.log_path)
        if self.sandbox is not None and self.sandbox.isolation.userns:
            prov.owner = host_ids()
        self.km.provisioner = prov
        log = open(self.log_path, "ab")  # noqa: SIM115 - handed to the child, closed below
        try:
            await self.km.start_kernel(
                env=self._full_env(), cwd=str(self.workdir), stdout=log, stderr=log
            )
        finally:
            log.close()
        self._spawned()
        sandbox = self.sandbox
        if sandbox is not None and sandbox.isolation.net:
            self.context = netns_zmq.try_context_in(sandbox.netns)
        ctx = self.context
        self.kc = self.km.client(context=ctx) if ctx is not None else self.km.client()
        if ctx is None and sandbox is not None and sandbox.factory is not None \
                and sandbox.isolation.net:
            # An unprivileged endpoint may not join the session's network: a relay from
            # host-loopback ports to the kernel's (load_connection_info keeps ports set).
            self.relay = PortRelay(sandbox.factory)
            info = self.km.get_connection_info()
            inner = {ch: int(info[f"{ch}_port"]) for ch in KERNEL_CHANNELS}
            hosts = await self.relay.start(inner.values())
            for ch, port in inner.items():
                setattr(self.kc, f"{ch}_port", hosts[port])
        self.kc.start_channels()
        try:
            await self.kc.wait_for_ready(timeout=60)
        except RuntimeError as e:
            raise RuntimeError(f"the kernel did not start: {e}") from None

    def kernel_pid(self) -> int | None:
        proc = getattr(getattr(self.km, "provisioner", None), "process", None)
        return int(proc.pid) if proc is not None else None

    async def run_code(self, run: Run, code: str) -> None:
        """Execute ``code`` in the kernel, pushing runner records; ends with ``finished``."""
        if self._reviving is not None and not self._reviving.done():
            # The kernel died and is being replaced: run in the new one, not the old client.
            with contextlib.suppress(Exception):
                await asyncio.shield(self._reviving)
        kc = self.kc
        if kc is None:
            await run.records.put(("stderr", "this session has no Python kernel (batch session)\n"))
            await run.records.put(("finished", {"exitCode": 127}))
            return
        self.current_run = run
        msg_id = kc.execute(code, allow_stdin=True, store_history=True, stop_on_error=True)
        stdin_task = asyncio.create_task(self._stdin_loop(run, msg_id))
        exit_code = 0
        try:
            while True:
                try:
                    msg = await next_message(kc.iopub_channel, 1.0)
                except Exception:  # a broken channel: as a silent second
                    msg = None
                if msg is None:  # nothing for a second: check the kernel is still there
                    if kc is not self.kc:  # restarted meanwhile: this execution is gone
                        await run.records.put(("stderr", "The kernel was restarted.\n"))
                        exit_code = 130
                        break
                    if self.oom_killed():  # the scheduler ends the session (oom-killed)
                        await run.records.put(("stderr", (
                            "The session ran out of memory (its limit"
                            f"{self.memory_limit_words()}): the system killed its processes "
                            "and the session is ending.\n")))
                        exit_code = 137
                        break
                    if not await self.km.is_alive():
                        await run.records.put(("stderr", "The kernel died; restarting it.\n"))
                        exit_code = 130
                        if self._reviving is None or self._reviving.done():
                            self._reviving = asyncio.create_task(self._revive())
                        break
                    continue
                if msg.get("parent_header", {}).get("msg_id") != msg_id:
                    continue
                kind, content = msg["msg_type"], msg["content"]
                if kind == "stream":
                    for piece in text_pieces(content["text"]):
                        await run.records.put((content["name"], piece))
                elif kind == "error":
                    exit_code = self._error_exit_code(content)
                    await run.records.put(("stderr", "\n".join(content.get("traceback", []))))
                elif kind in ("execute_result", "display_data"):
                    rec = display_record(content.get("data", {}))
                    if rec is not None:
                        await run.records.put(rec)
                elif kind == "status" and content.get("execution_state") == "idle":
                    break
        finally:
            stdin_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await stdin_task
        await run.records.put(("finished", {"exitCode": exit_code}))

    @staticmethod
    def _error_exit_code(content: dict[str, Any]) -> int:
        if content.get("ename") == "SystemExit":
            try:
                return int(content.get("evalue") or 0)
            except ValueError:
                return 1
        return 1

    async def _stdin_loop(self, run: Run, msg_id: str) -> None:
        while True:
            try:
                msg = await next_message(self.kc.stdin_channel, 3600)
            except Exception:
                continue
            if msg is None or msg.get("msg_type") != "input_request":
                continue
            if msg.get("parent_header", {}).get("msg_id") not in (None, msg_id):
                continue
            prompt = msg["content"].get("prompt", "")
            if prompt:
                await run.records.put(("stdout", prompt))
            await run.records.put(
                ("waiting-input", {"is_password": bool(msg["content"].get("password"))})
            )
            self.kc.input(await run.inputs.get())

    async def _revive(self) -> None:
        with contextlib.suppress(Exception):
            await self.restart()

    def interrupt(self) -> None:
        """SIGINT to a running batch step, else a Jupyter interrupt (as the runner does)."""
        proc = self._batch_proc
        if proc is not None and proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGINT)
            return
        pid = self.kernel_pid()
        if pid is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGINT)

    async def restart(self) -> None:
        """A fresh kernel process in the same working directory (files are kept)."""
        if self.km is None:
            return
        old = self.kernel_pid()
        if self.kc is not None:
            self.kc.stop_channels()
        with contextlib.suppress(Exception):
            await self.km.shutdown_kernel(now=True)
        if old is not None:
            kill_tree({old})
        await self._release_channels()
        await self.start_kernel()

    async def _release_channels(self) -> None:
        """After ``stop_channels``: the context made for them (its I/O thread) or the relay."""
        if self.context is not None:
            self.context.destroy(linger=0)
            self.context = None
        if self.relay is not None:
            await self.relay.close()
            self.relay = None

    # -- shell commands (batch steps, startup command, bootstrap) -----------------------------

    async def run_shell(self, command: str, run: Run | None, *, batch: bool = False) -> int:
        """Run ``command`` with ``/bin/sh -c`` in the workdir; stream output as records (4 KiB
        reads, as the runner does) or into the container log when ``run`` is None."""
        env = self._full_env()
        if batch:
            env["_BACKEND_BATCH_MODE"] = "1"
        proc = await asyncio.create_subprocess_exec(
            *launcher_argv(["/bin/sh", "-c", command]),
            cwd=str(self.workdir),
            env=env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,
        )
        self.adopt(proc)
        if run is not None:
            self._batch_proc = proc

        async def pump(stream: asyncio.StreamReader | None, name: str) -> None:
            assert stream is not None
            while chunk := await stream.read(4096):
                text = chunk.decode("utf-8", "replace")
                if run is not None:
                    await run.records.put((name, text))
                else:
                    with open(self.log_path, "a") as f:
                        f.write(text)

        try:
            await asyncio.gather(pump(proc.stdout, "stdout"), pump(proc.stderr, "stderr"))
            return await proc.wait()
        finally:
            self.children.discard(proc)
            if self._batch_proc is proc:
                self._batch_proc = None

    async def run_batch(self, run: Run, options: dict[str, Any]) -> None:
        """``clean`` → ``build`` → ``exec``; each ends with its ``*-finished`` record."""

        async def step(cmd: Any, heuristic: str | None) -> int:
            if cmd is None or cmd == "":
                return 0
            if cmd == "*":
                if heuristic is None:
                    return 0
                cmd = heuristic
            try:
                return await self.run_shell(str(cmd), run, batch=True)
            except OSError:
                return -1

        build_h = "make" if (self.workdir / "Makefile").is_file() else None
        if build_h is None and (self.workdir / "setup.py").is_file():
            build_h = "python -m pip install --user -e ."
        code = await step(options.get("clean"), None)
        await run.records.put(("clean-finished", {"exitCode": code}))
        code = await step(options.get("build"), build_h)
        await run.records.put(("build-finished", {"exitCode": code}))
        if code != 0:
            await run.records.put(("finished", {"exitCode": 127}))
            return
        code = await step(options.get("exec"), "python main.py")
        await run.records.put(("finished", {"exitCode": code}))

    # -- teardown -------------------------------------------------------------------------------

    def pids(self) -> set[int]:
        pids = {p.pid for p in self.children if p.returncode is None}
        kpid = self.kernel_pid()
        if kpid is not None:
            pids.add(kpid)
        return pids

    async def stop(self) -> None:
        """Kill everything this session started: SIGTERM, a short grace, then SIGKILL."""
        if self.kc is not None:
            with contextlib.suppress(Exception):
                self.kc.stop_channels()
        pids = self.pids()
        tree = pids | descendants(pids)
        kill_tree(pids, signal.SIGTERM)
        for _ in range(20):
            if not any(is_alive(p) for p in tree):
                break
            await asyncio.sleep(0.05)
        kill_tree(tree, signal.SIGKILL)
        await self._release_channels()
        if self.sandbox is not None:
            await self.sandbox.stop()
        for cg in (self.cgroup, self.pids_cgroup):
            if cg is not None:
                await asyncio.to_thread(cg.remove)
        if self.home_image is not None:
            await asyncio.to_thread(self.home_image.unmount)
        if self.service_dir is not None:
            shutil.rmtree(self.service_dir, ignore_errors=True)
        if self.km is not None:
            with contextlib.suppress(Exception):
                await self.km.shutdown_kernel(now=True)
        for proc in list(self.children):
            with contextlib.suppress(Exception):
                await asyncio.wait_for(proc.wait(), 2)

    def stop_now(self) -> None:
        """Synchronous last resort (server exit): SIGKILL the whole tree."""
        pids = self.pids()
        kill_tree(pids | descendants(pids), signal.SIGKILL)
        if self.sandbox is not None:
            self.sandbox.kill()
        for cg in (self.cgroup, self.pids_cgroup):
            if cg is not None:
                cg.kill_all()
        if self.home_image is not None:
            self.home_image.unmount()


