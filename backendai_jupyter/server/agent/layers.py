"""Which of the sandbox's layers sessions get here (probed once at start), and the limits
every session gets (``serve -r``). See :mod:`.sandbox` for what each layer protects against."""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass

from .limits import parse_amount
from .netns import probe_slirp

__all__ = [
    "DEFAULT_TMP_SIZE",
    "LAYERS_OFF_VAR",
    "SANDBOX_MODES",
    "SESSION_ID",
    "Isolation",
    "SandboxUnavailable",
    "SessionLimits",
    "probe_bwrap",
    "probe_net",
    "probe_userns",
    "resolve_mode",
]

SANDBOX_MODES = ("auto", "bwrap", "strict", "none")
#: ``user,network``: layers left out on purpose (what they cost: ``bench/local_endpoint.py``).
LAYERS_OFF_VAR = "BACKENDAI_JUPYTER_SANDBOX_WITHOUT"
#: uid/gid of ``work`` in the session.
SESSION_ID = 1000
#: ``/tmp`` and ``/dev/shm`` of a session: tmpfs pages are charged to the session's memory
#: cgroup, and this caps them below it too.
DEFAULT_TMP_SIZE = 2**30


class SandboxUnavailable(RuntimeError):
    """``--sandbox bwrap|strict`` was asked for and a layer it needs does not work here."""


@dataclass(frozen=True)
class SessionLimits:
    """``serve -r SLOT=AMOUNT``: what every session gets, as a cluster's resource policy says
    (``pids``: processes + threads; ``tmp``: ``/tmp`` and ``/dev/shm``; ``disk``:
    ``/home/work``, where the endpoint can loop-mount a file system: root. Off unless asked
    for: a loop mount outlives an endpoint killed with SIGKILL until it restarts on the same
    data directory)."""

    pids: int = 1024
    tmp: int = DEFAULT_TMP_SIZE
    disk: int | None = None

    @classmethod
    def parse(cls, raw: Mapping[str, str]) -> SessionLimits:
        """Raises ``ValueError`` with a one-line reason for a bad slot or amount."""
        values: dict[str, int] = {}
        for slot, text in raw.items():
            if slot not in ("pids", "tmp", "disk"):
                raise ValueError(f"unknown session limit {slot!r} (pids, tmp, disk)")
            amount = int(parse_amount("mem" if slot != "pids" else "pids", text))
            if amount < (16 if slot == "pids" else 2**20):
                raise ValueError(f"session limit {slot}={text} is too small")
            values[slot] = amount
        return cls(**values)


@dataclass(frozen=True)
class Isolation:
    """Which layers sessions get (``resolve_mode``)."""

    sandboxed: bool = False
    userns: bool = False
    net: bool = False
    missing: tuple[str, ...] = ()

    def diagnostics(self) -> dict[str, object]:
        return {"sandbox": self.sandboxed, "user": self.userns, "network": self.net,
                "missing": list(self.missing)}


def _try_bwrap(*extra: str) -> str | None:
    exe = shutil.which("bwrap")
    if exe is None:
        return "bubblewrap (bwrap) is not installed"
    try:
        out = subprocess.run(
            [exe, "--die-with-parent", "--unshare-pid", "--unshare-ipc", *extra, "--ro-bind", "/",
             "/", "--dev", "/dev", "--proc", "/proc", "--tmpfs", "/tmp", "--", "/bin/true"],
            capture_output=True, text=True, timeout=20, stdin=subprocess.DEVNULL,
        )
    except (OSError, subprocess.SubprocessError) as e:
        return f"bubblewrap does not run: {e}"
    if out.returncode != 0:
        return f"bubblewrap does not work here: {out.stderr.strip() or out.returncode}"
    return None


@functools.lru_cache(maxsize=1)
def probe_bwrap() -> str | None:
    """``None`` when bubblewrap can make a sandbox here, else why not (run once at start)."""
    return _try_bwrap()


@functools.lru_cache(maxsize=1)
def probe_userns() -> str | None:
    """``None`` when sessions can have a user namespace of their own, else why not."""
    why = _try_bwrap("--unshare-user", "--uid", str(SESSION_ID), "--gid", str(SESSION_ID))
    return None if why is None else f"no user namespaces ({why})"


@functools.lru_cache(maxsize=1)
def probe_net() -> str | None:
    """``None`` when sessions can have a network namespace with a way out, else why not."""
    why = probe_slirp()
    if why is None:
        why = _try_bwrap("--unshare-net")
    return None if why is None else f"no network of their own ({why})"


def resolve_mode(mode: str) -> tuple[Isolation, str | None]:
    """The layers for ``--sandbox MODE`` and the one warning naming what is missing; raises
    :class:`SandboxUnavailable` (``bwrap`` without bubblewrap, ``strict`` without a layer)."""
    if mode == "none":
        return Isolation(missing=("sandbox",)), "sessions are not isolated (--sandbox none)"
    why = probe_bwrap()
    if why is not None:
        if mode in ("bwrap", "strict"):
            raise SandboxUnavailable(why)
        return (Isolation(missing=("sandbox",)),
                f"sessions are not isolated: {why} (see README: install bubblewrap)")
    userns, net = probe_userns(), probe_net()
    off = {x.strip() for x in os.environ.get(LAYERS_OFF_VAR, "").split(",")}
    if "user" in off:
        userns = userns or f"no user namespaces ({LAYERS_OFF_VAR})"
    if "network" in off:
        net = net or f"no network of their own ({LAYERS_OFF_VAR})"
    missing = [why for why in (userns, net) if why is not None]
    if missing and mode == "strict":
        raise SandboxUnavailable("; ".join(missing))
    iso = Isolation(True, userns is None, net is None,
                    tuple(n for n, w in (("user", userns), ("network", net)) if w is not None))
    if not missing:
        return iso, None
    return iso, ("sessions are sandboxed without " + "; without ".join(missing)
                 + " (see README: install slirp4netns, enable user namespaces)")
