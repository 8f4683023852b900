"""What a notebook job returns: one :class:`CaseResult` per case and a :class:`JobResult`
that prints as a table, renders as HTML in a notebook and writes itself as CSV and JSON."""

from __future__ import annotations

import csv
import html
import io
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .params import Case

__all__ = ["CaseResult", "JobResult", "summary_rows"]

#: ok: every cell ran; failed: a cell raised; cancelled: stopped (Ctrl-C, jobs cancel);
#: error: the case could not run (session or kernel failure); pending/running: detached jobs.
STATUSES = ("ok", "failed", "cancelled", "error", "pending", "running")


@dataclass(frozen=True)
class CaseResult:
    case: Case
    status: str
    duration: float | None = None
    output: str | None = None
    records: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    session: str | None = None
    #: the accelerator slots the case's session got (``"cuda.shares 0.5"``; "" without)
    gpu: str = ""
    #: epoch seconds: the case was submitted (its session requested) / finished
    submitted_at: float | None = None
    finished_at: float | None = None
    #: the failing cell's source and traceback (printed by the command line; not in summaries)
    detail: str | None = field(default=None, repr=False)

    @property
    def ok(self) -> bool:
        return self.status == "ok"


def _fmt(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, (dict, list)):
        return json.dumps(value, default=str)
    return str(value)


def summary_rows(results: Sequence[CaseResult]) -> tuple[list[str], list[dict[str, Any]]]:
    """Columns and rows: case, each swept parameter, status, duration, the GPU it got (when a
    case had one), output, each record."""
    swept = list(dict.fromkeys(k for r in results for k in r.case.swept))
    recorded = list(dict.fromkeys(k for r in results for k in r.records))
    gpu = ["gpu"] if any(r.gpu for r in results) else []
    columns = ["case", *swept, "status", "duration_s", *gpu, "output", *recorded, "error"]
    rows = []
    for r in results:
        row: dict[str, Any] = {"case": r.case.label}
        row.update({k: r.case.swept.get(k) for k in swept})
        row.update(status=r.status,
                   duration_s=None if r.duration is None else round(r.duration, 3))
        if gpu:
            row["gpu"] = r.gpu
        row["output"] = r.output
        row.update({k: r.records.get(k) for k in recorded})
        row["error"] = r.error
        rows.append(row)
    return columns, rows


@dataclass(frozen=True)
class JobResult:
    """A whole run or sweep: its cases in order, and whether it was cancelled."""

    job_id: str
    cases: tuple[CaseResult, ...]
    cancelled: bool = False

    @property
    def ok(self) -> bool:
        return not self.cancelled and all(c.ok for c in self.cases)

    def __len__(self) -> int:
        return len(self.cases)

    def __getitem__(self, index: int) -> CaseResult:
        return self.cases[index]

    def records(self) -> list[dict[str, Any]]:
        return summary_rows(self.cases)[1]

    def to_text(self) -> str:
        columns, rows = summary_rows(self.cases)
        cells = [[_fmt(row[c]) for c in columns] for row in rows]
        widths = [max([len(c), *(len(r[i]) for r in cells)]) for i, c in enumerate(columns)]
        lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True))]
        lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)) for r in cells]
        return "\n".join(line.rstrip() for line in lines)

    def __repr__(self) -> str:
        done = sum(1 for c in self.cases if c.ok)
        head = f"JobResult {self.job_id}: {done}/{len(self.cases)} ok"
        return head + (" (cancelled)" if self.cancelled else "") + "\n" + self.to_text()

    def _repr_html_(self) -> str:
        columns, rows = summary_rows(self.cases)
        head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
        body = "".join(
            "<tr>" + "".join(f"<td>{html.escape(_fmt(row[c]))}</td>" for c in columns) + "</tr>"
            for row in rows
        )
        return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"

    def to_csv(self) -> str:
        columns, rows = summary_rows(self.cases)
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: _fmt(v) for k, v in row.items()})
        return buf.getvalue()

    def to_json(self) -> str:
        data = {
            "job": self.job_id,
            "cancelled": self.cancelled,
            "cases": [
                {
                    "case": r.case.label, "index": r.case.index, "swept": r.case.swept,
                    "params": r.case.params, "status": r.status, "duration_s": r.duration,
                    "output": r.output, "records": r.records, "error": r.error,
                    "session": r.session, "submitted_at": r.submitted_at,
                    "finished_at": r.finished_at, "gpu": r.gpu,
                }
                for r in self.cases
            ],
        }
        return json.dumps(data, indent=2, default=str)

    def write_summary(self, directory: Path) -> tuple[Path, Path]:
        """``summary.csv`` and ``summary.json`` in ``directory``."""
        directory.mkdir(parents=True, exist_ok=True)
        csv_path, json_path = directory / "summary.csv", directory / "summary.json"
        csv_path.write_text(self.to_csv())
        json_path.write_text(self.to_json())
        return csv_path, json_path
