"""Live output over resumable REST runs (issue 18): what the proxy sends and reads back. Pure.

* :mod:`.remote.live` runs inside the session: a pump thread that makes a running cell "ask for
  input" with a nonce-marked prompt whenever output is pending, so that a stock manager answers
  the REST request at once instead of after its 2 s flush timeout.
* :func:`live_code` is the hidden run that installs it (once per session, after the rich
  channel); :func:`read_flush_prefix` finds the prompt prefix the remote side chose in that
  run's stdout.
* The client (``backendai_jupyter.client.Execution``) answers such prompts itself, never
  showing them, once ``client.sessions.set_flush_prefix`` names the session's prefix; see
  ``backendai_jupyter.client.execution.split_flush``.
"""

from __future__ import annotations

import re

from .calls import program
from .remote.bootstrap import FILENAME

__all__ = ["LIVE_MODULE", "collect_code", "live_code", "read_flush_prefix"]

LIVE_MODULE = "_backendai_live"
"""The remote module the pump runs in (its own: its names are not the bootstrap's)."""
_PREFIX = re.compile(r"\x1b\]BAIF;[A-Za-z0-9_-]{16,64};(?=\x07)")


_MODULE = f"__import__('sys').modules[{LIVE_MODULE!r}]"


def live_code(flush: bool) -> str:
    """The hidden run that installs the pump: :mod:`.remote.live` executed in
    :data:`LIVE_MODULE` (never the user's namespace), compiled under the rich channel's file name
    so that its frames stay out of tracebacks, then ``install(flush)``. ``flush``: the session's
    runs go over REST (over the websocket the pump only reports threads). Evaluates to None."""
    return (
        f"__import__('sys').modules.setdefault({LIVE_MODULE!r}, "
        f"__import__('types').ModuleType({LIVE_MODULE!r}))\n"
        f"exec(compile({program('live')!r}, {FILENAME!r}, 'exec'), {_MODULE}.__dict__)\n"
        f"{_MODULE}.install({bool(flush)!r}) and None\n"
    )


def collect_code() -> str:
    """The hidden run that delivers threads' output while the kernel is idle (``collect``)."""
    return f"{_MODULE}.pump.collect()\n"


def read_flush_prefix(text: str) -> str | None:
    """The flush-prompt prefix printed by :func:`live_code`'s run, or None (not installed)."""
    found = _PREFIX.search(text)
    return found.group(0) if found else None
