"""``%backendai doctor``: ``backendai-jupyter doctor`` for this notebook's workspace (its endpoint,
keys, image and resources, as ``%backendai config`` shows them)."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from ..doctor import format_report, run_checks

if TYPE_CHECKING:
    from .magics import BackendAIMagics

__all__ = ["doctor"]


def doctor(m: BackendAIMagics, args: argparse.Namespace, cell: str | None) -> None:
    """Print the report (its last line says whether a first cell would run)."""
    settings = m.workspace.settings
    checks = m._call(run_checks(m.client_config, image=settings.image,
                                resources=dict(settings.resources)))
    print(format_report(checks))
