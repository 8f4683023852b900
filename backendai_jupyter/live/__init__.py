"""Live output over resumable REST runs (issue 18).

* :mod:`.remote` runs inside the session: a pump thread that makes a running cell "ask for
  input" with a nonce-marked prompt whenever output is pending, so that the manager answers the
  REST request at once instead of after its 2 s flush timeout.
* :func:`install_code` is what the proxy runs (hidden, once per session, after the rich channel);
  :func:`read_prefix` finds the prompt prefix the remote side chose in that run's stdout.
* The client (:class:`~backendai_jupyter.client.Execution`) answers such prompts itself, never
  showing them, once :meth:`~backendai_jupyter.client.sessions.Sessions.set_flush_prefix` names
  the session's prefix; see :func:`~backendai_jupyter.client.execution.split_flush`.
"""

from __future__ import annotations

import re
from pathlib import Path

__all__ = ["MODULE", "install_code", "read_prefix"]

MODULE = "_backendai_live"
_PREFIX = re.compile(r"\x1b\]BAIF;[A-Za-z0-9_-]{16,64};(?=\x07)")


def install_code() -> str:
    """The hidden run that installs the pump: the text of :mod:`.remote`, executed in a module of
    its own (never the user's namespace), then ``install()``. Evaluates to None (no display)."""
    source = (Path(__file__).with_name("remote.py")).read_text(encoding="utf-8")
    return (
        f"__import__('sys').modules.setdefault({MODULE!r}, "
        f"__import__('types').ModuleType({MODULE!r}))\n"
        f"exec(compile({source!r}, '<backendai live>', 'exec'), "
        f"__import__('sys').modules[{MODULE!r}].__dict__)\n"
        f"__import__('sys').modules[{MODULE!r}].install() and None\n"
    )


def read_prefix(text: str) -> str | None:
    """The flush-prompt prefix printed by :func:`install_code`'s run, or None (not installed)."""
    found = _PREFIX.search(text)
    return found.group(0) if found else None
