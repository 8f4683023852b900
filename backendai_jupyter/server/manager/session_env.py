"""The environment a session's processes start with.

Apart from the scheduler because it is a pure mapping from the endpoint's environment and a
session's record to variables (the same base serves the kernel fork server, whose environment must
match the sessions'), with no part in accounting or the lifecycle.
"""

from __future__ import annotations

import os
import site
import sys

from ..agent.sandbox import HOME, session_base_env
from .state import ComputeSession

__all__ = ["base_environ", "session_environ"]


def base_environ() -> dict[str, str]:
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


def session_environ(sess: ComputeSession, *, sandboxed: bool) -> dict[str, str]:
    """:func:`base_environ` plus the session's resources, identity and cluster variables, then
    the session's own ``environ`` on top; ``sandboxed``: HOME is the sandbox's, not the workdir."""
    env = base_environ()
    ncpu = str(max(1, len(sess.cpu_set)))
    home = HOME if sandboxed else str(sess.workdir)
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
