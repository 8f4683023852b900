"""What makes the proxy kernel answer like a local ipykernel, as pure functions.

The remote side (:mod:`..richchannel`) reports the remote interpreter in its ``ready`` frame and
each cell's ``execute_reply``; these functions turn that into what the proxy answers:

* :func:`kernel_info_for`: ``kernel_info`` with the *remote* ``language_info`` (Python version,
  mimetype, pygments lexer) once the session runs, ours before. The debugger is not offered:
  it would attach to the proxy process, not to the session where the cells run.
* :func:`exit_requested`: whether a reply's ``ask_exit`` payload means "stop this kernel", as
  ``exit``/``quit`` do in a local ipykernel (``exit(keep_kernel=True)`` does not).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["exit_requested", "kernel_info_for", "language_info_for"]

_LANGUAGE_KEYS = (
    "version",
    "mimetype",
    "codemirror_mode",
    "pygments_lexer",
    "nbconvert_exporter",
    "file_extension",
)


def language_info_for(
    ours: Mapping[str, Any], remote_info: Mapping[str, Any] | None
) -> dict[str, Any]:
    """Our ``language_info`` with the remote kernel's fields laid over it.

    Only well-formed fields are taken; ``name`` stays ours (``python``), since the proxy only
    runs Python sessions and front-ends key syntax support on it.
    """
    merged = dict(ours)
    remote = remote_info.get("language_info") if remote_info else None
    if not isinstance(remote, Mapping) or remote.get("name") != ours.get("name"):
        return merged
    for key in _LANGUAGE_KEYS:
        value = remote.get(key)
        if isinstance(value, str) and value or key == "codemirror_mode" and isinstance(
            value, (str, Mapping)
        ):
            merged[key] = dict(value) if isinstance(value, Mapping) else value
    return merged


def kernel_info_for(
    ours: Mapping[str, Any], remote_info: Mapping[str, Any] | None
) -> dict[str, Any]:
    """``kernel_info`` content: ours, with the remote ``language_info`` and no debugger."""
    info = dict(ours)
    info["language_info"] = language_info_for(info.get("language_info") or {}, remote_info)
    features = info.get("supported_features")
    if isinstance(features, list):
        info["supported_features"] = [f for f in features if f != "debugger"]
    return info


def exit_requested(payload: list[dict[str, Any]]) -> bool:
    """True when the remote ``execute_reply`` payload asks the kernel to stop."""
    return any(p.get("source") == "ask_exit" and not p.get("keepkernel") for p in payload)
