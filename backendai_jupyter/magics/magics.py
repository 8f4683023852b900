"""``%backendai`` / ``%%backendai``: the Backend.AI CLI as IPython magics.

One magic, one sub-command per CLI command (``run``, ``start``, ``ps``, ``rm``, ``events``,
``logs``, ``upload``, ``download``, ``vfolder ...``, ``sesstpl ...``, ``start-template``,
``dotfile ...``, ``app``, ``config``, ``login``, ``logout``, ``kernel``). Every handler parses
with argparse (``_parser.py``), calls the async client of the process's workspace
(:mod:`backendai_jupyter.workspace`: one configuration, client, loop and kernel session, shared
with the proxy kernel) through its loop (``workspace.run``/``_exec.drive``) and returns an
object (``results.py``): listings are :class:`Table`\\ s, ``run`` returns a
:class:`RunResult` (or a :class:`SweepResult` for ``--env-range``/``--exec-range``).

Errors: a bad line is a one-line ``UsageError``; a server or client failure is a
:class:`CommandError` shown as one line; with ``run --raise`` a failing run raises
:class:`RunFailed` (a ``RemoteError``). The line is not ``$var``-expanded for ``run`` (it ships
code); other commands expand ``$name``/``{name}`` from the user namespace.

This module holds the magic itself (line parsing, dispatch, the client and its plumbing, app
proxies); the sub-commands are functions in ``_run_commands``, ``_session_commands``,
``_folder_commands``, ``_userconfig_commands`` and ``_config_commands``, each taking this
:class:`BackendAIMagics` first, and the exceptions are in ``errors``.
"""

from __future__ import annotations

import argparse
import atexit
import functools
import getpass
import sys
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_cell_magic, magics_class, no_var_expand
from IPython.display import clear_output, publish_display_data
from IPython.utils.text import DollarFormatter

from ..client import BackendAIError, Client, ClientConfig, ParseError, RemoteError
from ..display.outputs import Message
from ..workspace import Workspace, current
from . import (
    _config_commands,
    _doctor_command,
    _exec,
    _folder_commands,
    _run_commands,
    _session_commands,
    _userconfig_commands,
)
from ._app import AppProxy, parse_bind, start_proxy
from ._parser import PROG, HelpShown, build_parser, normalize_argv, split_line
from .errors import CommandError, RunFailed
from .results import RunResult, SweepResult, Table

__all__ = ["BackendAIMagics", "CommandError", "RunFailed", "render_message"]

T = TypeVar("T")

_NESTED = ("vcommand", "tcommand", "dcommand", "ccommand", "kcommand")


def render_message(message: Message) -> None:
    """Show one ``(msg_type, content)`` output message in the current cell."""
    msg_type, content = message
    if msg_type == "stream":
        stream = sys.stderr if content.get("name") == "stderr" else sys.stdout
        stream.write(str(content.get("text", "")))
        stream.flush()
    elif msg_type in ("display_data", "update_display_data", "execute_result"):
        kwargs: dict[str, Any] = {}
        if content.get("transient"):
            kwargs["transient"] = content["transient"]
        if msg_type == "update_display_data":
            kwargs["update"] = True
        publish_display_data(  # type: ignore[no-untyped-call]
            data=content.get("data", {}), metadata=content.get("metadata") or {},
                             **kwargs)
    elif msg_type == "error":
        print("\n".join(content.get("traceback") or [content.get("ename", "Error")]),
              file=sys.stderr)
    elif msg_type == "clear_output":
        clear_output(wait=bool(content.get("wait")))  # type: ignore[no-untyped-call]


def _nbrun(m: BackendAIMagics, args: argparse.Namespace, cell: str | None) -> Any:
    # Imported on use: nbclient and papermill are the optional "jobs" extra.
    try:
        from . import _jobs_commands
    except ImportError as e:
        raise UsageError(f"{PROG} nbrun needs the jobs extra (pip install "
                         f"'backendai-jupyter[jobs]'): {e}") from None
    return _jobs_commands.nbrun(m, args, cell)


@magics_class
class BackendAIMagics(Magics):
    """Backend.AI magics; see ``%backendai --help``. Configuration, client and kernel session
    belong to the process's workspace (shared with the proxy kernel); app proxies live here."""

    def __init__(self, shell: Any = None, workspace: Workspace | None = None) -> None:
        super().__init__(shell)
        self._parser = build_parser()
        self.workspace = workspace or current()
        self.proxies: dict[int, AppProxy] = {}
        self.last_result: RunResult | SweepResult | None = None
        self._line_start = True
        # The sub-commands live in the ``_*_commands`` modules; each gets this instance first.
        handlers: dict[str, Callable[..., Any]] = {
            "run": _run_commands.run, "start": _run_commands.start,
            "start-template": _run_commands.start_template,
            "ps": _session_commands.ps, "rm": _session_commands.rm,
            "events": _session_commands.events, "logs": _session_commands.logs,
            "upload": _session_commands.upload, "download": _session_commands.download,
            "vfolder": _folder_commands.vfolder, "sesstpl": _userconfig_commands.sesstpl,
            "dotfile": _userconfig_commands.dotfile,
            "nbrun": _nbrun,
            "config": _config_commands.config, "login": _config_commands.login,
            "logout": _config_commands.logout, "kernel": _config_commands.kernel,
            "doctor": _doctor_command.doctor,
        }
        self._handlers: dict[str, Callable[[argparse.Namespace, str | None], Any]] = {
            name: functools.partial(handler, self) for name, handler in handlers.items()
        }
        self._handlers["app"] = self._app  # proxies are this instance's state

    # -- the magic -------------------------------------------------------------------------------

    @no_var_expand
    @line_cell_magic
    def backendai(self, line: str, cell: str | None = None) -> Any:
        text = line.strip()
        want_help = text.endswith("?")
        text = text.rstrip("?").rstrip() if want_help else text
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
            words = [args.command, *(getattr(args, k, None) for k in _NESTED)]
            where = " ".join([PROG, *(w for w in words if w)])
            raise UsageError(f"{where}: unrecognized arguments: {' '.join(extra)} "
                             f"(see {where} --help)")
        try:
            return self._handlers[args.command](args, cell)
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

    # -- client plumbing -------------------------------------------------------------------------

    @property
    def client_config(self) -> ClientConfig:
        return self.workspace.client_config()

    @property
    def client(self) -> Client:
        return self.workspace.run(self.workspace.client())

    def _call(self, coro: Coroutine[Any, Any, T]) -> T:
        return self.workspace.run(coro)

    def close(self) -> None:
        """Stop every app proxy (``%unload_ext``); the workspace keeps its client."""
        self._stop_proxies()

    def _stop_proxies(self) -> None:
        """Also registered with ``atexit``: the kernel's shutdown ends the process normally."""
        proxies = list(self.proxies.values())
        self.proxies.clear()
        for proxy in proxies:
            try:
                self._call(proxy.aclose())
            except Exception:  # the loop may already be gone at exit
                pass

    def _status(self, text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    def _handle(self, note: _exec.Note) -> None:
        if isinstance(note, _exec.Status):
            if not self._line_start:  # the remote output did not end its last line
                print(file=sys.stderr)
            _exec.write_status(note)
            self._line_start = True
        elif isinstance(note, _exec.Show):
            render_message(note.message)
            msg_type, content = note.message
            if msg_type == "stream" and content.get("text"):
                self._line_start = str(content["text"]).endswith("\n")
        elif isinstance(note, _exec.InputRequest):
            ask = getpass.getpass if note.password else input
            _exec.answer_input(note, ask(note.prompt))

    # -- app proxies -----------------------------------------------------------------------------

    def _app(self, args: argparse.Namespace, cell: str | None) -> Any:
        if args.list:
            rows = tuple((p.port, p.session, p.service, p.url) for p in self.proxies.values())
            return Table(("port", "session", "service", "url"), rows)
        if args.stop is not None:
            if args.stop == "all":
                ports = list(self.proxies)
            elif args.stop.isdigit() and int(args.stop) in self.proxies:
                ports = [int(args.stop)]
            else:
                raise UsageError(f"{PROG} app: no proxy on port {args.stop} "
                                 f"(running: {', '.join(map(str, self.proxies)) or 'none'})")
            for port in ports:
                self._call(self.proxies.pop(port).aclose())
                self._status(f"✓ Proxy on port {port} stopped.")
            return None
        if not args.session or not args.service:
            raise UsageError(f"{PROG} app: SESSION and SERVICE are required (or --list/--stop)")
        try:
            host, port = parse_bind(args.bind)
        except ValueError as e:
            raise UsageError(f"{PROG} app: invalid --bind {args.bind!r}: {e}") from None
        old = self.proxies.get(port) if port else None
        if old is not None:  # a second command on the same port replaces the running proxy
            self._call(self.proxies.pop(port).aclose())
            self._status(f"✓ Proxy on port {port} stopped.")
        proxy = self._call(start_proxy(self.client, args.session, args.service, host, port,
                                       args.container_port))
        if not self.proxies:  # stop the listeners before the background loop goes at exit
            atexit.unregister(self._stop_proxies)
            atexit.register(self._stop_proxies)
        self.proxies[proxy.port] = proxy
        self._status(f'✓ A local proxy to the application "{args.service}" provided by the '
                     f'session "{args.session}" is available at: {proxy.url} '
                     f"(stop it with %backendai app --stop {proxy.port})")
        return proxy


BackendAIMagics.backendai.__doc__ = build_parser().format_help()
