"""The ``%backendai`` command line: one argparse parser, one sub-parser per command module.

Each command module (:mod:`.commands`) declares its own arguments; :func:`build_parser` only
assembles them. Flags follow the official ``backend.ai`` CLI (client SDK 20.03). Parsing never
exits the process: a bad line raises IPython's :class:`UsageError` with a one-line message, and
``--help`` prints the help of the (sub-)command and raises :class:`HelpShown`.

A trailing ``?`` asks for help; :func:`help_request` is the one place that says so, for the
magic's own line and for the input transformer that rewrites ``%backendai CMD?`` in a cell
(IPython would otherwise look up an object named ``CMD``).
"""

from __future__ import annotations

import argparse
import importlib
import re
import shlex
import sys
from typing import Any, NoReturn

from IPython.core.error import UsageError

from .commands import COMMANDS, Command

__all__ = [
    "NESTED",
    "PROG",
    "HelpShown",
    "MagicParser",
    "add_subcommand",
    "build_parser",
    "help_request",
    "help_transformer",
    "load_command",
    "normalize_argv",
    "split_line",
]

PROG = "%backendai"

#: The ``dest`` of every command's own sub-commands (``vfolder ls``, ``config set``, ...).
NESTED = "subcommand"


class HelpShown(Exception):
    """``--help`` was given: the help was printed, there is nothing to run."""


class MagicParser(argparse.ArgumentParser):
    """An ``ArgumentParser`` that raises instead of exiting and prints to ``sys.stdout``."""

    def error(self, message: str) -> NoReturn:
        text = " ".join(message.split())
        raise UsageError(f"{self.prog}: {text} (see {self.prog} --help)")

    def exit(self, status: int = 0, message: str | None = None) -> NoReturn:
        if status:
            self.error(message or "error")
        raise HelpShown()

    def print_help(self, file: Any = None) -> None:
        super().print_help(file or sys.stdout)


def add_subcommand(sub: Any, name: str, help_text: str, **kw: Any) -> MagicParser:
    """One (sub-)command's parser; ``sub`` is what ``add_subparsers`` returned."""
    parser: MagicParser = sub.add_parser(
        name, help=help_text, description=kw.pop("description", help_text), allow_abbrev=False,
        **kw
    )
    return parser


def load_command(name: str) -> Command:
    """The module of the command ``name`` (see :data:`.commands.COMMANDS`)."""
    module: Any = importlib.import_module(f"{__package__}.commands.{COMMANDS[name][0]}")
    command: Command = module
    return command


def build_parser() -> MagicParser:
    """The whole ``%backendai`` grammar: each command module adds its own arguments."""
    parser = MagicParser(
        prog=PROG,
        description="Use a Backend.AI cluster from IPython/Jupyter. "
        "`%backendai COMMAND --help` (or `%backendai COMMAND?`) shows a command's flags.",
        allow_abbrev=False,
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (_, help_text) in COMMANDS.items():
        load_command(name).add_arguments(add_subcommand(sub, name, help_text))
    return parser


# "run?", "vfolder ls??", "?": the question mark(s) that end a line asking for help.
_HELP_SUFFIX = re.compile(r"\s*\?+\s*$")
# A cell line that asks for help: "%backendai", then sub-command words only, then the "?".
_HELP_WORDS = re.compile(r"^\s*%backendai(?:\s+[A-Za-z][\w-]*)*$")


def help_request(text: str) -> tuple[str, bool]:
    """``"run?"`` → ``("run", True)``; a line without a trailing ``?`` → ``(line, False)``."""
    stripped = _HELP_SUFFIX.sub("", text)
    return stripped, stripped != text


def help_transformer(lines: list[str]) -> list[str]:
    """Input transformer: ``%backendai CMD?`` → ``%backendai CMD --help``. Only sub-command
    words may stand before the ``?``: code that ends with one is left alone."""
    out = []
    for line in lines:
        body = line.rstrip("\n")
        words, want_help = help_request(body)
        if want_help and _HELP_WORDS.match(words):
            line = f"{words} --help" + line[len(body):]
        out.append(line)
    return out


def normalize_argv(argv: list[str]) -> list[str]:
    """Shorthands, pure: ``config KEY=VALUE ...`` → ``config set KEY=VALUE ...``;
    ``kernel config ...`` → ``config ...``."""
    if argv[:2] == ["kernel", "config"]:
        argv = ["config", *argv[2:]]
    if argv[:1] == ["config"] and len(argv) > 1 and "=" in argv[1]:
        argv = ["config", "set", *argv[1:]]
    return argv


def split_line(line: str) -> list[str]:
    try:
        return shlex.split(line)
    except ValueError as e:
        raise UsageError(f"{PROG}: cannot split the line: {e}") from None
