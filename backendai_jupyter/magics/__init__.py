"""IPython extension: ``%load_ext backendai_jupyter`` registers ``%backendai``/``%%backendai``.

``%backendai COMMAND?`` is rewritten to ``%backendai COMMAND --help`` by an input transformer
(IPython would otherwise look up an object named ``COMMAND``).
"""

from __future__ import annotations

import re
from typing import Any

from .magics import BackendAIMagics, CommandError, RunFailed
from .results import CaseResult, RunResult, SweepResult, Table

__all__ = [
    "BackendAIMagics",
    "CaseResult",
    "CommandError",
    "RunFailed",
    "RunResult",
    "SweepResult",
    "Table",
    "help_transformer",
    "load_ipython_extension",
    "unload_ipython_extension",
]

# "%backendai run?", "%backendai vfolder ls??" (sub-command words only, then the "?").
_HELP_LINE = re.compile(r"^(\s*%backendai(?:\s+[A-Za-z][\w-]*)+)\s*\?{1,2}\s*$")


def help_transformer(lines: list[str]) -> list[str]:
    """Input transformer: ``%backendai CMD?`` → ``%backendai CMD --help``."""
    return [_HELP_LINE.sub(r"\1 --help", line.rstrip("\n")) + ("\n" if line.endswith("\n")
                                                               else "")
            if _HELP_LINE.match(line.rstrip("\n")) else line for line in lines]


def load_ipython_extension(ipython: Any) -> None:
    """Register the magics (idempotent: loading twice keeps one instance)."""
    if ipython.magics_manager.registry.get("BackendAIMagics") is None:
        ipython.register_magics(BackendAIMagics(ipython))
    if help_transformer not in ipython.input_transformers_cleanup:
        ipython.input_transformers_cleanup.append(help_transformer)


def unload_ipython_extension(ipython: Any) -> None:
    """Stop app proxies, close the client, drop the ``?`` transformer."""
    magics = ipython.magics_manager.registry.get("BackendAIMagics")
    if isinstance(magics, BackendAIMagics):
        magics.close()
    if help_transformer in ipython.input_transformers_cleanup:
        ipython.input_transformers_cleanup.remove(help_transformer)
