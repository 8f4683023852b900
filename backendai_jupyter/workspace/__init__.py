"""One workspace per process: the configuration, the client, the loop and the kernel session
that the proxy kernel, the ``%backendai`` magics and the widgets share.

Layers point one way: ``client`` (the API) ← ``workspace`` (this package) ← ``kernel``,
``magics``. The client never imports anything above it.

API (for the kernel, the magics, the widgets and whoever plugs into them)
------------------------------------------------------------------------

``current() -> Workspace``
    The process's workspace, made on first use from ``BACKEND_*`` (and the kernelspec's
    session settings, :mod:`.settings`).

``Workspace.loop``
    The one background loop (:mod:`.loop`, a daemon thread). The client and the kernel session
    live there in every process: in a plain IPython kernel *and* in the proxy kernel. Why not on
    the proxy kernel's own loop: ``%backendai`` magics and widget callbacks are synchronous and
    run on that loop's thread while a cell executes, so they could never wait for work scheduled
    on it (no re-entrant loops here), and moving local cells to a worker thread would break
    interrupting them. Instead the kernel's loop only *awaits* the workspace
    (:meth:`Workspace.call`, a wrapped future: it keeps serving messages meanwhile), and sync
    callers block on it (:meth:`Workspace.run`) without ever blocking the loop that does the
    work. Hence no deadlock, whichever thread asks.

``Workspace.run(coro)`` / ``.submit(coro)`` / ``await .call(coro)``
    Run a coroutine on the loop: wait (sync callers), don't wait (widgets), or await from
    another loop (the proxy kernel).

``Workspace.client_config()``, ``.configure(["key=value", ...])``, ``.reset()``, ``.describe()``
    The one configuration and its one grammar (:mod:`.config`): connection keys (``endpoint``,
    ``access_key``, ...) and session keys (``image``, ``resources``, ...) in one
    ``%backendai config set``. A change applies to the magics at once and to the kernel's next
    session; a live kernel session keeps what it started with (:class:`ConfigChange` says so).

``await Workspace.client()``
    The one :class:`~..client.Client` (on the loop).

``await Workspace.call(Workspace.cells.run_cell(cell, sink, around))``
    A proxy kernel's remote cell, start to reply, in one call (:mod:`.cells`): session start,
    the run, interrupts (``cells.interrupt()`` from any thread), outages, lost sessions and the
    reply. ``Workspace.kernel_session.snapshot`` is what other threads may read of the session.

``Workspace.kernel_session``
    The kernel session (:class:`.kernel_session.KernelSession`): ``ensure()``, ``run(code, sink)``,
    ``run_hidden(code, sink=None)``, ``helper()``, ``interrupt()``, ``stop()``. Only the proxy
    kernel starts one; ``%backendai kernel ...`` acts on it.

``relay(execution, sink, nonce=..., execution_count=...)`` (:mod:`.relay`)
    The one execution path from a client run to Jupyter messages (rich channel included). A
    :class:`Sink` has ``publish(msg_type, content, *, metadata=None, buffers=None)``,
    ``async ask(prompt, password) -> str | None`` and ``notice(event)`` (client events the path
    does not render itself: batch steps, retry/outage notices). ``install_rich(client, sid)``
    bootstraps the rich channel in any session (the magics' too).
"""

from ._workspace import ConfigChange, Workspace, current
from .cells import Cell, CellRunner, CellSink
from .config import CLIENT_KEYS, load_config, split_items
from .kernel_session import HiddenSink, KernelSession, SessionSnapshot, install_rich, run_hidden
from .loop import Inbox
from .relay import Outcome, Sink, relay
from .settings import DEFAULT_IMAGE, SESSION_KEYS, SessionSettings

__all__ = [
    "CLIENT_KEYS",
    "DEFAULT_IMAGE",
    "SESSION_KEYS",
    "Cell",
    "CellRunner",
    "CellSink",
    "ConfigChange",
    "HiddenSink",
    "Inbox",
    "KernelSession",
    "Outcome",
    "SessionSettings",
    "SessionSnapshot",
    "Sink",
    "Workspace",
    "current",
    "install_rich",
    "load_config",
    "relay",
    "run_hidden",
    "split_items",
]
