"""The pure rules for front-end comm messages: where each goes, how they are batched, what the
proxy learns from them, how an Output widget's capture id is rewritten.

Why a module of its own: these are the decisions of the comm bridge (:mod:`.comms`) that need no
kernel, no loop and no session, so they are tested by tables (``tests/kernel/test_comms.py``);
the bridge and the delivery queue (:mod:`.comm_delivery`) only apply them.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from ..richchannel import IopubMessage

__all__ = [
    "BATCH_BYTES",
    "BATCH_MESSAGES",
    "COMM_MSG_TYPES",
    "CONTROL_TARGET",
    "OUTPUT_MODEL",
    "WIDGET_TARGET",
    "CommTracker",
    "Pending",
    "Route",
    "SharedTracker",
    "rewrite_output_capture",
    "route_comm",
    "split_batches",
]

COMM_MSG_TYPES = ("comm_open", "comm_msg", "comm_close")
CONTROL_TARGET = "jupyter.widget.control"
WIDGET_TARGET = "jupyter.widget"
OUTPUT_MODEL = "OutputModel"

BATCH_MESSAGES = 64
BATCH_BYTES = 8 << 20
"""One delivery carries at most this many messages / bytes of buffers (base64 grows them 4/3)."""


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


class SharedTracker:
    """The :class:`CommTracker` of one proxy kernel, shared by the (sub)shell threads that run the
    comm handlers and the workspace's loop that delivers and publishes: hold ``lock`` around
    every use of ``tracker``. It starts empty again whenever the remote process changes."""

    def __init__(self, nonce: Callable[[], str | None]) -> None:
        self.tracker = CommTracker()
        self.lock = threading.Lock()
        self._current_nonce = nonce
        self._nonce: str | None = None

    def check_session(self) -> None:
        """Forget the old comms if a new remote session (or process) is there."""
        nonce = self._current_nonce()
        with self.lock:
            if nonce != self._nonce:
                self.tracker.reset()
                self._nonce = nonce

    def seen(self, msg_type: str, content: Mapping[str, Any]) -> None:
        with self.lock:
            self.tracker.seen(msg_type, content)
