"""Defaults the client, the kernel and the magics share (pure; no I/O).

The fallback to the embedded local endpoint when no endpoint is configured is *not* here: it
lives above the client, in :mod:`backendai_jupyter.workspace.config`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from .shape import IMAGE_VAR

__all__ = ["DEFAULT_IMAGE", "default_image", "named_image"]

#: The image sessions use when none is named: the stock Backend.AI Python image. The local
#: endpoint runs any image name with this machine's Python.
DEFAULT_IMAGE = "cr.backend.ai/stable/python:3.13-ubuntu24.04"


def default_image(env: Mapping[str, str] | None = None) -> str:
    """``$BACKEND_IMAGE``, else :data:`DEFAULT_IMAGE`."""
    value = (os.environ if env is None else env).get(IMAGE_VAR, "").strip()
    return value or DEFAULT_IMAGE


def named_image(env: Mapping[str, str] | None = None) -> str:
    """``$BACKEND_IMAGE``, else ``""``: let the server's image list decide
    (:func:`backendai_jupyter.client.images.pick_image`)."""
    return (os.environ if env is None else env).get(IMAGE_VAR, "").strip()
