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
:class:`CommBridge` takes over the proxy kernel's three comm shell handlers:

* **Local or remote.** A comm that lives in the proxy's own comm manager (the ``%backendai``
  widgets, anything made by a ``%%local`` cell) stays local. Every other message goes to the
  remote kernel. A ``comm_open`` goes remote while a session is up and falls back to the local
  manager when the remote one has no such target; without a session everything is local.
* **One loop.** ipykernel 7 runs a comm message's handler on the thread of the (sub)shell it came
  on, each with its own event loop, and JupyterLab sends widget messages on a subshell of its
  page, which is deleted (its loop stopped) when the page goes. So the queue and its worker live
  on the workspace's loop, which outlives them all; a handler only hands its message over and
  waits, thread-safely, for the outcome. (A worker started on a subshell's loop died with the
  reloaded page and every later message waited behind it.)
* **Delivery.** Remote-bound messages are queued and delivered by one hidden execution per batch
  that hands them, binary buffers included, to the remote kernel's own comm manager (the
  program :mod:`..richchannel.remote.comms`, added to the bootstrap's module on first use). Shell
  messages are handled one at a time, so while a remote cell runs they wait and are delivered
  after it, in order, as by a busy ipykernel; the next remote cell waits for the queue
  (:meth:`CommBridge.remote_cell`).
* **Parents.** Before each message the remote side writes a ``comm_parent`` marker frame; what the
  callbacks publish after it (widget updates, prints, displays, errors) is published by the proxy
  with *that front-end message* as parent, as ipykernel does. ipywidgets needs this: the
  front-end matches ``echo_update`` messages to its own ``comm_msg`` ids.
* **Output widgets.** An ``Output`` widget captures the iopub messages whose parent is the request
  it was entered under; remotely that is the remote kernel's request, which the front-end never
  sees. :func:`rewrite_output_capture` maps it to the front-end request the proxy is publishing
  for, on every comm message that leaves the proxy (cell output and deliveries alike).
* **Reloaded tabs.** A new page opens ``jupyter.widget.control`` and sends ``request_states``;
  the remote kernel answers with its widgets, and :func:`merge_update_states` adds the proxy's
  own ones, so both kinds render again.
* **comm_info_request** lists the remote comms (asked live) plus the local ones.

Degrading: no rich channel, a dead session, a comm the remote kernel no longer has (the session
was restarted): the message is dropped with one log line; nothing ever fails in a cell.
"""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import contextlib
import logging
import secrets
import sys
import threading
from collections.abc import (
    AsyncIterator,
    Awaitable,
    Callable,
    Coroutine,
    Iterable,
    Mapping,
    Sequence,
)
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, Literal

from ..richchannel import (
    MARK_DONE,
    MARK_INFO,
    MARK_PARENT,
    IopubMessage,
    comm_info_code,
    decode_comm_info,
    dispatch_code,
    with_header,
)

__all__ = [
    "COMM_MSG_TYPES",
    "CONTROL_TARGET",
    "CommBridge",
    "CommTracker",
    "Pending",
    "manager_state_to_update",
    "merge_update_states",
    "rewrite_output_capture",
    "route_comm",
    "split_batches",
]

log = logging.getLogger(__name__)

COMM_MSG_TYPES = ("comm_open", "comm_msg", "comm_close")
CONTROL_TARGET = "jupyter.widget.control"
WIDGET_TARGET = "jupyter.widget"
OUTPUT_MODEL = "OutputModel"

BATCH_MESSAGES = 64
BATCH_BYTES = 8 << 20
"""One delivery carries at most this many messages / bytes of buffers (base64 grows them 4/3)."""

DELIVERY_TIMEOUT = 30.0
"""A delivery that takes longer is abandoned: its messages are logged as dropped, the remote run
is interrupted and read to its end (the client's drain), and later messages go on. A stock
server makes the next run wait at most its 30 s RPC timeout for this one anyway."""

# -- pure parts ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Pending:
    """One front-end message waiting for remote delivery, with what a local fallback needs."""

    msg: Mapping[str, Any]
    stream: Any = None
    ident: Any = None
    status: bool = False
    """Publish busy/idle for it: ipykernel dispatched it concurrently (during another request)
    and published none, but front-ends wait for that idle (ipywidgets' send throttle, and
    JupyterLab keeps an Output widget's capture hook only until then)."""

    @property
    def msg_type(self) -> str:
        return str(self.msg["header"]["msg_type"])

    @property
    def content(self) -> Mapping[str, Any]:
        content = self.msg.get("content")
        return content if isinstance(content, Mapping) else {}

    @property
    def size(self) -> int:
        return sum(len(memoryview(b).cast("B")) for b in self.msg.get("buffers") or ())


def split_batches(
    pending: Sequence[Pending], max_messages: int = BATCH_MESSAGES, max_bytes: int = BATCH_BYTES
) -> list[list[Pending]]:
    """Consecutive batches in order, each within the limits (a single big message stays alone)."""
    batches: list[list[Pending]] = []
    size = 0
    for p in pending:
        if not batches or len(batches[-1]) >= max_messages or size + p.size > max_bytes:
            batches.append([])
            size = 0
        batches[-1].append(p)
        size += p.size
    return batches


Route = Literal["local", "remote"]


def route_comm(
    msg_type: str, content: Mapping[str, Any], *, local_comms: Iterable[str], remote_up: bool
) -> Route:
    """Where one front-end comm message goes.

    ============================================ ===========
    message                                      goes
    ============================================ ===========
    any, no remote session with a rich channel   local
    ``comm_msg``/``comm_close`` of a local comm  local
    ``comm_open`` (any target)                   remote (falls back to local if unknown there)
    everything else                              remote
    ============================================ ===========
    """
    if not remote_up:
        return "local"
    if msg_type != "comm_open" and content.get("comm_id") in set(local_comms):
        return "local"
    return "remote"


def rewrite_output_capture(
    msg: IopubMessage, output_comms: Iterable[str], parent_msg_id: str | None
) -> IopubMessage:
    """An Output widget's ``msg_id`` (the remote request it captures) → the front-end's request.

    Only state updates of known ``OutputModel`` comms (or a ``comm_open`` of one) with a
    non-empty ``msg_id`` change; everything else is returned as is.
    """
    if not parent_msg_id or msg.msg_type not in ("comm_open", "comm_msg"):
        return msg
    data = msg.content.get("data")
    state = data.get("state") if isinstance(data, Mapping) else None
    if not isinstance(state, Mapping) or not state.get("msg_id"):
        return msg
    is_output = (
        state.get("_model_name") == OUTPUT_MODEL
        if msg.msg_type == "comm_open"
        else msg.content.get("comm_id") in set(output_comms)
    )
    if not is_output or state["msg_id"] == parent_msg_id:
        return msg
    assert isinstance(data, Mapping)
    content = {**msg.content, "data": {**data, "state": {**state, "msg_id": parent_msg_id}}}
    return IopubMessage(msg.msg_type, content, msg.metadata, msg.buffers)


def manager_state_to_update(
    manager_state: Mapping[str, Any],
) -> tuple[dict[str, Any], list[list[Any]], list[bytes]]:
    """ipywidgets' embeddable manager state → the ``update_states`` form (states, paths, buffers).

    ``Widget.get_manager_state()`` keeps buffers inline (base64, with a path inside the model's
    state); the control protocol wants them as binary buffers with paths from the states' root.
    """
    states: dict[str, Any] = {}
    paths: list[list[Any]] = []
    buffers: list[bytes] = []
    models = manager_state.get("state")
    if not isinstance(models, Mapping):
        return states, paths, buffers
    for model_id, model in models.items():
        if not isinstance(model, Mapping):
            continue
        states[model_id] = {k: v for k, v in model.items() if k != "buffers"}
        for buf in model.get("buffers") or ():
            if not isinstance(buf, Mapping) or not isinstance(buf.get("path"), list):
                continue
            paths.append([model_id, "state", *buf["path"]])
            buffers.append(base64.b64decode(str(buf.get("data", ""))))
    return states, paths, buffers


def merge_update_states(
    msg: IopubMessage, local: tuple[dict[str, Any], list[list[Any]], list[bytes]]
) -> IopubMessage:
    """Add the proxy's own widget states to the remote kernel's ``update_states`` answer."""
    states, paths, buffers = local
    data = msg.content.get("data")
    if not states or not isinstance(data, Mapping) or data.get("method") != "update_states":
        return msg
    remote_states = data.get("states")
    remote_states = remote_states if isinstance(remote_states, Mapping) else {}
    remote_paths = data.get("buffer_paths")
    remote_paths = remote_paths if isinstance(remote_paths, list) else []
    # A model id both sides claim (never seen in practice: they are random) keeps the remote one.
    ours = [(p, b) for p, b in zip(paths, buffers, strict=True) if p and p[0] not in remote_states]
    merged = {
        **data,
        "states": {**{k: v for k, v in states.items() if k not in remote_states}, **remote_states},
        "buffer_paths": [*(p for p, _ in ours), *remote_paths],
    }
    return IopubMessage(
        msg.msg_type,
        {**msg.content, "data": merged},
        msg.metadata,
        (*(b for _, b in ours), *msg.buffers),
    )


@dataclass
class CommTracker:
    """What the proxy knows about remote comms from the messages that pass through it."""

    remote: dict[str, str] = field(default_factory=dict)
    """comm_id → target_name of comms that live in the remote kernel."""
    outputs: set[str] = field(default_factory=set)
    """Comm ids of remote ``Output`` widgets."""
    controls: set[str] = field(default_factory=set)
    """Comm ids of ``jupyter.widget.control`` comms opened towards the remote kernel."""

    def seen(self, msg_type: str, content: Mapping[str, Any]) -> None:
        """Note one comm message, in either direction, that concerns the remote kernel."""
        comm_id = content.get("comm_id")
        if not isinstance(comm_id, str):
            return
        if msg_type == "comm_open":
            target = str(content.get("target_name", ""))
            self.remote[comm_id] = target
            if target == CONTROL_TARGET:
                self.controls.add(comm_id)
            data = content.get("data")
            state = data.get("state") if isinstance(data, Mapping) else None
            if isinstance(state, Mapping) and state.get("_model_name") == OUTPUT_MODEL:
                self.outputs.add(comm_id)
        elif msg_type == "comm_close":
            self.remote.pop(comm_id, None)
            self.outputs.discard(comm_id)
            self.controls.discard(comm_id)
        elif msg_type == "comm_msg":
            data = content.get("data")
            if isinstance(data, Mapping) and data.get("method") == "update_states":
                for model_id, model in (data.get("states") or {}).items():
                    if isinstance(model, Mapping) and model.get("model_name") == OUTPUT_MODEL:
                        self.outputs.add(str(model_id))

    def reset(self) -> None:
        self.remote.clear()
        self.outputs.clear()
        self.controls.clear()


# -- the bridge ---------------------------------------------------------------------------------


def local_widget_states() -> tuple[dict[str, Any], list[list[Any]], list[bytes]]:
    """The proxy's own widgets (``%backendai`` widgets, ``%%local`` cells), if it has any."""
    ipywidgets = sys.modules.get("ipywidgets")
    if ipywidgets is None:
        return {}, [], []
    try:
        return manager_state_to_update(ipywidgets.Widget.get_manager_state(drop_defaults=False))
    except Exception as e:  # a broken local widget must not cost the remote ones
        log.warning("local widget state left out of update_states: %s", e)
        return {}, [], []


class _DeliverySink:
    """Where a delivery's output goes: the proxy's iopub, each message with the front-end message
    it answers as parent. Called on the workspace's loop (see :mod:`.sink`: publishing from that
    thread is safe)."""

    def __init__(self, bridge: CommBridge, rid: str, batch: Sequence[Pending]) -> None:
        self.bridge = bridge
        self.rid = rid
        self.batch = batch
        self.current: Pending | None = None
        self.missing: list[int] | None = None
        self.comms: dict[str, dict[str, str]] | None = None
        if batch:
            self.switch(batch[0])

    def switch(self, to: Pending | None) -> None:
        """Output from now on belongs to ``to``: close the previous message, open this one."""
        if to is self.current:
            return
        if self.current is not None and self.current.status:
            self.bridge.status("idle", self.current.msg)
        self.current = to
        if to is not None and to.status:
            self.bridge.status("busy", to.msg)

    def publish(
        self,
        msg_type: str,
        content: dict[str, Any],
        *,
        metadata: dict[str, Any] | None = None,
        buffers: Sequence[bytes] | None = None,
    ) -> None:
        if msg_type.startswith("bai_"):
            self._marker(msg_type, content)
        elif self.current is not None:
            msg = IopubMessage(msg_type, content, metadata or {}, tuple(buffers or ()))
            self.bridge.publish(msg, self.current.msg)

    def _marker(self, msg_type: str, content: Mapping[str, Any]) -> None:
        if content.get("id") != self.rid:
            return
        if msg_type == MARK_PARENT:
            i = content.get("i")
            if isinstance(i, int) and 0 <= i < len(self.batch):
                self.switch(self.batch[i])
        elif msg_type == MARK_DONE:
            got = content.get("missing")
            self.missing = [i for i in got if isinstance(i, int)] if isinstance(got, list) else []
        elif msg_type == MARK_INFO:
            self.comms = decode_comm_info(content)

    async def ask(self, prompt: str, password: bool) -> str | None:
        return None  # a widget callback's input(): an EOFError, as with allow_stdin=False

    def notice(self, event: object) -> None:
        pass


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

RunHidden = Callable[[str, _DeliverySink], Awaitable[object]]
"""Runs code in the remote session unseen, its output into the sink; returns when it is done.
Called on the bridge's own loop (see ``submit``)."""

Submit = Callable[[Coroutine[Any, Any, Any]], "concurrent.futures.Future[Any]"]
"""Starts a coroutine on the bridge's own loop (the workspace's), from any thread."""


class CommBridge:
    """The proxy kernel's comm handling; see the module docstring.

    ``kernel`` is the ipykernel instance (its ``comm_manager``, ``session``, ``iopub_socket``,
    ``shell_handlers``); ``remote_up`` says whether a session with a rich channel is there;
    ``run_hidden`` executes code in it; ``nonce`` names the remote process (a new one means
    new comms); ``submit`` runs a coroutine on the bridge's loop. The handlers run on whichever
    (sub)shell loop ipykernel calls them on; the queue, its worker, ``_cells`` and
    ``run_hidden`` only on the bridge's loop; :meth:`publish` on the bridge's loop.
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
        self.run_hidden = run_hidden
        self.nonce = nonce
        self.submit = submit
        self.tracker = CommTracker()
        self.log: logging.Logger = getattr(kernel, "log", None) or log
        logging.getLogger("Comm").addFilter(_RemoteLookups(remote_up))
        self._lock = threading.Lock()  # the tracker: kernel thread and workspace thread
        self._local = {t: kernel.shell_handlers[t] for t in COMM_MSG_TYPES}
        self._queue: list[tuple[Pending, asyncio.Future[str | None]]] = []
        self._cells = 0
        self._worker: asyncio.Future[None] | None = None
        self._nonce: str | None = None
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
        why = await self._call(self._queued(pending))
        if why is not None:
            self._fallback([pending], why)

    async def _call(self, coro: Coroutine[Any, Any, Any]) -> Any:
        """Await ``coro`` on the bridge's loop from any other loop (thread-safe both ways)."""
        return await asyncio.wrap_future(self.submit(coro))

    async def _queued(self, pending: Pending) -> str | None:
        """(Bridge loop) Queue one message; once it is delivered: why the remote kernel did not
        take it (the handler then falls back to the local comm manager), else ``None``."""
        done: asyncio.Future[str | None] = asyncio.get_running_loop().create_future()
        self._queue.append((pending, done))
        self._kick()
        return await done

    def _kick(self) -> None:
        if self._queue and not self._cells and (self._worker is None or self._worker.done()):
            self._worker = asyncio.ensure_future(self._deliver_queue())

    @contextlib.asynccontextmanager
    async def remote_cell(self) -> AsyncIterator[None]:
        """(Bridge loop) Around a remote cell: what came first is delivered first; what comes
        meanwhile waits until it ends (the remote kernel runs one thing at a time, and a stock
        server's run queue makes a second run wait, up to its 30 s RPC timeout). The cell's
        one workspace call enters it (:meth:`~..workspace.CellRunner.run_cell`'s ``around``)."""
        # Held first, then drained: no new delivery starts meanwhile, and the running worker
        # delivers everything queued before it stops. The release takes no await, so a
        # cancelled cell still releases.
        self._hold(1)
        try:
            await self._drain()
            yield
        finally:
            self._hold(-1)

    def _hold(self, delta: int) -> None:
        self._cells += delta
        self._kick()

    async def _drain(self) -> None:
        while self._worker is not None and not self._worker.done():
            with contextlib.suppress(Exception):
                await asyncio.shield(self._worker)

    async def _deliver_queue(self) -> None:
        while self._queue:
            queued, self._queue = self._queue, []
            fallback: dict[int, str] = {}
            for batch in split_batches([p for p, _ in queued]):
                try:
                    fallback.update(await asyncio.wait_for(self._deliver(batch), DELIVERY_TIMEOUT))
                except Exception as e:  # never out of here: nobody awaits a shell handler's work
                    why = (
                        f"the remote kernel did not finish them within {DELIVERY_TIMEOUT:.0f} s "
                        "(its run was interrupted)"
                        if isinstance(e, asyncio.TimeoutError)
                        else f"delivery failed: {e}"
                    )
                    self.log.warning("dropped %d front-end comm message(s): %s", len(batch), why)
                    for p in batch:
                        if p.status:
                            self.status("idle", p.msg)
            for p, done in queued:
                if not done.done():
                    done.set_result(fallback.get(id(p)))

    def _check_session(self) -> None:
        nonce = self.nonce()
        with self._lock:
            if nonce != self._nonce:  # a new remote session (or process): its comms are new
                self.tracker.reset()
                self._nonce = nonce

    async def _deliver(self, batch: list[Pending]) -> dict[int, str]:
        """(Bridge loop) One hidden run; the messages the remote kernel did not take (by
        ``id``), with why."""
        self._check_session()
        if not self.remote_up():
            return {id(p): "no remote session" for p in batch}
        rid = secrets.token_hex(8)
        with self._lock:
            for p in batch:
                if p.msg_type == "comm_open":
                    self.tracker.seen(p.msg_type, p.content)
        sink = _DeliverySink(self, rid, batch)
        try:
            await self.run_hidden(dispatch_code(rid, (p.msg for p in batch)), sink)
        finally:
            sink.switch(None)
        if sink.missing is None:  # the remote side could not even start (restarted, no bootstrap)
            return {id(p): "the remote kernel did not take them" for p in batch}
        with self._lock:
            for i, p in enumerate(batch):
                if p.msg_type == "comm_close" and i not in sink.missing:
                    self.tracker.seen(p.msg_type, p.content)
        return {id(batch[i]): "no such comm" for i in sink.missing if 0 <= i < len(batch)}

    def _fallback(self, pending: Sequence[Pending], why: str) -> None:
        """Messages the remote kernel did not take: local if the proxy has them, else dropped.
        Called by the message's own handler, on its (sub)shell's thread."""
        manager = self.kernel.comm_manager
        for p in pending:
            content = p.content
            comm_id = str(content.get("comm_id"))
            if p.msg_type == "comm_open":
                with self._lock:
                    self.tracker.seen("comm_close", content)
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
        self._check_session()
        header = parent.get("header") if parent else None
        parent_id = header.get("msg_id") if isinstance(header, Mapping) else None
        with self._lock:
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
        remote = await self._call(self._remote_comm_info(target_name))
        if remote is None:
            with self._lock:
                remote = {
                    k: {"target_name": t}
                    for k, t in self.tracker.remote.items()
                    if target_name is None or t == target_name
                }
        return {**comms, **remote}

    async def _remote_comm_info(self, target_name: str | None) -> dict[str, dict[str, str]] | None:
        """(Bridge loop) Ask the remote kernel, after the queued deliveries and before new ones
        (one run at a time on the session)."""
        self._hold(1)
        try:
            await self._drain()
            self._check_session()
            rid = secrets.token_hex(8)
            sink = _DeliverySink(self, rid, [])
            try:
                await asyncio.wait_for(self.run_hidden(comm_info_code(rid, target_name), sink), 30)
            except Exception as e:
                self.log.warning("remote comm_info failed: %s", e)
            return sink.comms
        finally:
            self._hold(-1)


def attach(kernel: Any, workspace: Any, transport: str = "rest") -> CommBridge:
    """The bridge for a proxy kernel and its workspace (whose ``session`` is the remote one and
    whose loop runs the hidden deliveries, silently: no count, no history remotely).

    Deliveries use the REST execute call by default: a callback is short, and one request that
    returns as soon as the run finishes beats opening a websocket per delivery (cluster, median
    of ``pass``: ~90 ms vs ~130 ms); a long callback's output then comes in 2 s batches.
    """
    from ..workspace import relay

    def up() -> bool:  # any thread: the snapshot, never the live session
        return bool(workspace.session.snapshot.rich)

    async def hidden(code: str, sink: _DeliverySink) -> object:
        session = workspace.session
        nonce = session.nonce
        code = with_header(code, nonce, silent=True, store_history=False, allow_stdin=False)
        run = session.client.sessions.execute(session.session_id, code, transport=transport)
        return await relay(run, sink, nonce=nonce)

    return CommBridge(
        kernel, up, hidden, lambda: workspace.session.snapshot.nonce, workspace.submit
    )
