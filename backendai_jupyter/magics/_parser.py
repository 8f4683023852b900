"""The ``%backendai`` command line: one argparse parser with a sub-parser per command.

Flags follow the official ``backend.ai`` CLI (client SDK 20.03). Parsing never exits the
process: a bad line raises IPython's :class:`UsageError` with a one-line message, and ``--help``
prints the help of the (sub-)command and raises :class:`HelpShown`.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from typing import Any, NoReturn

from IPython.core.error import UsageError

from ..jobs.cli_run import add_run_arguments

__all__ = [
    "PROG",
    "HelpShown",
    "MagicParser",
    "build_parser",
    "normalize_argv",
    "parse_line",
    "split_line",
]

PROG = "%backendai"


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


def _sub(sub: Any, name: str, help_text: str, **kw: Any) -> MagicParser:
    parser: MagicParser = sub.add_parser(
        name, help=help_text, description=kw.pop("description", help_text), allow_abbrev=False,
        **kw
    )
    return parser


def _session_args(p: MagicParser, *, start: bool) -> None:
    """Flags shared by ``run`` and ``start`` (session creation)."""
    p.add_argument(
        "image", nargs="?", default=None,
        help="the kernel image (default: $BACKEND_IMAGE, else the stock Python image)",
    )
    p.add_argument("-t", "--name", "--client-token", dest="name", metavar="NAME",
                   help="session name: an existing session with this name is reused")
    p.add_argument("--type", dest="type", choices=("interactive", "batch"),
                   default="interactive", help="session type (default: interactive)")
    p.add_argument("-e", "--env", action="append", default=[], metavar="KEY=VAL",
                   help="environment variable (repeatable; $VAR refers to an --env-range)")
    p.add_argument("-r", "--resources", action="append", default=[], metavar="KEY=VAL",
                   help="resource slot, e.g. cpu=2, mem=4g, cuda.shares=0.5 (repeatable)")
    p.add_argument("-m", "--mount", action="append", default=[], metavar="NAME[:PATH]",
                   help="mount a storage folder, optionally at PATH (repeatable)")
    p.add_argument("--scaling-group", "--sgroup", dest="scaling_group", metavar="NAME",
                   help="the scaling (resource) group to run in")
    p.add_argument("--cluster-size", type=int, default=1, metavar="N",
                   help="number of containers (default 1)")
    p.add_argument("--tag", help="a user-defined tag for the session")
    p.add_argument("--owner", "--owner-access-key", dest="owner", metavar="ACCESS_KEY",
                   help="create the session for another user (admins)")
    p.add_argument("--enqueue-only", action="store_true",
                   help="return right after the session is queued (no code runs)")
    p.add_argument("--max-wait", type=int, default=0, metavar="SECONDS",
                   help="wait at most this long for the session to start (0 = no limit)")
    p.add_argument("-d", "--domain", help="domain name (default: the configured one)")
    p.add_argument("-g", "--group", help="project (group) name (default: the configured one)")
    p.add_argument("-q", "--quiet", action="store_true", help="no status messages")
    if start:
        p.add_argument("--startup-command", metavar="CMD",
                       help="command run when the session starts (required for --type batch)")


def _add_run(sub: Any) -> None:
    p = _sub(
        sub, "run", "run code in a compute session",
        description=(
            "Run code in a compute session and stream its output into the cell. The code is -c "
            "CODE or the cell body (%%backendai run ...); local FILES are uploaded first, and "
            "without code they run in batch mode (--build, then --exec; default: python "
            "main.py). --env-range/--exec-range run every combination as its own session "
            "(a sweep; the sessions are always destroyed afterwards). Returns a RunResult (or "
            "a SweepResult). A nonzero exit code raises only with --raise."
        ),
    )
    _session_args(p, start=False)
    p.add_argument("files", nargs="*", metavar="FILE", help="local files to upload first")
    p.add_argument("-c", "--code", help="the code to run (else: the cell body)")
    p.add_argument("--exec", dest="exec", metavar="CMD",
                   help="shell command to run in batch mode ($VAR refers to an --exec-range)")
    p.add_argument("--build", metavar="CMD", help="build command before --exec (batch mode)")
    p.add_argument("--basedir", metavar="DIR", help="FILES are uploaded relative to DIR")
    p.add_argument("--env-range", action="append", default=[], metavar="VAR=EXPR",
                   help="sweep VAR over case:A,B,... | linspace:START,STOP,N | "
                        "range:START,STOP[,STEP] (used as $VAR in -e values)")
    p.add_argument("--exec-range", action="append", default=[], metavar="VAR=EXPR",
                   help="like --env-range, substituted into --exec")
    p.add_argument("--max-parallel", type=int, default=2, metavar="N",
                   help="sessions run at the same time in a sweep (default 2)")
    p.add_argument("--rm", action="store_true", help="destroy the session after the run")
    p.add_argument("--raise", dest="raise_", action="store_true",
                   help="raise RemoteError when the code fails (nonzero exit code)")


def _add_vfolder(sub: Any) -> None:
    v = _sub(sub, "vfolder", "manage storage folders (vfolders)")
    vs = v.add_subparsers(dest="vcommand", metavar="COMMAND", required=True)
    p = _sub(vs, "list", "list the folders you can access")
    p.add_argument("-a", "--all", action="store_true", help="include all folders (admins)")
    _sub(vs, "list-hosts", "list the storage hosts you may use")
    p = _sub(vs, "create", "create a folder")
    p.add_argument("name")
    p.add_argument("host", nargs="?", help="storage host (default: the server's default)")
    p.add_argument("-g", "--group", help="create a project folder for this project")
    p.add_argument("--usage-mode", default="general", choices=("general", "model", "data"))
    p.add_argument("-p", "--permission", default="rw", choices=("ro", "rw", "wd"))
    p.add_argument("--cloneable", action="store_true")
    p = _sub(vs, "delete", "delete a folder (into the trash bin on newer managers)")
    p.add_argument("name")
    p.add_argument("--forever", action="store_true", help="also empty it from the trash bin")
    p = _sub(vs, "rename", "rename a folder")
    p.add_argument("name")
    p.add_argument("new_name")
    p = _sub(vs, "upload", "upload local files or directories into a folder")
    p.add_argument("name")
    p.add_argument("paths", nargs="+", metavar="PATH")
    p.add_argument("--dest", default="", metavar="DIR", help="folder directory to upload into")
    p = _sub(vs, "download", "download files or directories from a folder")
    p.add_argument("name")
    p.add_argument("paths", nargs="+", metavar="PATH")
    p.add_argument("--dest", default=".", metavar="DIR", help="local directory (default: .)")
    p = _sub(vs, "ls", "list the files in a folder")
    p.add_argument("name")
    p.add_argument("path", nargs="?", default="", help="directory inside the folder")
    p = _sub(vs, "mkdir", "create a directory in a folder")
    p.add_argument("name")
    p.add_argument("path")
    p.add_argument("-p", "--parents", action="store_true", help="create parents as needed")
    p.add_argument("--exist-ok", action="store_true", help="no error if it exists")
    p = _sub(vs, "mv", "move or rename a file inside a folder")
    p.add_argument("name")
    p.add_argument("src")
    p.add_argument("dst")
    p = _sub(vs, "rm", "delete files in a folder")
    p.add_argument("name")
    p.add_argument("paths", nargs="+", metavar="PATH")
    p.add_argument("-r", "--recursive", action="store_true", help="delete directories too")
    p = _sub(vs, "invite", "invite users (by e-mail) to a folder")
    p.add_argument("name")
    p.add_argument("emails", nargs="+", metavar="EMAIL")
    p.add_argument("-p", "--perm", default="rw", choices=("ro", "rw", "wd"))


def _add_payload(p: MagicParser) -> None:
    p.add_argument("-f", "--file", metavar="FILE", help="read it from FILE (else: the cell body)")


def _add_templates(sub: Any) -> None:
    t = _sub(sub, "sesstpl", "manage session templates")
    ts = t.add_subparsers(dest="tcommand", metavar="COMMAND", required=True)
    p = _sub(ts, "create", "create a template from YAML/JSON (-f FILE or the cell body)")
    _add_payload(p)
    p.add_argument("-d", "--domain")
    p.add_argument("-g", "--group")
    p = _sub(ts, "list", "list session templates")
    p.add_argument("-a", "--all", action="store_true", help="all users' templates (admins)")
    p = _sub(ts, "get", "show a template")
    p.add_argument("template_id")
    p.add_argument("--format", default="yaml", choices=("yaml", "json"))
    p = _sub(ts, "update", "replace a template (-f FILE or the cell body)")
    p.add_argument("template_id")
    _add_payload(p)
    p = _sub(ts, "delete", "delete a template")
    p.add_argument("template_id")
    p = _sub(sub, "start-template", "start a session from a template")
    p.add_argument("template_id")
    p.add_argument("-t", "--name", help="session name")
    p.add_argument("--enqueue-only", action="store_true")
    p.add_argument("--max-wait", type=int, default=0, metavar="SECONDS")
    p.add_argument("-d", "--domain")
    p.add_argument("-g", "--group")


def _add_dotfiles(sub: Any) -> None:
    d = _sub(sub, "dotfile", "manage dotfiles copied into every new session")
    ds = d.add_subparsers(dest="dcommand", metavar="COMMAND", required=True)
    for name, text in (("create", "create a dotfile"), ("update", "replace a dotfile")):
        p = _sub(ds, name, f"{text} (--data, -f FILE or the cell body)")
        p.add_argument("path", help="path under /home/work, e.g. .bashrc")
        p.add_argument("--data", help="the content")
        _add_payload(p)
        p.add_argument("-p", "--permission", default="644", help="octal mode (default 644)")
    _sub(ds, "list", "list dotfiles")
    p = _sub(ds, "get", "show a dotfile")
    p.add_argument("path")
    p = _sub(ds, "delete", "delete a dotfile")
    p.add_argument("path")


def build_parser() -> MagicParser:
    """The whole ``%backendai`` grammar."""
    parser = MagicParser(
        prog=PROG,
        description="Use a Backend.AI cluster from IPython/Jupyter. "
        "`%backendai COMMAND --help` (or `%backendai COMMAND?`) shows a command's flags.",
        allow_abbrev=False,
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    _add_run(sub)
    p = _sub(sub, "nbrun", "run a notebook or a parameter sweep of it (backendai-jupyter run)",
             description="Run NOTEBOOK on the Backend.AI kernel, one session per case, with "
             "papermill's parameters; returns the summary (JobResult). --detach submits batch "
             "sessions instead (see backendai-jupyter jobs).")
    add_run_arguments(p)
    p = _sub(sub, "start", "start a session (prints its service ports)")
    _session_args(p, start=True)

    p = _sub(sub, "ps", "list your sessions")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--running", action="store_true", help="PREPARING, PULLING, RUNNING")
    which.add_argument("--dead", action="store_true", help="CANCELLED, TERMINATED")
    fields = p.add_mutually_exclusive_group()
    fields.add_argument("--id-only", action="store_true", help="only the session ids")
    fields.add_argument("--detail", action="store_true", help="more fields")
    fields.add_argument("-f", "--format", metavar="FIELDS", help="comma-separated field names")
    p.add_argument("--all", action="store_true", help="all sessions (default: the first 10)")
    p.add_argument("--access-key", help="another user's sessions (admins)")

    p = _sub(sub, "rm", "terminate sessions")
    p.add_argument("sessions", nargs="+", metavar="SESSION", help="session names or ids")
    p.add_argument("-f", "--forced", action="store_true", help="force termination")

    p = _sub(sub, "events", "stream a session's lifecycle events")
    p.add_argument("session", help="session name or id")
    p.add_argument("-n", "--max-events", type=int, default=0, metavar="N",
                   help="stop after N events (default: when the session ends)")
    p.add_argument("--timeout", type=float, default=0.0, metavar="SECONDS",
                   help="stop after this long (default: no limit)")

    p = _sub(sub, "logs", "show a session's container logs")
    p.add_argument("session")

    p = _sub(sub, "upload", "upload local files into a session's /home/work")
    p.add_argument("session")
    p.add_argument("files", nargs="+", metavar="FILE")
    p.add_argument("--basedir", metavar="DIR", help="keep paths relative to DIR")
    p = _sub(sub, "download", "download files from a session's /home/work")
    p.add_argument("session")
    p.add_argument("files", nargs="+", metavar="FILE")
    p.add_argument("--dest", default=".", metavar="DIR", help="local directory (default: .)")

    _add_vfolder(sub)
    _add_templates(sub)
    _add_dotfiles(sub)

    p = _sub(sub, "app", "proxy a session's service (jupyter, ttyd, sshd, ...) to a local port")
    p.add_argument("session", nargs="?")
    p.add_argument("service", nargs="?")
    p.add_argument("-b", "--bind", default="127.0.0.1:8080", metavar="[HOST:]PORT",
                   help="local address (default 127.0.0.1:8080; port 0 picks a free one)")
    p.add_argument("--port", type=int, dest="container_port", metavar="PORT",
                   help="the service's container port, when it has several")
    act = p.add_mutually_exclusive_group()
    act.add_argument("--list", action="store_true", help="list the running proxies")
    act.add_argument("--stop", metavar="PORT|all", help="stop a proxy (or all of them)")

    c = _sub(sub, "config", "show or change the configuration (never shows the secret key)",
             description="Show or change this process's configuration: where to connect and "
             "what session the Backend.AI kernel starts. One grammar for both; a change applies "
             "to these magics at once and to the kernel's next session (a running kernel "
             "session keeps its settings until %backendai kernel stop). "
             "`config KEY=VALUE ...` is short for `config set KEY=VALUE ...`.")
    cs = c.add_subparsers(dest="ccommand", metavar="COMMAND")
    _sub(cs, "show", "show the configuration (default)")
    p = _sub(cs, "set", "change settings for this process")
    p.add_argument("items", nargs="+", metavar="KEY=VALUE",
                   help="connection: endpoint, endpoint_type, access_key, secret_key (no "
                        "value: prompt), domain, group, vfolder_mounts, skip_ssl_verify, "
                        "api_version; session: image, resources (cpu=2,mem=4g), mounts, env "
                        "(A=1;B=2), start (first-cell|kernel-start), keep, name, rich, "
                        "scaling_group")
    _sub(cs, "reset", "forget the changes; read BACKEND_* again")

    k = _sub(sub, "kernel", "the Backend.AI kernel's own session (status, stop)")
    ks = k.add_subparsers(dest="kcommand", metavar="COMMAND")
    _sub(ks, "status", "show the kernel session (default)")
    _sub(ks, "stop", "destroy the kernel session now; the next remote cell starts a new one")
    _sub(ks, "config", "show the configuration (as %backendai config)")

    p = _sub(sub, "login", "log in to a session-mode endpoint (password prompted)")
    p.add_argument("-u", "--username", help="user name or e-mail (else: prompted)")
    p.add_argument("--endpoint", help="webserver URL (default: the configured endpoint)")
    _sub(sub, "logout", "log out of a session-mode endpoint")
    _sub(sub, "doctor", "check what a first cell needs (endpoint, clock, keys, project, images, "
         "presets, vfolder hosts, kernelspec, sandbox), with a fix for each")
    return parser


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


def parse_line(parser: MagicParser, argv: list[str]) -> argparse.Namespace:
    """Parse one magic line; raises :class:`UsageError` or :class:`HelpShown`."""
    return parser.parse_args(argv)

