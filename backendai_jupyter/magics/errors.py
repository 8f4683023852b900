"""The two exceptions ``%backendai`` raises besides ``UsageError``, apart so every command module
can raise them without importing the magics class.
"""

from __future__ import annotations

from ..client import BackendAIError, RemoteError
from ..display.outputs import parse_traceback_text
from .results import RunResult

__all__ = ["CommandError", "RunFailed"]


class CommandError(BackendAIError):
    """A ``%backendai`` command failed (server or client error); IPython shows one line."""

    def _render_traceback_(self) -> list[str]:
        return [f"{type(self).__name__}: {self}"]


class RunFailed(RemoteError):
    """``run --raise``: the code failed remotely. ``result`` holds the :class:`RunResult`."""

    def __init__(self, result: RunResult) -> None:
        ename, evalue = ("RemoteError", "")
        if result.error is not None:
            ename, evalue = str(result.error.get("ename")), str(result.error.get("evalue"))
        elif result.stderr:
            ename, evalue = parse_traceback_text(result.stderr)
        where = f"exit code {result.exit_code} in session {result.session_name}"
        # The output (traceback included) was already streamed into the cell: one line here.
        super().__init__(ename, evalue, [f"{ename}: {evalue} ({where})" if evalue else where])
        self.result = result
