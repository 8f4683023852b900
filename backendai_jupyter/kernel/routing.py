"""Where a cell runs: in the proxy's own IPython ("local") or in the Backend.AI session ("remote").

One pure function, :func:`route`, over the cell text; the cell itself is never rewritten.

* A ``%%local`` cell runs locally (the first line is the magic; IPython handles it).
* A cell whose every non-blank, non-comment line is a ``%backendai ...`` line magic runs locally,
  so ``%backendai config image=...`` before the first cell configures the session.
* Everything else goes to the remote session, including other magics (``%timeit``, ``!ls``),
  which the remote IPython understands.
"""

from __future__ import annotations

from typing import Literal

__all__ = ["LOCAL_CELL_MAGICS", "LOCAL_LINE_MAGICS", "Route", "local_body", "route"]

Route = Literal["local", "remote"]

LOCAL_CELL_MAGICS = frozenset({"local", "backendai"})
LOCAL_LINE_MAGICS = frozenset({"backendai"})


def _magic_name(line: str, prefix: str) -> str | None:
    if not line.startswith(prefix) or line.startswith(prefix + "%") and prefix == "%":
        return None
    rest = line[len(prefix) :]
    name = rest.split(None, 1)[0] if rest.strip() else ""
    return name or None


def route(code: str) -> Route:
    """Decide where ``code`` runs. Pure; see the module docstring for the rules."""
    lines = [ln.strip() for ln in code.splitlines()]
    # IPython only honours a cell magic on the first (non-blank) line.
    first = next((ln for ln in lines if ln), "")
    if first.startswith("%%"):
        name = _magic_name(first, "%%")
        return "local" if name in LOCAL_CELL_MAGICS else "remote"
    meaningful = [ln for ln in lines if ln and not ln.startswith("#")]
    if meaningful and all(_magic_name(ln, "%") in LOCAL_LINE_MAGICS for ln in meaningful):
        return "local"
    return "remote"


def local_body(code: str) -> str:
    """The code to run locally: a ``%%local`` cell loses its magic line, anything else is kept.

    Running the body directly (instead of through the ``%%local`` magic) keeps the cell's
    ``Out[n]``, its error status and its execution count exactly as in a local kernel.
    """
    lines = code.splitlines(keepends=True)
    for i, line in enumerate(lines):
        if line.strip():
            if _magic_name(line.strip(), "%%") == "local":
                return "".join(lines[i + 1 :])
            return code
    return code
