"""``%backendai events``: stream a session's lifecycle events into the cell."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import re
from typing import TYPE_CHECKING

from ..grammar import MagicParser
from ..output import Emit, Show

if TYPE_CHECKING:
    from ..context import Context

_UUID = re.compile(r"^[0-9a-fA-F]{8}(-?[0-9a-fA-F]{4}){3}-?[0-9a-fA-F]{12}$")
_TERMINAL_EVENTS = {"session_terminated", "session_cancelled"}


def add_arguments(p: MagicParser) -> None:
    p.add_argument("session", help="session name or id")
    p.add_argument("-n", "--max-events", type=int, default=0, metavar="N",
                   help="stop after N events (default: when the session ends)")
    p.add_argument("--timeout", type=float, default=0.0, metavar="SECONDS",
                   help="stop after this long (default: no limit)")


def run(ctx: Context, args: argparse.Namespace, cell: str | None) -> None:
    client = ctx.client
    by_id = bool(_UUID.match(args.session))

    async def stream(emit: Emit) -> None:
        count = 0
        events = client.events.session(
            session_id=args.session if by_id else None,
            session_name=None if by_id else args.session,
        )
        try:
            async for ev in events:
                line = f"{ev.event} {ev.data}\n"
                emit(Show(("stream", {"name": "stdout", "text": line})))
                count += 1
                if ev.event in _TERMINAL_EVENTS or count == args.max_events:
                    return
        finally:
            await events.aclose()  # type: ignore[attr-defined]

    async def watch(emit: Emit) -> None:
        if args.timeout > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stream(emit), args.timeout)
        else:
            await stream(emit)

    ctx.stream(watch)
