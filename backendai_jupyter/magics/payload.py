"""A command's text payload (a template, a dotfile) from ``--data``, ``-f FILE`` or the
``%%backendai`` cell body: exactly one of them."""

from __future__ import annotations

import argparse
from pathlib import Path

from IPython.core.error import UsageError

from .grammar import PROG, MagicParser

__all__ = ["add_payload_file", "payload"]


def add_payload_file(p: MagicParser) -> None:
    p.add_argument("-f", "--file", metavar="FILE", help="read it from FILE (else: the cell body)")


def payload(args: argparse.Namespace, cell: str | None, what: str) -> str:
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
