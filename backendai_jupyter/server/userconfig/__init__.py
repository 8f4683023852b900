"""Session templates, dotfiles, bootstrap scripts, resource presets (protocol.md §9).

Split by responsibility: :mod:`.store` (per-keypair state on disk and the helpers session creation
calls), :mod:`.templates`, :mod:`.dotfiles` (with the bootstrap script) and :mod:`.resources`
(presets, check-presets, slots, scaling groups). This module only wires the routes and re-exports
what ``sessions``/``scheduler`` and the tests import.
"""

from __future__ import annotations

from aiohttp import web

from . import dotfiles, resources, templates
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
    "setup",
]


def setup(app: web.Application) -> None:
    """Register ``/template/session``, ``/user-config``, ``/resource``, ``/config`` routes."""
    app[USER_CONFIG] = UserConfigStore(app)
    r = app.router
    r.add_post("/template/session", templates.create_template)
    r.add_get("/template/session", templates.list_templates)
    r.add_get("/template/session/{template_id}", templates.get_template_handler)
    r.add_put("/template/session/{template_id}", templates.update_template)
    r.add_delete("/template/session/{template_id}", templates.delete_template)
    r.add_post("/user-config/dotfiles", dotfiles.create_dotfile)
    r.add_get("/user-config/dotfiles", dotfiles.list_dotfiles)
    r.add_patch("/user-config/dotfiles", dotfiles.update_dotfile)
    r.add_delete("/user-config/dotfiles", dotfiles.delete_dotfile)
    r.add_post("/user-config/bootstrap-script", dotfiles.set_bootstrap)
    r.add_get("/user-config/bootstrap-script", dotfiles.get_bootstrap)
    r.add_get("/resource/presets", resources.list_presets)
    r.add_post("/resource/check-presets", resources.check_presets)
    r.add_get("/config/resource-slots", resources.resource_slots)
    r.add_get("/config/resource-slots/details", resources.resource_slot_details)
    r.add_get("/config/vfolder-types", resources.vfolder_types)
    r.add_get("/scaling-groups", resources.scaling_groups)
