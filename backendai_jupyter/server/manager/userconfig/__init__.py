"""Session templates, dotfiles, bootstrap scripts, resource presets (protocol.md §9).

Split by responsibility: :mod:`.store` (per-keypair state on disk and the helpers session creation
calls), :mod:`.templates`, :mod:`.dotfiles` (with the bootstrap script) and :mod:`.resources`
(presets, check-presets, slots, scaling groups). This module re-exports the store (what
``session_routes`` and the tests import; not :mod:`.resources`, which reads the scheduler's
capacity and so must not load with the scheduler); the routes are rows of
``server/manager/routes.py``.
"""

from __future__ import annotations

from .store import (
    USER_CONFIG,
    UserConfigStore,
    bootstrap_script_for,
    dotfiles_for,
    get_template,
)

__all__ = [
    "USER_CONFIG",
    "UserConfigStore",
    "bootstrap_script_for",
    "dotfiles_for",
    "get_template",
]
