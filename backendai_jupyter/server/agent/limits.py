"""Real resource limits and the sandbox, applied by a session process to itself.

Every session process (the ipykernel, batch steps, the startup command, services, the terminal)
is started through this module's tiny launcher: ``python .../agent/limits.py -- CMD...``, or is
forked by the zygote, which calls the same functions. The limits come from ``BJUP_LIMITS``
(JSON) and hold from the first instruction of the real program and for everything it spawns —
no ``preexec_fn`` (unsafe with threads) and no race after start:

* ``cpus``: CPU affinity;
* ``cgroup_procs``: the session's memory cgroup (created and sized by the endpoint,
  :mod:`.cgroups`): the process moves itself in, so its children, shared memory it touches and
  daemons it double-forks are all charged to the one session limit;
* ``rlimit_mem``: the fallback without a writable cgroup: ``RLIMIT_DATA`` per process (an idle
  ipykernel reserves ~220 MiB of address space, so ``RLIMIT_AS`` would kill it at start);
* ``sandbox``: ``{"pid": P, "start": T, "cwd": "/home/work", "ids": [1000, 1000]}`` — enter the
  namespaces of the session's bubblewrap sandbox (:mod:`.sandbox`) whose ``sandbox_init`` has
  host pid ``P`` (user, IPC, mount, network, PID: its own file-system view with ``/home/work``,
  its own loopback, and the session's PID namespace, so destroying the sandbox kills every
  descendant), become its ``work`` user, drop every capability and set ``no_new_privs``.
  Joining a PID namespace only applies to children, so the caller forks once more
  (:func:`relay_child`): the parent stays outside and relays signals and the exit status.

Stdlib only and runnable as a script: importing the package would pull in aiohttp/jupyter_client
for every process start.
"""

from __future__ import annotations

import json
import os
import re
import resource
import signal
import sys
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

__all__ = [
    "ENV_VAR",
    "apply_limits",
    "enter_sandbox",
    "format_amount",
    "launcher_argv",
    "parse_amount",
    "relay_child",
]

ENV_VAR = "BJUP_LIMITS"

_UNITS = {"": 1, "k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40, "p": 2**50, "e": 2**60}
_AMOUNT_RE = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*([kmgtpe]?)(i?b?)?\s*$", re.IGNORECASE)

# Namespace kinds in the order they are joined (the PID namespace last of these; the user
# namespace before or after them, ``enter_sandbox``).
_NAMESPACES = (("ipc", 0x08000000), ("mnt", 0x00020000), ("net", 0x40000000), ("pid", 0x20000000))
_USER = ("user", 0x10000000)
_NS_GET_USERNS = 0xB701
_PR_SET_PDEATHSIG = 1
_PR_CAPBSET_DROP = 24
_PR_SET_NO_NEW_PRIVS = 38
_LINUX_CAPABILITY_VERSION_3 = 0x20080522
_FORWARDED = (
    signal.SIGINT, signal.SIGQUIT, signal.SIGTERM, signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2,
    signal.SIGWINCH, signal.SIGCONT,
)


def parse_amount(slot: str, value: str | int | float) -> Decimal:
    """Parse a slot amount the way the manager does: ``mem`` takes binary suffixes (``"1g"``).

    Raises ``ValueError`` for anything unparsable or negative.
    """
    text = str(value)
    if slot == "mem" or slot.endswith(".mem"):
        m = _AMOUNT_RE.match(text)
        if m is None:
            raise ValueError(f"invalid amount for {slot}: {text!r}")
        amount = Decimal(m.group(1)) * _UNITS[m.group(2).lower()]
        return amount.to_integral_value()
    try:
        amount = Decimal(text)
    except InvalidOperation:
        raise ValueError(f"invalid amount for {slot}: {text!r}") from None
    if not amount.is_finite() or amount < 0:
        raise ValueError(f"invalid amount for {slot}: {text!r}")
    return amount


def format_amount(amount: Decimal) -> str:
    """Decimal → the manager's string form (``"1"``, ``"0.5"``, ``"1073741824"``)."""
    text = format(amount.normalize(), "f")
    return text


def launcher_argv(cmd: list[str]) -> list[str]:
    # Run this file as a script (stdlib only), not ``-m``: importing the package would pull in
    # aiohttp/jupyter_client for every process start.
    return [sys.executable, os.path.abspath(__file__), "--", *cmd]


def apply_limits(limits: dict[str, Any]) -> None:
    """Affinity, then the memory cgroup (or ``RLIMIT_DATA``) for the current process."""
    cpus = limits.get("cpus")
    if isinstance(cpus, list) and cpus and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {int(c) for c in cpus})
    procs = limits.get("cgroup_procs")
    for path in [procs] if isinstance(procs, str) else procs if isinstance(procs, list) else []:
        # Failing to join would run the session without its limit: fail the start instead.
        Path(path).write_text(str(os.getpid()))
    mem = limits.get("rlimit_mem")
    if isinstance(mem, int) and mem > 0:
        resource.setrlimit(resource.RLIMIT_DATA, (mem, mem))


def _libc() -> Any:
    import ctypes

    return ctypes.CDLL(None, use_errno=True)


def _check(rc: int, what: str) -> None:
    if rc != 0:
        import ctypes

        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def _start_time(pid: int) -> str | None:
    # procfs.py beside this file, loaded by path: this module also runs as a script (no package).
    import importlib.util

    path = Path(__file__).with_name("procfs.py")
    spec = importlib.util.spec_from_file_location("_bjup_procfs", path)
    assert spec is not None and spec.loader is not None
    procfs = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(procfs)
    started: str | None = procfs.start_time(pid)
    return started


def drop_capabilities() -> None:
    """No capability, now or after an ``exec`` (bounding set emptied, ``no_new_privs``): even
    root in the sandbox cannot unmount what hides the data directory or remount ``/``."""
    import ctypes

    libc = _libc()
    for cap in range(64):
        if libc.prctl(_PR_CAPBSET_DROP, cap, 0, 0, 0) != 0:
            break  # past the last capability this kernel knows
    _check(libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "prctl(NO_NEW_PRIVS)")
    header = (ctypes.c_uint32 * 2)(_LINUX_CAPABILITY_VERSION_3, 0)
    data = (ctypes.c_uint32 * 6)()  # effective/permitted/inheritable × 2 words, all zero
    _check(libc.capset(header, data), "capset")


def enter_sandbox(sandbox: dict[str, Any]) -> None:
    """Join the namespaces of the sandbox process whose host pid is ``sandbox["pid"]``, become
    its ``work`` user (``sandbox["ids"]``, when it has a user namespace) and drop every
    capability.

    The calling process must be single-threaded. Its *children* are in the sandbox's PID
    namespace; fork (:func:`relay_child`) before running anything. Root joins the user
    namespace last (the others are owned by the host's, ``sandbox_init.py``); anyone else
    first (bwrap made it, and it owns the others).
    """
    pid = int(sandbox["pid"])
    root = os.geteuid() == 0
    order = (*_NAMESPACES, _USER) if root else (_USER, *_NAMESPACES)
    ids = sandbox.get("ids")
    fds: list[tuple[int, int]] = []
    try:
        # Open every namespace first: once in the sandbox's mount namespace, its /proc no
        # longer shows host pids.
        for name, flag in order:
            target = f"/proc/{pid}/ns/{name}"
            if os.readlink(target) == os.readlink(f"/proc/self/ns/{name}"):
                continue  # e.g. no user namespace of its own when the endpoint runs as root
            fds.append((os.open(target, os.O_RDONLY | os.O_CLOEXEC), flag))
        if not root and fds and fds[0][1] == _USER[1]:
            _owner_first(fds)
        if _start_time(pid) != sandbox.get("start"):
            raise ProcessLookupError(f"the session's sandbox (pid {pid}) is gone")
        if root and ids:
            os.setgroups([])  # root's groups must not follow it into the session
        libc = _libc()
        for fd, flag in fds:
            _check(libc.setns(fd, flag), "setns")
    finally:
        for fd, _ in fds:
            os.close(fd)
    if isinstance(ids, list) and len(ids) == 2:
        uid, gid = int(ids[0]), int(ids[1])
        os.setresgid(gid, gid, gid)
        os.setresuid(uid, uid, uid)
    os.chdir(str(sandbox.get("cwd") or "/home/work"))
    drop_capabilities()


def _owner_first(fds: list[tuple[int, int]]) -> None:
    """Where bwrap nested the sandbox's user namespace in the one that owns its other
    namespaces, join that owner first (it grants the capabilities ``setns`` needs there) and
    the nested one last."""
    import fcntl

    owner_of_mnt = None
    for fd, flag in fds:
        if flag == 0x00020000:
            owner_of_mnt = fcntl.ioctl(fd, _NS_GET_USERNS)
    if owner_of_mnt is None:
        return
    if os.fstat(owner_of_mnt).st_ino == os.fstat(fds[0][0]).st_ino:
        os.close(owner_of_mnt)
        return
    fds.append(fds[0])
    fds[0] = (owner_of_mnt, _USER[1])


def _exit_like(status: int) -> None:
    """End this process the way a child with wait status ``status`` ended."""
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        signal.signal(sig, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {sig})
        os.kill(os.getpid(), sig)
        os._exit(128 + sig)
    os._exit(os.waitstatus_to_exitcode(status))


def relay_child(report_fd: int | None = None) -> None:
    """Fork; return in the child (inside the sandbox's PID namespace, in a session and process
    group of its own — with its terminal as the controlling one if stdin is a terminal — and
    killed if this parent dies). The parent never returns: it forwards signals to the child's
    group (so ``killpg`` of the parent, which is how the endpoint signals a session process,
    reaches it), reports the child's pid on ``report_fd`` (a pipe) if given, and exits as the
    child did."""
    libc = _libc()
    ppid = os.getpid()
    child = os.fork()
    if child == 0:
        _check(libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0), "prctl(PDEATHSIG)")
        if os.getppid() not in (0, ppid):  # the parent died before the line above (a parent
            os._exit(1)  # outside the child's PID namespace shows as 0)
        if report_fd is not None:
            os.close(report_fd)
        os.setsid()
        if os.isatty(0):
            import fcntl
            import termios

            fcntl.ioctl(0, termios.TIOCSCTTY, 0)
        return
    if report_fd is not None:
        os.write(report_fd, f"{child}\n".encode())
        os.close(report_fd)

    def forward(sig: int, _frame: Any) -> None:
        try:
            os.killpg(child, sig)
        except OSError:
            try:
                os.kill(child, sig)
            except OSError:
                pass

    for sig in _FORWARDED:
        signal.signal(sig, forward)
    while True:
        try:
            _, status = os.waitpid(child, 0)
        except InterruptedError:
            continue
        except ChildProcessError:
            os._exit(1)
        _exit_like(status)


def main(argv: list[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] == "--":
        args = args[1:]
    if not args:
        sys.exit("usage: python limits.py -- CMD [ARGS...]")
    raw = os.environ.pop(ENV_VAR, "")
    limits = json.loads(raw) if raw else {}
    apply_limits(limits)
    sandbox = limits.get("sandbox")
    if isinstance(sandbox, dict):
        enter_sandbox(sandbox)
        relay_child()
    os.execvp(args[0], args)


if __name__ == "__main__":
    main()
