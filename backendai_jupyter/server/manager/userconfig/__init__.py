"""Session templates, dotfiles, bootstrap scripts, resource presets (protocol.md §9).

Split by responsibility: :mod:`.store` (per-keypair state on disk and the helpers session creation
calls), :mod:`.templates`, :mod:`.dotfiles` (with the bootstrap script) and :mod:`.resources`
(presets, check-presets, slots, scaling groups). This module re-exports what
``session_routes``/``scheduler`` and the tests import; the routes are rows of
``server/manager/routes.py``.
"""

from __future__ import annotations

from .resources import DEFAULT_PRESETS
from .store import (
    USER_CONFIG,
    UserConfigStore,
    bootstrap_script_for,
    dotfiles_for,
    get_template,
)

__all__ = [
    "DEFAULT_PRESETS",
    "USER_CONFIG",
    "UserConfigStore",
    "bootstrap_script_for",
    "dotfiles_for",
    "get_template",
]
