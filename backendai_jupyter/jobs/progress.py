"""Progress bars for notebook jobs: one bar of cells per running case and, for a sweep, one
bar of cases. ``tqdm.tqdm`` in a terminal (silent when stderr is not one), ``tqdm.auto`` in a
notebook (widgets)."""

from __future__ import annotations

import sys
from typing import Any

from .params import Case
from .results import CaseResult

__all__ = ["BarProgress"]


class BarProgress:
    def __init__(self, total_cases: int, *, sweep: bool, bar: Any = None,
                 disable: bool | None = None, out: Any = None) -> None:
        if bar is None:
            from tqdm import tqdm

            bar = tqdm
        self._bar = bar
        self._disable = disable
        self._out = out or sys.stderr
        self._cells: dict[int, Any] = {}
        self._slots: dict[int, int] = {}
        self._cases = (
            bar(total=total_cases, desc="cases", unit="case", position=0, file=self._out,
                disable=disable, leave=True, dynamic_ncols=True)
            if sweep else None
        )
        self._failed = 0

    def case_started(self, case: Case, cells: int) -> None:
        used = set(self._slots.values())
        slot = next(i for i in range(1, len(used) + 2) if i not in used)
        self._slots[case.index] = slot
        offset = slot if self._cases is not None else 0
        self._cells[case.index] = self._bar(
            total=cells, desc=case.label if self._cases is not None else "cells", unit="cell",
            position=offset, file=self._out, disable=self._disable,
            leave=self._cases is None, dynamic_ncols=True,
        )

    def cell_done(self, case: Case, done: int) -> None:
        bar = self._cells.get(case.index)
        if bar is not None:
            bar.update(done - bar.n)

    def case_waiting(self, case: Case, why: str) -> None:
        """The case's session waits to be scheduled: the reason goes after its bar."""
        bar = self._cells.get(case.index)
        if bar is not None:
            bar.set_postfix_str(why, refresh=True)

    def case_done(self, result: CaseResult) -> None:
        index = result.case.index
        bar = self._cells.pop(index, None)
        self._slots.pop(index, None)
        if bar is not None:
            if not result.ok:
                bar.set_postfix_str(result.status)
            bar.close()
        if self._cases is not None:
            self._failed += not result.ok
            self._cases.update(1)
            self._cases.set_postfix(failed=self._failed, refresh=True)

    def close(self) -> None:
        for bar in self._cells.values():
            bar.close()
        self._cells.clear()
        if self._cases is not None:
            self._cases.close()
