"""The ``backendai-jupyter`` command line: one sub-command per entry of :data:`COMMANDS`.

A sub-command is a pair ``(add_arguments, run)``; modules are imported lazily so that
``backendai-jupyter --help`` stays fast and a missing optional dependency only breaks the
command that needs it. To add one, add an entry to :data:`COMMANDS`.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence

__all__ = ["COMMANDS", "build_parser", "main"]

AddArguments = Callable[[argparse.ArgumentParser], None]
Run = Callable[[argparse.Namespace], int]

#: name → (module, help). The module provides ``add_arguments(parser)`` and ``run(args) -> int``.
COMMANDS: dict[str, tuple[str, str]] = {
    "serve": ("backendai_jupyter.server.cli", "run the local Backend.AI endpoint"),
    "kernel": ("backendai_jupyter.kernel.install", "install, list or remove kernelspecs"),
    "run": ("backendai_jupyter.jobs.cli_run", "run a notebook or a parameter sweep of it"),
    "jobs": ("backendai_jupyter.jobs.cli_jobs", "list, wait for, fetch or cancel detached jobs"),
    "doctor": ("backendai_jupyter.doctor", "check what a first cell needs, with a fix for each"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="backendai-jupyter", description="Backend.AI for Jupyter: tools and local endpoint."
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module, help_text) in COMMANDS.items():
        cmd = sub.add_parser(name, help=help_text, description=help_text)
        cmd.set_defaults(_module=module)
        mod = importlib.import_module(module)
        add: AddArguments = mod.add_arguments
        add(cmd)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    run: Run = importlib.import_module(args._module).run
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
