"""``%backendai`` / ``%%backendai``: the Backend.AI CLI as IPython magics.

One magic, one sub-command per CLI command (``run``, ``start``, ``ps``, ``rm``, ``events``,
``logs``, ``upload``, ``download``, ``vfolder ...``, ``sesstpl ...``, ``start-template``,
``dotfile ...``, ``app``, ``config``, ``login``, ``logout``). Every handler parses with argparse
(``_parser.py``), calls the async client through the background loop (``_loop``/``_exec.drive``)
and returns an object (``results.py``): listings are :class:`Table`\\ s, ``run`` returns a
:class:`RunResult` (or a :class:`SweepResult` for ``--env-range``/``--exec-range``).

Errors: a bad line is a one-line ``UsageError``; a server or client failure is a
:class:`CommandError` shown as one line; with ``run --raise`` a failing run raises
:class:`RunFailed` (a ``RemoteError``). The line is not ``$var``-expanded for ``run`` (it ships
code); other commands expand ``$name``/``{name}`` from the user namespace.
"""

from __future__ import annotations

import argparse
import atexit
import getpass
import os
import re
import sys
from collections.abc import Callable, Coroutine, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_cell_magic, magics_class, no_var_expand
from IPython.display import clear_output, publish_display_data
from IPython.utils.text import DollarFormatter

from ..client import AuthError, BackendAIError, Client, ClientConfig, ParseError, RemoteError
from ..client.defaults import default_image, load_config
from ..client.parsing import Case, expand_ranges, parse_env, parse_mounts, parse_resource_flags
from ..display.outputs import Message, parse_traceback_text
from . import _exec, _loop
from ._app import AppProxy, parse_bind, start_proxy
from ._parser import PROG, HelpShown, build_parser, split_line
from .results import CaseResult, RunResult, SweepResult, Table

__all__ = ["BackendAIMagics", "CommandError", "RunFailed", "render_message"]

T = TypeVar("T")

_UUID = re.compile(r"^[0-9a-fA-F]{8}(-?[0-9a-fA-F]{4}){3}-?[0-9a-fA-F]{12}$")
_FIELD = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_PS_DEFAULT = ("name", "id", "image", "type", "status", "status_info", "status_changed", "result")
_PS_DETAIL = (*_PS_DEFAULT, "tag", "created_at", "terminated_at", "occupied_slots")
_PS_ALIASES = {"last_updated": "status_changed", "session_id": "id"}
_CONFIG_KEYS = {
    "endpoint": "ENDPOINT", "endpoint_type": "ENDPOINT_TYPE", "access_key": "ACCESS_KEY",
    "secret_key": "SECRET_KEY", "domain": "DOMAIN", "group": "GROUP",
    "vfolder_mounts": "VFOLDER_MOUNTS", "skip_ssl_verify": "SKIP_SSLCERT_VALIDATION",
    "api_version": "API_VERSION",
}
_NESTED = ("vcommand", "tcommand", "dcommand", "ccommand")
_TERMINAL_EVENTS = {"session_terminated", "session_cancelled"}


class CommandError(BackendAIError):
    """A ``%backendai`` command failed (server or client error); IPython shows one line."""

    def _render_traceback_(self) -> list[str]:
        return [f"{type(self).__name__}: {self}"]


class RunFailed(RemoteError):
    """``run --raise``: the code failed remotely. ``result`` holds the :class:`RunResult`."""

    def __init__(self, result: RunResult) -> None:
        ename, evalue = ("RemoteError", "")
        if result.stderr:
            ename, evalue = parse_traceback_text(result.stderr)
        where = f"exit code {result.exit_code} in session {result.session_name}"
        # The output (traceback included) was already streamed into the cell: one line here.
        super().__init__(ename, evalue, [f"{ename}: {evalue} ({where})" if evalue else where])
        self.result = result


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


def _payload(args: argparse.Namespace, cell: str | None, what: str) -> str:
    data: str | None = getattr(args, "data", None)
    path: str | None = getattr(args, "file", None)
    given = [x for x in (data, path, cell if cell and cell.strip() else None) if x is not None]
    if len(given) > 1:
        raise UsageError(f"{PROG}: give the {what} once: --data, -f FILE or the cell body")
    if path is not None:
        try:
            return Path(path).read_text()
        except OSError as e:
            raise UsageError(f"{PROG}: cannot read {path}: {e.strerror or e}") from None
    if data is not None:
        return data
    if cell and cell.strip():
        return cell
    raise UsageError(f"{PROG}: no {what}: give -f FILE or use %%backendai with a cell body")


@magics_class
class BackendAIMagics(Magics):
    """Backend.AI magics; see ``%backendai --help``. State (config, client, app proxies) lives
    on this instance, never in module globals."""

    def __init__(self, shell: Any = None) -> None:
        super().__init__(shell)
        self._parser = build_parser()
        self._env_overrides: dict[str, str] = {}
        self._config: ClientConfig | None = None
        self._client: Client | None = None
        self.proxies: dict[int, AppProxy] = {}
        self.last_result: RunResult | SweepResult | None = None
        self._line_start = True
        self._handlers: dict[str, Callable[[argparse.Namespace, str | None], Any]] = {
            "run": self._run, "start": self._start, "ps": self._ps, "rm": self._rm,
            "events": self._events, "logs": self._logs, "upload": self._upload,
            "download": self._download, "vfolder": self._vfolder, "sesstpl": self._sesstpl,
            "start-template": self._start_template, "dotfile": self._dotfile, "app": self._app,
            "config": self._config_cmd, "login": self._login, "logout": self._logout,
        }

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
            args, extra = self._parser.parse_known_args(argv)
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
        except RuntimeError as e:  # the local endpoint did not start
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
        if self._config is None:
            env = {**os.environ, **self._env_overrides}
            self._config = load_config(env)
        return self._config

    @property
    def client(self) -> Client:
        if self._client is None:
            config = self.client_config

            async def make() -> Client:
                return Client(config)

            self._client = _loop.run(make())
            # Close the HTTP session before the loop thread stops at exit (no "Unclosed" noise).
            atexit.register(self._reset_client)
        return self._client

    def _call(self, coro: Coroutine[Any, Any, T]) -> T:
        return _loop.run(coro)

    def close(self) -> None:
        """Stop every app proxy and close the client (``%unload_ext``)."""
        self._stop_proxies()
        self._reset_client()

    def _stop_proxies(self) -> None:
        """Also registered with ``atexit``: the kernel's shutdown ends the process normally."""
        proxies = list(self.proxies.values())
        self.proxies.clear()
        for proxy in proxies:
            try:
                self._call(proxy.aclose())
            except Exception:  # the loop may already be gone at exit
                pass

    def _reset_client(self) -> None:
        client, self._client, self._config = self._client, None, None
        if client is not None:
            atexit.unregister(self._reset_client)
            self._call(client.close())

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

    # -- run / start -----------------------------------------------------------------------------

    def _spec(self, args: argparse.Namespace, **extra: Any) -> _exec.RunSpec:
        if args.cluster_size < 1:
            raise UsageError(f"{PROG} {args.command}: --cluster-size must be at least 1")
        if args.max_wait < 0:
            raise UsageError(f"{PROG} {args.command}: --max-wait must be >= 0 seconds")
        res = parse_resource_flags(args.resources)
        mounts, mount_map = parse_mounts(args.mount)
        image = args.image
        if image is not None and os.path.isfile(image) and getattr(args, "files", None) is not None:
            # `run main.py` without an image: the word is a local file, not an image name.
            args.files.insert(0, image)
            image = None
        return _exec.RunSpec(
            image=image or default_image(), name=args.name, type=args.type, resources=res.resources,
            resource_opts=res.resource_opts, mounts=tuple(mounts), mount_map=mount_map,
            scaling_group=args.scaling_group, cluster_size=args.cluster_size, tag=args.tag,
            owner=args.owner, enqueue_only=args.enqueue_only, max_wait=args.max_wait,
            domain=args.domain, group=args.group, quiet=args.quiet, **extra,
        )

    def _run(self, args: argparse.Namespace, cell: str | None) -> RunResult | SweepResult:
        def bad(message: str) -> UsageError:
            return UsageError(f"{PROG} run: {message}")

        code: str | None = args.code
        if cell is not None and cell.strip():
            if code is not None:
                raise bad("give the code either with -c or as the cell body, not both")
            code = cell
        if code is not None and args.exec:
            raise bad("-c/the cell body and --exec cannot be combined")
        if args.exec_range and not args.exec:
            raise bad("--exec-range needs --exec CMD with $VAR in it")
        if args.type == "batch" and not args.exec:
            raise bad("--type batch needs --exec CMD (the batch session's startup command)")
        if args.type == "batch" and code is not None:
            raise bad("--type batch runs --exec, not code")
        if code is None and not args.files and not args.exec and not args.enqueue_only:
            raise bad("nothing to run: give -c CODE, a cell body, FILE(s) or --exec CMD")
        if args.max_parallel < 1:
            raise bad("--max-parallel must be at least 1")
        for f in args.files:
            if not Path(args.basedir or ".", f).is_file() and not Path(f).is_file():
                raise bad(f"no such local file: {f}")
        env = parse_env(args.env)
        cases = expand_ranges(args.env_range, args.exec_range, env_templates=env,
                              exec_template=args.exec)
        spec = self._spec(args, code=code, exec=args.exec, build=args.build,
                          files=tuple(args.files), basedir=args.basedir, rm=args.rm)
        client = self.client
        if args.env_range or args.exec_range:
            return self._sweep(client, spec, cases, args.max_parallel)
        result = _exec.drive(
            lambda emit: _exec.run_session(client, spec, cases[0], emit, destroy=args.rm),
            self._handle,
        )
        self.last_result = result
        if args.raise_ and result.exit_code not in (0, None):
            raise RunFailed(result)
        return result

    def _sweep(
        self, client: Client, spec: _exec.RunSpec, cases: Sequence[Case], max_parallel: int
    ) -> SweepResult:
        from tqdm.auto import tqdm

        done: dict[int, CaseResult] = {}
        running: set[int] = set()
        bar = tqdm(total=len(cases), desc="sweep", unit="case", disable=spec.quiet,
                   file=sys.stderr)

        def handle(note: _exec.Note) -> None:
            if isinstance(note, _exec.CaseStarted):
                running.add(note.index)
            elif isinstance(note, _exec.CaseDone):
                running.discard(note.case.index)
                done[note.case.index] = note.case
                bar.update(1)
            else:
                self._handle(note)
                return
            failed = sum(1 for c in done.values() if not c.ok)
            bar.set_postfix(running=len(running), failed=failed, refresh=True)

        try:
            results = _exec.drive(
                lambda emit: _exec.run_sweep(client, spec, cases, emit, max_parallel), handle
            )
        except KeyboardInterrupt:
            bar.close()
            partial = SweepResult(tuple(done[i] for i in sorted(done)), cancelled=True)
            self.last_result = partial
            self._status(f"✗ Sweep interrupted: {len(done)}/{len(cases)} cases finished; "
                         "pending cases were cancelled and every session was destroyed.")
            raise
        bar.close()
        sweep = SweepResult(tuple(sorted(results, key=lambda c: c.index)))
        self.last_result = sweep
        return sweep

    def _start(self, args: argparse.Namespace, cell: str | None) -> Table:
        if args.type == "batch" and not args.startup_command:
            raise UsageError(f"{PROG} start: --type batch needs --startup-command CMD")
        spec = self._spec(args)
        client = self.client
        info = self._call(client.sessions.create(
            spec.image, name=spec.name, type=spec.type, resources=spec.resources,
            resource_opts=spec.resource_opts, mounts=spec.mounts, mount_map=spec.mount_map,
            environ=parse_env(args.env), scaling_group=spec.scaling_group,
            cluster_size=spec.cluster_size, tag=spec.tag, owner_access_key=spec.owner,
            enqueue_only=spec.enqueue_only, max_wait=spec.max_wait, domain=spec.domain,
            group=spec.group, startup_command=args.startup_command,
        ))
        verb = "is ready" if info.created else "is reused"
        if info.status not in ("RUNNING", ""):
            verb = f"is {info.status}"
        title = f"Session {info.name} ({info.id}) {verb}."
        if not args.quiet:
            self._status("✓ " + title)
            if info.service_ports:
                self._status("This session provides the following app services: "
                             + ", ".join(p.name for p in info.service_ports)
                             + f" (open one with %backendai app {info.name} SERVICE -b PORT)")
        rows = tuple((p.name, p.protocol, ", ".join(map(str, p.ports)))
                     for p in info.service_ports)
        return Table(("service", "protocol", "ports"), rows, title)

    def _start_template(self, args: argparse.Namespace, cell: str | None) -> None:
        info = self._call(self.client.sessions.create_from_template(
            args.template_id, name=args.name, enqueueOnly=args.enqueue_only or None,
            maxWaitSeconds=args.max_wait or None, domain=args.domain, group=args.group,
        ))
        self._status(f"✓ Session {info.name} ({info.id}) started from template "
                     f"{args.template_id} (status {info.status or 'unknown'}).")

    # -- sessions --------------------------------------------------------------------------------

    def _ps(self, args: argparse.Namespace, cell: str | None) -> Table:
        fields: Sequence[str] = _PS_DEFAULT
        if args.id_only:
            fields = ("id",)
        elif args.detail:
            fields = _PS_DETAIL
        elif args.format is not None:
            names = [f.strip() for f in args.format.split(",") if f.strip()]
            if not names or not all(_FIELD.match(n) for n in names):
                raise UsageError(f"{PROG} ps: -f expects comma-separated field names, "
                                 f"got {args.format!r}")
            fields = tuple(dict.fromkeys(_PS_ALIASES.get(n, n) for n in names))
        status: tuple[str, ...] | None = None
        if args.running:
            status = ("PREPARING", "PULLING", "RUNNING")
        elif args.dead:
            status = ("CANCELLED", "TERMINATED")
        items = self._call(self.client.sessions.list(
            status=status, fields=fields, limit=None if args.all else 10,
            access_key=args.access_key,
        ))
        return Table.from_records(items, fields)

    def _rm(self, args: argparse.Namespace, cell: str | None) -> None:
        failed: list[str] = []
        for session in args.sessions:
            try:
                self._call(self.client.sessions.destroy(session, forced=args.forced))
                self._status(f"✓ Session {session} terminated.")
            except BackendAIError as e:
                failed.append(f"{session}: {e}")
        if failed:
            raise CommandError("; ".join(failed))

    def _events(self, args: argparse.Namespace, cell: str | None) -> None:
        client = self.client
        by_id = bool(_UUID.match(args.session))

        async def watch(emit: _exec.Emit) -> None:
            import asyncio
            import contextlib

            async def stream() -> None:
                count = 0
                events = client.events.session(
                    session_id=args.session if by_id else None,
                    session_name=None if by_id else args.session,
                )
                try:
                    async for ev in events:
                        line = f"{ev.event} {ev.data}\n"
                        emit(_exec.Show(("stream", {"name": "stdout", "text": line})))
                        count += 1
                        if ev.event in _TERMINAL_EVENTS or count == args.max_events:
                            return
                finally:
                    await events.aclose()  # type: ignore[attr-defined]

            if args.timeout > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stream(), args.timeout)
            else:
                await stream()

        _exec.drive(watch, self._handle)

    def _logs(self, args: argparse.Namespace, cell: str | None) -> None:
        print(self._call(self.client.sessions.logs(args.session)), end="")

    def _upload(self, args: argparse.Namespace, cell: str | None) -> None:
        self._call(self.client.sessions.upload(args.session, args.files, basedir=args.basedir))
        self._status(f"✓ Uploaded {len(args.files)} file(s) to {args.session}.")

    def _download(self, args: argparse.Namespace, cell: str | None) -> None:
        paths = self._call(self.client.sessions.download(args.session, args.files, args.dest))
        for path in paths:
            self._status(f"✓ Downloaded {path}")

    # -- storage folders -------------------------------------------------------------------------

    def _vfolder(self, args: argparse.Namespace, cell: str | None) -> Any:
        f = self.client.folders
        cmd = args.vcommand
        if cmd == "list":
            folders = self._call(f.list(all=args.all))
            cols = ("name", "id", "host", "permission", "ownership_type", "usage_mode", "status")
            return Table.from_records([{**x.raw, "name": x.name, "id": x.id, "host": x.host}
                                       for x in folders], cols)
        if cmd == "list-hosts":
            hosts = self._call(f.list_hosts())
            default = hosts.get("default")
            rows = tuple((h, "yes" if h == default else "") for h in hosts.get("allowed") or [])
            return Table(("host", "default"), rows, f"Default host: {default}")
        if cmd == "ls":
            entries = self._call(f.list_files(args.name, args.path))
            return Table.from_records(entries, ("name", "type", "size", "modified", "mode"))
        if cmd == "create":
            info = self._call(f.create(args.name, args.host, group=args.group,
                                       usage_mode=args.usage_mode, permission=args.permission,
                                       cloneable=args.cloneable))
            self._status(f"✓ Folder {info.name} created ({info.id}).")
        elif cmd == "delete":
            self._call(f.delete(args.name, forever=args.forever))
            self._status(f"✓ Folder {args.name} deleted.")
        elif cmd == "rename":
            self._call(f.rename(args.name, args.new_name))
            self._status(f"✓ Folder {args.name} renamed to {args.new_name}.")
        elif cmd == "upload":
            for path in args.paths:
                remote = f"{args.dest.rstrip('/')}/" if args.dest else None
                self._call(f.upload(args.name, path, remote))
                self._status(f"✓ Uploaded {path} to {args.name}.")
        elif cmd == "download":
            for path in args.paths:
                Path(args.dest).mkdir(parents=True, exist_ok=True)
                target = self._call(f.download(args.name, path, args.dest))
                self._status(f"✓ Downloaded {target}")
        elif cmd == "mkdir":
            self._call(f.mkdir(args.name, args.path, parents=args.parents,
                               exist_ok=args.exist_ok))
            self._status(f"✓ Created {args.path} in {args.name}.")
        elif cmd == "mv":
            self._call(f.move_file(args.name, args.src, args.dst))
            self._status(f"✓ Moved {args.src} to {args.dst} in {args.name}.")
        elif cmd == "rm":
            self._call(f.delete_files(args.name, args.paths, recursive=args.recursive))
            self._status(f"✓ Deleted {len(args.paths)} path(s) in {args.name}.")
        elif cmd == "invite":
            self._call(f.invite(args.name, args.emails, args.perm))
            self._status(f"✓ Invited {', '.join(args.emails)} to {args.name} ({args.perm}).")
        return None

    # -- templates and dotfiles ------------------------------------------------------------------

    def _sesstpl(self, args: argparse.Namespace, cell: str | None) -> Any:
        t = self.client.templates
        cmd = args.tcommand
        if cmd == "create":
            ids = self._call(t.create(_payload(args, cell, "template"), group=args.group,
                                      domain=args.domain))
            self._status(f"✓ Template created: {', '.join(ids)}")
            return ids[0] if len(ids) == 1 else ids
        if cmd == "list":
            items = self._call(t.list(all=args.all))
            cols = ("name", "id", "created_at", "is_owner", "user_email", "group_name", "type")
            present = [c for c in cols if any(c in i for i in items)] or ["name", "id"]
            return Table.from_records(items, present)
        if cmd == "get":
            print(self._call(t.get(args.template_id, format=args.format)))
        elif cmd == "update":
            self._call(t.update(args.template_id, _payload(args, cell, "template")))
            self._status(f"✓ Template {args.template_id} updated.")
        elif cmd == "delete":
            self._call(t.delete(args.template_id))
            self._status(f"✓ Template {args.template_id} deleted.")
        return None

    def _dotfile(self, args: argparse.Namespace, cell: str | None) -> Any:
        d = self.client.dotfiles
        cmd = args.dcommand
        if cmd in ("create", "update") and not re.fullmatch(r"[0-7]{3}", args.permission):
            raise UsageError(f"{PROG} dotfile: --permission must be 3 octal digits, "
                             f"got {args.permission!r}")
        if cmd == "create":
            self._call(d.create(args.path, _payload(args, cell, "content"), args.permission))
            self._status(f"✓ Dotfile {args.path} created.")
        elif cmd == "update":
            self._call(d.update(args.path, _payload(args, cell, "content"), args.permission))
            self._status(f"✓ Dotfile {args.path} updated.")
        elif cmd == "list":
            return Table.from_records(self._call(d.list()), ("path", "permission", "data"))
        elif cmd == "get":
            print(self._call(d.get(args.path)).get("data", ""), end="")
        elif cmd == "delete":
            self._call(d.delete(args.path))
            self._status(f"✓ Dotfile {args.path} deleted.")
        return None

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

    # -- configuration and login -----------------------------------------------------------------

    def _config_cmd(self, args: argparse.Namespace, cell: str | None) -> Table | None:
        if args.ccommand == "reset":
            self._env_overrides.clear()
            self._reset_client()
            self._status("✓ Configuration reset to the BACKEND_* environment.")
            return None
        if args.ccommand == "set":
            changes: dict[str, str] = {}
            for item in args.items:
                key, sep, value = item.partition("=")
                key = key.strip().lower()
                if key not in _CONFIG_KEYS:
                    raise UsageError(f"{PROG} config set: unknown key {key!r} "
                                     f"(one of {', '.join(_CONFIG_KEYS)})")
                if not sep:
                    if key != "secret_key":
                        raise UsageError(f"{PROG} config set: expected KEY=VALUE, got {item!r}")
                    value = getpass.getpass("Secret key: ")
                changes["BACKEND_" + _CONFIG_KEYS[key]] = value.strip()
            self._apply_env(changes)
            self._status("✓ Configuration updated.")
            return None
        info = self.client_config.describe()
        return Table(("setting", "value"), tuple(info.items()), "Backend.AI configuration")

    def _apply_env(self, changes: Mapping[str, str]) -> None:
        new = {**self._env_overrides, **changes}
        try:
            config = load_config({**os.environ, **new})
        except BackendAIError as e:  # ConfigError: a bad value
            raise UsageError(f"{PROG} config: {e}") from None
        self._reset_client()
        self._env_overrides = new
        self._config = config

    def _login(self, args: argparse.Namespace, cell: str | None) -> None:
        changes = {"BACKEND_ENDPOINT_TYPE": "session"}
        if args.endpoint:
            changes["BACKEND_ENDPOINT"] = args.endpoint
        self._apply_env(changes)
        username = args.username or input("Username: ")
        password = getpass.getpass("Password: ")
        client = self.client

        try:
            self._call(client.login(username, password))
        except AuthError as e:
            raise CommandError(f"{PROG} login: login failed: {e.msg}") from None
        self._status("✓ Login succeeded.")

    def _logout(self, args: argparse.Namespace, cell: str | None) -> None:
        if self.client_config.endpoint_type != "session":
            raise UsageError(f"{PROG} logout: not in session mode (see %backendai login)")
        client = self.client

        self._call(client.logout())
        self._status("✓ Logout done.")


BackendAIMagics.backendai.__doc__ = build_parser().format_help()
