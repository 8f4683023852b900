"""Jupyter comms across the proxy: front-end ``comm_*`` messages reach the remote kernel.

Why
---
ipywidgets, ``tqdm.auto``, ipympl and ``interact`` talk over Jupyter *comms*. Remote code opens
them in the remote kernel; their messages to the front-end travel as rich-channel frames
(:mod:`..richchannel`). The way back is ours: the front-end sends ``comm_open`` / ``comm_msg`` /
``comm_close`` on the proxy's shell channel, and a stock Backend.AI server has no route to the
remote kernel's shell socket. The only way in is an execution.

What
----
:class:`CommBridge` takes over the proxy kernel's three comm shell handlers. This module holds
the handlers and the iopub side; the rules they apply are pure (:mod:`.comm_messages`), the
queue that delivers remote-bound messages lives on the workspace's loop
(:mod:`.comm_delivery`), and a reloaded tab's widget states are merged in
:mod:`.widget_states`.

* **Local or remote.** A comm that lives in the proxy's own comm manager (the ``%backendai``
  widgets, anything made by a ``%%local`` cell) stays local. Every other message goes to the
  remote kernel. A ``comm_open`` goes remote while a session is up and falls back to the local
  manager when the remote one has no such target; without a session everything is local.
* **One loop.** A handler runs on its (sub)shell's loop; it only hands its message to the
  delivery queue on the workspace's loop and waits, thread-safely, for the outcome.
* **Output widgets.** An ``Output`` widget captures the iopub messages whose parent is the request
  it was entered under; remotely that is the remote kernel's request, which the front-end never
  sees. :func:`~.comm_messages.rewrite_output_capture` maps it to the front-end request the
  proxy is publishing for, on every comm message that leaves the proxy (cell output and
  deliveries alike).
* **Reloaded tabs.** A new page opens ``jupyter.widget.control`` and sends ``request_states``;
  the remote kernel answers with its widgets, and the proxy adds its own ones, so both kinds
  render again.
* **comm_info_request** lists the remote comms (asked live) plus the local ones.

Degrading: no rich channel, a dead session, a comm the remote kernel no longer has (the session
was restarted): the message is dropped with one log line; nothing ever fails in a cell.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
from collections.abc import Callable, Coroutine, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from contextvars import ContextVar
from typing import Any

from ..richchannel import IopubMessage, with_header
from .comm_delivery import DeliveryQueue, DeliverySink, RunHidden
from .comm_messages import (
    COMM_MSG_TYPES,
    CommTracker,
    Pending,
    SharedTracker,
    rewrite_output_capture,
    route_comm,
)
from .widget_states import local_widget_states, merge_update_states

__all__ = ["DISPATCH_CONCURRENT", "CommBridge", "Submit", "attach"]

log = logging.getLogger(__name__)


class _RemoteLookups(logging.Filter):
    """ipykernel's shell-channel thread looks every incoming comm_msg up in the *local* comm
    manager (to route replies to subshells) and logs "No such comm" for each one that lives
    remotely; while a remote session is up those lines are noise (the bridge logs real losses)."""

    def __init__(self, remote_up: Callable[[], bool]) -> None:
        super().__init__()
        self.remote_up = remote_up

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.msg == "No such comm: %s" and self.remote_up())


DISPATCH_CONCURRENT: ContextVar[bool] = ContextVar("DISPATCH_CONCURRENT", default=False)
"""Set by the kernel's ``dispatch_shell`` for messages ipykernel (>= 7) dispatches while another
request runs; it publishes no busy/idle for those (see :attr:`Pending.status`)."""

Submit = Callable[[Coroutine[Any, Any, Any]], "concurrent.futures.Future[Any]"]
"""Starts a coroutine on the bridge's own loop (the workspace's), from any thread."""


class CommBridge:
    """The proxy kernel's comm handling; see the module docstring.

    ``kernel`` is the ipykernel instance (its ``comm_manager``, ``session``, ``iopub_socket``,
    ``shell_handlers``); ``remote_up`` says whether a session with a rich channel is there;
    ``run_hidden`` executes code in it; ``nonce`` names the remote process (a new one means
    new comms); ``submit`` runs a coroutine on the bridge's loop. The handlers run on whichever
    (sub)shell loop ipykernel calls them on; the delivery queue and ``run_hidden`` only on the
    bridge's loop; :meth:`publish` on the bridge's loop.
    """

    def __init__(
        self,
        kernel: Any,
        remote_up: Callable[[], bool],
        run_hidden: RunHidden,
        nonce: Callable[[], str | None],
        submit: Submit,
    ) -> None:
        self.kernel = kernel
        self.remote_up = remote_up
        self.submit = submit
        self.shared = SharedTracker(nonce)  # used by the kernel thread and the workspace thread
        self.log: logging.Logger = getattr(kernel, "log", None) or log
        self.delivery = DeliveryQueue(
            run_hidden, remote_up, self.shared, self.publish, self.status, self.log
        )
        logging.getLogger("Comm").addFilter(_RemoteLookups(remote_up))
        self._local = {t: kernel.shell_handlers[t] for t in COMM_MSG_TYPES}
        for t in COMM_MSG_TYPES:
            kernel.shell_handlers[t] = self.handle

    # -- front-end → remote ---------------------------------------------------------------------

    def _local_comm_ids(self) -> set[str]:
        comms = getattr(self.kernel.comm_manager, "comms", {})
        return set(comms) if isinstance(comms, Mapping) else set()

    async def handle(self, stream: Any, ident: Any, msg: Mapping[str, Any]) -> None:
        """The shell handler for comm_open/comm_msg/comm_close.

        Returns once the message is delivered, so that ipykernel's idle follows what its
        callbacks published, as for a local kernel.
        """
        msg_type = str(msg["header"]["msg_type"])
        content = msg.get("content") or {}
        where = route_comm(
            msg_type, content, local_comms=self._local_comm_ids(), remote_up=self.remote_up()
        )
        if where == "local":
            self._local[msg_type](stream, ident, msg)
            return
        pending = Pending(msg, stream, ident, status=DISPATCH_CONCURRENT.get())
        why = await self._call(self.delivery.queued(pending))
        if why is not None:
            self._fallback([pending], why)

    async def _call(self, coro: Coroutine[Any, Any, Any]) -> Any:
        """Await ``coro`` on the bridge's loop from any other loop (thread-safe both ways)."""
        return await asyncio.wrap_future(self.submit(coro))

    @property
    def tracker(self) -> CommTracker:
        """What passed through about remote comms; hold ``self.shared.lock`` while using it."""
        return self.shared.tracker

    def remote_cell(self) -> AbstractAsyncContextManager[None]:
        """(Bridge loop) Around a remote cell; see :meth:`.DeliveryQueue.remote_cell`."""
        return self.delivery.remote_cell()

    def _fallback(self, pending: Sequence[Pending], why: str) -> None:
        """Messages the remote kernel did not take: local if the proxy has them, else dropped.
        Called by the message's own handler, on its (sub)shell's thread."""
        manager = self.kernel.comm_manager
        for p in pending:
            content = p.content
            comm_id = str(content.get("comm_id"))
            if p.msg_type == "comm_open":
                self.shared.seen("comm_close", content)
                local = content.get("target_name") in getattr(manager, "targets", {})
            else:
                local = comm_id in self._local_comm_ids()
            if p.status:
                self.status("busy", p.msg)
            if local:
                self._local[p.msg_type](p.stream, p.ident, p.msg)
            else:
                self.log.warning(
                    "dropped front-end %s for comm %s (target %s): %s",
                    p.msg_type,
                    comm_id,
                    content.get("target_name") or self.tracker.remote.get(comm_id, "unknown"),
                    why,
                )
            if p.status:
                self.status("idle", p.msg)

    # -- remote → front-end ---------------------------------------------------------------------

    def outgoing(self, msg: IopubMessage, parent: Mapping[str, Any] | None) -> IopubMessage:
        """Every remote iopub message on its way out: track comms, fix Output capture ids, add
        the proxy's widgets to an ``update_states`` answer."""
        if msg.msg_type not in COMM_MSG_TYPES:
            return msg
        self.shared.check_session()
        header = parent.get("header") if parent else None
        parent_id = header.get("msg_id") if isinstance(header, Mapping) else None
        with self.shared.lock:
            self.tracker.seen(msg.msg_type, msg.content)
            msg = rewrite_output_capture(msg, self.tracker.outputs, parent_id)
            control = msg.content.get("comm_id") in self.tracker.controls
        if control and msg.msg_type == "comm_msg":
            msg = merge_update_states(msg, local_widget_states())
        return msg

    def publish(self, msg: IopubMessage, parent: Mapping[str, Any]) -> None:
        """Publish one remote message on the proxy's iopub with ``parent`` as its parent."""
        msg = self.outgoing(msg, parent)
        k = self.kernel
        k.session.send(
            k.iopub_socket,
            msg.msg_type,
            msg.content,
            parent,
            None,
            list(msg.buffers) or None,
            metadata=msg.metadata,
        )

    def status(self, state: str, parent: Mapping[str, Any]) -> None:
        k = self.kernel
        k.session.send(k.iopub_socket, "status", {"execution_state": state}, parent)

    # -- comm_info ------------------------------------------------------------------------------

    async def comm_info(self, target_name: str | None) -> dict[str, dict[str, str]]:
        """Local comms plus the remote ones (asked live; what passed through if that fails)."""
        comms = {
            k: {"target_name": str(getattr(v, "target_name", ""))}
            for k, v in getattr(self.kernel.comm_manager, "comms", {}).items()
            if target_name is None or getattr(v, "target_name", None) == target_name
        }
        if not self.remote_up():
            return comms
        remote = await self._call(self.delivery.remote_comm_info(target_name))
        if remote is None:
            with self.shared.lock:
                remote = {
                    k: {"target_name": t}
                    for k, t in self.tracker.remote.items()
                    if target_name is None or t == target_name
                }
        return {**comms, **remote}


def attach(kernel: Any, workspace: Any, transport: str = "rest") -> CommBridge:
    """The bridge for a proxy kernel and its workspace (whose ``session`` is the remote one and
    whose loop runs the hidden deliveries, silently: no count, no history remotely).

    Deliveries use the REST execute call by default: a callback is short, and one request that
    returns as soon as the run finishes beats opening a websocket per delivery (cluster, median
    of ``pass``: ~90 ms vs ~130 ms); a long callback's output then comes in 2 s batches.
    """
    from ..workspace import relay

    def up() -> bool:  # any thread: the snapshot, never the live session
        return bool(workspace.kernel_session.snapshot.rich)

    async def hidden(code: str, sink: DeliverySink) -> object:
        session = workspace.kernel_session
        nonce = session.nonce
        code = with_header(code, nonce, silent=True, store_history=False, allow_stdin=False)
        run = session.client.sessions.execute(session.session_id, code, transport=transport)
        return await relay(run, sink, nonce=nonce)

    return CommBridge(
        kernel, up, hidden, lambda: workspace.kernel_session.snapshot.nonce, workspace.submit
    )
