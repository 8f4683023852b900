"""Widget states for a reloaded tab: the remote kernel's ``request_states`` answer plus the
proxy's own widgets.

Why a module of its own: a new page opens ``jupyter.widget.control`` and asks for every widget's
state; only the remote kernel answers, so the ``%backendai`` widgets and those of ``%%local``
cells (which live in the proxy) would not render again. The comm bridge (:mod:`.comms`) passes
that answer through :func:`merge_update_states` with :func:`local_widget_states`. The
conversion from ipywidgets' embeddable state is pure and table-tested.
"""

from __future__ import annotations

import base64
import logging
import sys
from collections.abc import Mapping
from typing import Any

from ..richchannel import IopubMessage

__all__ = ["WidgetStates", "local_widget_states", "manager_state_to_update", "merge_update_states"]

log = logging.getLogger(__name__)

WidgetStates = tuple[dict[str, Any], list[list[Any]], list[bytes]]
"""``update_states``' parts: states by model id, buffer paths from the states' root, buffers."""


def manager_state_to_update(
    manager_state: Mapping[str, Any],
) -> WidgetStates:
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


def merge_update_states(msg: IopubMessage, local: WidgetStates) -> IopubMessage:
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


def local_widget_states() -> WidgetStates:
    """The proxy's own widgets (``%backendai`` widgets, ``%%local`` cells), if it has any."""
    ipywidgets = sys.modules.get("ipywidgets")
    if ipywidgets is None:
        return {}, [], []
    try:
        return manager_state_to_update(ipywidgets.Widget.get_manager_state(drop_defaults=False))
    except Exception as e:  # a broken local widget must not cost the remote ones
        log.warning("local widget state left out of update_states: %s", e)
        return {}, [], []
