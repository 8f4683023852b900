"""``%backendai doctor``: ``backendai-jupyter doctor`` for this notebook's workspace (its endpoint,
keys, image and resources, as ``%backendai config`` shows them)."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from ..doctor import format_report, run_checks

if TYPE_CHECKING:
    from .magics import BackendAIMagics

__all__ = ["add_parser", "doctor"]


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    sub.add_parser(
        "doctor", help="check what a first cell needs, with a fix for each",
        description="Check the endpoint and its version, the clock, the keys, the project, "
        "images, presets, vfolder hosts, the kernelspec and the local sandbox: one line each.",
    )


def doctor(m: BackendAIMagics, args: argparse.Namespace, cell: str | None) -> None:
    """Print the report (its last line says whether a first cell would run)."""
    settings = m.workspace.settings
    checks = m._call(run_checks(m.client_config(), image=settings.image,
                                resources=dict(settings.resources)))
    print(format_report(checks))
