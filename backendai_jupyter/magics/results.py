"""What the magics return: small frozen objects that render as HTML in a notebook and as text
elsewhere (``_repr_html_`` + ``__repr__``), and that programs can read field by field.

* :class:`Table` -- every listing (``ps``, ``vfolder list``, ``vfolder ls``, ``sesstpl list``, ...).
* :class:`RunResult` -- one ``%backendai run``: session, exit code, stdout, stderr, duration and the
  Jupyter output messages it produced (the same ``(msg_type, content)`` tuples the kernel sends).
* :class:`CaseResult` / :class:`SweepResult` -- a ``--env-range``/``--exec-range`` sweep: one result
  per case, kept apart, plus a summary :class:`Table`.
"""

from __future__ import annotations

import html
import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..display.outputs import Message

__all__ = ["CaseResult", "RunResult", "SweepResult", "Table"]

_MAX_CELL = 80  # characters of one text-table cell before it is shortened


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, (dict, list, tuple)):
        return json.dumps(value, default=str)
    return str(value)


def _short(text: str) -> str:
    text = text.replace("\n", " ")
    return text if len(text) <= _MAX_CELL else text[: _MAX_CELL - 1] + "…"


@dataclass(frozen=True)
class Table:
    """A listing: ``columns`` and ``rows`` (tuples, one value per column).

    ``len(table)``, iteration (rows as dicts), ``table.column("id")`` and :meth:`records`
    make it usable from code; ``_repr_html_`` renders it in a notebook.
    """

    columns: tuple[str, ...]
    rows: tuple[tuple[Any, ...], ...] = ()
    title: str = ""

    @classmethod
    def from_records(
        cls, records: Sequence[Mapping[str, Any]], columns: Sequence[str], title: str = ""
    ) -> Table:
        rows = tuple(tuple(r.get(c) for c in columns) for r in records)
        return cls(tuple(columns), rows, title)

    def __len__(self) -> int:
        return len(self.rows)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return iter(self.records())

    def records(self) -> list[dict[str, Any]]:
        return [dict(zip(self.columns, row, strict=True)) for row in self.rows]

    def column(self, name: str) -> list[Any]:
        index = self.columns.index(name)
        return [row[index] for row in self.rows]

    def __repr__(self) -> str:
        return self.to_text()

    def to_text(self) -> str:
        cells = [[_short(_cell(v)) for v in row] for row in self.rows]
        widths = [len(c) for c in self.columns]
        for row in cells:
            widths = [max(w, len(v)) for w, v in zip(widths, row, strict=True)]
        lines = [self.title] if self.title else []
        if len(self.columns) == 1 and self.columns[0] == "id" and cells:
            return "\n".join(lines + [row[0] for row in cells])  # ps --id-only: one id a line
        lines.append("  ".join(c.ljust(w) for c, w in zip(self.columns, widths, strict=True)))
        lines.append("  ".join("-" * w for w in widths))
        for row in cells:
            lines.append("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)))
        if not cells:
            lines.append("(no entries)")
        return "\n".join(line.rstrip() for line in lines)

    def _repr_html_(self) -> str:
        head = "".join(f"<th>{html.escape(c)}</th>" for c in self.columns)
        body = "".join(
            "<tr>" + "".join(f"<td>{html.escape(_cell(v))}</td>" for v in row) + "</tr>"
            for row in self.rows
        )
        if not self.rows:
            body = f'<tr><td colspan="{len(self.columns)}"><i>no entries</i></td></tr>'
        caption = f"<caption>{html.escape(self.title)}</caption>" if self.title else ""
        return f"<table>{caption}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


@dataclass(frozen=True)
class RunResult:
    """The outcome of one ``%backendai run``.

    ``exit_code`` is ``None`` when no code ran (``--enqueue-only``, a ``--max-wait`` timeout, a
    session that failed to start). A nonzero exit code does not raise unless ``--raise`` was given.
    """

    session_id: str
    session_name: str
    exit_code: int | None
    stdout: str
    stderr: str
    duration: float
    outputs: tuple[Message, ...] = field(default=(), repr=False)
    status: str = ""
    error: dict[str, Any] | None = field(default=None, repr=False)
    """The remote exception as Jupyter's ``error`` content (ename, evalue, traceback), when the
    rich channel reported one."""
    gpu: str = ""
    """The accelerator slots the session occupied (``"cuda.shares 0.5"``; "" without)."""

    @property
    def ok(self) -> bool:
        return self.exit_code == 0

    def __repr__(self) -> str:
        return (
            f"RunResult(session={self.session_name!r}, id={self.session_id!r}, "
            f"exit_code={self.exit_code}, duration={self.duration:.2f}s, "
            f"stdout={len(self.stdout)} chars, stderr={len(self.stderr)} chars"
            + (f", status={self.status!r}" if self.status else "")
            + ")"
        )

    def _repr_html_(self) -> str:
        gpu = ("gpu",) if self.gpu else ()
        return Table(
            ("session", "id", "exit code", "duration (s)", "status", *gpu),
            ((self.session_name, self.session_id, self.exit_code, f"{self.duration:.2f}",
              self.status, *((self.gpu,) if self.gpu else ())),),
        )._repr_html_()


@dataclass(frozen=True)
class CaseResult:
    """One case of a sweep: its range values and what its own session produced."""

    index: int
    env_vars: dict[str, str]
    exec_vars: dict[str, str]
    result: RunResult | None
    error: str = ""

    @property
    def exit_code(self) -> int | None:
        return self.result.exit_code if self.result else None

    @property
    def stdout(self) -> str:
        return self.result.stdout if self.result else ""

    @property
    def stderr(self) -> str:
        return self.result.stderr if self.result else ""

    @property
    def ok(self) -> bool:
        return self.exit_code == 0


@dataclass(frozen=True)
class SweepResult:
    """Every case of a sweep, in case order; ``table`` is the summary."""

    cases: tuple[CaseResult, ...]
    cancelled: bool = False

    @property
    def ok(self) -> bool:
        return bool(self.cases) and all(c.ok for c in self.cases)

    @property
    def failed(self) -> tuple[CaseResult, ...]:
        return tuple(c for c in self.cases if not c.ok)

    @property
    def table(self) -> Table:
        names: list[str] = []
        for c in self.cases:
            for name in (*c.env_vars, *c.exec_vars):
                if name not in names:
                    names.append(name)
        gpu = any(c.result and c.result.gpu for c in self.cases)
        columns = ("case", *names, "exit code", "duration (s)", *(("gpu",) if gpu else ()),
                   "session id", "error")
        rows = []
        for c in self.cases:
            values = {**c.env_vars, **c.exec_vars}
            r = c.result
            rows.append(
                (c.index, *(values.get(n) for n in names), c.exit_code,
                 f"{r.duration:.2f}" if r else None, *((r.gpu if r else None,) if gpu else ()),
                 r.session_id if r else None, c.error)
            )
        done = sum(1 for c in self.cases if c.ok)
        title = f"{done}/{len(self.cases)} cases succeeded" + (" (cancelled)" if self.cancelled
                                                                 else "")
        return Table(columns, tuple(rows), title)

    def __len__(self) -> int:
        return len(self.cases)

    def __getitem__(self, index: int) -> CaseResult:
        return self.cases[index]

    def __repr__(self) -> str:
        return self.table.to_text()

    def _repr_html_(self) -> str:
        return self.table._repr_html_()
