"""The delivery queue: front-end comm messages bound for the remote kernel, queued on the
workspace's loop and delivered by one hidden execution per batch.

Why a module of its own: this is the part of the comm bridge (:mod:`.comms`) that owns time and
order. ipykernel 7 runs each comm handler on the thread and loop of the (sub)shell the message
came on, and JupyterLab deletes a page's subshell (stopping its loop) when the page goes; so the
queue and its one worker live on the workspace's loop, which outlives them all, and handlers only
hand a message over and wait for the outcome. Shell messages are handled one at a time, so while
a remote cell runs they wait and are delivered after it, in order, as by a busy ipykernel; the
next remote cell waits for the queue (:meth:`DeliveryQueue.remote_cell`).

Each delivery hands its messages, binary buffers included, to the remote kernel's own comm
manager (the program :mod:`..richchannel.remote.comms`). Before each message the remote side
writes a ``comm_parent`` marker frame; what the callbacks publish after it is published with
*that front-end message* as parent (:class:`DeliverySink`), as ipykernel does: ipywidgets matches
``echo_update`` messages to its own ``comm_msg`` ids.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from typing import Any

from ..richchannel import (
    MARK_DONE,
    MARK_INFO,
    MARK_PARENT,
    IopubMessage,
    comm_info_code,
    decode_comm_info,
    dispatch_code,
)
from .comm_messages import Pending, SharedTracker, split_batches

__all__ = ["DELIVERY_TIMEOUT", "DeliveryQueue", "DeliverySink", "Publish", "RunHidden", "Status"]

DELIVERY_TIMEOUT = 30.0
"""A delivery that takes longer is abandoned: its messages are logged as dropped, the remote run
is interrupted and read to its end (the client's drain), and later messages go on. A stock
server makes the next run wait at most its 30 s RPC timeout for this one anyway."""

Publish = Callable[[IopubMessage, Mapping[str, Any]], None]
"""Publishes one remote message on the proxy's iopub with the given front-end message as parent."""

Status = Callable[[str, Mapping[str, Any]], None]
"""Publishes a busy/idle status on the proxy's iopub for the given front-end message."""


class DeliverySink:
    """Where a delivery's output goes: the proxy's iopub, each message with the front-end message
    it answers as parent. Called on the workspace's loop (see :mod:`.sink`: publishing from that
    thread is safe)."""

    def __init__(
        self, publish: Publish, status: Status, rid: str, batch: Sequence[Pending]
    ) -> None:
        self._publish = publish
        self._status = status
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
            self._status("idle", self.current.msg)
        self.current = to
        if to is not None and to.status:
            self._status("busy", to.msg)

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
            self._publish(msg, self.current.msg)

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


RunHidden = Callable[[str, DeliverySink], Awaitable[object]]
"""Runs code in the remote session unseen, its output into the sink; returns when it is done.
Called on the workspace's loop."""


class DeliveryQueue:
    """The queue, its worker and the hold of remote cells; every method runs on the workspace's
    loop. ``run_hidden`` executes code in the session, ``remote_up`` says whether one with a rich
    channel is there, ``shared`` is the bridge's comm tracker, ``publish`` and ``status`` write
    the proxy's iopub."""

    def __init__(
        self,
        run_hidden: RunHidden,
        remote_up: Callable[[], bool],
        shared: SharedTracker,
        publish: Publish,
        status: Status,
        log: logging.Logger,
    ) -> None:
        self.run_hidden = run_hidden
        self.remote_up = remote_up
        self.shared = shared
        self.publish = publish
        self.status = status
        self.log = log
        self._queue: list[tuple[Pending, asyncio.Future[str | None]]] = []
        self._cells = 0
        self._worker: asyncio.Future[None] | None = None

    def _sink(self, rid: str, batch: Sequence[Pending]) -> DeliverySink:
        return DeliverySink(self.publish, self.status, rid, batch)

    async def queued(self, pending: Pending) -> str | None:
        """Queue one message; once it is delivered: why the remote kernel did not
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
        """Around a remote cell: what came first is delivered first; what comes
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

    async def _deliver(self, batch: list[Pending]) -> dict[int, str]:
        """One hidden run; the messages the remote kernel did not take (by
        ``id``), with why."""
        self.shared.check_session()
        if not self.remote_up():
            return {id(p): "no remote session" for p in batch}
        rid = secrets.token_hex(8)
        with self.shared.lock:
            for p in batch:
                if p.msg_type == "comm_open":
                    self.shared.tracker.seen(p.msg_type, p.content)
        sink = self._sink(rid, batch)
        try:
            await self.run_hidden(dispatch_code(rid, (p.msg for p in batch)), sink)
        finally:
            sink.switch(None)
        if sink.missing is None:  # the remote side could not even start (restarted, no bootstrap)
            return {id(p): "the remote kernel did not take them" for p in batch}
        with self.shared.lock:
            for i, p in enumerate(batch):
                if p.msg_type == "comm_close" and i not in sink.missing:
                    self.shared.tracker.seen(p.msg_type, p.content)
        return {id(batch[i]): "no such comm" for i in sink.missing if 0 <= i < len(batch)}

    async def remote_comm_info(self, target_name: str | None) -> dict[str, dict[str, str]] | None:
        """Ask the remote kernel, after the queued deliveries and before new ones
        (one run at a time on the session)."""
        self._hold(1)
        try:
            await self._drain()
            self.shared.check_session()
            rid = secrets.token_hex(8)
            sink = self._sink(rid, [])
            try:
                await asyncio.wait_for(self.run_hidden(comm_info_code(rid, target_name), sink), 30)
            except Exception as e:
                self.log.warning("remote comm_info failed: %s", e)
            return sink.comms
        finally:
            self._hold(-1)
