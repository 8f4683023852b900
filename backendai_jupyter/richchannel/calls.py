"""What the proxy sends into the session: the cell header and the code of its hidden runs. Pure.

The remote programs are the real modules of :mod:`.remote`, read as package resources and
executed remotely in the private module :data:`MODULE` (never the user's namespace), compiled
under :data:`~.remote.bootstrap.FILENAME` so that the remote side can keep their frames out
of tracebacks.
"""

from __future__ import annotations

import base64
import functools
import importlib.resources
import json
from collections.abc import Iterable, Mapping
from typing import Any

from .remote.bootstrap import FILENAME
from .remote.comms import MARK_DONE, MARK_INFO, MARK_PARENT

__all__ = [
    "BOOTSTRAP_VERSION",
    "EOF_REPLY",
    "HEADER_TAG",
    "MARK_DONE",
    "MARK_INFO",
    "MARK_PARENT",
    "MODULE",
    "bootstrap_code",
    "comm_info_code",
    "decode_comm_info",
    "dispatch_code",
    "encode_batch",
    "helper_call",
    "with_header",
]

BOOTSTRAP_VERSION = 2
EOF_REPLY = "\x04\x04bai-no-stdin"
"""The input reply that makes the patched remote ``input()`` raise ``StdinNotImplementedError``."""
HEADER_TAG = "#\x1bbai:"
"""Start of a cell header line: ``HEADER_TAG + nonce + " " + JSON``."""
MODULE = "_backendai_rich"
"""The remote module the programs run in (``sys.modules[MODULE]`` in the session)."""


@functools.cache
def program(name: str) -> str:
    """The text of one remote program (``bootstrap``, ``comms``, ``live``), from the package."""
    files = importlib.resources.files(__package__ or "backendai_jupyter.richchannel")
    return files.joinpath("remote").joinpath(f"{name}.py").read_text(encoding="utf-8")


def _module() -> str:
    return f"__import__('sys').modules[{MODULE!r}]"


def _exec_into_module(name: str) -> str:
    """An expression running program ``name`` in :data:`MODULE` (evaluates to None)."""
    return f"exec(compile({program(name)!r}, {FILENAME!r}, 'exec'), {_module()}.__dict__)"


def bootstrap_code() -> str:
    """The code to run once in the remote IPython to install the rich channel.

    It holds no secret: the remote side picks the nonce and names it in its ``ready`` frame
    (:func:`~.frames.read_ready` finds it). Every statement evaluates to None, so nothing is
    displayed.
    """
    args = f"{json.dumps(EOF_REPLY)}, {BOOTSTRAP_VERSION}, {json.dumps(HEADER_TAG)}"
    return (
        f"__import__('sys').modules.setdefault({MODULE!r}, "
        f"__import__('types').ModuleType({MODULE!r}))\n"
        f"{_exec_into_module('bootstrap')}\n"
        f"{_module()}.install({args})\n"
    )


def with_header(
    code: str,
    nonce: str | None,
    *,
    count: int | None = None,
    silent: bool = False,
    store_history: bool = True,
    user_expressions: Mapping[str, str] | None = None,
    allow_stdin: bool = True,
) -> str:
    """``code`` with the cell header: what the remote ``do_execute`` should use (the notebook's
    ``count``, when the cell is stored in history, and the flags). Unchanged without a rich
    channel (``nonce`` None). Hidden runs pass ``silent=True, store_history=False``."""
    if not nonce:
        return code
    if not nonce.replace("-", "").replace("_", "").isalnum():
        raise ValueError("bad nonce")
    h: dict[str, Any] = {
        "silent": silent,
        "store_history": store_history,
        "allow_stdin": allow_stdin,
        "user_expressions": dict(user_expressions or {}),
    }
    if count is not None:
        h["count"] = int(count)
    return f"{HEADER_TAG}{nonce} {json.dumps(h, ensure_ascii=True)}\n{code}"


def helper_call(rid: str, method: str, *args: object) -> str:
    """A hidden one-line execution asking the remote kernel for ``method(*args)``.

    The answer comes back as a ``reply`` frame with the same ``rid``. Returns None remotely, so
    nothing is displayed and ``_`` is left alone. Send it with a hidden header.
    """
    if method not in ("do_complete", "do_inspect"):
        raise ValueError(f"unsupported helper {method!r}")
    if not all(isinstance(a, (str, int)) and not isinstance(a, bool) for a in args):
        raise TypeError("helper arguments must be str or int")
    arglist = ", ".join(repr(a) for a in args)
    return f"{_module()}.call({rid!r}, {method!r}, {arglist})\n"


# -- comm deliveries (remote program: remote/comms.py) ------------------------------------------


def _b64(buf: Any) -> str:
    return base64.b64encode(memoryview(buf).cast("B")).decode("ascii")


def encode_batch(messages: Iterable[Mapping[str, Any]]) -> str:
    """Front-end messages as one base64 text (JSON inside; buffers base64 each)."""
    items = [
        {
            "msg_type": m["header"]["msg_type"],
            "header": dict(m["header"]),
            "content": m.get("content") or {},
            "metadata": m.get("metadata") or {},
            "buffers": [_b64(b) for b in m.get("buffers") or ()],
        }
        for m in messages
    ]
    return base64.b64encode(json.dumps(items, default=str).encode()).decode("ascii")


def _comms_call(name: str, args: str) -> str:
    # One expression: runs remote/comms.py in the bootstrap's module on first use, then calls
    # it. It evaluates to None, so nothing is displayed and ``_`` is left alone.
    return (
        f"(lambda mod: (getattr(mod, {name!r}, None) or (exec(compile({program('comms')!r}, "
        f"{FILENAME!r}, 'exec'), mod.__dict__) or getattr(mod, {name!r})))({args}))"
        f"({_module()})\n"
    )


def dispatch_code(rid: str, messages: Iterable[Mapping[str, Any]]) -> str:
    """The hidden remote execution delivering ``messages`` to the remote comm manager."""
    if not rid.isalnum():
        raise ValueError("bad request id")
    return _comms_call("comms", f"{rid!r}, {encode_batch(messages)!r}")


def comm_info_code(rid: str, target_name: str | None) -> str:
    """The hidden remote execution answering with a ``bai_comm_info`` message."""
    if not rid.isalnum():
        raise ValueError("bad request id")
    return _comms_call("comm_info", f"{rid!r}, {target_name!r}")


def decode_comm_info(content: Any) -> dict[str, dict[str, str]]:
    """The ``comms`` of a remote comm_info answer, only well-formed entries."""
    comms = content.get("comms") if isinstance(content, Mapping) else None
    if not isinstance(comms, Mapping):
        return {}
    return {
        str(k): {"target_name": str(v["target_name"])}
        for k, v in comms.items()
        if isinstance(v, Mapping) and isinstance(v.get("target_name"), str)
    }
