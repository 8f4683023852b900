"""IPython extension: ``%load_ext backendai_jupyter`` registers ``%backendai``/``%%backendai``.

Layout
------
``magics.py``
    The magic: splits and parses the line, calls the command, maps errors to one line.
``commands/``
    One module per command (``run``, ``ps``, ``vfolder``, ...), listed in
    :data:`.commands.COMMANDS`. Each holds its arguments next to its body.
``context.py``
    :class:`~.context.Context`, all a command gets from the magic: the workspace, the client,
    ``call(coro)`` (wait for work on the workspace loop), ``stream(work)`` (live output and
    ``input()`` in this cell), ``status(text)``, the app proxies and the last run.
``grammar.py``, ``output.py``, ``runs.py``, ``payload.py``, ``results.py``, ``errors.py``
    The parser and the one ``?`` path; where live output goes (the kernel's own renderer under
    Jupyter); the async work of ``run``/``start``; ``--data``/``-f``/cell payloads; the result
    objects; the exceptions.

Adding a command
----------------
1. Write ``commands/NAME.py`` (``-`` becomes ``_``) with two functions::

       def add_arguments(p: MagicParser) -> None:     # its flags; its own sub-commands use
           p.add_argument("session")                  # p.add_subparsers(dest=NESTED)

       def run(ctx: Context, args: argparse.Namespace, cell: str | None) -> Any:
           return Table.from_records(ctx.call(ctx.client.sessions.list()), ("name", "id"))

   A bad argument is a one-line ``UsageError(f"{PROG} NAME: ...")``; the magic turns a client
   error into a one-line :class:`CommandError`. Return a :class:`Table` for a listing, write
   status lines with ``ctx.status``, and run anything long through ``ctx.stream`` (its output
   arrives in the cell as it comes; Ctrl-C cancels it and waits for its clean-up). Import a
   dependency only this command needs inside ``run``.
2. Add ``"NAME": ("module", "one-line help")`` to :data:`.commands.COMMANDS` (its order is the
   order of ``%backendai --help``).
3. Add its bad lines to ``tests/magics/test_parsing.py`` and its behaviour to
   ``tests/magics/test_commands.py``.

``%backendai COMMAND?`` is rewritten to ``%backendai COMMAND --help`` by an input transformer
(IPython would otherwise look up an object named ``COMMAND``); the magic reads a trailing ``?``
the same way (:func:`.grammar.help_request`, the one ``?`` path).
"""

from __future__ import annotations

from typing import Any

from .context import Context
from .grammar import help_transformer
from .magics import BackendAIMagics, CommandError, RunFailed
from .results import CaseResult, RunResult, SweepResult, Table

__all__ = [
    "BackendAIMagics",
    "CaseResult",
    "CommandError",
    "Context",
    "RunFailed",
    "RunResult",
    "SweepResult",
    "Table",
    "help_transformer",
    "load_ipython_extension",
    "unload_ipython_extension",
]


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
