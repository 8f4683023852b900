"""``ps``, ``rm``, ``events``, ``logs``, ``upload``, ``download``: commands on existing sessions."""

from __future__ import annotations

import argparse
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING

from IPython.core.error import UsageError

from ..client import BackendAIError
from ..client.capacity import describe_slots, parse_slot_map
from . import _exec
from ._parser import PROG
from .errors import CommandError
from .results import Table

if TYPE_CHECKING:
    from .magics import BackendAIMagics

_UUID = re.compile(r"^[0-9a-fA-F]{8}(-?[0-9a-fA-F]{4}){3}-?[0-9a-fA-F]{12}$")
_FIELD = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_PS_DEFAULT = ("name", "id", "image", "type", "gpu", "status", "status_info", "status_changed",
               "result")
_PS_DETAIL = (*_PS_DEFAULT, "tag", "created_at", "terminated_at", "occupied_slots")
_PS_ALIASES = {"last_updated": "status_changed", "session_id": "id"}
_TERMINAL_EVENTS = {"session_terminated", "session_cancelled"}


def ps(m: BackendAIMagics, args: argparse.Namespace, cell: str | None) -> Table:
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
    # "gpu" is not a server field: the accelerator part of occupied_slots, in words.
    asked = tuple(dict.fromkeys(
        "occupied_slots" if f == "gpu" else f for f in fields))
    items = m._call(m.client.sessions.list(
        status=status, fields=asked, limit=None if args.all else 10,
        access_key=args.access_key,
    ))
    records = [{**item, "gpu": describe_slots(parse_slot_map(item.get("occupied_slots")),
                                              accelerators_only=True)} for item in items]
    return Table.from_records(records, fields)


def rm(m: BackendAIMagics, args: argparse.Namespace, cell: str | None) -> None:
    failed: list[str] = []
    for session in args.sessions:
        try:
            m._call(m.client.sessions.destroy(session, forced=args.forced))
            m._status(f"✓ Session {session} terminated.")
        except BackendAIError as e:
            failed.append(f"{session}: {e}")
    if failed:
        raise CommandError("; ".join(failed))


def events(m: BackendAIMagics, args: argparse.Namespace, cell: str | None) -> None:
    client = m.client
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

    _exec.drive(watch, m._handle)


def logs(m: BackendAIMagics, args: argparse.Namespace, cell: str | None) -> None:
    print(m._call(m.client.sessions.logs(args.session)), end="")


def upload(m: BackendAIMagics, args: argparse.Namespace, cell: str | None) -> None:
    m._call(m.client.sessions.upload(args.session, args.files, basedir=args.basedir))
    m._status(f"✓ Uploaded {len(args.files)} file(s) to {args.session}.")


def download(m: BackendAIMagics, args: argparse.Namespace, cell: str | None) -> None:
    paths = m._call(m.client.sessions.download(args.session, args.files, args.dest))
    for path in paths:
        m._status(f"✓ Downloaded {path}")
