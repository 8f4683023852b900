"""``%backendai doctor``: ``backendai-jupyter doctor`` for this notebook's workspace (its endpoint,
keys, image and resources, as ``%backendai config`` shows them): one ✓/✗ line per check, each
✗ with its fix."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from ...doctor import format_report, run_checks
from ..grammar import MagicParser

if TYPE_CHECKING:
    from ..context import Context


def add_arguments(p: MagicParser) -> None:
    """No flags: the workspace's configuration is what is checked."""


def run(ctx: Context, args: argparse.Namespace, cell: str | None) -> None:
    settings = ctx.workspace.settings
    checks = ctx.call(run_checks(ctx.client_config, image=settings.image,
                                 resources=dict(settings.resources)))
    print(format_report(checks))  # the last line says whether a first cell would run
