"""Capacity, the FIFO PENDING queue, and the session lifecycle (start → RUNNING → TERMINATED).

Capacity is what the machine really has: the CPUs this process may run on
(``os.sched_getaffinity``), ``MemTotal`` from ``/proc/meminfo`` and the GPUs ``nvidia-smi`` lists.
A session whose request does not fit *now* waits as ``PENDING``; sessions start strictly in
arrival order (the head of the queue blocks the rest, like the manager's FIFO scheduler), and a
destroy frees resources and starts the next one. A request that can never fit is refused.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import shutil
import site
import subprocess
import sys
import time
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from aiohttp import web

from ..agent.cgroups import MIN_MEMORY, memory_cgroup_parent
from ..agent.container import make_mount_point, mount_home, session_process
from ..agent.diskquota import probe_home_quota
from ..agent.limits import format_amount, parse_amount
from ..agent.reaper import CrashRecords, terminated_session
from ..agent.sandbox import (
    HOME,
    Isolation,
    SessionLimits,
    give_to_session,
    resolve_mode,
    session_base_env,
)
from ..agent.zygote import Zygote
from .errors import Problem
from .events import publish_session_event
from .state import CONFIG, ComputeSession
from .userconfig.store import bootstrap_script_for, dotfiles_for

__all__ = ["SCHEDULER", "Capacity", "Scheduler", "detect_capacity", "detect_gpus", "resource_usage"]

log = logging.getLogger(__name__)
SLOTS = ("cpu", "mem", "cuda.device", "cuda.shares")
OOM_REASON = "oom-killed"


@dataclass
class Capacity:
    cpu_ids: list[int]
    cpu: Decimal
    mem: Decimal
    gpus: list[int] = field(default_factory=list)


def detect_gpus() -> list[int]:
    """GPU indices from ``nvidia-smi`` (empty without NVIDIA GPUs or driver)."""
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return []
    try:
        out = subprocess.run(
            [exe, "--query-gpu=index,memory.total", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [int(line.split(",")[0]) for line in out.splitlines() if line.strip()]


def _mem_total() -> Decimal:
    with contextlib.suppress(OSError, ValueError, StopIteration):
        lines = Path("/proc/meminfo").read_text().splitlines()
        kib = next(line.split()[1] for line in lines if line.startswith("MemTotal:"))
        return Decimal(int(kib) * 1024)
    return Decimal(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))


def detect_capacity(overrides: dict[str, str] | None = None) -> Capacity:
    overrides = overrides or {}
    cpu_ids = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    cpu_ids = cpu_ids or list(range(os.cpu_count() or 1))
    cpu = Decimal(len(cpu_ids))
    if "cpu" in overrides:
        cpu = parse_amount("cpu", overrides["cpu"])
    mem = parse_amount("mem", overrides["mem"]) if "mem" in overrides else _mem_total()
    gpus = detect_gpus()
    if "cuda.device" in overrides:
        gpus = gpus[: int(parse_amount("cuda.device", overrides["cuda.device"]))]
    return Capacity(cpu_ids=cpu_ids, cpu=cpu, mem=mem, gpus=gpus)


class Scheduler:
    """Resource accounting + the PENDING queue + starting/stopping session processes."""

    def __init__(self, app: web.Application, capacity: Capacity) -> None:
        self.app = app
        self.capacity = capacity
        self.queue: list[ComputeSession] = []
        self.used: dict[str, Decimal] = {s: Decimal(0) for s in SLOTS}
        self.core_load: dict[int, int] = dict.fromkeys(capacity.cpu_ids, 0)
        self.gpu_owner: dict[int, str | None] = dict.fromkeys(capacity.gpus)
        self.ready: dict[str, asyncio.Event] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._reaper: asyncio.Task[None] | None = None
        self._oom_watch: asyncio.Task[None] | None = None
        self.zygote: Zygote | None = None
        #: Which layers sessions get (``--sandbox``; probed at start).
        self.isolation = Isolation()
        #: ``serve -r``: the PID limit and disk sizes every session gets.
        self.session_limits = SessionLimits.parse(app[CONFIG].session_limits)
        #: Warnings said once at start (no sandbox, no memory cgroup).
        self.warnings: list[str] = []
        self.crash_records = CrashRecords(app[CONFIG].data_dir)
        self.choose_isolation()

    def choose_isolation(self) -> None:
        """Resolve ``--sandbox`` (probes bubblewrap once) and the memory-limit mechanism;
        raises :class:`.sandbox.SandboxUnavailable` for ``--sandbox bwrap`` without bwrap."""
        self.isolation, warning = resolve_mode(self.app[CONFIG].sandbox)
        if warning is not None:
            self.warnings.append(warning)
        quota = probe_home_quota() if self.isolation.userns else "no user namespaces"
        self.home_quota = quota is None and self.session_limits.disk is not None
        if quota is not None and self.session_limits.disk is not None:
            self.warnings.append(f"-r disk: {quota}")
        if memory_cgroup_parent() is None:
            self.warnings.append(
                "no writable memory cgroup: memory limits are per process (RLIMIT_DATA), so "
                "child processes and shared memory are not counted"
            )

    def start(self) -> None:
        """Called once the loop runs (app startup): the idle-timeout reaper and the kernel fork
        server (``zygote.py``; its imports run while the endpoint starts serving)."""
        self._reap_previous_run()
        self._reaper = asyncio.create_task(self.idle_reaper())
        self._oom_watch = asyncio.create_task(self.oom_watch())
        if not Zygote.disabled():
            env = self._base_environ()
            # No $HOME of its own: each kernel's user site follows the session's HOME.
            env["HOME"] = str(self.app[CONFIG].data_dir / "zygote-home-unused")
            self.zygote = Zygote(env, self.app[CONFIG].data_dir / "zygote.log")
            task = asyncio.create_task(self.zygote.start())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def _reap_previous_run(self) -> None:
        """Kill what a killed endpoint left behind; list its sessions as TERMINATED."""
        from .state import REGISTRY

        config = self.app[CONFIG]
        for record in self.crash_records.reap():
            sess = terminated_session(record, config.sessions_dir)
            if sess is not None and sess.id not in self.app[REGISTRY].sessions:
                self.app[REGISTRY].add(sess)

    # -- accounting ----------------------------------------------------------------------------

    def totals(self) -> dict[str, Decimal]:
        t = {"cpu": self.capacity.cpu, "mem": self.capacity.mem}
        if self.capacity.gpus:
            t["cuda.device"] = Decimal(len(self.capacity.gpus))
            t["cuda.shares"] = Decimal(len(self.capacity.gpus))
        return t

    def usage(self) -> dict[str, dict[str, str]]:
        totals = self.totals()
        return {
            "total": {k: format_amount(v) for k, v in totals.items()},
            "used": {k: format_amount(self.used[k]) for k in totals},
        }

    def normalize(self, resources: dict[str, Any]) -> dict[str, str]:
        """Validate a request against the machine; fill defaults; return slot → amount text."""
        req: dict[str, Decimal] = {}
        merged = {**self.app[CONFIG].default_resources, **(resources or {})}
        for slot, value in merged.items():
            if slot not in SLOTS:
                raise Problem(
                    400,
                    "invalid-api-params",
                    "Missing or invalid API parameters.",
                    f"Unknown resource slot: {slot}",
                )
            try:
                req[slot] = parse_amount(slot, value)
            except ValueError as e:
                raise Problem(
                    400, "invalid-api-params", "Missing or invalid API parameters.", str(e)
                ) from None
        req = {k: v for k, v in req.items() if v > 0 or k in ("cpu", "mem")}
        if req.get("mem", Decimal(MIN_MEMORY)) < MIN_MEMORY:
            raise Problem(
                400,
                "invalid-api-params",
                "Missing or invalid API parameters.",
                f"mem={format_amount(req['mem'])} is below the minimum of "
                f"{MIN_MEMORY // 2**20} MiB a session needs",
            )
        totals = self.totals()
        if req.get("cpu", Decimal(0)) <= 0:
            req["cpu"] = Decimal(1)
        for slot, amount in req.items():
            if slot not in totals:
                raise Problem(
                    400,
                    "invalid-api-params",
                    "Missing or invalid API parameters.",
                    f"This machine has no {slot} (no GPU found by nvidia-smi)",
                )
            if amount > totals[slot]:
                raise Problem(
                    400,
                    "invalid-api-params",
                    "Missing or invalid API parameters.",
                    f"Requested {slot}={format_amount(amount)} exceeds this machine's "
                    f"capacity ({format_amount(totals[slot])})",
                )
        return {k: format_amount(v) for k, v in req.items()}

    def _gpu_count(self, sess: ComputeSession) -> int:
        amount = max(
            Decimal(sess.resources.get("cuda.device", "0")),
            Decimal(sess.resources.get("cuda.shares", "0")),
        )
        return math.ceil(amount)

    def _fits(self, sess: ComputeSession) -> bool:
        totals = self.totals()
        for slot in ("cpu", "mem"):
            if self.used[slot] + Decimal(sess.resources.get(slot, "0")) > totals[slot]:
                return False
        free_gpus = [g for g, owner in self.gpu_owner.items() if owner is None]
        return self._gpu_count(sess) <= len(free_gpus)

    def _allocate(self, sess: ComputeSession) -> None:
        for slot, amount in sess.resources.items():
            self.used[slot] += Decimal(amount)
        ncores = max(1, math.ceil(Decimal(sess.resources.get("cpu", "1"))))
        cores = sorted(self.core_load, key=lambda c: (self.core_load[c], c))[:ncores]
        for c in cores:
            self.core_load[c] += 1
        sess.cpu_set = sorted(cores)
        free = [g for g, owner in self.gpu_owner.items() if owner is None]
        sess.gpu_set = free[: self._gpu_count(sess)]
        for g in sess.gpu_set:
            self.gpu_owner[g] = sess.id

    def _release(self, sess: ComputeSession) -> None:
        for slot, amount in sess.resources.items():
            self.used[slot] -= Decimal(amount)
        for c in sess.cpu_set:
            self.core_load[c] = max(0, self.core_load.get(c, 1) - 1)
        for g in sess.gpu_set:
            self.gpu_owner[g] = None
        sess.cpu_set, sess.gpu_set = [], []

    # -- queue ---------------------------------------------------------------------------------

    def enqueue(self, sess: ComputeSession) -> None:
        self.ready[sess.id] = asyncio.Event()
        sess.set_status("PENDING")
        self.queue.append(sess)
        publish_session_event(self.app, "session_pending", sess, "Session enqueued")
        self.kick()

    def kick(self) -> None:
        """Start queued sessions in order while the head fits."""
        while self.queue and self._fits(self.queue[0]):
            sess = self.queue.pop(0)
            self._allocate(sess)
            task = asyncio.create_task(self._start(sess))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def wait_started(self, sess: ComputeSession, timeout: float | None) -> bool:
        event = self.ready.get(sess.id)
        if event is None:
            return True
        try:
            await asyncio.wait_for(event.wait(), timeout)
        except asyncio.TimeoutError:
            return False
        return True

    # -- lifecycle -----------------------------------------------------------------------------

    @staticmethod
    def _base_environ() -> dict[str, str]:
        # An allow-list of the endpoint's own environment (never its credentials or anything
        # else it happens to have): the session's own ``environ`` is added on top.
        env = session_base_env(os.environ)
        # Every image runs with this machine's Python: make it the session's python3, as an
        # image's own interpreter is in its container (batch startup commands need it). Here,
        # not per session: the zygote's environment must match the sessions' (``zygote.py``).
        env["PATH"] = os.pathsep.join(p for p in (os.path.dirname(sys.executable),
                                                  env.get("PATH", "")) if p)
        # HOME moves to the workdir; keep a --user-installed ipykernel importable anyway.
        extra = [p for p in sys.path if p == site.getusersitepackages()]
        if extra:
            env["PYTHONPATH"] = os.pathsep.join([*extra, env.get("PYTHONPATH", "")]).rstrip(":")
        return env

    def _environ(self, sess: ComputeSession) -> dict[str, str]:
        env = self._base_environ()
        ncpu = str(max(1, len(sess.cpu_set)))
        home = HOME if self.isolation.sandboxed else str(sess.workdir)
        env.update(
            HOME=home,
            PWD=home,
            OMP_NUM_THREADS=ncpu,
            OPENBLAS_NUM_THREADS=ncpu,
            MKL_NUM_THREADS=ncpu,
            CUDA_VISIBLE_DEVICES=",".join(str(g) for g in sess.gpu_set),
            BACKENDAI_SESSION_ID=sess.id,
            BACKENDAI_SESSION_NAME=sess.name,
            BACKENDAI_KERNEL_ID=sess.kernel_id,
            BACKENDAI_KERNEL_IMAGE=sess.image,
            BACKENDAI_ACCESS_KEY=sess.access_key,
            BACKENDAI_CLUSTER_SIZE="1",
            BACKENDAI_CLUSTER_ROLE="main",
            BACKENDAI_CLUSTER_IDX="1",
            BACKENDAI_CLUSTER_LOCAL_RANK="0",
            BACKENDAI_CLUSTER_HOST="main1",
            BACKENDAI_CLUSTER_HOSTS="main1",
            BACKENDAI_CLUSTER_REPLICAS="main:1",
            BACKENDAI_CLUSTER_MODE="single-node",
            BACKENDAI_SESSION_TYPE=sess.type,
        )
        env.update(sess.environ)
        return env

    def _prepare_workdir(self, sess: ComputeSession) -> None:
        sess.workdir.mkdir(parents=True, exist_ok=True)
        for host_dir, inside in sess.mounts:
            if self.isolation.sandboxed:  # bwrap binds the folder there (not a link)
                make_mount_point(sess.workdir, inside)
                continue
            rel = inside.removeprefix("/home/work/").lstrip("/")
            link = sess.workdir / rel
            link.parent.mkdir(parents=True, exist_ok=True)
            if not link.exists() and not link.is_symlink():
                link.symlink_to(host_dir, target_is_directory=True)
        for dot in dotfiles_for(self.app, sess.access_key):
            rel = str(dot["path"]).removeprefix("/home/work/").lstrip("/")
            path = sess.workdir / rel
            if sess.workdir.resolve() not in path.resolve().parents:
                continue
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(str(dot.get("data", "")))
            path.chmod(int(str(dot.get("permission", "644")), 8))
        script = bootstrap_script_for(self.app, sess.access_key)
        if script and not sess.bootstrap_script:
            sess.bootstrap_script = script
        if sess.bootstrap_script:
            (sess.workdir / "bootstrap.sh").write_text(sess.bootstrap_script)
        if self.isolation.userns and os.geteuid() == 0:
            give_to_session(sess.workdir)

    async def _start(self, sess: ComputeSession) -> None:
        app = self.app
        try:
            sess.set_status("SCHEDULED")
            publish_session_event(app, "session_scheduled", sess, "triggered-by-scheduler")
            sess.set_status("PREPARING")
            publish_session_event(app, "session_preparing", sess, "passed-preconditions")
            home = await mount_home(sess.workdir, self.session_limits) if self.home_quota \
                else None
            if sess.status != "PREPARING":  # destroyed while preparing: undo the mount only
                if home is not None:
                    home.unmount()
                return
            self._prepare_workdir(sess)
            sess.set_status("PREPARED")
            publish_session_event(app, "session_prepared", sess, "triggered-by-scheduler")
            publish_session_event(app, "kernel_preparing", sess)
            mem = int(sess.resources["mem"])
            limits: dict[str, Any] = {"cpus": sess.cpu_set, "mem": mem}
            proc = session_process(
                sess, limits, self._environ(sess), isolation=self.isolation,
                session_limits=self.session_limits, data_dir=self.app[CONFIG].data_dir,
                zygote=self.zygote,
            )
            proc.home_image = home
            sess.process = proc
            if proc.sandbox is not None:
                limits["sandbox"] = (await proc.sandbox.start(proc.log_path)).to_limits()
            proc.on_spawn = lambda: self.crash_records.write(sess)
            self.crash_records.write(sess)
            if sess.status != "PREPARED":  # destroyed meanwhile: never mark it alive again
                await proc.stop()
                return
            sess.set_status("CREATING")
            publish_session_event(app, "kernel_creating", sess)
            if sess.bootstrap_script:
                await proc.run_shell("/bin/sh bootstrap.sh", None)
            if sess.type != "batch":
                await proc.start_kernel()
            if sess.status != "CREATING":  # destroyed while starting: leave nothing behind
                await proc.stop()
                return
            publish_session_event(app, "kernel_started", sess)
            publish_session_event(app, "session_creating", sess, "triggered-by-scheduler")
            sess.set_status("RUNNING")
            publish_session_event(app, "session_started", sess, "triggered-by-scheduler")
        except Exception as e:  # a start failure is the session's ERROR, not the server's
            log.warning("session %s failed to start: %s", sess.name, e)
            why = str(e)
            if sess.process is not None and sess.process.oom_killed():
                why = (f"it ran out of memory while starting (mem="
                       f"{int(sess.resources['mem']) // 2**20} MiB is too little); ask for more")
            sess.set_status("ERROR", f"failed to start: {why}")
            self.ready[sess.id].set()
            await self.terminate(sess, "failed-to-start", error=True)
            return
        self.ready[sess.id].set()
        if sess.startup_command:
            task = asyncio.create_task(self._startup(sess))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _startup(self, sess: ComputeSession) -> None:
        proc = sess.process
        assert proc is not None and sess.startup_command
        try:
            code = await proc.run_shell(sess.startup_command, None, batch=sess.type == "batch")
        except (OSError, ValueError) as e:  # the command could not even start: a failed task
            log.warning("session %s: startup command failed to start: %s", sess.name, e)
            code = 127
        if sess.type != "batch" or not sess.alive or sess.status == "TERMINATING":
            return
        sess.exit_code = code
        sess.result = "SUCCESS" if code == 0 else "FAILURE"
        name = "session_success" if code == 0 else "session_failure"
        reason = "task-success" if code == 0 else "task-failure"
        publish_session_event(self.app, name, sess, reason, exit_code=code)
        await self.terminate(sess, reason)

    async def terminate(self, sess: ComputeSession, reason: str, *, error: bool = False) -> None:
        """Stop a session's processes and free its resources (idempotent)."""
        if sess.status in ("TERMINATED", "CANCELLED", "TERMINATING"):
            return
        if sess in self.queue:
            self.queue.remove(sess)
            sess.set_status("CANCELLED", reason)
            sess.terminated_at = time.time()
            publish_session_event(self.app, "session_cancelled", sess, reason)
            self.ready[sess.id].set()
            self.kick()
            return
        info = sess.status_info if error else reason
        sess.set_status("TERMINATING", info)
        publish_session_event(self.app, "session_terminating", sess, reason)
        publish_session_event(self.app, "kernel_terminating", sess, reason)
        sess.runs.close()
        if sess.process is not None:
            await sess.process.stop()
        publish_session_event(self.app, "kernel_terminated", sess, reason, sess.exit_code)
        sess.set_status("TERMINATED", info)
        sess.terminated_at = time.time()
        publish_session_event(self.app, "session_terminated", sess, reason, sess.exit_code)
        self.crash_records.remove(sess.id)
        self.ready.get(sess.id, asyncio.Event()).set()
        self._release(sess)
        self.kick()

    async def idle_reaper(self) -> None:
        """Destroy sessions without executions for ``idle_timeout`` seconds."""
        from .state import REGISTRY

        while True:
            timeout = self.app[CONFIG].idle_timeout
            await asyncio.sleep(max(0.2, min(timeout / 4, 5.0)) if timeout else 5.0)
            if not timeout:
                continue
            now = time.monotonic()
            for sess in self.app[REGISTRY].live():
                if sess.status == "RUNNING" and now - sess.last_used > timeout:
                    await self.terminate(sess, "idle-timeout")

    async def oom_watch(self) -> None:
        """End a session whose memory cgroup saw an OOM kill, with the reason ``oom-killed``
        (a status reason and lifecycle events, like any other termination)."""
        from .state import REGISTRY

        while True:
            await asyncio.sleep(0.5)
            for sess in self.app[REGISTRY].live():
                proc = sess.process
                if (
                    sess.status == "RUNNING"
                    and sess.status_info != OOM_REASON
                    and proc is not None
                    and proc.oom_killed()
                ):
                    log.warning("session %s ran out of memory: ending it", sess.name)
                    sess.exit_code = 137
                    sess.set_status("RUNNING", OOM_REASON)  # seen once, not again
                    task = asyncio.create_task(self._end_oom(sess))
                    self._tasks.add(task)
                    task.add_done_callback(self._tasks.discard)

    async def _end_oom(self, sess: ComputeSession) -> None:
        # The running cell tells its user first (``kernels.py``): give the client a moment to
        # read that last answer before the session (and its run) goes away.
        proc = sess.process
        for _ in range(40):
            run = proc.current_run if proc is not None else None
            if run is None or run.finished:  # served to the client (or none running)
                break
            await asyncio.sleep(0.1)
        await self.terminate(sess, OOM_REASON)

    async def shutdown(self) -> None:
        """Server stop: cancel pending, terminate running, nothing left behind."""
        from .state import REGISTRY

        for watcher in (self._reaper, self._oom_watch):
            if watcher is not None:
                watcher.cancel()
        for sess in list(self.queue):
            await self.terminate(sess, "server-shutdown")
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(
            *(self.terminate(s, "server-shutdown") for s in self.app[REGISTRY].live()),
            return_exceptions=True,
        )
        for sess in self.app[REGISTRY].sessions.values():
            if sess.process is not None:
                sess.process.stop_now()
        if self.zygote is not None:
            await self.zygote.close()


SCHEDULER: web.AppKey[Scheduler] = web.AppKey("bjup_scheduler", Scheduler)


def resource_usage(app: web.Application) -> dict[str, dict[str, str]]:
    """``{"total": {slot: amount}, "used": {slot: amount}}`` — amounts as strings, mem in bytes.

    Slots: ``cpu``, ``mem``, and ``cuda.device``/``cuda.shares`` when the machine has GPUs.
    """
    return app[SCHEDULER].usage()
