"""``%backendai`` / ``%%backendai``: the magic itself (line → command module → result).

The magic splits the line, parses it with the grammar the command modules declare
(:mod:`.grammar`), and calls the command's ``run`` with this instance's
:class:`~.context.Context`. The commands, their arguments and bodies, are in :mod:`.commands`.

Errors: a bad line is a one-line ``UsageError``; a server or client failure is a
:class:`CommandError` shown as one line; with ``run --raise`` a failing run raises
:class:`RunFailed` (a ``RemoteError``). The line is not ``$var``-expanded for ``run`` (it ships
code); other commands expand ``$name``/``{name}`` from the user namespace.
"""

from __future__ import annotations

from typing import Any

from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_cell_magic, magics_class, no_var_expand
from IPython.utils.text import DollarFormatter

from ..client import BackendAIError, Client, ClientConfig, ParseError, RemoteError
from ..client.apps import AppProxy
from ..workspace import Workspace, current
from .context import Context
from .errors import CommandError, RunFailed
from .grammar import (
    NESTED,
    PROG,
    HelpShown,
    build_parser,
    help_request,
    load_command,
    normalize_argv,
    split_line,
)
from .results import RunResult, SweepResult

__all__ = ["BackendAIMagics", "CommandError", "RunFailed"]


@magics_class
class BackendAIMagics(Magics):
    """Backend.AI magics; see ``%backendai --help``. Configuration, client and kernel session
    belong to the process's workspace (shared with the proxy kernel); what the commands keep
    between calls (app proxies, the last run) is in :attr:`context`."""

    def __init__(self, shell: Any = None, workspace: Workspace | None = None) -> None:
        super().__init__(shell)
        self._parser = build_parser()
        self.context = Context(workspace or current(), shell)

    @no_var_expand
    @line_cell_magic
    def backendai(self, line: str, cell: str | None = None) -> Any:
        text, want_help = help_request(line.strip())
        argv = split_line(text)
        if argv and argv[0] != "run":
            argv = split_line(self._expand(text))
        if not argv or argv[0] == "help":
            argv = argv[1:]
            want_help = True
        if want_help:
            argv = [*argv, "--help"]
        try:
            args, extra = self._parser.parse_known_args(normalize_argv(argv))
        except HelpShown:
            return None
        if extra:
            words = [args.command, getattr(args, NESTED, None)]
            where = " ".join([PROG, *(w for w in words if w)])
            raise UsageError(f"{where}: unrecognized arguments: {' '.join(extra)} "
                             f"(see {where} --help)")
        try:
            return load_command(args.command).run(self.context, args, cell)
        except ParseError as e:
            raise UsageError(f"{PROG} {args.command}: {e}") from None
        except (RemoteError, UsageError):
            raise
        except BackendAIError as e:
            raise CommandError(f"{PROG} {args.command}: {e}") from e

    def _expand(self, text: str) -> str:
        try:
            namespace = self.shell.user_ns if self.shell is not None else {}
            return str(DollarFormatter().vformat(text, args=[], kwargs=namespace))
        except Exception:  # IPython's var_expand keeps the line as is, too
            return text

    # -- the context's parts, under the names programs and tests use -----------------------------

    @property
    def workspace(self) -> Workspace:
        return self.context.workspace

    @property
    def client_config(self) -> ClientConfig:
        return self.context.client_config

    @property
    def client(self) -> Client:
        return self.context.client

    @property
    def proxies(self) -> dict[int, AppProxy]:
        return self.context.proxies

    @property
    def last_result(self) -> RunResult | SweepResult | None:
        return self.context.last_result

    def close(self) -> None:
        """Stop every app proxy (``%unload_ext``); the workspace keeps its client."""
        self.context.close()


BackendAIMagics.backendai.__doc__ = build_parser().format_help()
